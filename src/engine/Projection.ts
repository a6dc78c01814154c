/**
 * The projection: one SQL table per model holding exactly the visible
 * records, kept equal to the fold of the operation log.
 *
 * Each model table has `id`, one column per field, and `weft_state`: the
 * record's merged registers (MessagePack, stamps and values), from which
 * the columns are derived. Records that are not visible keep their state in
 * `weft_tombstones`; rich-text documents live in `weft_documents` and their
 * text in the field's column.
 *
 * `apply` folds a batch of operations: it loads the touched records once,
 * merges with the pure `RecordState` rules, and writes each changed record
 * once, with multi-row statements. Callers run it inside the transaction
 * that appends the same operations to the log.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { Kysely } from "kysely"
import * as Binary from "../crdt/Binary.js"
import type * as Operation from "../crdt/Operation.js"
import * as RecordState from "../crdt/RecordState.js"
import * as RichText from "../crdt/RichText.js"
import type { NodeId, Stamp } from "../crdt/Timestamp.js"
import { Value } from "../crdt/Value.js"
import { type Capabilities, queryError, StorageError } from "./Database.js"
import { ValidationError } from "./EngineError.js"
import type * as Model from "./Model.js"

/** A record that a commit changed. */
export interface RecordChange {
  readonly model: string
  readonly record: string
  /** Whether the record is visible after the commit. */
  readonly alive: boolean
}

// ---------------------------------------------------------------------------
// State encoding: [created, deleted, [[field, stamp, value], …]] with fields sorted,
// so equal states are equal bytes

const StateTuple = Schema.Tuple(
  Schema.NullOr(Schema.String),
  Schema.NullOr(Schema.String),
  Schema.Array(Schema.Tuple(Schema.String, Schema.String, Value))
)
const decodeStateTuple = Schema.decodeUnknownEither(StateTuple)

/** Encodes a record's state. */
export const encodeState = (state: RecordState.RecordState): Uint8Array =>
  Binary.encode([
    state.created,
    state.deleted,
    Object.keys(state.fields).sort().map((field) => [field, state.fields[field]!.stamp, state.fields[field]!.value])
  ])

/** Decodes a stored record state, validating it. */
export const decodeState = (bytes: Uint8Array, where: string): Either.Either<RecordState.RecordState, StorageError> =>
  Binary.decode(bytes).pipe(
    Either.flatMap((u) => decodeStateTuple(u)),
    Either.mapBoth({
      onLeft: (e) =>
        new StorageError({
          reason: "Corrupt",
          detail: `record state of ${where}: ${ParseResult.isParseError(e) ? ParseResult.TreeFormatter.formatErrorSync(e) : e.message}`
        }),
      onRight: ([created, deleted, fields]) => {
        const registers: Record<string, RecordState.Register> = {}
        for (const [field, stamp, value] of fields) registers[field] = { stamp: stamp as Stamp, value }
        return { created: created as Stamp | null, deleted: deleted as Stamp | null, fields: registers }
      }
    })
  )

// ---------------------------------------------------------------------------
// Tables

const columnType = (kind: Model.ColumnKind, capabilities: Capabilities): string =>
  kind === "real" ? capabilities.realType
    : kind === "integer" || kind === "boolean" ? "integer"
    : kind === "blob" ? capabilities.blobType
    : "text"

