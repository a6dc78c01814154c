/**
 * A whole replica's state as a pure value: every record of every model,
 * folded from operations in memory. The engine keeps the same state in SQL;
 * this in-memory form is what property tests and simulations compare.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import type { Operation } from "./Operation.js"
import * as RecordState from "./RecordState.js"
import * as RichText from "./RichText.js"
import type { NodeId } from "./Timestamp.js"
import type { Value } from "./Value.js"

/** One record: its registers and its rich-text documents. */
export interface Entry {
  readonly state: RecordState.RecordState
  readonly documents: ReadonlyMap<string, RichText.Doc>
}

/** All records, by model and record id. */
export type Replica = ReadonlyMap<string, ReadonlyMap<string, Entry>>

/** A replica with no records. */
export const empty: Replica = new Map()

const emptyEntry: Entry = { state: RecordState.empty, documents: new Map() }

const applyEntry = (entry: Entry, op: Operation, node: NodeId): Either.Either<Entry, RichText.RichTextError> => {
  if (op._tag !== "Edit") return Either.right({ state: RecordState.apply(entry.state, op), documents: entry.documents })
  // a replica is a value: earlier replicas keep their documents, so the merge changes a copy
  const held = entry.documents.get(op.field)
  const current = held === undefined ? RichText.make(node) : RichText.copy(held)
  return Either.map(RichText.applyChanges(current, op.changes), (doc) => ({
    state: entry.state,
    documents: new Map(entry.documents).set(op.field, doc)
  }))
}

/**
 * Applies operations in the given order; `node` edits the rich-text documents.
 * Fails only on malformed Automerge change bytes.
 */
export const applyAll = (
  replica: Replica,
  ops: Iterable<Operation>,
  node: NodeId
): Either.Either<Replica, RichText.RichTextError> => {
  // copy-on-write: one copy of the outer map and of each touched model per call
  const next = new Map(replica)
  const copied = new Set<string>()
  for (const op of ops) {
    let records = next.get(op.model) as Map<string, Entry> | undefined
    if (records === undefined || !copied.has(op.model)) {
      records = new Map(records)
      next.set(op.model, records)
      copied.add(op.model)
    }
    const entry = applyEntry(records.get(op.record) ?? emptyEntry, op, node)
    if (Either.isLeft(entry)) return Either.left(entry.left)
    records.set(op.record, entry.right)
  }
  return Either.right(next)
}

/** Applies one operation. */
export const apply = (replica: Replica, op: Operation, node: NodeId): Either.Either<Replica, RichText.RichTextError> =>
  applyAll(replica, [op], node)

/** What an app sees of a record: visible field values and rich texts. */
export interface View {
  readonly [field: string]: Value
}

/**
 * The visible content: alive records only, with register values and rich
 * texts, models and records in sorted order. Equal views mean equal projections.
 */
export const view = (replica: Replica): { readonly [model: string]: { readonly [record: string]: View } } => {
  const out: Record<string, Record<string, View>> = {}
  for (const model of [...replica.keys()].sort()) {
    const records: Record<string, View> = {}
    const entries = replica.get(model)!
    for (const record of [...entries.keys()].sort()) {
      const entry = entries.get(record)!
      if (!RecordState.isAlive(entry.state)) continue
      const fields: Record<string, Value> = { ...RecordState.values(entry.state) }
      for (const [field, doc] of entry.documents) fields[field] = RichText.text(doc)
      records[record] = fields
    }
    out[model] = records
  }
  return out
}
