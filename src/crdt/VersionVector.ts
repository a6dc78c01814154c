/**
 * Version vectors: per origin, the last operation a peer holds.
 *
 * Invariant (the prefix property): for every origin, a peer holds exactly
 * that origin's operations 1..seq — never one without all before it. The
 * engine enforces it on ingest (a gap is refused), sync preserves it by
 * sending each origin's operations in order in atomically applied batches.
 * With it, one number per origin says everything a peer holds, and the
 * difference of two vectors is exactly what one side lacks.
 *
 * A vector is a `ReadonlyMap` (never a plain object): origins are data from
 * the network, and an origin named `__proto__` or `constructor` must be an
 * origin like any other, never an inherited property. The engine keeps a
 * `Map`; a vector read off the wire is a `SortedVector` (typed columns in
 * hash order, no object per entry), which is a `Map` to its users. On the
 * wire a vector is pages of entries (see `encodePage`), checked by hand (a
 * vector may hold hundreds of thousands of origins; a Schema per entry
 * costs 10× more).
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { Operation } from "./Operation.js"
import * as SortedVector from "./SortedVector.js"
import { type NodeId, type Timestamp, TIMESTAMP_PATTERN } from "./Timestamp.js"

/** The last operation held from one origin. */
export interface Entry {
  readonly seq: number
  readonly ts: Timestamp
}

/** Per origin, the last operation held. */
export type VersionVector = ReadonlyMap<string, Entry>

/**
 * Default bound on the origins of one library, in the engine and in what a sync session accepts
 * from a remote (about 50 MB of vector at 128-character origins).
 */
export const DEFAULT_MAX_ORIGINS = 200_000

/** Holds nothing. */
export const empty: VersionVector = new Map()

/** A vector of the given entries. */
export const fromEntries = (entries: Iterable<readonly [string, Entry]>): VersionVector => new Map(entries)

/** Sequence number of the last operation held from `origin` (0 for none). */
export const seqOf = (vector: VersionVector, origin: string): number =>
  vector instanceof SortedVector.SortedVector ? vector.seqOf(origin) : vector.get(origin)?.seq ?? 0

/**
 * Moves each origin's entry in `vector` to its largest seq among `ops`, in place: one lookup and at
 * most one entry per run of an origin's operations (a batch holds each origin's in a run), not one per operation.
 */
export const advanceInPlace = (vector: Map<string, Entry>, ops: Iterable<Operation>): void => {
  let origin: string | undefined
  let seq = 0
  let ts: Timestamp | undefined
  for (const op of ops) {
    if (op.origin === origin) {
      if (op.seq > seq) {
        seq = op.seq
        ts = op.ts
      }
      continue
    }
    if (origin !== undefined && seqOf(vector, origin) < seq) vector.set(origin, { seq, ts: ts! })
    origin = op.origin
    seq = op.seq
    ts = op.ts
  }
  if (origin !== undefined && seqOf(vector, origin) < seq) vector.set(origin, { seq, ts: ts! })
}

/** The vector after also holding `ops` (each origin's entry moves to its largest seq). */
export const advance = (vector: VersionVector, ops: Iterable<Operation>): VersionVector => {
  let next: Map<string, Entry> | undefined
  for (const op of ops) {
    const current = (next ?? vector).get(op.origin)
    if (current === undefined || current.seq < op.seq) {
      next ??= new Map(vector)
      next.set(op.origin, { seq: op.seq, ts: op.ts })
    }
  }
  return next ?? vector
}

/** Raises `target`'s entries to those of `other` where `other` holds more, in place. */
export const mergeInPlace = (target: Map<string, Entry>, other: VersionVector): void => {
  if (target instanceof SortedVector.SortedVector && other instanceof SortedVector.SortedVector) return target.mergeFrom(other)
  for (const [origin, entry] of other) {
    if (seqOf(target, origin) < entry.seq) target.set(origin, entry)
  }
}

/** Pointwise maximum: what two peers hold together. */
export const merge = (a: VersionVector, b: VersionVector): VersionVector => {
  const out = new Map(a)
  mergeInPlace(out, b)
  return out
}

/** Whether `a` holds everything `b` holds. */
export const covers = (a: VersionVector, b: VersionVector): boolean => {
  if (a instanceof SortedVector.SortedVector && b instanceof SortedVector.SortedVector) return a.covers(b)
  for (const [origin, entry] of b) {
    if (seqOf(a, origin) < entry.seq) return false
  }
  return true
}

/** Whether two vectors hold the same: each covers the other (same origins, but one ahead on one of them, is not equal). */
export const equals = (a: VersionVector, b: VersionVector): boolean => a.size === b.size && covers(a, b) && covers(b, a)

/** Bytes allowed in a node id (`NODE_ID_PATTERN`), by byte value. */
const NODE_ID_BYTES = (() => {
  const table = new Uint8Array(256)
  for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-") table[c.charCodeAt(0)] = 1
  return table
})()

