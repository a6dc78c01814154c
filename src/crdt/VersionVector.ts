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
 * A vector is a `Map`: origins are data from the network, and an origin named
 * `__proto__` or `constructor` must be an origin like any other, never an
 * inherited property. On the wire a vector is a flat array
 * `[origin, seq, ts, origin, seq, ts, …]`, checked by hand (a vector may hold
 * hundreds of thousands of origins; a Schema per entry costs 10× more).
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { Operation } from "./Operation.js"
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
export const seqOf = (vector: VersionVector, origin: string): number => vector.get(origin)?.seq ?? 0

/** Moves each origin's entry in `vector` to its largest seq among `ops`, in place. */
export const advanceInPlace = (vector: Map<string, Entry>, ops: Iterable<Operation>): void => {
  for (const op of ops) {
    const current = vector.get(op.origin)
    if (current === undefined || current.seq < op.seq) vector.set(op.origin, { seq: op.seq, ts: op.ts })
  }
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
  for (const [origin, entry] of b) {
    if (seqOf(a, origin) < entry.seq) return false
  }
  return true
}

/** Whether two vectors hold the same. */
export const equals = (a: VersionVector, b: VersionVector): boolean => a.size === b.size && covers(a, b)

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
// latin1 string and slices origins and timestamps out of it.
const SEQ_BYTES = 8
const TS_CHARS = 16

const HEX_BYTES = (() => {
  const table = new Uint8Array(256)
  for (const c of "0123456789abcdef") table[c.charCodeAt(0)] = 1
  return table
})()

/** Encodes entries as one page. */
export const encodePage = (entries: Iterable<readonly [string, Entry]>): Uint8Array => {
  const list = Array.isArray(entries) ? (entries as ReadonlyArray<readonly [string, Entry]>) : [...entries]
  let size = 0
  for (const [origin] of list) size += 1 + origin.length + SEQ_BYTES + TS_CHARS
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  let at = 0
  for (const [origin, entry] of list) {
    out[at++] = origin.length
    for (let i = 0; i < origin.length; i++) out[at++] = origin.charCodeAt(i)
    view.setFloat64(at, entry.seq)
    at += SEQ_BYTES
    const ts = entry.ts
    for (let i = 0; i < TS_CHARS; i++) out[at++] = ts.charCodeAt(i)
  }
  return out
}

/** Decodes one page: every origin a node id, named once, every seq positive; at most `maxEntries`. */
export const decodePage = (bytes: Uint8Array, maxEntries: number): Either.Either<Map<string, Entry>, string> => {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1")
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out = new Map<string, Entry>()
  let at = 0
  while (at < bytes.length) {
    if (out.size >= maxEntries) return Either.left(`more than ${maxEntries} entries in one page`)
    const length = bytes[at]!
    const end = at + 1 + length
    if (length === 0 || length > 128 || end + SEQ_BYTES + TS_CHARS > bytes.length) return Either.left(`entry ${out.size}: truncated or too long`)
    for (let i = at + 1; i < end; i++) {
      if (NODE_ID_BYTES[bytes[i]!] === 0) return Either.left(`entry ${out.size}: the origin is not a node id`)
    }
    const seq = view.getFloat64(end)
    if (!Number.isSafeInteger(seq) || seq < 1) return Either.left(`entry ${out.size}: seq is not a positive integer`)
    const tsAt = end + SEQ_BYTES
    for (let i = tsAt; i < tsAt + TS_CHARS; i++) {
      if (HEX_BYTES[bytes[i]!] === 0) return Either.left(`entry ${out.size}: ts is not a timestamp`)
    }
    const origin = text.slice(at + 1, end)
    if (out.has(origin)) return Either.left(`entry ${out.size}: origin ${origin} named twice`)
    out.set(origin, { seq, ts: text.slice(tsAt, tsAt + TS_CHARS) as Timestamp })
    at = tsAt + TS_CHARS
  }
  return Either.right(out)
}

/** A page of vector entries on the wire (see `encodePage`), decoded to a map. */
export const Page: Schema.Schema<ReadonlyMap<string, Entry>, Uint8Array> = Schema.transformOrFail(
  Schema.Uint8ArrayFromSelf,
  Schema.declare((u): u is ReadonlyMap<string, Entry> => u instanceof Map, { identifier: "VersionVector" }),
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
