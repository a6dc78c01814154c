/**
 * Preview media: thumbnails made once, by a node that holds the originals,
 * and shown on every member (protocol and wire format in `Protocol.ts`).
 *
 * - Making (`generate`): the image files of locations online here that
 *   have no thumbnail record for the recipe yet, one per distinct content
 *   hash, through a queue of bounded concurrency (`concurrency` decodes at
 *   once, each original at most `maxSourceBytes`: that bounds the memory).
 *   Each original is hashed again as read: a file changed since it was
 *   indexed is skipped (a rescan names its new content). A thumbnail's
 *   bytes go to this node's cache and its record to the library's log; a
 *   file that cannot be decoded gets a `failed` record, and is not tried
 *   again for that recipe.
 * - Showing (`thumbnail`): the file's record names its content hash, which
 *   names the thumbnail record; its bytes come from the cache, else from
 *   any available member of the library that holds them (`fetch`), each
 *   checked against the recorded hash before it is kept. Wrong bytes are a
 *   violation: refused, the peer reported, the next one asked.
 * - Everything at once (`fetchAll`), and the cache kept to what the
 *   library still holds (`collect`): thumbnails of originals no file of the
 *   library has any more are removed from the cache at once, and their
 *   records from the library once they have been orphans for `orphanGrace`
 *   (seen by this node's `collect`s): records sync per origin, so a
 *   thumbnail's record may arrive before the record of the file it shows,
 *   and must not be taken for an orphan and deleted library-wide then.
 * - In the background (`watch`): `generate` (and `fetchAll` when asked)
 *   again whenever the library's files or thumbnails change.
 *
 * ```ts
 * const preview = yield* Preview.Preview
 * yield* Stream.runDrain(preview.generate(library))            // on the node with the originals
 * const shown = yield* preview.thumbnail(library, { id: fileId }) // on any member: bytes, record, from where
 * ```
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as RcMap from "effect/RcMap"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as fsSync from "node:fs"
import * as nodePath from "node:path"
import type { StorageError } from "../../../engine/Database.js"
import type * as Engine from "../../../engine/Engine.js"
import type { ValidationError } from "../../../engine/EngineError.js"
import { Libraries } from "../../../library/Libraries.js"
import type { PeerId, TransportError } from "../../../transport/Transport.js"
import * as Plugin from "../../Plugin.js"
import { PluginHost } from "../../PluginHost.js"
import * as Files from "../internal/files.js"
import * as MediaModels from "../Models.js"
import { Mounts } from "../Mounts.js"
import { Presence } from "../Presence.js"
import * as Cache from "./Cache.js"
import * as Known from "./internal/known.js"
import * as Wire from "./internal/wire.js"
import * as Models from "./Models.js"
import * as Protocol from "./Protocol.js"
import * as Thumbnailer from "./Thumbnailer.js"

export const PreviewError = Protocol.PreviewError
export type PreviewError = Protocol.PreviewError

/** The engine of a library, held for as long as the scope. */
export type EngineOf = (library: string) => Effect.Effect<Engine.Service, StorageError | ValidationError, Scope.Scope>

/** Options of the plugin. */
export interface Options {
  /** The engine of each library. */
  readonly engine: EngineOf
  /** Where thumbnails are kept: one sub-directory per library. */
  readonly directory: string
  /** Most bytes of thumbnails kept per library (default 256 MiB); the least recently used go first. */
  readonly budget?: number
  /** How thumbnails are made (default `Thumbnailer.DEFAULT_RECIPE`). */
  readonly recipe?: Thumbnailer.Recipe
  /** Most originals decoded at once (default 2). */
  readonly concurrency?: number
  /** Largest original read for a thumbnail (default 64 MiB): a larger one gets a `TooLarge` record. */
  readonly maxSourceBytes?: number
  /** Most inbound fetches of one peer at once (default 8). */
  readonly maxInboundStreams?: number
  /** How a fetch pipelines its requests on a peer's stream: hashes per `Get`, `Get`s in flight (default 32 and 4). */
  readonly fetchPipeline?: { readonly chunk: number; readonly window: number }
  /**
   * How long `collect` sees a thumbnail record's original in no file of the library before it deletes the
   * record (default 10 minutes): long enough for the file records that sync behind it to arrive.
   */
  readonly orphanGrace?: Duration.DurationInput
}

