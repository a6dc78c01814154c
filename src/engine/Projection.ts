/**
 * The projection: one SQL table per model holding exactly the visible
 * records, kept equal to the fold of the operation log.
 *
 * Each model table has `id`, one column per field, and `weft_state`: the
 * record's merged registers (MessagePack, stamps and values), from which
 * the columns are derived. Records that are not visible keep their state in
 * `weft_tombstones`; rich-text documents live in `weft_documents` and
 * `weft_document_changes` (see `internal/documents`) and their text in the
 * field's column.
 *
 * `apply` folds a batch of operations: it loads the touched records once,
 * merges with the pure `RecordState` rules, and writes each changed record
 * once, with multi-row statements. Callers run it inside the transaction
 * that appends the same operations to the log. The engine's writer, which
 * has just folded its own local operations to make them, passes that fold
 * (`Folded`) instead of having it done twice.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { sql, type Kysely } from "kysely"
import * as Binary from "../crdt/Binary.js"
import type * as Operation from "../crdt/Operation.js"
import * as RecordState from "../crdt/RecordState.js"
import * as RichText from "../crdt/RichText.js"
import { isValue, Value } from "../crdt/Value.js"
import { type Capabilities, queryError, StorageError } from "./Database.js"
import type { Bulk, SyncBulk } from "./internal/bulk.js"
import * as Documents from "./internal/documents.js"
import type { NodeId, Stamp } from "../crdt/Timestamp.js"
import { ValidationError } from "./EngineError.js"
import type * as Model from "./Model.js"
import * as OperationLog from "./OperationLog.js"
import * as ParseError from "../internal/parseError.js"

/** A record that a commit changed. */
export interface RecordChange {
  readonly model: string
  readonly record: string
  /** Whether the record is visible after the commit. */
  readonly alive: boolean
}

// ---------------------------------------------------------------------------
// State encoding, flat to keep it small and cheap to build:
//   [stamps, created, deleted, field, stamp, value, field, stamp, value, …]
// `stamps` lists each distinct stamp once (a create writes all its fields with one
// stamp); created, deleted and each field's stamp are indexes into it (-1: none).
// Fields are sorted, so equal states are equal bytes.
// Since migration 0003 `stamps` is flat pairs (timestamp's 8 bytes, origin number of
// `weft_origins`): 11 bytes a stamp instead of its text (16 + the origin's length).
// States written before keep their stamps as text until their record is written again.
// Since 0004 a field is its number in `weft_names` (`OperationLog.Words`), a name not numbered
// stays text; states written before keep their names until their record is written again.

const StampIndex = Schema.Int.pipe(Schema.greaterThanOrEqualTo(-1))
const StateFromTuple = Schema.transformOrFail(
  Schema.Array(Schema.Unknown).pipe(Schema.minItems(3)),
  Schema.Struct({
    created: Schema.NullOr(Schema.String),
    deleted: Schema.NullOr(Schema.String),
    fields: Schema.Record({ key: Schema.String, value: Schema.Struct({ stamp: Schema.String, value: Value }) })
  }),
  {
    strict: false,
    decode: (tuple, _, ast) => {
      const [stamps, created, deleted] = tuple
      const stampAt = (i: unknown): string | null | undefined =>
        Schema.is(StampIndex)(i) && Array.isArray(stamps) && i < stamps.length && (i === -1 || typeof stamps[i] === "string")
          ? (i === -1 ? null : stamps[i] as string)
          : undefined
      const c = stampAt(created)
      const d = stampAt(deleted)
      if (c === undefined || d === undefined || (tuple.length - 3) % 3 !== 0) {
        return ParseResult.fail(new ParseResult.Type(ast, tuple, "malformed record state"))
      }
      const fields: Record<string, { stamp: string; value: unknown }> = {}
      for (let i = 3; i < tuple.length; i += 3) {
        const stamp = stampAt(tuple[i + 1])
        if (typeof tuple[i] !== "string" || stamp == null) return ParseResult.fail(new ParseResult.Type(ast, tuple, "malformed field register"))
        fields[tuple[i] as string] = { stamp, value: tuple[i + 2] }
      }
      return ParseResult.succeed({ created: c, deleted: d, fields })
    },
    // encoding goes through `encodeState`, which needs no validation of our own state
    encode: (state, _, ast) => ParseResult.fail(new ParseResult.Forbidden(ast, state, "use encodeState"))
  }
)
const decodeStateTuple = Schema.decodeUnknownEither(StateFromTuple)

