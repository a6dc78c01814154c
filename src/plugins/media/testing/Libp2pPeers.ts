/**
 * Media peers on the real transport for tests: libp2p on loopback (TCP,
 * Noise, Yamux), a plugin host, an in-memory engine of the media models,
 * mounts, presence and `Media`, all in the caller's scope.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Engine from "../../../engine/Engine.js"
import type * as Model from "../../../engine/Model.js"
import * as Libraries from "../../../library/Libraries.js"
import * as Identity from "../../../transport/Identity.js"
import * as Libp2pTransport from "../../../transport/Libp2pTransport.js"
import * as Transport from "../../../transport/Transport.js"
import * as PluginHost from "../../PluginHost.js"
import * as Media from "../Media.js"
import * as Models from "../Models.js"
import * as Mounts from "../Mounts.js"
import * as Presence from "../Presence.js"
import * as Nodes from "./Nodes.js"

/** What a peer's engine declares beyond the media models (preview's, say). */
export interface Options {
  readonly models?: ReadonlyArray<Model.Any>
}

/** A peer of `Nodes.LIBRARY` (with `members`) listening on loopback; nothing connected yet. */
export const make = (identity: Identity.Identity["Type"], members: ReadonlyArray<string>, options: Options = {}) =>
  Effect.gen(function*() {
    const transport = yield* Libp2pTransport.make({ identity, listen: ["/ip4/127.0.0.1/tcp/0"] })
    const context = yield* Layer.build(Layer.provideMerge(
      PluginHost.layer({ connectDiscovered: false }),
      Layer.merge(Layer.succeed(Transport.Transport, transport), Libraries.layerMemory([Nodes.library(members)]))
    ))
    const host = Context.get(context, PluginHost.PluginHost)
    const engine = yield* Engine.makeSqlite({ models: [...Models.models, ...(options.models ?? [])], node: identity.peerId, filename: ":memory:" })
    const mounts = yield* Mounts.make({ checkInterval: Duration.days(1) })
    const presence = yield* Presence.make().pipe(Effect.provide(context), Effect.provideService(Mounts.Mounts, mounts))
    const media = yield* Media.make({ engine: () => Effect.succeed(engine) }).pipe(
      Effect.provideService(PluginHost.PluginHost, host),
      Effect.provideService(Mounts.Mounts, mounts),
      Effect.provideService(Presence.Presence, presence)
    )
    const [address] = yield* transport.addresses
    const libraries = Context.get(context, Libraries.Libraries)
    return { id: identity.peerId, address: address!, host, libraries, engine, mounts, presence, media }
  })

/**
 * Two members on loopback: alice indexes `root` as location `loc1`
 * ("Films"), bob holds its records (copied, not synced) and is connected to
 * alice, who is online for him.
 */
export const aliceHolding = (root: string, options: Options = {}) =>
  Effect.gen(function*() {
    const [aliceId, bobId] = [yield* Identity.generate(), yield* Identity.generate()]
    const members = [aliceId.peerId, bobId.peerId]
    const alice = yield* make(aliceId, members, options)
    const bob = yield* make(bobId, members, options)
    yield* Stream.runDrain(alice.media.index(Nodes.LIBRARY, { id: "loc1", name: "Films" }, root))
    const files = yield* alice.engine.query(Models.files)
    yield* bob.engine.mutate([Models.locations.create("loc1", { name: "Films" }), ...files.map(({ id, ...values }) => Models.files.create(id, values))])
    const changes = yield* bob.presence.changes
    yield* bob.host.connect(alice.address)
    yield* Stream.runDrain(Stream.take(Stream.filter(changes, (c) => c._tag === "Online"), 1))
    return { alice, bob }
  })