/** What a `collect` removed. */
export interface Collected {
  /** Thumbnails removed from this node's cache. */
  readonly cached: number
  /** Thumbnail records deleted from the library (orphans for `orphanGrace`). */
  readonly records: number
}

/** Where a `generate` is. */
export interface Progress {
  /** Originals to make thumbnails of in this pass. */
  readonly total: number
  readonly made: number
  readonly failed: number
  /** Originals gone, changed or offline since they were listed. */
  readonly skipped: number
}

/** Where a `fetchAll` is. */
export interface FetchProgress {
  /** Thumbnails this node lacked. */
  readonly total: number
  readonly fetched: number
  /** Held by no member reachable now. */
  readonly unavailable: number
}

/** A thumbnail shown. */
export interface Shown {
  readonly record: Models.Thumbnail
  readonly bytes: Uint8Array
  /** This node's cache, or the peer the bytes came from. */
  readonly from: "cache" | PeerId
}

/** A file and its thumbnail's record, as `list` gives them. */
export interface Listed {
  readonly file: MediaModels.File
  readonly thumbnail: Models.Thumbnail
}

/** Most files one `list` returns. */
export const MAX_LIST = 1000

/** Preview on a node. */
export interface Service {
  /** The recipe thumbnails are made and looked up with. */
  readonly recipe: Thumbnailer.Recipe
  /** Makes the missing thumbnails of the images held here; progress after each batch of records. */
  readonly generate: (library: string) => Stream.Stream<Progress, PreviewError>
  /** The thumbnail of a file (by record id, or by the original's content hash), from the cache or a peer. */
  readonly thumbnail: (library: string, file: MediaModels.File["id"] | { readonly hash: string }) => Effect.Effect<Shown, PreviewError>
  /** The record of a file's thumbnail, if there is one yet. */
  readonly record: (library: string, file: MediaModels.File["id"] | { readonly hash: string }) => Effect.Effect<Option.Option<Models.Thumbnail>, PreviewError>
  /**
   * The library's files that have a ready thumbnail, by path (then id), at most `limit` (default 200, at most
   * `MAX_LIST`) after `after` (a path and id, for the next page): what a gallery shows. Only records are read.
   */
  readonly list: (
    library: string,
    options?: { readonly limit?: number; readonly after?: { readonly path: string; readonly id: string } }
  ) => Effect.Effect<ReadonlyArray<Listed>, PreviewError>
  /** Fetches every thumbnail of the library this node lacks, from whichever members hold them. */
  readonly fetchAll: (library: string) => Stream.Stream<FetchProgress, PreviewError>
  /**
   * Removes from the cache the thumbnails of originals the library no longer has, and from the library
   * their records once they have been orphans for `orphanGrace`.
   */
  readonly collect: (library: string) => Effect.Effect<Collected, PreviewError>
  /** `generate` (and `fetchAll` with `prefetch`) now and whenever the library's files or thumbnails change, until interrupted. */
  readonly watch: (library: string, options?: { readonly prefetch?: boolean; readonly debounce?: Duration.DurationInput }) => Stream.Stream<Progress | FetchProgress, PreviewError>
  /** The cache of a library, for inspection. */
  readonly cache: (library: string) => Effect.Effect<Cache.Cache, PreviewError>
}

/** Preview on a node. */
export class Preview extends Context.Tag("weft/plugins/media/Preview")<Preview, Service>() {}

// `fetchAll` goes through the lacking hashes in groups of this many (its progress steps, and the
// hashes one pipelined stream per peer carries), this many groups at once (so the drain at the end of
// one group leaves the connection busy with the other)
const FETCH_BATCH = 1024
const FETCHES = 2
/** Thumbnails (and bytes) one fetch holds, received and checked, before it stores them in one `Cache.putMany`. */
const STORE_BATCH = 32
const STORE_BYTES = 4 * 1024 * 1024

