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
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import type { Operation } from "./Operation.js"
import { Seq } from "./Operation.js"
import { NodeId, Timestamp } from "./Timestamp.js"

/** The last operation held from one origin. */
export const Entry = Schema.Struct({ seq: Seq, ts: Timestamp })
export type Entry = typeof Entry.Type

/** Most origins a vector read from the network may name. */
export const MAX_ORIGINS = 100_000

/** Per origin, the last operation held. */
export const VersionVector = Schema.Record({ key: NodeId, value: Entry }).pipe(
  Schema.filter((v) => Object.keys(v).length <= MAX_ORIGINS || `more than ${MAX_ORIGINS} origins`),
  Schema.annotations({ identifier: "VersionVector" })
)
export type VersionVector = { readonly [origin: string]: Entry }

/** Holds nothing. */
export const empty: VersionVector = {}

/** Sequence number of the last operation held from `origin` (0 for none). */
export const seqOf = (vector: VersionVector, origin: string): number => vector[origin]?.seq ?? 0

/** The vector after also holding `ops` (each origin's entry moves to its largest seq). */
export const advance = (vector: VersionVector, ops: Iterable<Operation>): VersionVector => {
  let next: Record<string, Entry> | undefined
  for (const op of ops) {
    const current = (next ?? vector)[op.origin]
    if (current === undefined || current.seq < op.seq) {
      next ??= { ...vector }
      next[op.origin] = { seq: op.seq, ts: op.ts }
    }
  }
  return next ?? vector
}

/** Pointwise maximum: what two peers hold together. */
export const merge = (a: VersionVector, b: VersionVector): VersionVector => {
  const out: Record<string, Entry> = { ...a }
  for (const [origin, entry] of Object.entries(b)) {
    if (seqOf(out, origin) < entry.seq) out[origin] = entry
  }
  return out
}

/** Whether `a` holds everything `b` holds. */
export const covers = (a: VersionVector, b: VersionVector): boolean =>
  Object.entries(b).every(([origin, entry]) => seqOf(a, origin) >= entry.seq)