/**
 * The live row a state is stored in, whose columns hold its register values: a value its column
 * gives back exactly is not stored in the state a second time.
 */
export interface Columns {
  readonly model: Model.Any
  readonly row: Readonly<Record<string, unknown>>
}

/** Whether `field`'s column gives `value` back exactly (text, numbers, booleans, null; not -0, JSON or bytes). */
const inColumn = (field: Model.Field | undefined, value: unknown): boolean => {
  if (value === null) return field !== undefined && (field.column === "text" || field.column === "real" || field.column === "integer" || field.column === "boolean")
  switch (field?.column) {
    case "text":
      return typeof value === "string"
    case "real":
      return typeof value === "number" && !Object.is(value, -0)
    case "integer":
      return typeof value === "number" && Number.isSafeInteger(value) && !Object.is(value, -0)
    case "boolean":
      return typeof value === "boolean"
    default:
      return false
  }
}

/** The register value a column holds (see `inColumn`), or an `Error` for a column that cannot hold it. */
const fromColumn = (field: Model.Field | undefined, raw: unknown): unknown => {
  if (raw === null) return null
  switch (field?.column) {
    case "text":
      if (typeof raw === "string") return raw
      break
    case "real":
    case "integer":
      if (typeof raw === "number") return raw
      break
    case "boolean":
      if (raw === 0 || raw === 1) return raw === 1
      break
  }
  return new Error(`column ${field?.name ?? "?"} does not hold a register value`)
}

/**
 * The keys of `o` in code-unit order, as `Object.keys(o).sort()` gives them, by insertion sort in
 * place up to 16 keys: a record has a handful of fields, and `Array.prototype.sort` allocated its work arrays for
 * every state encoded (~0.9 KB per record written).
 */
const sortedKeys = (o: object): Array<string> => {
  const keys = Object.keys(o)
  if (keys.length > 16) return keys.sort()
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i]!
    let j = i - 1
    while (j >= 0 && keys[j]! > key) {
      keys[j + 1] = keys[j]!
      j--
    }
    keys[j + 1] = key
  }
  return keys
}

/**
 * Encodes a record's state, its stamps' origins by their numbers in `origins`. Given the model of
 * the live row it is stored in, values the row's columns hold are left out (the field is then
 * `-number`, followed by its stamp only).
 */
export const encodeState = (state: RecordState.RecordState, origins: OperationLog.Origins, columnsOf?: Model.Any): Uint8Array => {
  const seen: Array<string> = []
  const stamps: Array<unknown> = []
  const index = (stamp: string | null) => {
    if (stamp === null) return -1
    const i = seen.indexOf(stamp)
    if (i !== -1) return i
    // a stamp is the timestamp's 16 hex digits followed by the origin
    stamps.push(OperationLog.packTimestamp(stamp.slice(0, 16)), OperationLog.originNumber(origins, stamp.slice(16)))
    return seen.push(stamp) - 1
  }
  const out: Array<unknown> = [stamps, index(state.created), index(state.deleted)]
  for (const field of sortedKeys(state.fields)) {
    const register = state.fields[field]!
    const n = origins.words.numbers.get(field)
    if (n !== undefined && columnsOf !== undefined && inColumn(columnsOf.fields.get(field), register.value)) {
      out.push(-n, index(register.stamp))
    } else {
      out.push(n ?? field, index(register.stamp), register.value)
    }
  }
  return Binary.encode(out)
}

/** The stamps of a stored state as text (pairs of timestamp bytes and origin number, or text already). */
const stampsAsText = (stamps: ReadonlyArray<unknown>, names: ReadonlyMap<number, string>): Array<unknown> | string => {
  if (stamps.every((stamp) => typeof stamp === "string")) return stamps as Array<string>
  if (stamps.length % 2 !== 0) return "stamps are not (timestamp, origin) pairs"
  const out: Array<string> = []
  for (let i = 0; i < stamps.length; i += 2) {
    const bytes = stamps[i]
    const ts = bytes instanceof Uint8Array ? OperationLog.unpackTimestamp(bytes) : undefined
    const origin = typeof stamps[i + 1] === "number" ? names.get(stamps[i + 1] as number) : undefined
    if (ts === undefined || origin === undefined) return `stamp ${i / 2} is not a timestamp and a known origin number`
    out.push(ts + origin)
  }
  return out
}

