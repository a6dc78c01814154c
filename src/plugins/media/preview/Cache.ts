/**
 * A node's thumbnail bytes on disk, by SHA-256, with a byte budget kept by
 * evicting the least recently used.
 *
 * Two kinds of entries share one index (as git's loose objects and packs,
 * and its `fetch.unpackLimit`):
 *
 * - loose files, named by their hash: what `put` and `write` store one at a
 *   time (a thumbnail just made, or one fetched on demand), and a `putMany`
 *   of fewer than `UNPACK_LIMIT`. Written to a temporary name and renamed
 *   into place, so a crash leaves no half file under a hash.
 * - pack files, `<seq>.pack`: a `putMany` of `UNPACK_LIMIT` or more (a
 *   fetch hands over what it received a batch at a time) appends every entry
 *   to the open pack in one write. Creating a file costs the kernel about
 *   seventeen times what appending the same bytes does (0.3 ms each here, for
 *   thumbnails of 40 KB), which was half the CPU of a 2 000-thumbnail fetch.
 *
 *   A pack is a sequence of records: one byte of state (1 live, 0 removed),
 *   the 32 bytes of the hash, the size as 4 bytes big-endian, then the
 *   bytes. A removed entry has its state byte set to 0 in place; a pack
 *   with no live entry is deleted, and one whose live entries fill less
 *   than half of it is compacted (they are copied to the open pack, in
 *   order, and it is deleted), so the disk holds at most about twice the
 *   budget. A pack is closed for appends once past `PACK_BYTES`.
 *
 * Every `get` (what this node shows) is hashed again before it is
 * returned, and an entry that no longer matches its hash is removed (the
 * disk is not trusted more than the network). `readMany` (what a peer is
 * sent, which it hashes itself before it keeps it) hashes an entry only
 * until this process has seen it match: when it stored the entry (checked,
 * or just hashed by the caller) or at its first read since the cache
 * opened. A serving node so hashes each thumbnail once, not once per peer
 * served; bytes changed on disk under a running cache reach no peer's
 * cache, and are dropped at the next `get` here. Recency lives in memory,
 * seeded when the cache opens from the files' modification times (a
 * pack's records in their order).
 *
 * Nothing is synced to disk: a crash can at worst leave a loose file or a
 * pack record whose bytes are not (yet) those of its hash, which a read
 * drops, or a pack whose tail was cut: a record whose header or bytes run
 * past the end, or the pack's last record when it does not hash to its
 * name, is cut off when the cache opens. A removal not yet on disk brings
 * an entry back, with right bytes, under the budget again. So a cache entry
 * is the only thing a crash can lose, never a reason to serve wrong bytes.
 *
 * Entries are small (at most `MAX_THUMBNAIL_BYTES`) and land in the page
 * cache: they are read and appended with synchronous calls, which cost a
 * fraction of the thread-pool round trips of `fs/promises` per entry. A
 * pack is opened for each read or batch and closed after it, so the cache
 * holds no descriptor between calls.
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
  /**
   * For a peer that checks what it receives: hands the bytes of `hashes[from]`, `hashes[from + 1]` … to `each`
   * in turn (`undefined` for a hash not held, or not asked: an `undefined` in `hashes`), marking them most
   * recently used, until `each` returns `false` or the hashes end; returns the index after the last one
   * handed. An entry is hashed only if this process has not yet seen it match (see the module doc); one
   * that does not is removed and handed as `undefined`, as is one that cannot be read or removed now (the
   * peer asks another). The bytes handed are `each`'s to keep.
   */
  readonly readMany: (
    hashes: ReadonlyArray<string | undefined>,
    from: number,
    each: (hash: string | undefined, bytes: Uint8Array | undefined) => boolean
  ) => Effect.Effect<number>
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
   * and the caller's thread goes on meanwhile.
   */
  readonly write: (hash: string, bytes: Uint8Array, options?: { readonly hashed?: boolean }) => Effect.Effect<void, CacheError>
  /**
   * As `put` for each entry, in order: `UNPACK_LIMIT` or more appended to a pack in one write, fewer as loose
   * files. All are checked before any is stored; one that fails the check fails the call and none is stored.
   */
  readonly putMany: (
    entries: ReadonlyArray<{ readonly hash: string; readonly bytes: Uint8Array }>,
    options?: { readonly hashed?: boolean }
  ) => Effect.Effect<void, CacheError>
  /** Removes every entry whose hash `keep` does not hold; returns how many. */
  readonly retain: (keep: (hash: string) => boolean) => Effect.Effect<number, CacheError>
  /** Bytes held now. */
  readonly size: Effect.Effect<number>
  /** Hashes held, least recently used first. */
  readonly hashes: Effect.Effect<ReadonlyArray<string>>
}

