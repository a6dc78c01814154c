/**
 * Indexing a directory into a location's records: every regular file under
 * the root, with its size, modification time, MIME type and SHA-256.
 *
 * - `index` records a new location (or an existing one, again) and scans it;
 *   `rescan` brings a location's records up to date: files added, changed
 *   (size or modification time differ: hashed again) and removed.
 * - Bounded memory: directories are walked one at a time, each file is
 *   hashed as a stream of the file system's chunks, and changes are written
 *   in batches of `batchSize` (one transaction each), as they come. What
 *   grows with the tree is the summary of the location's existing records
 *   (path, size, time: a few dozen bytes a file), kept to find removals.
 * - Links are never followed (a link to `/` would index the machine), and
 *   files other than regular ones are skipped.
 * - Progress is a Stream: one element per batch written, and a last one
 *   with `done`. The work runs as the stream is pulled; interrupting it
 *   leaves the batches already written.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { createHash, randomUUID } from "node:crypto"
import { createReadStream, type Dirent } from "node:fs"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import type * as Engine from "../../engine/Engine.js"
import type * as Model from "../../engine/Model.js"
import { lexicalProblem } from "../internal/confine.js"
import * as Mime from "./Mime.js"
import * as Models from "./Models.js"

/** Indexing failed. */
export class IndexError extends Data.TaggedError("weft/media/IndexError")<{
  readonly reason:
    | "NotADirectory" // the root is missing or not a directory
    | "NotFound" // no such location record (rescan)
    | "Io" // a read of the tree failed
    | "Storage" // the engine refused a batch
  readonly path: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `index ${this.reason} (${this.path}): ${this.detail}`
  }
}

/** Where an indexing is. */
export interface Progress {
  readonly location: string
  /** Regular files met so far. */
  readonly seen: number
  /** Bytes hashed so far. */
  readonly hashedBytes: number
  readonly added: number
  readonly changed: number
  readonly unchanged: number
  readonly removed: number
  /** Entries left out: links, special files, names that could not be served. */
  readonly skipped: number
  /** The last element: everything is written. */
  readonly done: boolean
}

/** Options of a scan. */
export interface Options {
  /** Changes per transaction (default 256). */
  readonly batchSize?: number
}

/** Files up to this size are read whole to be hashed (a stream's setup costs more than such a file's read). */
export const WHOLE_READ_BYTES = 1024 * 1024

/** Files examined at once: reads overlap (the file system's thread pool), while memory stays bounded. */
const CONCURRENCY = 4

/**
 * A file's SHA-256 in hex, and how many bytes it had: read whole when
 * `size` (what a stat said) is at most `WHOLE_READ_BYTES`, else as a stream.
 */
export const hashFile = (path: string, size?: number): Effect.Effect<{ readonly hash: string; readonly bytes: number }, IndexError> =>
  Effect.tryPromise({
    try: async (signal) => {
      if (size !== undefined && size <= WHOLE_READ_BYTES) {
        const bytes = await fs.readFile(path, { signal })
        // grown past the bound since the stat: the stream below reads it, bounded
        if (bytes.length <= WHOLE_READ_BYTES) return { hash: createHash("sha256").update(bytes).digest("hex"), bytes: bytes.length }
      }
      const hash = createHash("sha256")
      let bytes = 0
      for await (const chunk of createReadStream(path, { signal })) {
        hash.update(chunk as Buffer)
        bytes += (chunk as Buffer).length
      }
      return { hash: hash.digest("hex"), bytes }
    },
    catch: (cause) => io(path, cause)
  })

const io = (path: string, cause: unknown) =>
  new IndexError({ reason: "Io", path, detail: cause instanceof Error ? cause.message : String(cause), cause })

interface Found {
  readonly path: string
  readonly absolute: string
}

/** The regular files under `root`, one directory read at a time; links and special files counted as skipped. */
const walk = (root: string, skipped: { count: number }): Stream.Stream<Found, IndexError> =>
  Stream.paginateChunkEffect<ReadonlyArray<string>, Found, IndexError, never>([""], (stack) =>
    Effect.gen(function*() {
      const [dir, ...rest] = stack
      const absoluteDir = nodePath.join(root, ...(dir === "" ? [] : dir!.split("/")))
      const entries: Array<Dirent> = yield* Effect.tryPromise({
        try: () => fs.readdir(absoluteDir, { withFileTypes: true }),
        catch: (cause) => io(absoluteDir, cause)
      })
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      const files: Array<Found> = []
      const dirs: Array<string> = []
      for (const entry of entries) {
        const path = dir === "" ? entry.name : `${dir}/${entry.name}`
        if (Option.isSome(lexicalProblem(path))) skipped.count++
        else if (entry.isDirectory()) dirs.push(path)
        else if (entry.isFile()) files.push({ path, absolute: nodePath.join(absoluteDir, entry.name) })
        else skipped.count++
      }
      const next = [...dirs, ...rest]
      return [Chunk.unsafeFromArray(files), next.length === 0 ? Option.none() : Option.some(next)] as const
    })
  )

/**
 * How many regular files `index` or `rescan` would meet under `root` (a
 * walk of the directories only, nothing read): the total a progress bar
 * counts towards. Bounded memory, as the scan itself.
 */
export const count = (root: string): Effect.Effect<number, IndexError> =>
  Effect.zipRight(requireDirectory(root), Stream.runCount(walk(root, { count: 0 })))

