/**
 * The reference model: the plainest possible reading of Weft's semantics, to
 * check the real merge against. Sort every operation ever made by (timestamp,
 * origin) and replay them one after another, as a single-threaded program
 * would: create sets the record alive and writes fields, update writes
 * fields, delete clears the record. Rich-text fields keep every edit.
 *
 * @since 0.1.0
 */
import * as Automerge from "@automerge/automerge"
import * as Operation from "../Operation.js"
import * as RichText from "../RichText.js"
import type { Value } from "../Value.js"

interface RecordModel {
  alive: boolean
  fields: Map<string, Value>
  readonly edits: Map<string, Array<Uint8Array>>
}

/** The visible content after all `ops`, in the shape of `Replica.view`. */
export const view = (
  ops: Iterable<Operation.Operation>
): { readonly [model: string]: { readonly [record: string]: { readonly [field: string]: Value } } } => {
  const unique = new Map<string, Operation.Operation>()
  for (const op of ops) unique.set(Operation.id(op), op)
  const records = new Map<string, Map<string, RecordModel>>()
  for (const op of [...unique.values()].sort(Operation.order)) {
    const models = records.get(op.model) ?? new Map<string, RecordModel>()
    records.set(op.model, models)
    const record = models.get(op.record) ?? { alive: false, fields: new Map(), edits: new Map() }
    models.set(op.record, record)
    switch (op._tag) {
      case "Create":
        record.alive = true
        for (const [k, v] of Object.entries(op.fields)) record.fields.set(k, v)
        break
      case "Update":
        for (const [k, v] of Object.entries(op.fields)) record.fields.set(k, v)
        break
      case "Delete":
        record.alive = false
        record.fields = new Map()
        break
      case "Edit":
        record.edits.set(op.field, [...(record.edits.get(op.field) ?? []), ...op.changes])
        break
    }
  }
  const out: Record<string, Record<string, Record<string, Value>>> = {}
  for (const model of [...records.keys()].sort()) {
    const models = records.get(model)!
    out[model] = {}
    for (const id of [...models.keys()].sort()) {
      const record = models.get(id)!
      if (!record.alive) continue
      const fields: Record<string, Value> = Object.fromEntries(record.fields)
      for (const [field, changes] of record.edits) {
        const [doc] = Automerge.applyChanges(Automerge.init<RichText.Document>(), [RichText.baseChange, ...changes])
        fields[field] = doc.text
      }
      out[model][id] = fields
    }
  }
  return out
}
