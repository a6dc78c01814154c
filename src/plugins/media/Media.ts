/**
 * Remote media: a library's files read from whichever node holds them,
 * with byte ranges (protocol and wire format in `Protocol.ts`).
 *
 * - Reading (`read`): the file's record is looked up in this node's copy of
 *   the library (by id, or by content hash: any copy will do); the range is
 *   checked against it; then the bytes stream from the first source that
 *   serves them: this node when the location is online here, else the peers
 *   presence says hold it, fastest first. A source that fails, before or
 *   during the bytes, is replaced by the next, which goes on from the byte
 *   reached. The stream is pulled: nothing is read ahead of the consumer
 *   but the transport's window.
 * - Serving: a `Read` is answered from the location's root on this node
 *   only: the path is confined to the root (`..` and links out of it are
 *   `Unsafe`), the file must match its record (size and time, and hash
 *   when asked: else `Changed`), and it is read a chunk at a time, at most
 *   `READ_AHEAD` chunks ahead of what the transport took. A file that
 *   changes while it is sent has its stream reset, and the reader moves on.
 * - Indexing (`index`, `rescan`): `Indexer` over the library's engine; a
 *   location indexed here is mounted here, so presence announces it.
 *
 * ```ts
 * const media = yield* Media.Media
 * const reading = yield* media.read(library, { id: fileId }, { offset: 1 << 20, length: 65536 })
 * const bytes = yield* Stream.runCollect(reading.bytes) // MediaError "Offline", "Changed", …
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as RcMap from "effect/RcMap"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { StorageError } from "../../engine/Database.js"
import type * as Engine from "../../engine/Engine.js"
import type { ValidationError } from "../../engine/EngineError.js"
import type { TransportError } from "../../transport/Transport.js"
import * as Plugin from "../Plugin.js"
import { PluginHost } from "../PluginHost.js"
import * as Indexer from "./Indexer.js"
import * as Files from "./internal/files.js"
import * as Library from "./internal/library.js"
import * as Pool from "./internal/pool.js"
import * as Read from "./internal/read.js"
import * as Serve from "./internal/serve.js"
import { Mounts } from "./Mounts.js"
import { Presence } from "./Presence.js"
import * as Protocol from "./Protocol.js"

export const MediaError = Protocol.MediaError
export type MediaError = Protocol.MediaError
export type FileRef = Protocol.FileRef
export type Range = Files.Range
export type ReadOptions = Read.ReadOptions
export type Reading = Read.Reading

/** The engine of a library, held for as long as the scope (`Engines.get` on a node). */
export type EngineOf = (library: string) => Effect.Effect<Engine.Service, StorageError | ValidationError, Scope.Scope>

/** Options of the plugin. */
export interface Options {
  /** The engine of each library. */
  readonly engine: EngineOf
  /** Most bytes read from disk and written at once (default 64 KiB). */
  readonly chunkBytes?: number
  /** Most inbound reads of one peer at once (default 16). */
  readonly maxInboundStreams?: number
  /** How long a reader waits for a peer's answer, and then for each piece of its bytes, before trying the next peer (default 10 s). */
  readonly answerTimeout?: Duration.DurationInput
  /** Most idle streams kept per peer for the next reads (default 4; 0: a new stream per read). */
  readonly idleStreams?: number
  /** How long an idle stream is kept (default 10 s; the server keeps it `Protocol.IDLE_TIMEOUT`). */
  readonly idleTimeout?: Duration.DurationInput
}

/** Media on a node. */
export interface Service {
  /** Reads (part of) a file of `library`: fails at once `NotFound` or `RangeNotSatisfiable`; the bytes may fail too. */
  readonly read: (library: string, file: FileRef, options?: ReadOptions) => Effect.Effect<Reading, MediaError>
  /** Records `location` and its files from `root` (an absolute path), then holds it here. */
  readonly index: (
    library: string,
    location: { readonly id: string; readonly name: string },
    root: string,
    options?: Indexer.Options
  ) => Stream.Stream<Indexer.Progress, Indexer.IndexError>
  /** Brings a location held here up to date with its root. */
  readonly rescan: (library: string, location: string, options?: Indexer.Options) => Stream.Stream<Indexer.Progress, Indexer.IndexError>
}

/** Media on a node. */
export class Media extends Context.Tag("weft/plugins/media/Media")<Media, Service>() {}

/** Chunks a served read holds read ahead of the transport (disk reads overlap network writes). */
export const READ_AHEAD = Serve.READ_AHEAD

/** Idle streams kept per peer, by default. */
export const DEFAULT_IDLE_STREAMS = 4

/** How long an idle stream is kept, by default. */
export const DEFAULT_IDLE_TIMEOUT = Duration.seconds(10)

/** Most inbound reads of one peer at once, by default. */
export const DEFAULT_MAX_INBOUND_STREAMS = 16

/**
 * How long a library's engine that reads (served or made here) got from `Options.engine` is held
 * after the last of them: reads in a row (a player seeking) would otherwise open and close it each,
 * when nothing else holds it.
 */
export const ENGINE_IDLE: Duration.Duration = Duration.seconds(30)

/** Registers the plugin on the host in context and provides the service; unregistered with the scope. */
export const make = (options: Options): Effect.Effect<Service, TransportError, PluginHost | Mounts | Presence | Scope.Scope> =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const mounts = yield* Mounts
    const presence = yield* Presence
    const chunkBytes = Math.max(1, Math.floor(options.chunkBytes ?? 64 * 1024))
    const libraries = yield* RcMap.make({ lookup: (library: string) => Effect.flatMap(options.engine(library), Library.make), idleTimeToLive: ENGINE_IDLE })
    const library = (id: string) => RcMap.get(libraries, id)
    const answerTimeout = options.answerTimeout ?? Protocol.REQUEST_TIMEOUT

    const handle = Serve.handler({ mounts, library, chunkBytes })

    yield* host.register(Plugin.make({
      name: "media",
      ...Protocol.media,
      maxInboundStreams: options.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
      handle
    }))

    const pool = yield* Pool.make(host, {
      maxIdle: Math.max(0, Math.floor(options.idleStreams ?? DEFAULT_IDLE_STREAMS)),
      idleTimeout: options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
      answerTimeout
    })
    const read = Read.make({ host, pool, mounts, presence, library, chunkBytes })

    const storage = (root: string) => (e: StorageError | ValidationError) => new Indexer.IndexError({ reason: "Storage", path: root, detail: e.message, cause: e })

    return {
      read,
      index: (library, location, root, indexOptions) =>
        Stream.unwrapScoped(Effect.map(Effect.mapError(options.engine(library), storage(root)), (engine) =>
          Stream.concat(
            Indexer.index(engine, location, root, indexOptions),
            Stream.drain(Stream.fromEffect(mounts.mount(library, location.id, root)))
          ))),
      rescan: (library, location, indexOptions) =>
        Stream.unwrapScoped(Effect.gen(function*() {
          const root = yield* mounts.root(library, location)
          if (Option.isNone(root)) {
            return yield* new Indexer.IndexError({ reason: "NotFound", path: location, detail: `location ${location} is not held on this node` })
          }
          const engine = yield* Effect.mapError(options.engine(library), storage(root.value))
          return Indexer.rescan(engine, location, root.value, indexOptions)
        }))
    }
  })

/** Layer of the plugin and its service. */
export const layer = (options: Options): Layer.Layer<Media, TransportError, PluginHost | Mounts | Presence> => Layer.scoped(Media, make(options))
