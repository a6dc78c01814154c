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

// A page on the wire is one byte string in columns, each a run of bytes (the decoder reads each in
// a plain loop and copies the origins' column out whole; a timestamp is a number, so any 8 bytes
// are one and need no check):
//
//   count        uint32, big-endian: how many entries
//   lengths      count bytes: each origin's length (1…128)
//   origins      the origins back to back (ASCII: node ids)
//   seqs         count float64s, big-endian
//   timestamps   count 8-byte values, big-endian: each timestamp's 16 hex digits as the number they write
//
// The decoder hashes each origin in the loop that checks its bytes, for the sorted columns it
// decodes to (no `Map` is built, no string per entry), and copies the origins' column out whole.
const COUNT_BYTES = 4
const SEQ_BYTES = 8
const TS_BYTES = 8
/** The fewest bytes an entry takes (a one-character origin). */
const MIN_ENTRY_BYTES = 1 + 1 + SEQ_BYTES + TS_BYTES

// Buffer's own latin1 writer, without `write`'s argument handling; `write` where a runtime lacks it
const nativeLatin1Write = (Buffer.prototype as unknown as { latin1Write?: (s: string, at: number) => number }).latin1Write
const latin1Write: (into: Buffer, s: string, at: number) => number = typeof nativeLatin1Write === "function"
  ? (into, s, at) => nativeLatin1Write.call(into, s, at)
  : (into, s, at) => into.write(s, at, "latin1")

/** Value of each hex digit's code (lowercase, as timestamps are written); 0 for any other. */
const HEX_VALUES = (() => {
  const table = new Uint8Array(256)
  for (const [i, c] of [..."0123456789abcdef"].entries()) table[c.charCodeAt(0)] = i
  return table
})()

// The encoder's state, module-wide (encoding is synchronous and never re-entered): the page being
// gathered, in scratch columns reused from page to page and vector to vector. `gather` is one
// function, passed to `forEach` as it is (no closure per vector, no second call per entry), so it is
// optimised once; it writes each origin's bytes by one native call and each timestamp's 8 bytes as
// it parses them, and `flushPage` copies the columns into the page whole. Nothing is allocated per entry.
let gathered = 0
let pageLimit = PAGE_ENTRIES
let originBytes = 0
let originColumn = Buffer.alloc(0)
let lengthColumn = new Uint8Array(0)
let seqColumn = new Float64Array(0)
let tsColumn = new Uint8Array(0)
// one array for good, emptied by each vector: a fresh `[]` per vector changed its map at its first page
// and deoptimised the page loop that pushes to it, on every vector (`--trace-deopt`: "wrong map")
const written: Array<Uint8Array> = []

/** Whether this host stores a number's bytes least significant first (the wire's are most significant first). */
const LITTLE_ENDIAN = new Uint8Array(new Float64Array([1]).buffer)[7] === 0x3f

/** Room for `rows` entries in the scratch columns (their contents kept). */
const reserve = (rows: number): void => {
  const lengths = new Uint8Array(rows)
  lengths.set(lengthColumn)
  lengthColumn = lengths
  const seqs = new Float64Array(rows)
  seqs.set(seqColumn)
  seqColumn = seqs
  const stamps = new Uint8Array(rows * TS_BYTES)
  stamps.set(tsColumn)
  tsColumn = stamps
}

/** Starts encoding pages of at most `limit` entries, `expected` in all. */
const startPages = (limit: number, expected: number): void => {
  gathered = 0
  originBytes = 0
  pageLimit = limit
  written.length = 0
  const rows = Math.min(limit, Math.max(expected, 1024))
  if (lengthColumn.length < rows) reserve(rows)
}

/** Adds one entry to the page being gathered. */
const gather = (entry: Entry, origin: string): void => {
  const k = gathered
  if (k === lengthColumn.length) reserve(2 * k)
  // an origin is a node id, at most 128 ASCII characters: its length fits a byte, a character a byte
  if (originBytes + 255 > originColumn.length) {
    const grown = Buffer.allocUnsafe(Math.max(2 * originColumn.length, 1 << 16))
    originColumn.copy(grown, 0, 0, originBytes)
    originColumn = grown
  }
  lengthColumn[k] = origin.length
  originBytes += latin1Write(originColumn, origin, originBytes)
  seqColumn[k] = entry.seq
  // a timestamp's 16 hex digits as the 8 bytes they write (a timestamp is always 16 lowercase hex digits)
  const ts = entry.ts
  const at = k * TS_BYTES
  for (let i = 0; i < TS_BYTES; i++) {
    tsColumn[at + i] = (HEX_VALUES[ts.charCodeAt(2 * i) & 0xff]! << 4) | HEX_VALUES[ts.charCodeAt(2 * i + 1) & 0xff]!
  }
  if (++gathered >= pageLimit) flushPage()
}

/** Writes the entries gathered as one page. */
const flushPage = (): void => {
  const n = gathered
  const originsAt = COUNT_BYTES + n
  const seqsAt = originsAt + originBytes
  const tsAt = seqsAt + SEQ_BYTES * n
  const page = new Uint8Array(tsAt + TS_BYTES * n)
  const view = new DataView(page.buffer)
  view.setUint32(0, n)
  page.set(lengthColumn.subarray(0, n), COUNT_BYTES)
  page.set(originColumn.subarray(0, originBytes), originsAt)
  // the seqs in this host's byte order, copied whole and then made big-endian by one native swap (no
  // loop here: an OSR'd loop in this function deoptimised at every page, "wrong map")
  page.set(new Uint8Array(seqColumn.buffer, 0, SEQ_BYTES * n), seqsAt)
  if (LITTLE_ENDIAN) Buffer.from(page.buffer, seqsAt, SEQ_BYTES * n).swap64()
  page.set(tsColumn.subarray(0, TS_BYTES * n), tsAt)
  written.push(page)
  gathered = 0
  originBytes = 0
}