const isNodeId = (s: string): boolean => {
  if (s.length < 1 || s.length > 128) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 255 || NODE_ID_BYTES[c] === 0) return false
  }
  return true
}

/** One stored entry, as read back from the database (nothing about it trusted). */
export interface StoredEntry {
  readonly origin: unknown
  readonly seq: unknown
  readonly ts: unknown
}

/**
 * Reads stored entries, checking every origin, seq and timestamp; an origin
 * named twice is refused (the writer's vector is a map).
 */
export const fromStored = (rows: Iterable<StoredEntry>): Either.Either<Map<string, Entry>, string> => {
  const out = new Map<string, Entry>()
  for (const { origin, seq, ts } of rows) {
    if (typeof origin !== "string" || !isNodeId(origin)) return Either.left(`entry ${out.size}: the origin is not a node id`)
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1) return Either.left(`entry ${out.size} (${origin}): seq is not a positive integer`)
    if (typeof ts !== "string" || !TIMESTAMP_PATTERN.test(ts)) return Either.left(`entry ${out.size} (${origin}): ts is not a timestamp`)
    if (out.has(origin)) return Either.left(`entry ${out.size}: origin ${origin} named twice`)
    out.set(origin as NodeId, { seq, ts: ts as Timestamp })
  }
  return Either.right(out)
}

/** Most entries one page of a vector on the wire holds (about 1.2 MB at 128-character origins). */
export const PAGE_ENTRIES = 8192

// A page on the wire is one byte string of entries, each: origin length (1 byte), the origin
// (ASCII), seq (a float64, big-endian) and the timestamp (its 16 hex digits, ASCII). Plain
// loops over bytes, no call into the runtime per entry: the decoder reads the page once as a
// latin1 string and slices origins and timestamps out of it, and hashes each origin in the
// loop that checks its bytes, for the sorted columns it decodes to (no `Map` is built).
const SEQ_BYTES = 8
const TS_CHARS = 16
/** The fewest bytes an entry takes (a one-character origin). */
const MIN_ENTRY_BYTES = 1 + 1 + SEQ_BYTES + TS_CHARS

/** Value of each hex digit byte (lowercase, as timestamps are written); 0xff for any other byte. */
const HEX_VALUES = (() => {
  const table = new Uint8Array(256).fill(0xff)
  for (const [i, c] of [..."0123456789abcdef"].entries()) table[c.charCodeAt(0)] = i
  return table
})()

// A page is written into a scratch buffer, reused (encoding is synchronous), each string by one
// native call, then copied out at its size: nothing is allocated per entry.
const MAX_ENTRY_BYTES = 1 + 255 + SEQ_BYTES + TS_CHARS
let scratch = Buffer.alloc(0)
let scratchView = new DataView(scratch.buffer)

// Buffer's own latin1 writer, without `write`'s argument handling (a third of the time of an encode);
// `write` where a runtime lacks it
const nativeLatin1Write = (Buffer.prototype as unknown as { latin1Write?: (s: string, at: number) => number }).latin1Write
const latin1Write: (into: Buffer, s: string, at: number) => number = typeof nativeLatin1Write === "function"
  ? (into, s, at) => nativeLatin1Write.call(into, s, at)
  : (into, s, at) => into.write(s, at, "latin1")

/** Builds pages of at most `size` entries from entries given one at a time. */
const pageWriter = (size: number) => {
  const out: Array<Uint8Array> = []
  let at = 0
  let count = 0
  const flush = () => {
    out.push(new Uint8Array(scratch.subarray(0, at)))
    at = 0
    count = 0
  }
  return {
    add: (origin: string, seq: number, ts: string) => {
      if (at + MAX_ENTRY_BYTES > scratch.length) {
        const grown = Buffer.allocUnsafe(Math.max(2 * scratch.length, 1 << 16))
        scratch.copy(grown, 0, 0, at)
        scratch = grown
        scratchView = new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength)
      }
      // an origin is at most 128 ASCII characters (a node id); the byte says how many follow
      scratch[at++] = origin.length
      at += latin1Write(scratch, origin, at)
      scratchView.setFloat64(at, seq)
      at += SEQ_BYTES
      for (let i = 0; i < TS_CHARS; i++) scratch[at++] = ts.charCodeAt(i)
      if (++count >= size) flush()
    },
    /** The pages (one empty page for no entries). */
    done: (): Array<Uint8Array> => {
      if (count > 0 || out.length === 0) flush()
      // a vector larger than a few pages does not keep its size of memory held after it
      if (scratch.length > 4 * PAGE_ENTRIES * 64) scratch = Buffer.alloc(0)
      return out
    }
  }
}