/** Options of the cache. */
export interface Options {
  /** The directory (made if missing). */
  readonly directory: string
  /** Most bytes held (default 256 MiB); the least recently used go first. */
  readonly budget?: number
  /** A pack takes no more appends once it has this many bytes (default `PACK_BYTES`). */
  readonly packBytes?: number
}

/** A `putMany` of this many entries or more goes to a pack; fewer become loose files. */
export const UNPACK_LIMIT = 8
/** Default size past which a pack takes no more appends. */
export const PACK_BYTES = 16 * 1024 * 1024
/** A pack record's header: state, hash, size. */
export const RECORD_HEADER = 1 + 32 + 4
const LIVE = 1
const REMOVED = 0

const HASH = /^[0-9a-f]{64}$/
const PACK = /^(\d{6,})\.pack$/

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const storage = (what: string) => (cause: unknown) =>
  new CacheError({ reason: "Storage", detail: `${what}: ${cause instanceof Error ? cause.message : String(cause)}` })

/**
 * Where an entry's bytes are: a loose file (`pack` undefined) or a pack record's bytes at `offset`; `verified`
 * once this process has seen them hash to the entry's hash.
 */
interface Entry {
  readonly size: number
  pack: number | undefined
  offset: number
  verified: boolean
}

/** A pack: its length on disk and the bytes of its live entries. */
interface Pack {
  length: number
  live: number
}

/** Reads `length` bytes at `position` of the file `fd`, fewer at its end. */
const readAt = (fd: number, length: number, position: number) => {
  const out = Buffer.allocUnsafe(length)
  let got = 0
  while (got < length) {
    const n = fsSync.readSync(fd, out, got, length - got, position + got)
    if (n === 0) break
    got += n
  }
  return got === length ? out : out.subarray(0, got)
}

