/**
 * A node's media: the media plugin's mounts, presence and remote reads
 * (`src/plugins/media`) on the node's host and engines, and the locations
 * this node holds, as a person or an app manages them (`weft location …`):
 *
 * - `add` records a directory as a location of a library and scans it
 *   (`Indexer`: batched, bounded memory, content hashed), and holds it here;
 *   `rescan` brings its records up to date; `list` shows each location of a
 *   library with whether it is online here and which connected peers hold
 *   it; `remove` stops holding it here and (unless asked to keep them)
 *   removes its records from the library, on every member.
 * - Which directory backs which location on this node is local state, never
 *   synced: kept in `mountsFile` (`media/mounts.json` in a node's data
 *   directory), written whole and atomically on every change, decoded with
 *   Schema at start (a file that does not decode is `LocationError`
 *   `Corrupt`: the node does not start rather than forget its mounts).
 *   Every mount in it is mounted again at start, so locations come back
 *   online after a restart.
 * - A mount whose directory is missing (a drive unplugged) is offline, and
 *   presence says so, until the directory is back: `Mounts` checks every
 *   root each `mounts.checkInterval` (default 5 s), and at once on a change
 *   here or a `list`.
 *
 * - With `watch`, every location held here is watched for changes as they
 *   happen (`@parcel/watcher`, through `@effect/platform`'s `FileSystem.watch`:
 *   inotify on Linux, FSEvents on macOS, recursive and reliable where Node's
 *   `fs.watch` is not), and rescanned once its changes have been quiet for
 *   `watch.debounce` (default 1 s): a burst of changes (a folder copied in) is
 *   one rescan, and changes during a rescan bring one more after it, never a
 *   queue of them. A root that cannot be watched (gone, unplugged) is tried
 *   again every 5 s. At start, each location is rescanned once, for what
 *   changed while the node was not running.
 *
 * A mount is recorded before its scan starts: a scan stopped half way
 * (Ctrl-C, a crash) leaves a location that `rescan` completes.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as ParcelWatcher from "@effect/platform-node/NodeFileSystem/ParcelWatcher"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { stat } from "node:fs/promises"
import { basename, resolve } from "node:path"
import type * as Engine from "../engine/Engine.js"
import * as JsonFile from "../internal/jsonFile.js"
import { type Library, Libraries } from "../library/Libraries.js"
import * as Indexer from "../plugins/media/Indexer.js"
import * as Media from "../plugins/media/Media.js"
import * as Models from "../plugins/media/Models.js"
import * as Mounts from "../plugins/media/Mounts.js"
import * as Presence from "../plugins/media/Presence.js"
import { LocationId } from "../plugins/media/Protocol.js"
import type { PluginHost } from "../plugins/PluginHost.js"
import type { TransportError } from "../transport/Transport.js"
import { Engines } from "./Engines.js"
import * as LocationControl from "./LocationControl.js"

export const LocationError = LocationControl.LocationError
export type LocationError = LocationControl.LocationError

/** How a node runs media. */
export interface Options {
  /** The JSON file of this node's mounts (`Node.layerDirectory`: `media/mounts.json` in the directory); in memory only when absent. */
  readonly mountsFile?: string
  /** How often mounted directories are checked for being there. */
  readonly mounts?: Mounts.Options
  readonly presence?: Presence.Options
  readonly media?: Omit<Media.Options, "engine">
  /** Changes per transaction of a scan (default 256). */
  readonly batchSize?: number
  /** Watches the locations held here and rescans each after changes (off when absent). */
  readonly watch?: Watch
}

/** Watching held locations for changes. */
export interface Watch {
  /** How long a location's changes must be quiet before it is rescanned (default 1 s). */
  readonly debounce?: Duration.DurationInput
}

/** How long a watched location's changes must be quiet before its rescan, by default. */
export const DEFAULT_DEBOUNCE: Duration.Duration = Duration.seconds(1)

/** Most locations one node holds. */
export const MAX_MOUNTS = 4096

/** A location held on this node, as the mounts file keeps it. */
export const Mount = Schema.Struct({
  library: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256)),
  location: LocationId,
  root: LocationControl.Root
})
export type Mount = typeof Mount.Type

const MountsFile = Schema.Struct({ version: Schema.Literal(1), mounts: Schema.Array(Mount).pipe(Schema.maxItems(MAX_MOUNTS)) })
/** Every mount at its longest, each character escaped (6 bytes), with room for the JSON around. */
const MAX_FILE_BYTES = MAX_MOUNTS * (6 * (4096 + 256 + 128) + 128) + 1024