/** Encodes entries as one page. */
export const encodePage = (entries: Iterable<readonly [string, Entry]>): Uint8Array => {
  const writer = pageWriter(Infinity)
  for (const [origin, entry] of entries) writer.add(origin, entry.seq, entry.ts)
  return writer.done()[0]!
}

/** Encodes a vector as pages of at most `size` entries (one empty page for an empty vector), in one pass over it. */
export const encodePages = (vector: VersionVector, size = PAGE_ENTRIES): Array<Uint8Array> => {
  const writer = pageWriter(Math.max(1, size))
  vector.forEach((entry, origin) => writer.add(origin, entry.seq, entry.ts))
  return writer.done()
}

/**
 * Decodes one page: every origin a node id, named once, every seq positive, every timestamp 16
 * hex digits; at most `maxEntries`. The result is sorted columns (`SortedVector`) over a copy of
 * the page's bytes (a frame's buffer may be reused once it is read).
 */
export const decodePage = (input: Uint8Array, maxEntries: number): Either.Either<SortedVector.SortedVector, string> => {
  const bytes = Buffer.from(input)
  // every entry takes MIN_ENTRY_BYTES at least: the columns are bounded by the bytes given
  const capacity = Math.max(0, Math.min(maxEntries, Math.floor(bytes.length / MIN_ENTRY_BYTES)))
  const columns = SortedVector.gatherColumns(capacity, [bytes])
  const { hashes, seqs, tsHigh, tsLow, starts, lengths, sources } = columns
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let n = 0
  let at = 0
  while (at < bytes.length) {
    if (n >= maxEntries) return Either.left(`more than ${maxEntries} entries in one page`)
    const length = bytes[at]!
    const end = at + 1 + length
    if (length === 0 || length > 128 || end + SEQ_BYTES + TS_CHARS > bytes.length) return Either.left(`entry ${n}: truncated or too long`)
    let h = 0x811c9dc5 | 0 // an int32 from the start: a double here keeps the loop off the fast path
    for (let i = at + 1; i < end; i++) {
      const b = bytes[i]!
      if (NODE_ID_BYTES[b] === 0) return Either.left(`entry ${n}: the origin is not a node id`)
      h = Math.imul(h ^ b, 0x01000193)
    }
    const seq = view.getFloat64(end)
    if (!Number.isSafeInteger(seq) || seq < 1) return Either.left(`entry ${n}: seq is not a positive integer`)
    const tsAt = end + SEQ_BYTES
    let high = 0
    let low = 0
    for (let i = tsAt; i < tsAt + 8; i++) {
      const v = HEX_VALUES[bytes[i]!]!
      if (v === 0xff) return Either.left(`entry ${n}: ts is not a timestamp`)
      high = (high << 4) | v
    }
    for (let i = tsAt + 8; i < tsAt + TS_CHARS; i++) {
      const v = HEX_VALUES[bytes[i]!]!
      if (v === 0xff) return Either.left(`entry ${n}: ts is not a timestamp`)
      low = (low << 4) | v
    }
    hashes[n] = SortedVector.mixHash(h)
    seqs[n] = seq
    tsHigh[n] = high
    tsLow[n] = low
    starts[n] = at + 1
    lengths[n] = length
    n++
    at = tsAt + TS_CHARS
  }
  sources.fill(0, 0, n)
  const vector = SortedVector.fromColumns({ ...columns, length: n }, "refuse")
  return vector instanceof SortedVector.SortedVector ? Either.right(vector) : Either.left(`origin ${vector.repeated} named twice`)
}

/** The pages of one vector as one vector (an origin named on two pages keeps its largest seq). */
export const union = (pages: ReadonlyArray<VersionVector>): SortedVector.SortedVector =>
  pages.length === 1 && pages[0] instanceof SortedVector.SortedVector ? pages[0] : SortedVector.union(pages)

/** A page of vector entries on the wire (see `encodePage`), decoded to sorted columns. */
export const Page: Schema.Schema<ReadonlyMap<string, Entry>, Uint8Array> = Schema.transformOrFail(
  Schema.Uint8ArrayFromSelf,
  Schema.declare((u): u is ReadonlyMap<string, Entry> => u instanceof Map || u instanceof SortedVector.SortedVector, { identifier: "VersionVector" }),
  {
    strict: true,
    decode: (bytes, _, ast) =>
      Either.mapLeft(decodePage(bytes, PAGE_ENTRIES), (detail) => new ParseResult.Type(ast, bytes, detail)),
    encode: (vector) => ParseResult.succeed(encodePage(vector))
  }
)

/** Splits a vector into pages of at most `size` entries (one empty page for an empty vector). */
export const pages = (vector: VersionVector, size = PAGE_ENTRIES): Array<Array<readonly [string, Entry]>> => {
  const out: Array<Array<readonly [string, Entry]>> = [[]]
  for (const entry of vector) {
    if (out[out.length - 1]!.length >= size) out.push([])
    out[out.length - 1]!.push(entry)
  }
  return out
}