/** Creates each model's table, and adds columns for fields declared since. */
export const ensureTables = (
  db: Kysely<any>,
  capabilities: Capabilities,
  models: Iterable<Model.Any>
): Effect.Effect<void, StorageError> =>
  Effect.tryPromise({
    try: async () => {
      const existing = new Map((await db.introspection.getTables()).map((t) => [t.name, new Set(t.columns.map((c) => c.name))]))
      for (const model of models) {
        const columns = existing.get(model.name)
        if (columns === undefined) {
          let create = db.schema.createTable(model.name)
            .addColumn("id", "text", (c) => c.primaryKey())
            .addColumn("weft_state", capabilities.blobType as "blob", (c) => c.notNull())
          for (const field of model.fields.values()) {
            create = create.addColumn(field.name, columnType(field.column, capabilities) as "text")
          }
          await create.execute()
        } else {
          for (const field of model.fields.values()) {
            if (!columns.has(field.name)) {
              await db.schema.alterTable(model.name).addColumn(field.name, columnType(field.column, capabilities) as "text").execute()
            }
          }
        }
      }
    },
    catch: (cause) => new StorageError({ reason: "Migration", detail: `projection tables: ${cause instanceof Error ? cause.message : String(cause)}`, cause })
  })

// ---------------------------------------------------------------------------
// Folding a batch

interface Slot {
  readonly id: string
  state: RecordState.RecordState
  readonly location: "live" | "tombstone" | "none"
  readonly before: RecordState.RecordState
  /** Rich texts known for the record (from its live row or its documents). */
  readonly texts: Map<string, string>
  /** Rich documents changed by this batch. */
  readonly docs: Map<string, RichText.Doc>
}

