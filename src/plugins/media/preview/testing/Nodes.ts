/**
 * A fixture for preview tests: media nodes (as `media/testing/Nodes.ts`
 * builds them) whose engines also declare the thumbnail model, kept in
 * sync by the real sync plugin (thumbnail records travel through the log,
 * as they do between real nodes), each with preview and a cache in a
 * temporary directory.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Engine from "../../../../engine/Engine.js"
import type { TransportError } from "../../../../transport/Transport.js"
import * as Sync from "../../../sync/Sync.js"
import * as Hosts from "../../../testing/Hosts.js"
import * as Media from "../../Media.js"
import * as MediaModels from "../../Models.js"
import * as Mounts from "../../Mounts.js"
import * as Presence from "../../Presence.js"
import { tempDir } from "../../testing/Files.js"
import { library, LIBRARY, type Node as MediaNode } from "../../testing/Nodes.js"
import * as Models from "../Models.js"
import * as Preview from "../Preview.js"

export { LIBRARY }

/** One node. */
export interface Node extends MediaNode {
  readonly preview: Preview.Service
}

/** A network to put nodes on. */
export interface Network {
  /** A node named `name`, member of `LIBRARY` with `members`, running until `scope` closes (default: the caller's). */
  readonly node: (
    name: string,
    members: ReadonlyArray<string>,
    options?: { readonly scope?: Scope.Scope; readonly preview?: Omit<Preview.Options, "engine" | "directory"> }
  ) => Effect.Effect<Node, TransportError, Scope.Scope>
  /** A host member of `LIBRARY` with no plugin: for a test to play a peer by hand. */
  readonly bare: (name: string, members: ReadonlyArray<string>) => Effect.Effect<Hosts.Host, TransportError, Scope.Scope>
}

/** A network of preview nodes in the caller's scope. */
export const network = (): Effect.Effect<Network, never, Scope.Scope> =>
  Effect.map(Hosts.network(), (hosts) => ({
    bare: (name, members) => hosts.host(name, { libraries: [library(members)] }),
    node: (name, members, options = {}) => {
      const build = Effect.gen(function*() {
        const host = yield* hosts.host(name, { libraries: [library(members)] })
        const engine = yield* Effect.orDie(Engine.makeSqlite({ models: [...MediaModels.models, ...Models.models], node: name, filename: ":memory:" }))
        const mounts = yield* Mounts.make({ checkInterval: Duration.days(1) })
        const presence = yield* host.provide(Presence.make().pipe(Effect.provideService(Mounts.Mounts, mounts)))
        const media = yield* host.provide(Media.make({ engine: () => Effect.succeed(engine) }).pipe(
          Effect.provideService(Mounts.Mounts, mounts),
          Effect.provideService(Presence.Presence, presence)
        ))
        yield* host.provide(Sync.make({ libraries: [{ id: LIBRARY, engine }], retry: Schedule.spaced(Duration.millis(50)) }))
        const directory = yield* tempDir("weft-preview-")
        const preview = yield* host.provide(
          Preview.make({ ...options.preview, engine: () => Effect.succeed(engine), directory }).pipe(
            Effect.provideService(Mounts.Mounts, mounts),
            Effect.provideService(Presence.Presence, presence)
          )
        )
        return { ...host, engine, mounts, presence, media, preview } satisfies Node
      })
      return options.scope === undefined ? build : Scope.extend(build, options.scope)
    }
  }))

/** Waits until `node`'s copy of the library holds `count` thumbnail records (sync is asynchronous). */
export const thumbnailRecords = (node: Node, count: number) =>
  Effect.orDie(node.engine.query(Models.thumbnails)).pipe(
    Effect.repeat({ schedule: Schedule.spaced(Duration.millis(20)), until: (records) => records.length >= count })
  )

/** Waits until `node`'s copy of the library holds `count` file records. */
export const fileRecords = (node: Node, count: number) =>
  Effect.orDie(node.engine.query(MediaModels.files)).pipe(
    Effect.repeat({ schedule: Schedule.spaced(Duration.millis(20)), until: (records) => records.length >= count })
  )