const storage = (path: string) => (cause: { readonly message: string }) =>
  new IndexError({ reason: "Storage", path, detail: cause.message, cause })

const requireDirectory = (root: string) =>
  Effect.flatMap(
    Effect.either(Effect.tryPromise(() => fs.stat(root))),
    (stat) =>
      stat._tag === "Right" && stat.right.isDirectory()
        ? Effect.void
        : Effect.fail(new IndexError({ reason: "NotADirectory", path: root, detail: "not a directory (or missing)" }))
  )

/**
 * Brings the records of `location` up to date with the tree under `root`:
 * the progress of the scan, as it runs.
 */
export const rescan = (engine: Engine.Service, location: string, root: string, options: Options = {}): Stream.Stream<Progress, IndexError> =>
  Stream.unwrap(Effect.gen(function*() {
    const batchSize = Math.max(1, Math.floor(options.batchSize ?? 256))
    yield* requireDirectory(root)
    const record = yield* Effect.mapError(engine.get(Models.locations, location), storage(root))
    if (Option.isNone(record)) return yield* new IndexError({ reason: "NotFound", path: root, detail: `no location ${location}` })
    // what is recorded now, to tell unchanged files from changed ones and to find removed ones
    const known = new Map<string, { readonly id: string; readonly size: number; readonly mtime: number }>()
    const rows = yield* Effect.mapError(engine.query(Models.files, (q) => q.where("location", "=", location)), storage(root))
    for (const row of rows) known.set(row.path, { id: row.id, size: row.size, mtime: row.mtime })
    const skipped = { count: 0 }
    let progress: Progress = { location, seen: 0, hashedBytes: 0, added: 0, changed: 0, unchanged: 0, removed: 0, skipped: 0, done: false }

    const write = (changes: ReadonlyArray<Model.Change>) =>
      changes.length === 0 ? Effect.void : Effect.asVoid(Effect.mapError(engine.mutate(changes), storage(root)))

    const examine = (found: Found) =>
      Effect.gen(function*() {
        const stat = yield* Effect.either(Effect.tryPromise({ try: () => fs.lstat(found.absolute), catch: (cause) => io(found.absolute, cause) }))
        // gone between the listing and now, or replaced by something else: as if never seen
        if (stat._tag === "Left" || !stat.right.isFile()) {
          skipped.count++
          return Option.none<readonly [Model.Change, "added" | "changed", number]>()
        }
        const before = known.get(found.path)
        known.delete(found.path)
        const size = stat.right.size
        const mtime = stat.right.mtimeMs
        if (before !== undefined && before.size === size && before.mtime === mtime) {
          progress = { ...progress, unchanged: progress.unchanged + 1 }
          return Option.none()
        }
        const { hash, bytes } = yield* hashFile(found.absolute, size)
        const values = { location, path: found.path, size, mtime, mime: Mime.of(found.path), hash }
        const change = before === undefined
          ? Models.files.create(Models.fileId(location, found.path), values)
          : Models.files.update(before.id, values)
        return Option.some([change, before === undefined ? "added" : "changed", bytes] as const)
      })

    const scanned = walk(root, skipped).pipe(
      Stream.tap(() => Effect.sync(() => {
        progress = { ...progress, seen: progress.seen + 1 }
      })),
      Stream.mapEffect(examine, { concurrency: CONCURRENCY }),
      Stream.filterMap((x) => x),
      Stream.grouped(batchSize),
      Stream.mapEffect((batch) =>
        Effect.gen(function*() {
          yield* write(Chunk.toReadonlyArray(batch).map(([change]) => change))
          for (const [, kind, bytes] of batch) {
            progress = { ...progress, [kind]: progress[kind] + 1, hashedBytes: progress.hashedBytes + bytes }
          }
          return { ...progress, skipped: skipped.count }
        })
      )
    )
    // what is left in `known` was not met: removed from the tree
    const removals = Stream.suspend(() => Stream.fromIterable([...known.values()])).pipe(
      Stream.grouped(batchSize),
      Stream.mapEffect((batch) =>
        Effect.gen(function*() {
          yield* write(Chunk.toReadonlyArray(batch).map((file) => Models.files.delete(file.id)))
          progress = { ...progress, removed: progress.removed + Chunk.size(batch) }
          return { ...progress, skipped: skipped.count }
        })
      )
    )
    const last = Stream.fromEffect(Effect.sync(() => ({ ...progress, skipped: skipped.count, done: true })))
    return Stream.concat(Stream.concat(scanned, removals), last)
  }))

/** A new location's id. */
export const newLocationId = (): string => `l${randomUUID().replaceAll("-", "")}`

/**
 * Records the location `location` named `name` (created if missing,
 * renamed if its name differs) and scans `root` into it.
 */
export const index = (
  engine: Engine.Service,
  location: { readonly id: string; readonly name: string },
  root: string,
  options: Options = {}
): Stream.Stream<Progress, IndexError> =>
  Stream.unwrap(Effect.gen(function*() {
    yield* requireDirectory(root)
    const existing = yield* Effect.mapError(engine.get(Models.locations, location.id), storage(root))
    if (Option.isNone(existing)) {
      yield* Effect.mapError(engine.mutate([Models.locations.create(location.id, { name: location.name })]), storage(root))
    } else if (existing.value.name !== location.name) {
      yield* Effect.mapError(engine.mutate([Models.locations.update(location.id, { name: location.name })]), storage(root))
    }
    return rescan(engine, location.id, root, options)
  }))