const IN_CHUNK = 500

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<Array<A>> => {
  const out: Array<Array<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

const columnValue = (field: Model.Field, value: unknown): unknown =>
  value === null || value === undefined ? null
    : field.column === "boolean" ? (value ? 1 : 0)
    : field.column === "json" ? JSON.stringify(value)
    : value

const loadSlots = async (
  trx: Kysely<any>,
  model: Model.Any,
  ids: ReadonlyArray<string>,
  richFields: ReadonlyArray<string>
): Promise<Map<string, Slot | StorageError>> => {
  const slots = new Map<string, Slot | StorageError>()
  const slot = (id: string, bytes: Uint8Array, location: Slot["location"], texts: Map<string, string>) => {
    const state = decodeState(bytes, `${model.name}/${id}`)
    slots.set(id, Either.isLeft(state) ? state.left : { id, state: state.right, before: state.right, location, texts, docs: new Map() })
  }
  for (const part of chunks(ids, IN_CHUNK)) {
    const rows = await trx.selectFrom(model.name).select(["id", "weft_state", ...richFields]).where("id", "in", part).execute()
    for (const row of rows) {
      slot(row.id, row.weft_state, "live", new Map(richFields.map((f) => [f, (row[f] as string | null) ?? ""])))
    }
  }
  const missing = ids.filter((id) => !slots.has(id))
  for (const part of chunks(missing, IN_CHUNK)) {
    const rows = await trx.selectFrom("weft_tombstones").select(["id", "state"]).where("model", "=", model.name).where("id", "in", part).execute()
    for (const row of rows) slot(row.id, row.state, "tombstone", new Map())
  }
  for (const id of ids) {
    if (!slots.has(id)) slots.set(id, { id, state: RecordState.empty, before: RecordState.empty, location: "none", texts: new Map(), docs: new Map() })
  }
  return slots
}

const loadDocuments = async (
  trx: Kysely<any>,
  model: string,
  ids: ReadonlyArray<string>
): Promise<Array<{ id: string; field: string; doc: Uint8Array }>> => {
  const out: Array<{ id: string; field: string; doc: Uint8Array }> = []
  for (const part of chunks(ids, IN_CHUNK)) {
    out.push(...await trx.selectFrom("weft_documents").select(["id", "field", "doc"]).where("model", "=", model).where("id", "in", part).execute())
  }
  return out
}

/** Loads the state of one record (for checks before a local change). */
export const loadRecord = (
  trx: Kysely<any>,
  model: Model.Any,
  id: string
): Effect.Effect<RecordState.RecordState, StorageError> =>
  Effect.tryPromise({ try: () => loadSlots(trx, model, [id], []), catch: queryError }).pipe(
    Effect.flatMap((slots) => {
      const slot = slots.get(id)!
      return slot instanceof StorageError ? Effect.fail(slot) : Effect.succeed(slot.state)
    })
  )

/** Loads a rich-text document (the base document if it was never edited). */
export const loadDocument = (
  trx: Kysely<any>,
  model: string,
  id: string,
  field: string,
  node: NodeId
): Effect.Effect<RichText.Doc, StorageError> =>
  Effect.tryPromise({
    try: () => trx.selectFrom("weft_documents").select("doc").where("model", "=", model).where("id", "=", id).where("field", "=", field).executeTakeFirst(),
    catch: queryError
  }).pipe(
    Effect.flatMap((row) =>
      row === undefined
        ? Effect.succeed(RichText.make(node))
        : Either.match(RichText.load(row.doc, node), {
          onLeft: (e) => Effect.fail(new StorageError({ reason: "Corrupt", detail: `document ${model}/${id}/${field}: ${e.detail}` })),
          onRight: Effect.succeed
        })
    )
  )

/** Folds operations into the projection; returns the records whose visible state changed. */
export const apply = (
  trx: Kysely<any>,
  capabilities: Capabilities,
  models: ReadonlyMap<string, Model.Any>,
  node: NodeId,
  ops: ReadonlyArray<Operation.Operation>
): Effect.Effect<ReadonlyArray<RecordChange>, StorageError | ValidationError> =>
  Effect.tryPromise({
    try: () => applyBatch(trx, capabilities, models, node, ops),
    catch: queryError
  }).pipe(Effect.flatMap((result) => (Either.isLeft(result) ? Effect.fail(result.left) : Effect.succeed(result.right))))

const applyBatch = async (
  trx: Kysely<any>,
  capabilities: Capabilities,
  models: ReadonlyMap<string, Model.Any>,
  node: NodeId,
  ops: ReadonlyArray<Operation.Operation>
): Promise<Either.Either<ReadonlyArray<RecordChange>, StorageError | ValidationError>> => {
  const byModel = new Map<string, Array<Operation.Operation>>()
  for (const op of ops) {
    const list = byModel.get(op.model)
    if (list === undefined) byModel.set(op.model, [op])
    else list.push(op)
  }
  const changes: Array<RecordChange> = []
  for (const [name, modelOps] of byModel) {
    const model = models.get(name)!
    const richFields = [...model.fields.values()].filter((f) => f.column === "rich").map((f) => f.name)
    const ids = [...new Set(modelOps.map((op) => op.record))]
    const loaded = await loadSlots(trx, model, ids, richFields)
    const slots = new Map<string, Slot>()
    for (const [id, slot] of loaded) {
      if (slot instanceof StorageError) return Either.left(slot)
      slots.set(id, slot)
    }

    // registers, and the Automerge changes per document
    const edits = new Map<string, Map<string, Array<Uint8Array>>>()
    for (const op of modelOps) {
      const slot = slots.get(op.record)!
      if (op._tag === "Edit") {
        const perRecord = edits.get(op.record) ?? new Map<string, Array<Uint8Array>>()
        edits.set(op.record, perRecord)
        perRecord.set(op.field, [...(perRecord.get(op.field) ?? []), ...op.changes])
      } else {
        slot.state = RecordState.apply(slot.state, op)
      }
    }

    // rich text: documents edited now, and texts of records that become visible now
    if (richFields.length > 0) {
      const needDocs = ids.filter((id) => edits.has(id) || (slots.get(id)!.location !== "live" && RecordState.isAlive(slots.get(id)!.state)))
      const stored = await loadDocuments(trx, name, needDocs)
      const docs = new Map<string, RichText.Doc>()
      for (const row of stored) {
        const doc = RichText.load(row.doc, node)
        if (Either.isLeft(doc)) return Either.left(new StorageError({ reason: "Corrupt", detail: `document ${name}/${row.id}/${row.field}: ${doc.left.detail}` }))
        docs.set(`${row.id}\u0000${row.field}`, doc.right)
        slots.get(row.id)!.texts.set(row.field, RichText.text(doc.right))
      }
      for (const [id, perRecord] of edits) {
        const slot = slots.get(id)!
        for (const [field, changesOfField] of perRecord) {
          const current = docs.get(`${id}\u0000${field}`) ?? RichText.make(node)
          const next = RichText.applyChanges(current, changesOfField)
          if (Either.isLeft(next)) {
            return Either.left(new ValidationError({ reason: "MalformedChange", model: name, record: id, field, detail: next.left.detail }))
          }
          slot.docs.set(field, next.right)
          slot.texts.set(field, RichText.text(next.right))
        }
      }
    }

    // writes
    const live: Array<Record<string, unknown>> = []
    const dead: Array<{ model: string; id: string; state: Uint8Array }> = []
    const leaveLive: Array<string> = []
    const leaveTombstones: Array<string> = []
    const documents: Array<{ model: string; id: string; field: string; doc: Uint8Array }> = []
    for (const slot of slots.values()) {
      for (const [field, doc] of slot.docs) documents.push({ model: name, id: slot.id, field, doc: RichText.save(doc) })
      const alive = RecordState.isAlive(slot.state)
      if (slot.state === slot.before && slot.docs.size === 0) continue
      if (alive) {
        const row: Record<string, unknown> = { id: slot.id, weft_state: encodeState(slot.state) }
        for (const field of model.fields.values()) {
          row[field.name] = field.column === "rich" ? (slot.texts.get(field.name) ?? "") : columnValue(field, slot.state.fields[field.name]?.value)
        }
        live.push(row)
        if (slot.location === "tombstone") leaveTombstones.push(slot.id)
      } else {
        dead.push({ model: name, id: slot.id, state: encodeState(slot.state) })
        if (slot.location === "live") leaveLive.push(slot.id)
      }
      if (alive || slot.location === "live") changes.push({ model: name, record: slot.id, alive })
    }
    const columns = ["weft_state", ...model.fields.keys()]
    const perRow = Math.max(1, Math.min(500, Math.floor(capabilities.maxParameters / (columns.length + 1))))
    for (const part of chunks(live, perRow)) {
      await trx.insertInto(name).values(part)
        .onConflict((oc) => oc.column("id").doUpdateSet((eb) => Object.fromEntries(columns.map((c) => [c, eb.ref(`excluded.${c}`)]))))
        .execute()
    }
    for (const part of chunks(leaveLive, IN_CHUNK)) await trx.deleteFrom(name).where("id", "in", part).execute()
    for (const part of chunks(dead, 500)) {
      await trx.insertInto("weft_tombstones").values(part)
        .onConflict((oc) => oc.columns(["model", "id"]).doUpdateSet((eb) => ({ state: eb.ref("excluded.state") })))
        .execute()
    }
    for (const part of chunks(leaveTombstones, IN_CHUNK)) {
      await trx.deleteFrom("weft_tombstones").where("model", "=", name).where("id", "in", part).execute()
    }
    for (const part of chunks(documents, 500)) {
      await trx.insertInto("weft_documents").values(part)
        .onConflict((oc) => oc.columns(["model", "id", "field"]).doUpdateSet((eb) => ({ doc: eb.ref("excluded.doc") })))
        .execute()
    }
  }
  return Either.right(changes)
}

/** Empties the projection (model tables, tombstones, documents), for a rebuild. */
export const clear = (trx: Kysely<any>, models: Iterable<Model.Any>): Effect.Effect<void, StorageError> =>
  Effect.tryPromise({
    try: async () => {
      for (const model of models) await trx.deleteFrom(model.name).execute()
      await trx.deleteFrom("weft_tombstones").execute()
      await trx.deleteFrom("weft_documents").execute()
    },
    catch: queryError
  })
