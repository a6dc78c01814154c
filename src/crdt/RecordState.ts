/**
 * The merged state of one record: last-writer-wins registers per field, and
 * timestamped create and delete markers.
 *
 * Semantics (every rule compares stamps — timestamp, then origin — so the
 * result is independent of the order in which operations arrive):
 *
 * - A record is alive when its newest `Create` is newer than its newest
 *   `Delete`. Before any `Create` arrives it is not alive.
 * - A `Delete` at `d` clears every field written at or before `d`. A field
 *   write at or before the newest delete has no effect.
 * - Update concurrent with delete: the update never brings the record back.
 *   If it is newer than the delete its value is kept, hidden while the record
 *   is deleted, and shows if the record is re-created.
 * - Re-create after delete: a `Create` newer than the delete makes the record
 *   alive again with the fields of that create and of any writes newer than
 *   the delete; nothing written before the delete comes back.
 * - Rich-text fields (Automerge) are not registers: they keep every edit, so
 *   a re-created record shows its document with all edits merged.
 *
 * `apply` is commutative, associative and idempotent: the state is a function
 * of the set of operations applied (newest create, newest delete, and per
 * field the newest write newer than that delete).
 *
 * @since 0.1.0
 */
import type { Create, Delete, Fields, Update } from "./Operation.js"
import * as Timestamp from "./Timestamp.js"
import type { Value } from "./Value.js"

/** A last-writer-wins register. */
export interface Register {
  readonly stamp: Timestamp.Stamp
  readonly value: Value
}

/** The merged state of one record. */
export interface RecordState {
  /** Stamp of the newest `Create`, if any. */
  readonly created: Timestamp.Stamp | null
  /** Stamp of the newest `Delete` (the tombstone), if any. */
  readonly deleted: Timestamp.Stamp | null
  /** Registers newer than `deleted`. */
  readonly fields: { readonly [field: string]: Register }
}

/** A record nothing has been applied to. */
export const empty: RecordState = { created: null, deleted: null, fields: {} }

// Field names are data: a lookup sees own registers only (never an inherited `constructor`),
// and a write defines a property (never runs a setter such as `__proto__`'s).
const registerOf = (fields: RecordState["fields"], field: string): Register | undefined =>
  Object.hasOwn(fields, field) ? fields[field] : undefined

const put = <A>(target: Record<string, A>, key: string, value: A): void => {
  if (key === "__proto__") Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
  else target[key] = value
}

/** Whether the record is visible: created, and not deleted since. */
export const isAlive = (state: RecordState): boolean =>
  state.created !== null && (state.deleted === null || state.created > state.deleted)

/** The visible field values (also when not alive, for inspection). */
export const values = (state: RecordState): { readonly [field: string]: Value } => {
  const out: Record<string, Value> = {}
  for (const [field, register] of Object.entries(state.fields)) put(out, field, register.value)
  return out
}

const write = (state: RecordState, stamp: Timestamp.Stamp, fields: Fields): RecordState => {
  if (state.deleted !== null && stamp <= state.deleted) return state
  let next: Record<string, Register> | undefined
  for (const field of Object.keys(fields)) {
    const current = registerOf(state.fields, field)
    // equal stamps mean the same operation applied twice: idempotent
    if (current === undefined || current.stamp < stamp) {
      next ??= { ...state.fields }
      put(next, field, { stamp, value: fields[field]! })
    }
  }
  return next === undefined ? state : { ...state, fields: next }
}

/** Applies a `Create`, `Update` or `Delete` operation. */
export const apply = (state: RecordState, op: Create | Update | Delete): RecordState => {
  const stamp = Timestamp.stamp(op.ts, op.origin)
  switch (op._tag) {
    case "Create": {
      const created = state.created === null || state.created < stamp ? stamp : state.created
      return write(created === state.created ? state : { ...state, created }, stamp, op.fields)
    }
    case "Update":
      return write(state, stamp, op.fields)
    case "Delete": {
      if (state.deleted !== null && state.deleted >= stamp) return state
      const fields: Record<string, Register> = {}
      for (const [field, register] of Object.entries(state.fields)) {
        if (register.stamp > stamp) put(fields, field, register)
      }
      return { ...state, deleted: stamp, fields }
    }
  }
}
