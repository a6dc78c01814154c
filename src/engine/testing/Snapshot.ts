/**
 * Snapshots of an engine's stored state, for tests: the log and the
 * projection as plain, sorted data, so two engines can be compared with one
 * equality.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { Kysely } from "kysely"
import * as Operation from "../../crdt/Operation.js"
import { queryError, type StorageError } from "../Database.js"
import type * as Engine from "../Engine.js"
import * as OperationLog from "../OperationLog.js"
import * as Projection from "../Projection.js"
import * as RichText from "../../crdt/RichText.js"

/** Everything an engine stores, as comparable data. */
export interface Snapshot {
  /** Every operation, in (origin, seq) order (origins by name), as its id and encoded bytes (hex). */
  readonly log: ReadonlyArray<readonly [string, string]>
  /** Each model's visible rows, sorted by id (columns as stored, state decoded). */
  readonly projection: { readonly [model: string]: ReadonlyArray<Record<string, unknown>> }
  /** Hidden record states, by `model/id`. */
  readonly tombstones: { readonly [key: string]: unknown }
  /** Rich-text documents' text, by `model/id/field`. */
  readonly documents: { readonly [key: string]: string }
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")

/** Reads a snapshot of the engine's log and projection. */
export const snapshot = (engine: Engine.Service): Effect.Effect<Snapshot, StorageError> =>
  engine.readCommitted(Effect.gen(function*() {
    const db: Kysely<any> = engine.kysely
    const entries: Array<readonly [string, number, string, string]> = []
    yield* OperationLog.scan(db, 10_000, (ops) =>
      Effect.sync(() => {
        for (const op of ops) entries.push([op.origin, op.seq, Operation.id(op), hex(Operation.encode(op))])
      }))
    // the log is stored by origin number, which differs between engines
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]))
    const log = entries.map(([, , id, bytes]) => [id, bytes] as const)
    const { origins } = yield* OperationLog.readOrigins(db)
    const projection: Record<string, Array<Record<string, unknown>>> = {}
    for (const model of [...engine.models.keys()].sort()) {
      const rows = yield* Effect.tryPromise({ try: () => db.selectFrom(model).selectAll().orderBy("id").execute(), catch: queryError })
      projection[model] = rows.map((row) => ({ ...row, weft_state: Projection.decodeState(row.weft_state, row.id, origins, { model: engine.models.get(model)!, row }) }))
    }
    const tombstones: Record<string, unknown> = {}
    const hidden = yield* Effect.tryPromise({ try: () => db.selectFrom("weft_tombstones").selectAll().orderBy("model").orderBy("id").execute(), catch: queryError })
    for (const row of hidden) tombstones[`${row.model}/${row.id}`] = Projection.decodeState(row.state, row.id, origins)
    const documents: Record<string, string> = {}
    for (const row of yield* Projection.readDocuments(db, engine.node)) {
      documents[`${row.model}/${row.id}/${row.field}`] = Either.isRight(row.doc) ? RichText.text(row.doc.right) : "<corrupt>"
    }
    return { log, projection, tombstones, documents }
  }))

/** What an app sees, in the shape of `Replica.view`: visible records' register values and rich texts. */
export const view = (
  engine: Engine.Service
): Effect.Effect<{ readonly [model: string]: { readonly [record: string]: { readonly [field: string]: unknown } } }, StorageError> =>
  engine.readCommitted(Effect.gen(function*() {
    const { origins } = yield* OperationLog.readOrigins(engine.kysely)
    const out: Record<string, Record<string, Record<string, unknown>>> = {}
    for (const [name, model] of [...engine.models].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const rows = yield* Effect.tryPromise({ try: () => engine.kysely.selectFrom(name).selectAll().orderBy("id").execute(), catch: queryError })
      const records: Record<string, Record<string, unknown>> = {}
      for (const row of rows) {
        const state = yield* Projection.decodeState(row.weft_state, row.id, origins, { model, row })
        const fields: Record<string, unknown> = {}
        for (const [field, register] of Object.entries(state.fields)) fields[field] = register.value
        for (const field of model.fields.values()) {
          if (field.column === "rich") fields[field.name] = row[field.name] ?? ""
        }
        records[row.id] = fields
      }
      out[name] = records
    }
    return out
  }))
