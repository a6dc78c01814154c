/**
 * The sync plugin over the real network transport (libp2p on 127.0.0.1):
 * a peer that is not a member of the library cannot open a sync stream.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Model from "../../engine/Model.js"
import * as Engines from "../../engine/testing/Engines.js"
import * as Identity from "../../transport/Identity.js"
import * as Libp2pTransport from "../../transport/Libp2pTransport.js"
import { type PeerId, Transport } from "../../transport/Transport.js"
import * as Libraries from "../../library/Libraries.js"
import * as PluginHost from "../PluginHost.js"
import * as Protocol from "./Protocol.js"
import * as Sync from "./Sync.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String }))
const LIBRARY = "shared-notes"

/** A libp2p peer syncing LIBRARY, whose member list (besides itself) is `others`. */
const peer = (identity: Identity.Service, others: ReadonlyArray<PeerId>) =>
  Effect.gen(function*() {
    const transport = yield* Libp2pTransport.make({ identity, listen: ["/ip4/127.0.0.1/tcp/0"] })
    const libraries = yield* Effect.provide(
      Libraries.Libraries,
      Libraries.layerMemory([{ id: LIBRARY, name: "notes", members: [identity.peerId, ...others] }])
    )
    const host = yield* PluginHost.make({ connectDiscovered: false }).pipe(
      Effect.provideService(Transport, transport),
      Effect.provideService(Libraries.Libraries, libraries)
    )
    const engine = yield* Engines.open({ models: [notes], node: identity.peerId })
    const sync = yield* Sync.make({
      libraries: [{ id: LIBRARY, engine }],
      retry: Schedule.spaced(Duration.millis(50))
    }).pipe(Effect.provideService(PluginHost.PluginHost, host), Effect.provideService(Libraries.Libraries, libraries))
    return { id: identity.peerId, transport, host, engine, sync }
  })

describe("Sync plugin over libp2p", () => {
  it.scopedLive("a peer that is not a member of the library cannot open sync: refused before any handler, nothing written", () =>
    Effect.gen(function*() {
      // victor never paired with ivan; ivan lists victor as a member anyway, so its plugin tries.
      // ivan gets the smaller id, so it is ivan's plugin that opens the session
      const victor = yield* peer(yield* Identity.generate(), [])
      let identity = yield* Identity.generate()
      while (identity.peerId >= victor.id) identity = yield* Identity.generate()
      const ivan = yield* peer(identity, [victor.id])
      const refusals = yield* victor.host.events
      const ivanFailures = yield* ivan.sync.failures
      yield* ivan.engine.mutate([notes.create("x", { title: "intruder" })])
      yield* ivan.host.connect((yield* victor.transport.addresses)[0]!)

      // ivan's plugin is refused, and so is a stream opened by hand
      const opened = yield* Effect.either(Effect.scoped(ivan.host.open(victor.id, Protocol.protocol, LIBRARY)))
      expect(Either.isLeft(opened) && opened.left).toMatchObject({ _tag: "PermissionError", reason: "NotAMember", peer: victor.id, library: LIBRARY })
      const refused = yield* refusals.pipe(Stream.filter((e) => e._tag === "Refused"), Stream.runHead, Effect.timeout(Duration.seconds(5)))
      expect(Option.map(refused, (e) => e._tag === "Refused" && [e.peer, e.protocol])).toEqual(Option.some([ivan.id, Protocol.protocol.protocol]))
      // the plugin's refused opening is a typed failure on ivan's side
      const failure = yield* ivanFailures.pipe(Stream.runHead, Effect.timeout(Duration.seconds(5)))
      expect(Option.map(failure, (f) => [f.peer, f.error._tag])).toEqual(Option.some([victor.id, "PermissionError"]))

      yield* Effect.sleep(Duration.millis(200))
      expect((yield* victor.engine.versionVector).size).toBe(0)
      expect(yield* victor.engine.query(notes)).toEqual([])
      expect((yield* victor.sync.status).filter((s) => s.state === "syncing")).toEqual([])
      // the connection itself stays: ping and other authenticated protocols still work
      expect(yield* victor.transport.connections).toEqual([ivan.id])
    }))
})
