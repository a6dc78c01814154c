/**
 * A node's thumbnail bytes on disk: a directory of files named by their
 * SHA-256, with a byte budget kept by evicting the least recently used.
 *
 * Writes go to a temporary name and are renamed into place, so a crash
 * leaves no half file under a hash; every read is hashed again before it is
 * returned, and a file that no longer matches its name is removed (the
 * disk is not trusted more than the network). Recency lives in memory,
 * seeded from the files' modification times when the cache opens.
 *
 * Entries are small (at most `MAX_THUMBNAIL_BYTES`) and land in the page
 * cache: they are read with synchronous calls, which cost a fraction of the
 * thread-pool round trips of `fs/promises` per file. `put` writes the same
 * way; `write` (for a fetch, which receives thousands) writes through the
 * thread pool instead, so the thread that decrypts and checks the next
 * answers does not wait for the file system, several files in flight.
 *
 * No write is synced to disk: a crash can at worst leave a file under its
 * hash whose bytes are not (yet) those of the hash (renamed before its data
 * reached the disk). Every read hashes again and drops such a file, and the
 * thumbnail is fetched again and verified again; so a cache entry is the
 * only thing a crash can lose, never a reason to serve wrong bytes.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { createHash, randomBytes } from "node:crypto"
import * as fsSync from "node:fs"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import { MAX_THUMBNAIL_BYTES } from "./Protocol.js"

/** The cache could not be read or written, or bytes did not match their hash. */
export class CacheError extends Data.TaggedError("CacheError")<{
  readonly reason: "Storage" | "HashMismatch" | "TooLarge"
  readonly detail: string
}> {}

/** Thumbnail bytes by hash. */
export interface Cache {
  /** The bytes of `hash`, checked, marking them most recently used; `None` when absent (or found corrupt and removed). */
  readonly get: (hash: string) => Effect.Effect<Option.Option<Uint8Array>, CacheError>
  /** Whether `hash` is held (no read, no recency change). */
  readonly has: (hash: string) => Effect.Effect<boolean>
  /**
   * Stores `bytes` under `hash` (refused unless they hash to it), then evicts down to the budget.
   * With `hashed`, the caller has just hashed these very bytes to `hash` (a fetch checks each answer
   * as it reads it) and they are not hashed again.
   */
  readonly put: (hash: string, bytes: Uint8Array, options?: { readonly hashed?: boolean }) => Effect.Effect<void, CacheError>
  /**
   * As `put`, the file written through the thread pool rather than in a blocking call: several can be in flight,
   * and the caller's thread goes on meanwhile (a fetch writes while it reads the next answers).
   */
  readonly write: (hash: string, bytes: Uint8Array, options?: { readonly hashed?: boolean }) => Effect.Effect<void, CacheError>
  /** Removes every entry whose hash `keep` does not hold; returns how many. */
  readonly retain: (keep: (hash: string) => boolean) => Effect.Effect<number, CacheError>
  /** Bytes held now. */
  readonly size: Effect.Effect<number>
  /** Hashes held, least recently used first. */
  readonly hashes: Effect.Effect<ReadonlyArray<string>>
}

/** Options of a cache. */
export interface Options {
  /** The directory (made if missing). */
  readonly directory: string
  /** Most bytes held (default 256 MiB); the least recently used go first. */
  readonly budget?: number
}