/**
 * Decodes a stored record state, validating it; `origins` name the numbers of its stamps and
 * fields, and `columns` (for a live row) give the values left to its columns.
 */
export const decodeState = (
  bytes: Uint8Array,
  where: string,
  origins: Pick<OperationLog.Origins, "names" | "words">,
  columns?: Columns
): Either.Either<RecordState.RecordState, StorageError> => {
  const decoded = Binary.decode(bytes)
  const state = Either.isRight(decoded) ? directState(decoded.right, origins, columns) : undefined
  return state === undefined ? checkedState(decoded, where, origins, columns) : Either.right(state)
}

/** A stamp of `stamps` by its index (-1: none); `undefined` for an index that names none. */
const stampAt = (stamps: ReadonlyArray<unknown>, i: unknown): Stamp | null | undefined =>
  i === -1 ? null : Number.isSafeInteger(i) && (i as number) >= 0 && (i as number) < stamps.length && typeof stamps[i as number] === "string" ? stamps[i as number] as Stamp : undefined

/**
 * The state of a decoded stored state by direct checks (the rules of `StateFromTuple` and `Value`),
 * without the intermediate tuple and the Schema's parse of it (~5 KB allocated per record loaded);
 * `undefined` for anything those checks refuse, which `checkedState` then explains.
 */
const directState = (
  u: unknown,
  origins: Pick<OperationLog.Origins, "names" | "words">,
  columns: Columns | undefined
): RecordState.RecordState | undefined => {
  if (!Array.isArray(u) || u.length < 3 || !Array.isArray(u[0])) return undefined
  const stamps = stampsAsText(u[0], origins.names)
  if (typeof stamps === "string") return undefined
  const created = stampAt(stamps, u[1])
  const deleted = stampAt(stamps, u[2])
  if (created === undefined || deleted === undefined) return undefined
  const fields: Record<string, RecordState.Register> = {}
  for (let i = 3; i < u.length;) {
    const field = u[i]
    let name: string | undefined
    let value: unknown
    if (typeof field === "string") {
      name = field
      value = u[i + 2]
    } else if (typeof field === "number") {
      name = origins.words.names.get(Math.abs(field))
      if (field < 0) {
        if (columns === undefined || name === undefined) return undefined
        value = fromColumn(columns.model.fields.get(name), columns.row[name])
      } else {
        value = u[i + 2]
      }
    } else {
      return undefined
    }
    const width = typeof field === "number" && field < 0 ? 2 : 3
    if (i + width > u.length || name === undefined || name === "__proto__" || value instanceof Error || !isValue(value)) return undefined
    const stamp = stampAt(stamps, u[i + 1])
    if (stamp == null) return undefined
    fields[name] = { stamp, value }
    i += width
  }
  return { created, deleted, fields }
}

/**
 * `decodeState` through the Schema only: the state, or why the bytes are not one (a test keeps
 * `decodeState`'s direct checks in agreement with it).
 *
 * @internal
 */
export const decodeStateChecked = (
  bytes: Uint8Array,
  where: string,
  origins: Pick<OperationLog.Origins, "names" | "words">,
  columns?: Columns
): Either.Either<RecordState.RecordState, StorageError> => checkedState(Binary.decode(bytes), where, origins, columns)