/** The locations of a node. */
export interface Service {
  /** Records `root` (absolute) as a location of `library` (id or name), holds it here and scans it; a root held already is scanned again. */
  readonly add: (library: string, root: string, options?: { readonly name?: string }) => Stream.Stream<LocationControl.LocationEvent, LocationError>
  /** Brings a location held here (id or name) up to date with its directory. */
  readonly rescan: (library: string, location: string) => Stream.Stream<LocationControl.LocationEvent, LocationError>
  /** The locations of `library` (default: every library), by name. */
  readonly list: (library?: string) => Effect.Effect<ReadonlyArray<LocationControl.LocationInfo>, LocationError>
  /** Stops holding a location here and removes its records (unless `keepRecords`); what it was. */
  readonly remove: (
    library: string,
    location: string,
    options?: { readonly keepRecords?: boolean }
  ) => Effect.Effect<LocationControl.LocationInfo, LocationError>
}

/** The locations of a node. */
export class Locations extends Context.Tag("weft/node/Locations")<Locations, Service>() {}

const fail = (reason: LocationError["reason"], detail: string) => Effect.fail(new LocationError({ reason, detail }))
const storage = (e: { readonly message: string }) => new LocationError({ reason: "Storage", detail: e.message })
const fromIndex = (e: Indexer.IndexError) =>
  new LocationError({ reason: e.reason === "NotFound" ? "UnknownLocation" : e.reason, detail: `${e.path}: ${e.detail}` })
const fileErrors = {
  io: (detail: string) => new LocationError({ reason: "Io", detail }),
  corrupt: (detail: string) => new LocationError({ reason: "Corrupt", detail })
}

/** Fails unless `root` is a directory now. */
const requireDirectory = (root: string) =>
  Effect.flatMap(Effect.either(Effect.tryPromise(() => stat(root))), (info) =>
    info._tag === "Left"
      ? (info.left.cause as NodeJS.ErrnoException)?.code === "ENOENT"
        ? fail("DirectoryMissing", `${root}: no such directory`)
        : fail("Io", `${root}: ${String(info.left.cause)}`)
      : info.right.isDirectory()
      ? Effect.void
      : fail("NotADirectory", `${root} is not a directory`))

const PAGE = 1024

/** The mounts kept in `path` (none when it does not exist); a file that is not one is `Corrupt`. */
export const loadMounts = (path: string): Effect.Effect<ReadonlyArray<Mount>, LocationError> =>
  Effect.map(JsonFile.read(path, MountsFile, fileErrors, MAX_FILE_BYTES), Option.match({ onNone: () => [], onSome: (f) => f.mounts }))