const HASH = /^[0-9a-f]{64}$/

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const storage = (what: string) => (cause: unknown) =>
  new CacheError({ reason: "Storage", detail: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` })

/** Opens the cache in `options.directory`, indexing what is there. */
export const make = (options: Options): Effect.Effect<Cache, CacheError> =>
  Effect.gen(function*() {
    const directory = options.directory
    const budget = Math.max(0, options.budget ?? 256 * 1024 * 1024)
    const pathOf = (hash: string) => nodePath.join(directory, hash)
    // insertion order is recency: the first key is the least recently used
    const entries = new Map<string, number>()
    let total = 0
    // one change of the index at a time: a write's size is counted once it is on disk
    const lock = yield* Effect.makeSemaphore(1)

    yield* Effect.tryPromise({ try: () => fs.mkdir(directory, { recursive: true }), catch: storage("the cache directory could not be made") })
    const found = yield* Effect.tryPromise({
      try: async () => {
        const out: Array<{ hash: string; size: number; mtime: number }> = []
        for (const name of await fs.readdir(directory)) {
          const path = nodePath.join(directory, name)
          // leftovers of an interrupted write, or anything else that is no entry
          if (!HASH.test(name)) {
            await fs.rm(path, { force: true, recursive: true })
            continue
          }
          const stat = await fs.stat(path)
          out.push({ hash: name, size: stat.size, mtime: stat.mtimeMs })
        }
        return out
      },
      catch: storage("the cache could not be indexed")
    })
    for (const entry of found.sort((a, b) => a.mtime - b.mtime)) {
      entries.set(entry.hash, entry.size)
      total += entry.size
    }

    const remove = (hash: string) =>
      Effect.suspend(() => {
        const size = entries.get(hash)
        if (size === undefined) return Effect.void
        entries.delete(hash)
        total -= size
        return Effect.try({ try: () => fsSync.rmSync(pathOf(hash), { force: true }), catch: storage("a cache entry could not be removed") })
      })

    const evict = Effect.gen(function*() {
      while (total > budget) {
        const oldest = entries.keys().next()
        if (oldest.done === true) break
        yield* remove(oldest.value)
      }
    })

    const get = (hash: string) =>
      Effect.gen(function*() {
        if (!entries.has(hash)) return Option.none<Uint8Array>()
        const bytes = yield* Effect.try({
          try: () => {
            try {
              return new Uint8Array(fsSync.readFileSync(pathOf(hash)))
            } catch (cause) {
              if ((cause as NodeJS.ErrnoException).code === "ENOENT") return undefined
              throw cause
            }
          },
          catch: storage("a cache entry could not be read")
        })
        if (bytes === undefined || sha256(bytes) !== hash) {
          yield* remove(hash)
          return Option.none<Uint8Array>()
        }
        touch(hash)
        return Option.some(bytes)
      })

    const touch = (hash: string) => {
      const size = entries.get(hash)
      if (size === undefined) return false
      entries.delete(hash)
      entries.set(hash, size)
      return true
    }

    const store = (blocking: boolean) => (hash: string, bytes: Uint8Array, options?: { readonly hashed?: boolean }) =>
      Effect.gen(function*() {
        if (bytes.length > MAX_THUMBNAIL_BYTES) return yield* new CacheError({ reason: "TooLarge", detail: `${bytes.length} bytes` })
        if (!HASH.test(hash) || (options?.hashed !== true && sha256(bytes) !== hash)) return yield* new CacheError({ reason: "HashMismatch", detail: `the bytes do not hash to ${hash}` })
        if (touch(hash)) return
        // a file is only ever renamed into place whole, so a second writer of the same hash
        // writes the same bytes
        const path = pathOf(hash)
        const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`
        const removeTemporary = Effect.sync(() => fsSync.rmSync(temporary, { force: true }))
        yield* (blocking
          ? Effect.try({
            try: () => {
              fsSync.writeFileSync(temporary, bytes)
              fsSync.renameSync(temporary, path)
            },
            catch: storage("a cache entry could not be written")
          })
          : Effect.tryPromise({
            try: async () => {
              await fs.writeFile(temporary, bytes)
              await fs.rename(temporary, path)
            },
            catch: storage("a cache entry could not be written")
          })).pipe(Effect.onExit((exit) => (exit._tag === "Failure" ? removeTemporary : Effect.void)))
        yield* lock.withPermits(1)(Effect.suspend(() => {
          if (touch(hash)) return Effect.void
          entries.set(hash, bytes.length)
          total += bytes.length
          return evict
        }))
      })

    return {
      get,
      has: (hash) => Effect.sync(() => entries.has(hash)),
      put: store(true),
      write: store(false),
      retain: (keep) =>
        lock.withPermits(1)(Effect.gen(function*() {
          const gone = [...entries.keys()].filter((hash) => !keep(hash))
          yield* Effect.forEach(gone, remove, { discard: true })
          return gone.length
        })),
      size: Effect.sync(() => total),
      hashes: Effect.sync(() => [...entries.keys()])
    } satisfies Cache
  })