/** `decodeState` through the Schema: the state, or why the bytes are not one. */
const checkedState = (
  decoded: Either.Either<unknown, Error>,
  where: string,
  origins: Pick<OperationLog.Origins, "names" | "words">,
  columns?: Columns
): Either.Either<RecordState.RecordState, StorageError> =>
  decoded.pipe(
    Either.flatMap((u): Either.Either<unknown, Error> => {
      if (!Array.isArray(u) || !Array.isArray(u[0])) return Either.right(u)
      const stamps = stampsAsText(u[0], origins.names)
      if (typeof stamps === "string") return Either.left(new Error(stamps))
      // back to [stamps, created, deleted, name, stamp, value, …] for the Schema
      const out: Array<unknown> = [stamps, u[1], u[2]]
      for (let i = 3; i < u.length;) {
        const field = u[i]
        // a register is (field, stamp, value), or (-field, stamp) with the value in its column
        if (i + (typeof field === "number" && field < 0 ? 1 : 2) >= u.length) return Either.left(new Error("malformed field register"))
        if (typeof field !== "number") {
          out.push(field, u[i + 1], u[i + 2])
          i += 3
          continue
        }
        const name = origins.words.names.get(Math.abs(field))
        if (name === undefined) return Either.left(new Error(`field ${field} is not a numbered name`))
        if (field >= 0) {
          out.push(name, u[i + 1], u[i + 2])
          i += 3
          continue
        }
        if (columns === undefined) return Either.left(new Error(`the value of ${name} is in a column that was not read`))
        const value = fromColumn(columns.model.fields.get(name), columns.row[name])
        if (value instanceof Error) return Either.left(value)
        out.push(name, u[i + 1], value)
        i += 2
      }
      return Either.right(out)
    }),
    Either.flatMap((u) => decodeStateTuple(u)),
    Either.mapBoth({
      onLeft: (e) =>
        new StorageError({
          reason: "Corrupt",
          detail: `record state of ${where}: ${ParseResult.isParseError(e) ? ParseError.describe(e) : e.message}`
        }),
      onRight: (state) => state as RecordState.RecordState
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
          // the id's B-tree holds the row: no rowid B-tree beside an index repeating every id
          // (tables made before keep their rowid; both read and write the same)
          if (capabilities.withoutRowid) create = create.modifyEnd(sql`without rowid`)
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

/** A record loaded for a batch: its stored state and where it is stored. */
export interface Slot {
  readonly id: string
  state: RecordState.RecordState
  readonly location: "live" | "tombstone" | "none"
  readonly before: RecordState.RecordState
  /** Rich texts known for the record (from its live row or its documents); made when the first is known. */
  texts: Map<string, string> | undefined
  /** Rich documents changed by this batch. */
  docs: Map<string, RichText.Doc> | undefined
}

const textsOf = (slot: Slot): Map<string, string> => (slot.texts ??= new Map())

const columnValue = (field: Model.Field, value: unknown): unknown =>
  value === null || value === undefined ? null
    : field.column === "boolean" ? (value ? 1 : 0)
    : field.column === "json" ? JSON.stringify(value)
    : value

/** Slots of `ids` from their live rows and tombstone rows (records in neither get an empty state). */
const slotsOf = (
  origins: OperationLog.Origins,
  model: Model.Any,
  ids: ReadonlyArray<string>,
  richFields: ReadonlyArray<string>,
  live: ReadonlyArray<Record<string, any>>,
  hidden: () => ReadonlyArray<{ id: string; state: Uint8Array }>
): Map<string, Slot | StorageError> => {
  const slots = new Map<string, Slot | StorageError>()
  // no Map per record where none is needed: a batch of 1 000 records made 2 000, alive across the
  // batch's scavenges and promoted (the old generation, and so a catch-up's peak heap, grew with them)
  const slot = (id: string, bytes: Uint8Array, location: Slot["location"], texts: Map<string, string> | undefined, row?: Record<string, unknown>) => {
    const state = decodeState(bytes, `${model.name}/${id}`, origins, row === undefined ? undefined : { model, row })
    slots.set(id, Either.isLeft(state) ? state.left : { id, state: state.right, before: state.right, location, texts, docs: undefined })
  }
  for (const row of live) {
    slot(row.id, row.weft_state, "live", richFields.length === 0 ? undefined : new Map(richFields.map((f) => [f, (row[f] as string | null) ?? ""])), row)
  }
  if (slots.size < ids.length) for (const row of hidden()) if (!slots.has(row.id)) slot(row.id, row.state, "tombstone", undefined)
  for (const id of ids) {
    if (!slots.has(id)) slots.set(id, { id, state: RecordState.empty, before: RecordState.empty, location: "none", texts: undefined, docs: undefined })
  }
  return slots
}

const loadSlots = async (
  trx: Kysely<any>,
  bulk: Bulk,
  origins: OperationLog.Origins,
  model: Model.Any,
  ids: ReadonlyArray<string>,
  richFields: ReadonlyArray<string>
): Promise<Map<string, Slot | StorageError>> => {
  const rows = await bulk.selectIn<Record<string, any>>(trx, model.name, ["id", "weft_state", ...model.fields.keys()], "id", ids)
  const found = new Set(rows.map((row) => row.id))
  const missing = ids.filter((id) => !found.has(id))
  const hidden = missing.length === 0 ? [] : await bulk.selectIn<{ id: string; state: Uint8Array }>(trx, "weft_tombstones", ["id", "state"], "id", missing, { model: model.name })
  return slotsOf(origins, model, ids, richFields, rows, () => hidden)
}

const loadSlotsSync = (
  trx: Kysely<any>,
  bulk: SyncBulk,
  origins: OperationLog.Origins,
  model: Model.Any,
  ids: ReadonlyArray<string>
): Map<string, Slot | StorageError> => {
  const live: Array<Record<string, any>> = []
  const hidden: Array<{ id: string; state: Uint8Array }> = []
  for (const row of bulk.selectRecords<Record<string, any>>(trx, model.name, ["id", "weft_state", ...model.fields.keys()], ids)) {
    if (row.weft_hidden === 0) live.push(row)
    else hidden.push({ id: row.id, state: row.weft_state })
  }
  return slotsOf(origins, model, ids, [], live, () => hidden)
}

/** Records loaded in one transaction, by model and id; `apply` reuses them instead of reading again. */
export type Loaded = Map<string, Map<string, Slot>>

const richFieldsOf = (model: Model.Any): Array<string> =>
  [...model.fields.values()].filter((f) => f.column === "rich").map((f) => f.name)

const loadInto = async (
  trx: Kysely<any>,
  bulk: Bulk,
  origins: OperationLog.Origins,
  model: Model.Any,
  ids: Iterable<string>,
  loaded: Loaded
): Promise<StorageError | undefined> => {
  const known = loaded.get(model.name) ?? new Map<string, Slot>()
  loaded.set(model.name, known)
  const missing = [...ids].filter((id) => !known.has(id))
  if (missing.length === 0) return undefined
  for (const [id, slot] of await loadSlots(trx, bulk, origins, model, missing, richFieldsOf(model))) {
    if (slot instanceof StorageError) return slot
    known.set(id, slot)
  }
  return undefined
}

const loadIntoSync = (
  trx: Kysely<any>,
  bulk: SyncBulk,
  origins: OperationLog.Origins,
  model: Model.Any,
  ids: Iterable<string>,
  loaded: Loaded
): StorageError | undefined => {
  const known = loaded.get(model.name) ?? new Map<string, Slot>()
  loaded.set(model.name, known)
  const missing: Array<string> = []
  for (const id of ids) if (!known.has(id)) missing.push(id)
  if (missing.length === 0) return undefined
  for (const [id, slot] of loadSlotsSync(trx, bulk, origins, model, missing)) {
    if (slot instanceof StorageError) return slot
    known.set(id, slot)
  }
  return undefined
}

/** `load` in this turn of the event loop, inside `Database.sync`'s transaction (models without rich text). */
export const loadSync = loadIntoSync

/** Loads the stored state of records into `loaded` (records never seen get an empty state). */
export const load = (
  trx: Kysely<any>,
  bulk: Bulk,
  origins: OperationLog.Origins,
  model: Model.Any,
  ids: Iterable<string>,
  loaded: Loaded
): Effect.Effect<void, StorageError> =>
  Effect.tryPromise({ try: () => loadInto(trx, bulk, origins, model, ids, loaded), catch: queryError }).pipe(
    Effect.flatMap((error) => (error === undefined ? Effect.void : Effect.fail(error)))
  )

/** The stored state of a loaded record. */
export const stateOf = (loaded: Loaded, model: string, id: string): RecordState.RecordState =>
  loaded.get(model)?.get(id)?.before ?? RecordState.empty

/** Loads rich-text documents of records, by `id` then field (absent: never edited); see `Documents.get`. */
export const loadDocuments = (
  trx: Kysely<any>,
  documents: Documents.Documents,
  model: Model.Any,
  ids: ReadonlyArray<string>
): Effect.Effect<Map<string, Map<string, RichText.Doc>>, StorageError> =>
  Effect.tryPromise({ try: () => documents.get(trx, model.name, ids, richFieldsOf(model)), catch: queryError }).pipe(
    Effect.flatMap((result) => (Either.isLeft(result) ? Effect.fail(result.left) : Effect.succeed(result.right)))
  )

/**
 * What the writer already folded while making local operations: the state of
 * each record they touch, and each rich-text document they load or edit,
 * after them. It must be the fold of exactly the operations given to
 * `apply`, from the state stored in the same transaction: `apply` takes it
 * on trust instead of folding the same operations again (and loading and
 * changing the same Automerge documents twice).
 *
 * @internal
 */
export interface Folded {
  readonly state: (model: string, id: string) => RecordState.RecordState | undefined
  readonly document: (model: string, id: string, field: string) => RichText.Doc | undefined
}

/** Folds operations into the projection; returns the records whose visible state changed. */
export const apply = (
  trx: Kysely<any>,
  bulk: Bulk,
  origins: OperationLog.Origins,
  models: ReadonlyMap<string, Model.Any>,
  documents: Documents.Documents,
  ops: ReadonlyArray<Operation.Operation>,
  loaded: Loaded = new Map(),
  folded?: Folded
): Effect.Effect<ReadonlyArray<RecordChange>, StorageError | ValidationError> =>
  Effect.tryPromise({
    try: () => applyBatch(trx, bulk, origins, models, documents, ops, loaded, folded),
    catch: queryError
  }).pipe(Effect.flatMap((result) => (Either.isLeft(result) ? Effect.fail(result.left) : Effect.succeed(result.right))))

const applyBatch = async (
  trx: Kysely<any>,
  bulk: Bulk,
  origins: OperationLog.Origins,
  models: ReadonlyMap<string, Model.Any>,
  documents: Documents.Documents,
  ops: ReadonlyArray<Operation.Operation>,
  loaded: Loaded,
  folded: Folded | undefined
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
    const richFields = richFieldsOf(model)
    const ids = [...new Set(modelOps.map((op) => op.record))]
    const failed = await loadInto(trx, bulk, origins, model, ids, loaded)
    if (failed !== undefined) return Either.left(failed)
    const known = loaded.get(name)!
    const slots = new Map<string, Slot>(ids.map((id) => [id, known.get(id)!]))

    // registers, and the Automerge changes per document
    const edits = new Map<string, Map<string, Array<Uint8Array>>>()
    for (const op of modelOps) {
      const slot = slots.get(op.record)!
      if (op._tag === "Edit") {
        const perRecord = edits.get(op.record) ?? new Map<string, Array<Uint8Array>>()
        edits.set(op.record, perRecord)
        perRecord.set(op.field, [...(perRecord.get(op.field) ?? []), ...op.changes])
      } else {
        slot.state = folded?.state(name, op.record) ?? RecordState.apply(slot.state, op)
      }
    }
    const foldedDocument = (id: string, field: string) => folded?.document(name, id, field)

    // rich text: documents edited now, and texts of records that become visible now
    if (richFields.length > 0) {
      const unfolded = (id: string) => [...(edits.get(id)?.keys() ?? [])].some((field) => foldedDocument(id, field) === undefined)
      const needDocs = ids.filter((id) => unfolded(id) || (slots.get(id)!.location !== "live" && RecordState.isAlive(slots.get(id)!.state)))
      const stored = needDocs.length === 0 ? Either.right(new Map<string, Map<string, RichText.Doc>>()) : await documents.get(trx, name, needDocs, richFields)
      if (Either.isLeft(stored)) return Either.left(stored.left)
      for (const [id, perRecord] of stored.right) {
        for (const [field, doc] of perRecord) textsOf(slots.get(id)!).set(field, RichText.text(doc))
      }
      for (const [id, perRecord] of edits) {
        const slot = slots.get(id)!
        for (const [field, changesOfField] of perRecord) {
          const done = foldedDocument(id, field)
          let doc = done ?? stored.right.get(id)?.get(field) ?? documents.create(name, id, field)
          if (done === undefined) {
            // a group of changes at a time, yielding between groups: another peer's ping waits for one group, not the batch
            for (const group of groups(changesOfField, documents.limits.maxOpsPerChange)) {
              const next = RichText.applyChanges(doc, group)
              if (Either.isLeft(next)) {
                return Either.left(new ValidationError({ reason: "MalformedChange", model: name, record: id, field, detail: next.left.detail }))
              }
              doc = next.right
              await yieldToEventLoop()
            }
          }
          documents.update(name, id, field, doc, changesOfField)
          ;(slot.docs ??= new Map()).set(field, doc)
          textsOf(slot).set(field, RichText.text(doc))
        }
      }
    }

    // writes
    const writes = writesOf(model, slots.values(), origins, changes)
    if (writes.live.length > 0) await bulk.insert(trx, name, writes.liveColumns, writes.live, { target: ["id"], update: writes.liveColumns.slice(1) })
    if (writes.leaveLive.length > 0) await bulk.deleteIn(trx, name, "id", writes.leaveLive)
    if (writes.dead.length > 0) await bulk.insert(trx, "weft_tombstones", ["model", "id", "state"], writes.dead, { target: ["model", "id"], update: ["state"] })
    if (writes.leaveTombstones.length > 0) await bulk.deleteIn(trx, "weft_tombstones", "id", writes.leaveTombstones, { model: name })
  }
  await documents.write(trx)
  return Either.right(changes)
}

/** The rows a batch writes for one model's changed slots; adds the visible changes to `changes`. */
const writesOf = (model: Model.Any, slots: Iterable<Slot>, origins: OperationLog.Origins, changes: Array<RecordChange>) => {
  const name = model.name
  const fields = [...model.fields.values()]
  const live: Array<Array<unknown>> = []
  const dead: Array<Array<unknown>> = []
  const leaveLive: Array<string> = []
  const leaveTombstones: Array<string> = []
  for (const slot of slots) {
    if (slot.state === slot.before && (slot.docs?.size ?? 0) === 0) continue
    const alive = RecordState.isAlive(slot.state)
    if (alive) {
      const row: Array<unknown> = [slot.id, encodeState(slot.state, origins, model)]
      for (const field of fields) {
        row.push(field.column === "rich" ? (slot.texts?.get(field.name) ?? "") : columnValue(field, slot.state.fields[field.name]?.value))
      }
      live.push(row)
      if (slot.location === "tombstone") leaveTombstones.push(slot.id)
    } else {
      dead.push([name, slot.id, encodeState(slot.state, origins)])
      if (slot.location === "live") leaveLive.push(slot.id)
    }
    if (alive || slot.location === "live") changes.push({ model: name, record: slot.id, alive })
  }
  return { liveColumns: ["id", "weft_state", ...model.fields.keys()], live, dead, leaveLive, leaveTombstones }
}

/** Whether `applySync` can fold `ops`: no rich text (documents are read and written asynchronously). */
export const canApplySync = (models: ReadonlyMap<string, Model.Any>, modelNames: Iterable<string>): boolean => {
  for (const name of modelNames) {
    const model = models.get(name)
    if (model === undefined || richFieldsOf(model).length > 0) return false
  }
  return true
}

/**
 * `apply` in this turn of the event loop, inside `Database.sync`'s transaction, for operations of
 * models without rich text (`canApplySync`).
 */
export const applySync = (
  trx: Kysely<any>,
  bulk: SyncBulk,
  origins: OperationLog.Origins,
  models: ReadonlyMap<string, Model.Any>,
  ops: ReadonlyArray<Operation.Operation>,
  loaded: Loaded,
  folded?: Folded
): Either.Either<ReadonlyArray<RecordChange>, StorageError> => {
  const byModel = new Map<string, Set<string>>()
  for (const op of ops) {
    const ids = byModel.get(op.model)
    if (ids === undefined) byModel.set(op.model, new Set([op.record]))
    else ids.add(op.record)
  }
  const changes: Array<RecordChange> = []
  for (const [name, ids] of byModel) {
    const model = models.get(name)!
    const failed = loadIntoSync(trx, bulk, origins, model, ids, loaded)
    if (failed !== undefined) return Either.left(failed)
    const known = loaded.get(name)!
    if (folded !== undefined) {
      for (const id of ids) {
        const slot = known.get(id)!
        slot.state = folded.state(name, id) ?? slot.state
      }
    }
  }
  if (folded === undefined) {
    for (const op of ops) {
      if (op._tag === "Edit") continue
      const slot = loaded.get(op.model)!.get(op.record)!
      slot.state = RecordState.apply(slot.state, op)
    }
  }
  for (const [name, ids] of byModel) {
    const model = models.get(name)!
    const known = loaded.get(name)!
    const writes = writesOf(model, [...ids].map((id) => known.get(id)!), origins, changes)
    if (writes.live.length > 0) bulk.insert(trx, name, writes.liveColumns, writes.live, { target: ["id"], update: writes.liveColumns.slice(1) })
    if (writes.leaveLive.length > 0) bulk.deleteIn(trx, name, "id", writes.leaveLive)
    if (writes.dead.length > 0) bulk.insert(trx, "weft_tombstones", ["model", "id", "state"], writes.dead, { target: ["model", "id"], update: ["state"] })
    if (writes.leaveTombstones.length > 0) bulk.deleteIn(trx, "weft_tombstones", "id", writes.leaveTombstones, { model: name })
  }
  return Either.right(changes)
}

/** Changes in runs of at most `maxOps` operations (a longer change alone), as counted by `RichText.inspect`. */
const groups = (changes: ReadonlyArray<Uint8Array>, maxOps: number): Array<Array<Uint8Array>> => {
  const out: Array<Array<Uint8Array>> = []
  let current: Array<Uint8Array> = []
  let ops = 0
  for (const change of changes) {
    const n = Either.getOrElse(Either.map(RichText.inspect(change), (i) => i.ops), () => 0)
    if (current.length > 0 && ops + n > maxOps) {
      out.push(current)
      current = []
      ops = 0
    }
    current.push(change)
    ops += n
  }
  if (current.length > 0) out.push(current)
  return out
}

let lastYield = performance.now()

/**
 * Lets the event loop run I/O (another peer's frames) before the next piece
 * of work, once 5 ms of work have passed since it last ran: a batch of many
 * small edits does not pay a turn of the loop per document.
 */
const yieldToEventLoop = async () => {
  if (performance.now() - lastYield < 5) return
  await new Promise<void>((resolve) => setImmediate(resolve))
  lastYield = performance.now()
}

/**
 * Every stored rich-text document (its compaction and the changes after it),
 * ordered by model, record and field, loaded to be edited as `node`: for
 * tests and tools that read what the engine holds.
 */
export const readDocuments = (
  db: Kysely<any>,
  node: NodeId
): Effect.Effect<ReadonlyArray<{ readonly model: string; readonly id: string; readonly field: string; readonly doc: Either.Either<RichText.Doc, RichText.RichTextError> }>, StorageError> =>
  Effect.tryPromise({
    try: async () => {
      const rows = await db.selectFrom("weft_documents").selectAll().orderBy("model").orderBy("id").orderBy("field").execute()
      const chunks = await db.selectFrom("weft_document_changes").selectAll().orderBy("n").execute()
      return rows.map((row) => {
        const own = chunks.filter((c) => c.model === row.model && c.id === row.id && c.field === row.field).map((c) => c.change as Uint8Array)
        return { model: row.model as string, id: row.id as string, field: row.field as string, doc: Documents.decode(row.doc, own, node) }
      })
    },
    catch: queryError
  })

/** Empties the projection (model tables, tombstones, documents), for a rebuild. */
export const clear = (trx: Kysely<any>, models: Iterable<Model.Any>): Effect.Effect<void, StorageError> =>
  Effect.tryPromise({
    try: async () => {
      for (const model of models) await trx.deleteFrom(model.name).execute()
      await trx.deleteFrom("weft_tombstones").execute()
      await trx.deleteFrom("weft_documents").execute()
      await trx.deleteFrom("weft_document_changes").execute()
    },
    catch: queryError
  })