/** The pages written (one empty page for no entries); nothing of them is kept here. */
const endPages = (): Array<Uint8Array> => {
  if (gathered > 0 || written.length === 0) flushPage()
  const out = written.splice(0, written.length)
  // a vector of large pages does not keep their size of memory held after it
  if (lengthColumn.length > 4 * PAGE_ENTRIES) {
    lengthColumn = new Uint8Array(0)
    seqColumn = new Float64Array(0)
    tsColumn = new Uint8Array(0)
    originColumn = Buffer.alloc(0)
  }
  return out
}

/** Encodes entries as one page. */
export const encodePage = (entries: Iterable<readonly [string, Entry]>): Uint8Array => {
  startPages(Infinity, 0)
  for (const [origin, entry] of entries) gather(entry, origin)
  return endPages()[0]!
}

/** Encodes a vector as pages of at most `size` entries (one empty page for an empty vector), in one pass over it. */
export const encodePages = (vector: VersionVector, size = PAGE_ENTRIES): Array<Uint8Array> => {
  startPages(Math.max(1, size), vector.size)
  vector.forEach(gather)
  return endPages()
}

/**
 * Decodes one page: every origin a node id, named once, every seq positive (a timestamp is any
 * 64-bit value); at most `maxEntries`. The result is sorted columns (`SortedVector`) over a copy of
 * the page's origins (a frame's buffer may be reused once it is read).
 */
export const decodePage = (bytes: Uint8Array, maxEntries: number): Either.Either<SortedVector.SortedVector, string> => {
  if (bytes.length < COUNT_BYTES) return Either.left("truncated: no entry count")
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = view.getUint32(0)
  if (n > maxEntries) return Either.left(`more than ${maxEntries} entries in one page`)
  // every entry takes MIN_ENTRY_BYTES at least: the columns are bounded by the bytes given
  if (COUNT_BYTES + n * MIN_ENTRY_BYTES > bytes.length) return Either.left(`${n} entries announced in ${bytes.length} bytes: truncated`)
  const originsAt = COUNT_BYTES + n
  const originBytes = originBytesOf(bytes, n)
  if (originBytes < 0) return Either.left(`entry ${-originBytes - 1}: an origin of ${bytes[COUNT_BYTES - originBytes - 1]} characters`)
  const seqsAt = originsAt + originBytes
  const tsAt = seqsAt + SEQ_BYTES * n
  if (tsAt + TS_BYTES * n !== bytes.length) return Either.left(`${n} entries take ${tsAt + TS_BYTES * n} bytes, not ${bytes.length}: truncated or trailing bytes`)
  const columns = SortedVector.gatherColumns(n, [Buffer.from(bytes.subarray(originsAt, seqsAt))])
  const failure = readEntries(bytes, n, columns)
  if (failure !== undefined) return Either.left(failure)
  const vector = SortedVector.fromColumns(SortedVector.withColumns(columns, n), "refuse")
  return vector instanceof SortedVector.SortedVector ? Either.right(vector) : Either.left(`origin ${vector.repeated} named twice`)
}

const mixHash = SortedVector.mixHash

/** The bytes of a page's `n` origins, by its lengths' column; -(k + 1) if origin k's length is not 1…128. */
const originBytesOf = (bytes: Uint8Array, n: number): number => {
  let total = 0
  for (let k = 0; k < n; k++) {
    const length = bytes[COUNT_BYTES + k]!
    if (length === 0 || length > 128) return -(k + 1)
    total += length
  }
  return total
}

/**
 * Reads the `n` entries of a page whose columns' sizes were checked into `columns`: each origin
 * checked and hashed, each seq checked. Why the first that fails does, or undefined. (The loop alone
 * in a function: it is optimised while it runs, and nothing after it is left without feedback.)
 */
const readEntries = (bytes: Uint8Array, n: number, columns: SortedVector.Columns): string | undefined => {
  const { hashes, seqs, tsHigh, tsLow, sources, starts, lengths } = columns
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const originsAt = COUNT_BYTES + n
  let at = originsAt
  for (let k = 0; k < n; k++) {
    const length = bytes[COUNT_BYTES + k]!
    const end = at + length
    let h = 0x811c9dc5 | 0 // an int32 from the start: a double here keeps the loop off the fast path
    for (let i = at; i < end; i++) {
      const b = bytes[i]!
      if (NODE_ID_BYTES[b] === 0) return `entry ${k}: the origin is not a node id`
      h = Math.imul(h ^ b, 0x01000193)
    }
    starts[k] = at - originsAt
    lengths[k] = length
    hashes[k] = mixHash(h)
    sources[k] = 0
    at = end
  }
  const seqsAt = at
  const tsAt = seqsAt + SEQ_BYTES * n
  for (let k = 0; k < n; k++) {
    const seq = view.getFloat64(seqsAt + k * SEQ_BYTES)
    if (!Number.isSafeInteger(seq) || seq < 1) return `entry ${k}: seq is not a positive integer`
    seqs[k] = seq
    tsHigh[k] = view.getUint32(tsAt + k * TS_BYTES)
    tsLow[k] = view.getUint32(tsAt + k * TS_BYTES + 4)
  }
  return undefined
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