/** How long a library's index of thumbnail hashes (and its engine) is held after its last stream is served. */
const INDEX_IDLE = Duration.seconds(30)

/** A `Wire.Read` of a cache that cannot be opened: nothing held. */
const missing: Wire.Read = (hashes, from, each) =>
  Effect.sync(() => {
    let i = from
    while (i < hashes.length) if (!each(hashes[i++], undefined)) break
    return i
  })

/** Thumbnail records `collect` deletes per transaction. */
const COLLECT_BATCH = 256

/** Files `list` reads at once. */
const LIST_PAGE = 512

/** Originals up to this size are read in one synchronous call. */
const SYNC_READ_BYTES = 4 * 1024 * 1024

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** Registers the protocol on the host in context and provides the service; unregistered with the scope. */
export const make = (options: Options): Effect.Effect<Service, TransportError, PluginHost | Libraries | Mounts | Presence | Scope.Scope> =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const libraries = yield* Libraries
    const mounts = yield* Mounts
    const presence = yield* Presence
    const recipe = options.recipe ?? Thumbnailer.DEFAULT_RECIPE
    const concurrency = Math.max(1, Math.floor(options.concurrency ?? 2))
    const maxSourceBytes = Math.max(0, options.maxSourceBytes ?? 64 * 1024 * 1024)

    const error = (reason: Protocol.Reason, library: string, subject: string, detail: string) =>
      new PreviewError({ reason, library, subject, detail })
    const withEngine = <A, E>(library: string, use: (engine: Engine.Service) => Effect.Effect<A, E>) =>
      Effect.scoped(Effect.flatMap(
        Effect.mapError(options.engine(library), (e) => error("Storage", library, library, `the library could not be opened: ${e.message}`)),
        use
      ))
    const stored = (library: string, subject: string) => (e: { readonly message: string }) => error("Storage", library, subject, e.message)

    // one cache per library, opened once
    const caches = new Map<string, Cache.Cache>()
    const opening = yield* Effect.makeSemaphore(1)
    const cacheOf = (library: string) =>
      opening.withPermits(1)(Effect.suspend(() => {
        const held = caches.get(library)
        if (held !== undefined) return Effect.succeed(held)
        const directory = nodePath.join(options.directory, createHash("sha256").update(library).digest("hex").slice(0, 32))
        return Cache.make({ directory, ...(options.budget === undefined ? {} : { budget: options.budget }) }).pipe(
          Effect.tap((cache) => Effect.sync(() => caches.set(library, cache))),
          Effect.mapError(stored(library, "cache"))
        )
      }))

    // ---- making

    const makeOne = (library: string, file: MediaModels.File, cache: Cache.Cache) =>
      Effect.scoped(Effect.gen(function*() {
        const failed = (reason: Models.FailureReason, detail: string) =>
          Option.some(Models.thumbnails.create(Models.thumbnailId(file.hash, recipe.id), {
            source: file.hash,
            recipe: recipe.id,
            state: "failed",
            reason,
            detail: detail.slice(0, 512)
          }))
        if (file.size > maxSourceBytes) return failed("TooLarge", `the original has ${file.size} bytes, over ${maxSourceBytes}`)
        const opened = yield* Effect.either(Files.open(mounts, library, file, false))
        if (Either.isLeft(opened)) return Option.none()
        const handle = opened.right.handle
        // a small original in one synchronous read (FileHandle.readFile takes several thread-pool
        // round trips, which cost more than the read itself); a large one without blocking
        const bytes = yield* Effect.option(
          file.size <= SYNC_READ_BYTES
            ? Effect.try(() => fsSync.readFileSync(handle.fd))
            : Effect.tryPromise(() => handle.readFile())
        )
        // changed since indexed: its record names other content, and a rescan will name this one
        if (Option.isNone(bytes) || sha256(bytes.value) !== file.hash) return Option.none()
        const made = yield* Effect.either(Thumbnailer.make(bytes.value, recipe))
        if (Either.isLeft(made)) return failed(made.left.reason, made.left.detail)
        const hash = sha256(made.right.bytes)
        // just hashed: not hashed again by the cache
        yield* Effect.mapError(cache.put(hash, made.right.bytes, { hashed: true }), stored(library, file.id))
        return Option.some(Models.thumbnails.create(Models.thumbnailId(file.hash, recipe.id), {
          source: file.hash,
          recipe: recipe.id,
          state: "ready",
          hash,
          bytes: made.right.bytes.length,
          width: made.right.width,
          height: made.right.height,
          mime: made.right.mime
        }))
      }))

    const generate = (library: string): Stream.Stream<Progress, PreviewError> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const cache = yield* cacheOf(library)
        const engine = yield* Effect.mapError(options.engine(library), (e) => error("Storage", library, library, e.message))
        const files = yield* Effect.mapError(engine.query(MediaModels.files), stored(library, "files"))
        const done = new Set((yield* Effect.mapError(
          engine.query(Models.thumbnails, (q) => q.where("recipe", "=", recipe.id)),
          stored(library, "thumbnails")
        )).map((t) => t.source))
        const todo = new Map<string, MediaModels.File>()
        for (const file of files) {
          if (done.has(file.hash) || todo.has(file.hash) || !Thumbnailer.decodable(file.mime)) continue
          if (Option.isNone(yield* mounts.onlineRoot(library, file.location))) continue
          todo.set(file.hash, file)
        }
        let progress: Progress = { total: todo.size, made: 0, failed: 0, skipped: 0 }
        const made = Stream.fromIterable(todo.values()).pipe(
          Stream.mapEffect((file) => makeOne(library, file, cache), { concurrency, unordered: true }),
          Stream.groupedWithin(64, Duration.millis(200)),
          Stream.mapEffect((batch) =>
            Effect.gen(function*() {
              const changes = [...batch].flatMap(Option.toArray)
              if (changes.length > 0) yield* Effect.mapError(engine.mutate(changes), stored(library, "thumbnails"))
              const failures = changes.filter((c) => c._tag === "Create" && c.values.state === "failed").length
              progress = {
                ...progress,
                made: progress.made + changes.length - failures,
                failed: progress.failed + failures,
                skipped: progress.skipped + batch.length - changes.length
              }
              return progress
            })
          )
        )
        return Stream.concat(Stream.succeed(progress), made)
      }))

    // ---- showing and fetching

    const sourceOf = (library: string, engine: Engine.Service, file: string | { readonly hash: string }) =>
      typeof file === "string"
        ? Effect.map(Effect.mapError(engine.get(MediaModels.files, file), stored(library, file)), Option.map((f) => f.hash))
        : Effect.succeed(Option.some(file.hash))

    const record = (library: string, file: string | { readonly hash: string }) =>
      withEngine(library, (engine) =>
        Effect.gen(function*() {
          const source = yield* sourceOf(library, engine, file)
          if (Option.isNone(source)) return Option.none<Models.Thumbnail>()
          return yield* Effect.mapError(engine.get(Models.thumbnails, Models.thumbnailId(source.value, recipe.id)), stored(library, source.value))
        }))

    /**
     * Members of `library` available now, but this node, in the order they are asked: first those with a
     * location of the library online (they hold originals, so they made, or can make, its thumbnails), then
     * the others (who may have fetched them); within each, fastest first by presence's round trip, then by id.
     */
    const holders = (library: string) =>
      Effect.gen(function*() {
        const available = new Set(yield* host.available)
        const found = yield* libraries.get(library)
        if (Option.isNone(found)) return [] as Array<PeerId>
        const holding = new Set<PeerId>()
        const rtt = new Map<PeerId, number>()
        for (const location of ((yield* presence.table).get(library) ?? new Map()).keys()) {
          for (const holder of yield* presence.peers(library, location)) {
            holding.add(holder.peer)
            if (holder.rtt !== undefined) rtt.set(holder.peer, Math.min(rtt.get(holder.peer) ?? holder.rtt, holder.rtt))
          }
        }
        const rank = (peer: PeerId) => (holding.has(peer) ? 0 : 1)
        const time = (peer: PeerId) => rtt.get(peer) ?? Number.MAX_VALUE
        return found.value.members
          .filter((m) => m !== host.peerId && available.has(m))
          .sort((a, b) => rank(a) - rank(b) || time(a) - time(b) || (a < b ? -1 : a > b ? 1 : 0))
      })

    /** Fetches `hashes` into the cache from the members that hold them; returns which peer gave each. */
    const fetch = (library: string, hashes: ReadonlyArray<string>, cache: Cache.Cache) =>
      Effect.gen(function*() {
        const got = new Map<string, PeerId>()
        let left = [...new Set(hashes)]
        for (const peer of yield* holders(library)) {
          if (left.length === 0) break
          // verified answers are stored a batch at a time (`Cache.putMany`: one append to a pack), at most
          // `STORE_BATCH` of them (and their bytes) held meanwhile; a hash is counted as got once stored
          let pending: Array<{ readonly hash: string; readonly bytes: Uint8Array }> = []
          let pendingBytes = 0
          const store = Effect.suspend(() => {
            if (pending.length === 0) return Effect.void
            const batch = pending
            pending = []
            pendingBytes = 0
            // `Wire.get` hands over only bytes it has just hashed to their hash
            return Effect.map(Effect.mapError(cache.putMany(batch, { hashed: true }), stored(library, "cache")), () => {
              for (const { hash } of batch) got.set(hash, peer)
            })
          })
          // one stream per peer, its Gets pipelined (`Wire.PIPELINE`): no round trip per batch, no stream per batch
          const received = yield* Effect.either(Wire.get(host, peer, library, left, (hash, bytes) =>
            Effect.suspend(() => {
              pending.push({ hash, bytes })
              pendingBytes += bytes.length
              return pending.length >= STORE_BATCH || pendingBytes >= STORE_BYTES ? store : Effect.void
            }), options.fetchPipeline ?? Wire.PIPELINE))
          // what the peer delivered before it failed is stored all the same; a store that failed fails the fetch
          yield* store
          const outcome = received
          // a peer that failed or lied: what it did deliver (verified) is kept, the rest asked of the next
          if (Either.isLeft(outcome) && !(outcome.left instanceof Wire.PeerFailure)) return yield* outcome.left
          left = left.filter((h) => !got.has(h))
        }
        return got
      })

    const thumbnail = (library: string, file: string | { readonly hash: string }) =>
      Effect.gen(function*() {
        const subject = typeof file === "string" ? file : file.hash
        const found = yield* record(library, file)
        if (Option.isNone(found)) return yield* error("NotFound", library, subject, "no thumbnail recorded for it (yet)")
        const thumb = found.value
        if (thumb.state === "failed" || thumb.hash === undefined) {
          return yield* error("Failed", library, subject, `${thumb.reason ?? "Undecodable"}: ${thumb.detail ?? ""}`)
        }
        const cache = yield* cacheOf(library)
        const held = yield* Effect.mapError(cache.get(thumb.hash), stored(library, subject))
        if (Option.isSome(held)) return { record: thumb, bytes: held.value, from: "cache" } satisfies Shown
        const got = yield* fetch(library, [thumb.hash], cache)
        const peer = got.get(thumb.hash)
        const bytes = peer === undefined ? Option.none() : yield* Effect.mapError(cache.get(thumb.hash), stored(library, subject))
        if (peer === undefined || Option.isNone(bytes)) return yield* error("Unavailable", library, subject, "no member reachable now holds its bytes")
        return { record: thumb, bytes: bytes.value, from: peer } satisfies Shown
      })

    const list = (
      library: string,
      listOptions: { readonly limit?: number; readonly after?: { readonly path: string; readonly id: string } } = {}
    ) =>
      withEngine(library, (engine) =>
        Effect.gen(function*() {
          const limit = Math.max(1, Math.min(MAX_LIST, Math.floor(listOptions.limit ?? 200)))
          const out: Array<Listed> = []
          let after = listOptions.after
          // files a page at a time (most have no thumbnail when they are not images), until `limit` are found
          while (out.length < limit) {
            const from = after
            const page = yield* engine.query(MediaModels.files, (q) =>
              (from === undefined ? q : q.where((eb) =>
                eb.or([eb("path", ">", from.path), eb.and([eb("path", "=", from.path), eb("id", ">", from.id)])])
              )).orderBy("path").orderBy("id").limit(LIST_PAGE))
            if (page.length === 0) break
            const sources = [...new Set(page.map((f) => f.hash))]
            const ready = new Map((yield* engine.query(Models.thumbnails, (q) =>
              q.where("source", "in", sources).where("recipe", "=", recipe.id).where("state", "=", "ready")
            )).map((t) => [t.source, t] as const))
            for (const file of page) {
              const thumbnail = ready.get(file.hash)
              if (thumbnail !== undefined && out.length < limit) out.push({ file, thumbnail })
            }
            const last = page[page.length - 1]!
            after = { path: last.path, id: last.id }
            if (page.length < LIST_PAGE) break
          }
          return out
        }).pipe(Effect.mapError(stored(library, "files"))))

    const fetchAll = (library: string): Stream.Stream<FetchProgress, PreviewError> =>
      Stream.unwrap(Effect.gen(function*() {
        const cache = yield* cacheOf(library)
        const ready = yield* withEngine(library, (engine) =>
          Effect.mapError(engine.query(Models.thumbnails, (q) => q.where("recipe", "=", recipe.id).where("state", "=", "ready")), stored(library, "thumbnails")))
        const lacking: Array<string> = []
        for (const t of ready) if (t.hash !== undefined && !(yield* cache.has(t.hash))) lacking.push(t.hash)
        let progress: FetchProgress = { total: lacking.length, fetched: 0, unavailable: 0 }
        const batches: Array<ReadonlyArray<string>> = []
        for (let i = 0; i < lacking.length; i += FETCH_BATCH) batches.push(lacking.slice(i, i + FETCH_BATCH))
        return Stream.concat(
          Stream.succeed(progress),
          Stream.mapEffect(Stream.fromIterable(batches), (batch) => Effect.map(fetch(library, batch, cache), (got) => [batch.length, got.size] as const), { concurrency: FETCHES, unordered: true }).pipe(
            Stream.map(([asked, got]) => {
              progress = { ...progress, fetched: progress.fetched + got, unavailable: progress.unavailable + asked - got }
              return progress
            })
          )
        )
      }))

    // per library, since when each orphan record (by id), and each cached thumbnail no record names (by
    // hash), has been seen as one by `collect`
    const orphansSince = new Map<string, Map<string, number>>()
    const unnamedSince = new Map<string, Map<string, number>>()
    const grace = Duration.toMillis(options.orphanGrace ?? Duration.minutes(10))
    /** Marks the `ids` seen now in `table`'s entry for `library`, and returns those seen for `grace` already. */
    const aged = (table: Map<string, Map<string, number>>, library: string, ids: ReadonlyArray<string>, now: number) => {
      const seen = table.get(library) ?? new Map<string, number>()
      const since = new Map(ids.map((id) => [id, seen.get(id) ?? now] as const))
      table.set(library, since)
      return new Set(ids.filter((id) => now - since.get(id)! >= grace))
    }
    const collect = (library: string) =>
      Effect.gen(function*() {
        const cache = yield* cacheOf(library)
        const now = yield* Clock.currentTimeMillis
        // the cache's entries before the records are read: one put after that (its record on its way) is not looked at
        const held = yield* cache.hashes
        const found = yield* withEngine(library, (engine) =>
          Effect.gen(function*() {
            const { all, sources } = yield* engine.readCommitted(Effect.gen(function*() {
              return {
                sources: new Set((yield* engine.query(MediaModels.files)).map((f) => f.hash)),
                all: yield* engine.query(Models.thumbnails)
              }
            }))
            const expired = aged(orphansSince, library, all.filter((t) => !sources.has(t.source)).map((t) => t.id), now)
            for (let i = 0; i < expired.size; i += COLLECT_BATCH) {
              yield* engine.mutate([...expired].slice(i, i + COLLECT_BATCH).map((id) => Models.thumbnails.delete(id)))
            }
            return { all, sources, records: expired.size }
          }).pipe(Effect.mapError(stored(library, "thumbnails"))))
        // each hash a record names: whether one of those records shows an original the library still has
        const named = new Map<string, boolean>()
        for (const t of found.all) if (t.hash !== undefined) named.set(t.hash, named.get(t.hash) === true || found.sources.has(t.source))
        // a thumbnail no record names yet may be one just made or fetched whose record is not committed: only gone after the grace
        const unnamed = aged(unnamedSince, library, held.filter((h) => !named.has(h)), now)
        const drop = new Set(held.filter((h) => named.get(h) === false || unnamed.has(h)))
        const cached = yield* Effect.mapError(cache.retain((hash) => !drop.has(hash)), stored(library, "cache"))
        return { cached, records: found.records } satisfies Collected
      })

    const watch = (library: string, watchOptions: { readonly prefetch?: boolean; readonly debounce?: Duration.DurationInput } = {}) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const engine = yield* Effect.mapError(options.engine(library), (e) => error("Storage", library, library, e.message))
        const changed = Stream.merge(
          engine.subscribe({ model: MediaModels.files.name }),
          engine.subscribe({ model: Models.thumbnails.name })
        ).pipe(
          // a lagging watcher only needs to know that something changed
          Stream.catchAll(() => Stream.empty),
          Stream.debounce(watchOptions.debounce ?? Duration.millis(500))
        )
        const pass = Stream.concat(
          generate(library),
          watchOptions.prefetch === true ? fetchAll(library) : Stream.empty
        )
        return Stream.concat(Stream.succeed(undefined), Stream.forever(changed)).pipe(
          Stream.flatMap(() => pass, { switch: false })
        )
      }))

    // ---- serving

    // each library's thumbnail hashes, held while its streams are served and `INDEX_IDLE` after
    const indexes = yield* RcMap.make({
      lookup: (library: string) => Effect.flatMap(options.engine(library), Known.make),
      idleTimeToLive: INDEX_IDLE
    })

    yield* host.register(Plugin.make({
      name: "preview",
      ...Protocol.preview,
      maxInboundStreams: options.maxInboundStreams ?? 8,
      handle: (stream, context) => {
        const library = context.library!
        // the cache and the library's index looked up once per stream; a library that cannot be read
        // knows no thumbnail and a cache that cannot be opened holds none: every answer is Missing
        return Effect.scoped(Effect.gen(function*() {
          const index = yield* Effect.option(RcMap.get(indexes, library))
          const cache = yield* Effect.option(cacheOf(library))
          return yield* Wire.serve(
            stream,
            context,
            // only thumbnails of this library: a member of one cannot probe another's cache by hash
            (hashes) => Option.isNone(index) ? Effect.succeed(new Set<string>()) : Effect.orElseSucceed(index.value.of(hashes), () => new Set<string>()),
            Option.isNone(cache) ? missing : cache.value.readMany
          )
        }))
      }
    }))

    return {
      recipe,
      generate,
      thumbnail,
      record,
      list,
      fetchAll,
      collect,
      watch,
      cache: cacheOf
    }
  })

/** Layer of the plugin and its service. */
export const layer = (options: Options): Layer.Layer<Preview, TransportError, PluginHost | Libraries | Mounts | Presence> => Layer.scoped(Preview, make(options))