/** Opens the cache in `options.directory`, indexing what is there. */
export const make = (options: Options): Effect.Effect<Cache, CacheError> =>
  Effect.gen(function*() {
    const directory = options.directory
    const budget = Math.max(0, options.budget ?? 256 * 1024 * 1024)
    const packBytes = Math.max(1, options.packBytes ?? PACK_BYTES)
    // a hash is a file name already (`HASH`): joined by hand, as `path.join` normalises each time
    const prefix = nodePath.join(directory, nodePath.sep)
    const pathOf = (hash: string) => prefix + hash
    const packPath = (seq: number) => `${prefix}${String(seq).padStart(6, "0")}.pack`
    // insertion order is recency: the first key is the least recently used
    const entries = new Map<string, Entry>()
    const packs = new Map<number, Pack>()
    let total = 0
    // the pack appends go to (none yet: the next putMany starts one)
    let open: number | undefined
    let nextSeq = 1
    // one change of the index at a time across a loose `write`'s thread-pool wait
    const lock = yield* Effect.makeSemaphore(1)

    yield* Effect.tryPromise({ try: () => fs.mkdir(directory, { recursive: true }), catch: storage("the cache directory could not be made") })

    // ---- opening: loose files by modification time, then each pack's records in order
    yield* Effect.try({
      try: () => {
        const found: Array<{ time: number; loose?: { hash: string; size: number }; pack?: number }> = []
        for (const name of fsSync.readdirSync(directory)) {
          const path = nodePath.join(directory, name)
          const pack = PACK.exec(name)
          if (HASH.test(name) || pack !== null) {
            const stat = fsSync.statSync(path)
            found.push(pack === null ? { time: stat.mtimeMs, loose: { hash: name, size: stat.size } } : { time: stat.mtimeMs, pack: Number(pack[1]) })
            continue
          }
          // leftovers of an interrupted write, or anything else that is no entry
          fsSync.rmSync(path, { force: true, recursive: true })
        }
        found.sort((a, b) => a.time - b.time || (a.pack ?? 0) - (b.pack ?? 0))
        for (const item of found) {
          if (item.loose !== undefined) {
            if (entries.has(item.loose.hash)) continue
            entries.set(item.loose.hash, { size: item.loose.size, pack: undefined, offset: 0, verified: false })
            total += item.loose.size
          } else if (item.pack !== undefined) {
            scanPack(item.pack)
          }
        }
      },
      catch: storage("the cache could not be indexed")
    })

    /** Indexes the records of pack `seq`, cutting off a torn tail. */
    function scanPack(seq: number) {
      const path = packPath(seq)
      nextSeq = Math.max(nextSeq, seq + 1)
      const fd = fsSync.openSync(path, "r+")
      try {
        const length = fsSync.fstatSync(fd).size
        const pack: Pack = { length: 0, live: 0 }
        let at = 0
        let last: { hash: string; at: number; offset: number; size: number } | undefined
        while (at < length) {
          const header = readAt(fd, RECORD_HEADER, at)
          const size = header.length === RECORD_HEADER ? header.readUInt32BE(33) : -1
          // a header or bytes past the end: the tail of an append a crash cut
          if (size < 0 || size > MAX_THUMBNAIL_BYTES || at + RECORD_HEADER + size > length || (header[0] !== LIVE && header[0] !== REMOVED)) break
          if (header[0] === LIVE) last = { hash: header.subarray(1, 33).toString("hex"), at, offset: at + RECORD_HEADER, size }
          at += RECORD_HEADER + size
        }
        // the last live record is the one a crash is likeliest to have left with other bytes than its hash's
        if (last !== undefined && sha256(readAt(fd, last.size, last.offset)) !== last.hash) at = last.at
        if (at < length) fsSync.ftruncateSync(fd, at)
        pack.length = at
        packs.set(seq, pack)
        // the index, now that the extent is known
        let position = 0
        while (position < at) {
          const header = readAt(fd, RECORD_HEADER, position)
          const size = header.readUInt32BE(33)
          const hash = header.subarray(1, 33).toString("hex")
          if (header[0] === LIVE) {
            if (entries.has(hash)) markRemoved(fd, position)
            else {
              entries.set(hash, { size, pack: seq, offset: position + RECORD_HEADER, verified: false })
              pack.live += size
              total += size
            }
          }
          position += RECORD_HEADER + size
        }
      } finally {
        fsSync.closeSync(fd)
      }
      if (packs.get(seq)!.live === 0) dropPack(seq)
    }

    function markRemoved(fd: number, recordAt: number) {
      fsSync.writeSync(fd, new Uint8Array([REMOVED]), 0, 1, recordAt)
    }

    function dropPack(seq: number) {
      packs.delete(seq)
      if (open === seq) open = undefined
      fsSync.rmSync(packPath(seq), { force: true })
    }

    /** Takes `hash` out of the index and off the disk (a pack record marked removed). Throws on a storage failure. */
    const removeNow = (hash: string) => {
      const entry = entries.get(hash)
      if (entry === undefined) return
      entries.delete(hash)
      total -= entry.size
      if (entry.pack === undefined) {
        fsSync.rmSync(pathOf(hash), { force: true })
        return
      }
      const pack = packs.get(entry.pack)
      if (pack === undefined) return
      pack.live -= entry.size
      if (pack.live === 0 && entry.pack !== open) return dropPack(entry.pack)
      const fd = fsSync.openSync(packPath(entry.pack), "r+")
      try {
        markRemoved(fd, entry.offset - RECORD_HEADER)
      } finally {
        fsSync.closeSync(fd)
      }
    }

    /**
     * Appends `items` to the open pack (starting one when there is none or it is full), in one write, and indexes
     * them (an entry already indexed, being moved, keeps its place in recency).
     */
    const append = (items: ReadonlyArray<{ readonly hash: string; readonly bytes: Uint8Array; readonly verified: boolean }>) => {
      if (open === undefined || packs.get(open)!.length >= packBytes) {
        open = nextSeq++
        packs.set(open, { length: 0, live: 0 })
      }
      const seq = open
      const pack = packs.get(seq)!
      const parts: Array<Uint8Array> = []
      for (const { hash, bytes } of items) {
        const header = Buffer.allocUnsafe(RECORD_HEADER)
        header[0] = LIVE
        header.write(hash, 1, 32, "hex")
        header.writeUInt32BE(bytes.length, 33)
        parts.push(header, bytes)
      }
      const fd = fsSync.openSync(packPath(seq), "a")
      try {
        // writev may write less than asked: go on from where it stopped
        let rest = parts
        while (rest.length > 0) {
          let n = fsSync.writevSync(fd, rest)
          if (n === 0) throw new Error("the pack took no bytes")
          let i = 0
          while (i < rest.length && n >= rest[i]!.length) n -= rest[i++]!.length
          rest = i < rest.length ? [rest[i]!.subarray(n), ...rest.slice(i + 1)] : []
        }
      } catch (cause) {
        // a failed append leaves no part of a record behind
        try {
          fsSync.ftruncateSync(fd, pack.length)
        } catch {
          // the tail is cut when the cache next opens
        }
        throw cause
      } finally {
        fsSync.closeSync(fd)
      }
      let at = pack.length
      for (const { bytes, hash, verified } of items) {
        entries.set(hash, { size: bytes.length, pack: seq, offset: at + RECORD_HEADER, verified })
        pack.live += bytes.length
        total += bytes.length
        at += RECORD_HEADER + bytes.length
      }
      pack.length = at
    }

    /** Copies the live entries of packs less than half live to the open pack, and deletes those packs. */
    const compact = () => {
      for (const [seq, pack] of [...packs]) {
        if (seq === open || pack.live * 2 >= pack.length) continue
        const moving = [...entries].filter(([, e]) => e.pack === seq)
        const fd = fsSync.openSync(packPath(seq), "r")
        try {
          // one at a time (bounded memory); each keeps its place in recency (`append` sets it where it is)
          for (const [hash, entry] of moving) {
            const bytes = readAt(fd, entry.size, entry.offset)
            total -= entry.size
            pack.live -= entry.size
            append([{ hash, bytes, verified: entry.verified }])
          }
        } finally {
          fsSync.closeSync(fd)
        }
        dropPack(seq)
      }
    }

    const evictNow = () => {
      while (total > budget) {
        const oldest = entries.keys().next()
        if (oldest.done === true) break
        removeNow(oldest.value)
      }
      compact()
    }

    const remove = (hash: string) => Effect.try({ try: () => removeNow(hash), catch: storage("a cache entry could not be removed") })

    /** The bytes on disk of `entry` (a view of a buffer of their own), `undefined` when its loose file is gone. Throws on a storage failure. */
    const readNow = (hash: string, entry: Entry): Uint8Array | undefined => {
      let read: Buffer
      if (entry.pack !== undefined) {
        const fd = fsSync.openSync(packPath(entry.pack), "r")
        try {
          read = readAt(fd, entry.size, entry.offset)
        } finally {
          fsSync.closeSync(fd)
        }
      } else {
        try {
          read = fsSync.readFileSync(pathOf(hash))
        } catch (cause) {
          if ((cause as NodeJS.ErrnoException).code === "ENOENT") return undefined
          throw cause
        }
      }
      return new Uint8Array(read.buffer, read.byteOffset, read.length)
    }

    const get = (hash: string) =>
      Effect.gen(function*() {
        const entry = entries.get(hash)
        if (entry === undefined) return Option.none<Uint8Array>()
        const bytes = yield* Effect.try({ try: () => readNow(hash, entry), catch: storage("a cache entry could not be read") })
        if (bytes === undefined || sha256(bytes) !== hash) {
          yield* remove(hash)
          return Option.none<Uint8Array>()
        }
        entry.verified = true
        touch(hash)
        return Option.some(bytes)
      })

    const readMany = (
      hashes: ReadonlyArray<string | undefined>,
      from: number,
      each: (hash: string | undefined, bytes: Uint8Array | undefined) => boolean
    ) =>
      Effect.sync(() => {
        let i = from
        while (i < hashes.length) {
          const hash = hashes[i++]
          const entry = hash === undefined ? undefined : entries.get(hash)
          let bytes: Uint8Array | undefined
          if (hash !== undefined && entry !== undefined) {
            try {
              bytes = readNow(hash, entry)
              if (bytes !== undefined && !entry.verified) {
                if (sha256(bytes) === hash) entry.verified = true
                else bytes = undefined
              }
              if (bytes === undefined) removeNow(hash)
              else touch(hash)
            } catch {
              // a storage failure: answered as not held, and left for `get` to report
              bytes = undefined
            }
          }
          if (!each(hash, bytes)) break
        }
        return i
      })

    const touch = (hash: string) => {
      const entry = entries.get(hash)
      if (entry === undefined) return false
      entries.delete(hash)
      entries.set(hash, entry)
      return true
    }

    const check = (hash: string, bytes: Uint8Array, hashed: boolean | undefined) => {
      if (bytes.length > MAX_THUMBNAIL_BYTES) return new CacheError({ reason: "TooLarge", detail: `${bytes.length} bytes` })
      if (!HASH.test(hash) || (hashed !== true && sha256(bytes) !== hash)) return new CacheError({ reason: "HashMismatch", detail: `the bytes do not hash to ${hash}` })
      return undefined
    }

    const store = (blocking: boolean) => (hash: string, bytes: Uint8Array, options?: { readonly hashed?: boolean }) =>
      Effect.gen(function*() {
        const wrong = check(hash, bytes, options?.hashed)
        if (wrong !== undefined) return yield* wrong
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
        yield* lock.withPermits(1)(Effect.try({
          try: () => {
            const held = entries.get(hash)
            // stored meanwhile in a pack: the loose copy is not needed
            if (held !== undefined && held.pack !== undefined) return void fsSync.rmSync(path, { force: true })
            if (touch(hash)) return
            entries.set(hash, { size: bytes.length, pack: undefined, offset: 0, verified: true })
            total += bytes.length
            evictNow()
          },
          catch: storage("a cache entry could not be evicted")
        }))
      })

    const putMany = (items: ReadonlyArray<{ readonly hash: string; readonly bytes: Uint8Array }>, options?: { readonly hashed?: boolean }) =>
      Effect.suspend(() => {
        for (const { hash, bytes } of items) {
          const wrong = check(hash, bytes, options?.hashed)
          if (wrong !== undefined) return Effect.fail(wrong)
        }
        const fresh: Array<{ readonly hash: string; readonly bytes: Uint8Array }> = []
        const seen = new Set<string>()
        for (const item of items) {
          if (touch(item.hash) || seen.has(item.hash)) continue
          seen.add(item.hash)
          fresh.push(item)
        }
        if (fresh.length === 0) return Effect.void
        if (fresh.length < UNPACK_LIMIT) return Effect.forEach(fresh, ({ hash, bytes }) => store(true)(hash, bytes, { hashed: true }), { discard: true })
        return lock.withPermits(1)(Effect.try({
          try: () => {
            // a writev takes at most 1 024 buffers: two per entry
            for (let i = 0; i < fresh.length; i += 256) append(fresh.slice(i, i + 256).map((item) => ({ ...item, verified: true })))
            evictNow()
          },
          catch: storage("cache entries could not be written")
        }))
      })

    return {
      get,
      readMany,
      has: (hash) => Effect.sync(() => entries.has(hash)),
      put: store(true),
      write: store(false),
      putMany,
      retain: (keep) =>
        lock.withPermits(1)(Effect.try({
          try: () => {
            const gone = [...entries.keys()].filter((hash) => !keep(hash))
            for (const hash of gone) removeNow(hash)
            compact()
            return gone.length
          },
          catch: storage("cache entries could not be removed")
        })),
      size: Effect.sync(() => total),
      hashes: Effect.sync(() => [...entries.keys()])
    } satisfies Cache
  })
