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
import { NODE_ID_PATTERN, type NodeId, type Timestamp, TIMESTAMP_PATTERN } from "./Timestamp.js"

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

/** The flat wire form of entries: `[origin, seq, ts, …]`. */
export const toWire = (entries: Iterable<readonly [string, Entry]>): Array<string | number> => {
  const out: Array<string | number> = []
  for (const [origin, entry] of entries) out.push(origin, entry.seq, entry.ts)
  return out
}

/**
 * Reads the flat wire form, checking every origin, seq and timestamp; an
 * origin named twice is refused (the sender's vector is a map). At most
 * `maxEntries` entries.
 */
export const fromWire = (u: unknown, maxEntries: number): Either.Either<Map<string, Entry>, string> => {
  if (!Array.isArray(u)) return Either.left("a vector is an array [origin, seq, ts, …]")
  if (u.length % 3 !== 0) return Either.left(`a vector's array holds triples; ${u.length} elements`)
  if (u.length / 3 > maxEntries) return Either.left(`${u.length / 3} entries; at most ${maxEntries}`)
  const out = new Map<string, Entry>()
  for (let i = 0; i < u.length; i += 3) {
    const origin: unknown = u[i]
    const seq: unknown = u[i + 1]
    const ts: unknown = u[i + 2]
    if (typeof origin !== "string" || !NODE_ID_PATTERN.test(origin)) return Either.left(`entry ${i / 3}: the origin is not a node id`)
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1) return Either.left(`entry ${i / 3} (${origin}): seq is not a positive integer`)
    if (typeof ts !== "string" || !TIMESTAMP_PATTERN.test(ts)) return Either.left(`entry ${i / 3} (${origin}): ts is not a timestamp`)
    if (out.has(origin)) return Either.left(`entry ${i / 3}: origin ${origin} named twice`)
    out.set(origin as NodeId, { seq, ts: ts as Timestamp })
  }
  return Either.right(out)
}

/** Most entries one page of a vector on the wire holds (about 1.4 MB at 128-character origins). */
export const PAGE_ENTRIES = 8192

/** A page of vector entries in wire form, decoded to a map (at most `PAGE_ENTRIES`). */
export const Page: Schema.Schema<ReadonlyMap<string, Entry>, ReadonlyArray<string | number>> = Schema.transformOrFail(
  Schema.declare((u): u is ReadonlyArray<string | number> => Array.isArray(u), { identifier: "VectorEntries" }),
  Schema.declare((u): u is ReadonlyMap<string, Entry> => u instanceof Map, { identifier: "VersionVector" }),
  {
    strict: true,
    decode: (wire, _, ast) =>
      Either.mapLeft(fromWire(wire, PAGE_ENTRIES), (detail) => new ParseResult.Type(ast, wire, detail)),
    encode: (vector) => ParseResult.succeed(toWire(vector))
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
