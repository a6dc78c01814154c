/**
 * A fixture for media tests: plugin hosts on a seeded memory network
 * (`Hosts`), members of one library, each with an in-memory engine that
 * declares the media models, its mounts and presence. Records are written
 * to every node's engine alike (`everywhere`), standing in for sync, which
 * is not what these tests are about.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import * as Engine from "../../../engine/Engine.js"
import type * as Model from "../../../engine/Model.js"
import type * as Libraries from "../../../library/Libraries.js"
import type * as MemoryTransport from "../../../transport/MemoryTransport.js"
import type { TransportError } from "../../../transport/Transport.js"
import * as Hosts from "../../testing/Hosts.js"
import * as Models from "../Models.js"
import * as Media from "../Media.js"
import * as Mounts from "../Mounts.js"
import * as Presence from "../Presence.js"

/** The library the nodes share. */
export const LIBRARY = "media-library"

/** One node. */
export interface Node extends Hosts.Host {
  readonly engine: Engine.Service
  readonly mounts: Mounts.Service
  readonly presence: Presence.Service
  readonly media: Media.Service
}

/** Options of the fixture. */
export interface Options {
  readonly network?: Partial<MemoryTransport.Options>
  readonly presence?: Presence.Options
  readonly media?: Omit<Media.Options, "engine">
  /** What each node's `Media` gets as its engine, made from the plain one (to watch how it is used). */
  readonly engine?: (node: string, plain: Media.EngineOf) => Media.EngineOf
}

/** A network to put nodes on. */
export interface Network {
  readonly network: MemoryTransport.MemoryNetwork
  /** A node named `name`, member of `LIBRARY` with `members` (itself included), running until `scope` closes (default: the caller's). */
  readonly node: (name: string, members: ReadonlyArray<string>, scope?: Scope.Scope) => Effect.Effect<Node, TransportError, Scope.Scope>
  /** A host member of `LIBRARY` with `members`, with no media plugin: for a test to play a peer by hand. */
  readonly bare: (name: string, members: ReadonlyArray<string>) => Effect.Effect<Hosts.Host, TransportError, Scope.Scope>
}

/** The library as each node holds it. */
export const library = (members: ReadonlyArray<string>, id = LIBRARY): Libraries.Library =>
  ({ id, name: "Media", members: members as Libraries.Library["members"] })

/** A network of media nodes in the caller's scope. */
export const network = (options: Options = {}): Effect.Effect<Network, never, Scope.Scope> =>
  Effect.map(Hosts.network(options.network), (hosts) => ({
    network: hosts.network,
    bare: (name, members) => hosts.host(name, { libraries: [library(members)] }),
    node: (name, members, scope) => {
      const build = Effect.gen(function*() {
        const host = yield* hosts.host(name, { libraries: [library(members)] })
        const engine = yield* Effect.orDie(Engine.makeSqlite({ models: Models.models, node: name, filename: ":memory:" }))
        // checked by the tests themselves (`check`), never on a timer they would race
        const mounts = yield* Mounts.make({ checkInterval: Duration.days(1) })
        const presence = yield* host.provide(Presence.make(options.presence).pipe(Effect.provideService(Mounts.Mounts, mounts)))
        const plain: Media.EngineOf = () => Effect.succeed(engine)
        const media = yield* host.provide(Media.make({ ...options.media, engine: options.engine?.(name, plain) ?? plain }).pipe(
          Effect.provideService(Mounts.Mounts, mounts),
          Effect.provideService(Presence.Presence, presence)
        ))
        return { ...host, engine, mounts, presence, media } satisfies Node
      })
      return scope === undefined ? build : Scope.extend(build, scope)
    }
  }))

/** Copies `from`'s media records (locations and files) to the other nodes' engines, as sync would. */
export const share = (from: Node, to: ReadonlyArray<Node>) =>
  Effect.gen(function*() {
    const locations = yield* Effect.orDie(from.engine.query(Models.locations))
    const files = yield* Effect.orDie(from.engine.query(Models.files))
    const changes = [
      ...locations.map(({ id, ...values }) => Models.locations.create(id, values)),
      ...files.map(({ id, ...values }) => Models.files.create(id, values))
    ]
    yield* everywhere(to, changes)
  })

/** Writes `changes` to every node's engine. */
export const everywhere = (nodes: ReadonlyArray<Node>, changes: ReadonlyArray<Model.Change>) =>
  Effect.forEach(nodes, (node) => Effect.orDie(node.engine.mutate(changes)), { discard: true })