/** The service over the media plugin, the libraries and engines in context; mounts of `mountsFile` are mounted now. */
export const make = (
  options: Options = {}
): Effect.Effect<Service, LocationError, Libraries | Engines | Mounts.Mounts | Presence.Presence | Media.Media | Scope.Scope> =>
  Effect.gen(function*() {
    const libraries = yield* Libraries
    const engines = yield* Engines
    const mounts = yield* Mounts.Mounts
    const presence = yield* Presence.Presence
    const media = yield* Media.Media
    const file = options.mountsFile
    const indexOptions = options.batchSize === undefined ? {} : { batchSize: options.batchSize }

    const initial = file === undefined ? [] : yield* loadMounts(file)
    const held = yield* Ref.make<ReadonlyArray<Mount>>(initial)
    const lock = yield* Effect.makeSemaphore(1)
    for (const mount of initial) yield* mounts.mount(mount.library, mount.location, mount.root)

    // a watcher per held location, when watching: changes mark it dirty (one pending mark at most), and a
    // dirty location is rescanned once its changes were quiet for the debounce
    const watchers = yield* FiberMap.make<string>()
    const watchKey = (library: string, location: string) => `${library}\u0000${location}`
    const watch = options.watch
    const watching = watch === undefined ? undefined : yield* Effect.provide(FileSystem.FileSystem, NodeFileSystem.layer.pipe(Layer.provide(ParcelWatcher.layer)))
    const debounce = Duration.decode(watch?.debounce ?? DEFAULT_DEBOUNCE)
    const startWatching = (mount: Mount, catchUp: boolean) =>
      watching === undefined ? Effect.void : Effect.asVoid(FiberMap.run(watchers, watchKey(mount.library, mount.location), Effect.scoped(Effect.gen(function*() {
        const dirty = yield* Queue.sliding<void>(1)
        // at start, what changed while the node was not running
        if (catchUp) yield* Queue.offer(dirty, undefined)
        yield* Effect.forkScoped(watching.watch(mount.root, { recursive: true }).pipe(
          Stream.runForEach(() => Queue.offer(dirty, undefined)),
          Effect.tapError((e) => Effect.logWarning(`cannot watch ${mount.root} (tried again in 5 s)`, e)),
          Effect.retry(Schedule.spaced(Duration.seconds(5)))
        ))
        while (true) {
          yield* Queue.take(dirty)
          // quiet for the debounce: what came meanwhile is part of this batch
          do yield* Effect.sleep(debounce)
          while ((yield* Queue.takeAll(dirty)).length > 0)
          yield* Stream.runDrain(media.rescan(mount.library, mount.location, indexOptions)).pipe(
            Effect.catchAll((e) => Effect.logWarning(`rescan of ${mount.root} after a change failed`, e))
          )
        }
      }))))
    for (const mount of initial) yield* startWatching(mount, true)

    // once the write starts, memory and the mounts follow it
    const save = (next: ReadonlyArray<Mount>, then: Effect.Effect<void>) =>
      Effect.uninterruptible(Effect.zipRight(
        file === undefined ? Effect.void : JsonFile.write(file, { version: 1, mounts: next }, fileErrors.io),
        Effect.zipRight(Ref.set(held, next), then)
      ))
    const hold = (mount: Mount) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const others = (yield* Ref.get(held)).filter((m) => !(m.library === mount.library && m.location === mount.location))
        if (others.length >= MAX_MOUNTS) return yield* fail("Io", `this node holds ${MAX_MOUNTS} locations already`)
        yield* save([...others, mount], Effect.zipRight(mounts.mount(mount.library, mount.location, mount.root), startWatching(mount, false)))
      }))
    const release = (library: string, location: string) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const all = yield* Ref.get(held)
        const rest = all.filter((m) => !(m.library === library && m.location === location))
        if (rest.length < all.length) yield* save(rest, Effect.zipRight(FiberMap.remove(watchers, watchKey(library, location)), mounts.unmount(library, location)))
      }))

    const findLibrary = (ref: string) =>
      Effect.flatMap(libraries.list, (all): Effect.Effect<Library, LocationError> => {
        const byId = all.find((l) => l.id === ref)
        if (byId !== undefined) return Effect.succeed(byId)
        const named = all.filter((l) => l.name === ref)
        if (named.length === 1) return Effect.succeed(named[0]!)
        return named.length === 0
          ? fail("UnknownLibrary", `no library ${ref} on this node`)
          : fail("Ambiguous", `${named.length} libraries are named ${ref}; name one by its id (${named.map((l) => l.id).join(", ")})`)
      })
    const engineOf = (library: string) => Effect.mapError(engines.get(library), storage)
    const findLocation = (engine: Engine.Service, library: string, ref: string) =>
      Effect.gen(function*() {
        const byId = yield* Effect.mapError(engine.get(Models.locations, ref), storage)
        if (Option.isSome(byId)) return byId.value
        const named = yield* Effect.mapError(engine.query(Models.locations, (q) => q.where("name", "=", ref).limit(2)), storage)
        if (named.length === 1) return named[0]!
        return yield* named.length === 0
          ? fail("UnknownLocation", `no location ${ref} in library ${library}`)
          : fail("Ambiguous", `several locations are named ${ref} in library ${library}; name one by its id`)
      })

    const info = (library: string, record: { readonly id: string; readonly name: string }, online: Mounts.Online) =>
      Effect.gen(function*() {
        const root = yield* mounts.root(library, record.id)
        const holders = yield* presence.peers(library, record.id)
        return {
          library,
          id: record.id,
          name: record.name,
          ...(Option.isSome(root) ? { root: root.value } : {}),
          online: (online.get(library) ?? []).includes(record.id),
          peers: holders.map((h) => ({ peer: h.peer, ...(h.rtt === undefined ? {} : { rtt: h.rtt }) }))
        } satisfies LocationControl.LocationInfo
      })

    const started = (library: string, location: { readonly id: string; readonly name: string }, root: string) =>
      Effect.map(Effect.mapError(Indexer.count(root), fromIndex), (files): LocationControl.LocationEvent => ({
        _tag: "Started",
        library,
        location: location.id,
        name: location.name,
        root,
        files
      }))
    const progress = (scan: Stream.Stream<Indexer.Progress, Indexer.IndexError>) =>
      scan.pipe(Stream.mapError(fromIndex), Stream.map((p): LocationControl.LocationEvent => ({ _tag: "Progress", progress: p })))

    return {
      add: (libraryRef, rootPath, addOptions = {}) =>
        Stream.unwrapScoped(Effect.gen(function*() {
          const root = resolve(rootPath)
          const library = yield* findLibrary(libraryRef)
          yield* requireDirectory(root)
          const engine = yield* engineOf(library.id)
          // the same directory again: the same location, scanned again
          const already = (yield* Ref.get(held)).find((m) => m.library === library.id && m.root === root)
          const record = already === undefined ? Option.none() : yield* Effect.mapError(engine.get(Models.locations, already.location), storage)
          const location = {
            id: already?.location ?? Indexer.newLocationId(),
            name: addOptions.name ?? Option.match(record, { onNone: () => basename(root) || root, onSome: (r) => r.name })
          }
          const first = yield* started(library.id, location, root)
          yield* hold({ library: library.id, location: location.id, root })
          return Stream.concat(Stream.succeed(first), progress(media.index(library.id, location, root, indexOptions)))
        })),
      rescan: (libraryRef, locationRef) =>
        Stream.unwrapScoped(Effect.gen(function*() {
          const library = yield* findLibrary(libraryRef)
          const location = yield* findLocation(yield* engineOf(library.id), library.id, locationRef)
          const root = yield* mounts.root(library.id, location.id)
          if (Option.isNone(root)) {
            const holders = yield* presence.peers(library.id, location.id)
            return yield* fail(
              "NotHere",
              `location ${location.name} (${location.id}) is not held on this node${holders.length === 0 ? "" : `; it is online on ${holders.map((h) => h.peer).join(", ")}`}`
            )
          }
          yield* requireDirectory(root.value)
          const first = yield* started(library.id, location, root.value)
          return Stream.concat(Stream.succeed(first), progress(media.rescan(library.id, location.id, indexOptions)))
        })),
      list: (libraryRef) =>
        Effect.scoped(Effect.gen(function*() {
          const chosen = libraryRef === undefined ? yield* libraries.list : [yield* findLibrary(libraryRef)]
          yield* mounts.check
          const online = yield* SubscriptionRef.get(mounts.online)
          const out: Array<LocationControl.LocationInfo> = []
          for (const library of chosen) {
            const engine = yield* engineOf(library.id)
            const records = yield* Effect.mapError(engine.query(Models.locations, (q) => q.orderBy("name").orderBy("id")), storage)
            for (const record of records) out.push(yield* info(library.id, record, online))
          }
          return out
        })),
      remove: (libraryRef, locationRef, removeOptions = {}) =>
        Effect.scoped(Effect.gen(function*() {
          const library = yield* findLibrary(libraryRef)
          const engine = yield* engineOf(library.id)
          const location = yield* findLocation(engine, library.id, locationRef)
          yield* mounts.check
          const before = yield* info(library.id, location, yield* SubscriptionRef.get(mounts.online))
          if (removeOptions.keepRecords === true && before.root === undefined) {
            return yield* fail("NotHere", `location ${location.name} (${location.id}) is not held on this node: nothing to stop holding`)
          }
          yield* release(library.id, location.id)
          if (removeOptions.keepRecords !== true) {
            // its files a page at a time, each page one transaction, then the location
            while (true) {
              const page = yield* Effect.mapError(engine.query(Models.files, (q) => q.where("location", "=", location.id).orderBy("id").limit(PAGE)), storage)
              if (page.length === 0) break
              yield* Effect.mapError(engine.mutate(page.map((f) => Models.files.delete(f.id))), storage)
            }
            yield* Effect.mapError(engine.mutate([Models.locations.delete(location.id)]), storage)
          }
          return before
        }))
    }
  })

/** The media services of a node. */
export type Services = Locations | Media.Media | Presence.Presence | Mounts.Mounts

/** Mounts, presence, remote reads and the locations, on the node's host, libraries and engines. */
export const layer = (options: Options = {}): Layer.Layer<Services, LocationError | TransportError, PluginHost | Libraries | Engines> =>
  Layer.scoped(Locations, make(options)).pipe(
    Layer.provideMerge(Layer.scoped(Media.Media, Effect.flatMap(Engines, (engines) => Media.make({ ...options.media, engine: engines.get })))),
    Layer.provideMerge(Presence.layer(options.presence ?? {})),
    Layer.provideMerge(Mounts.layer(options.mounts ?? {}))
  )

/** Serves the location procedures (`LocationControl.Control`) with the node's locations in context. */
export const controlHandlers = LocationControl.Control.toLayer(Effect.gen(function*() {
  const locations = yield* Locations
  return {
    LocationAdd: (request) => locations.add(request.library, request.root, request.name === undefined ? {} : { name: request.name }),
    LocationRescan: (request) => locations.rescan(request.library, request.location),
    LocationList: (request) => locations.list(request.library),
    LocationRemove: (request) => locations.remove(request.library, request.location, { keepRecords: request.keepRecords })
  }
}))
