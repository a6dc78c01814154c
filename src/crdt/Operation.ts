/**
 * Operations: the immutable facts in the log. Every change an app makes
 * becomes one or more operations; sync moves operations; the projection is a
 * fold of operations.
 *
 * An operation is identified by its origin and its sequence number there
 * (`origin`, `seq`): origins number their operations 1, 2, 3, … so a receiver
 * can tell a duplicate (seq already held) from a gap (seq skipped). Its
 * timestamp `ts` (with the origin as tiebreak) orders it among all others.
 *
 * Kinds:
 * - `Create` — the record exists from `ts` on; sets the given fields.
 * - `Update` — sets the given fields (last writer wins per field).
 * - `Delete` — tombstone: the record and every field written before `ts` are gone.
 * - `Edit`   — Automerge change bytes for a rich-text field.
 *
 * Binary form (MessagePack, standard maps and arrays, no extensions):
 *
 *   operation  = [kind, origin, seq, ts, model, record, payload]
 *   batch      = [origins, [[kind, originIndex, seq, ts, model, record, payload], …]]
 *   kind       = 0 Create | 1 Update | 2 Delete | 3 Edit
 *   payload    = fields map (Create, Update) | null (Delete) | [field, [change bytes, …]] (Edit)
 *
 * The batch form writes each origin once (peer ids are long) and is what sync sends.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Binary from "./Binary.js"
import { NODE_ID_PATTERN, NodeId, Timestamp, TIMESTAMP_PATTERN } from "./Timestamp.js"
import { isValue, Value } from "./Value.js"
import { describe } from "../internal/describe.js"
import * as ParseError from "../internal/parseError.js"
import { isWellFormed } from "../internal/wellFormed.js"

import { FIELD_NAME_PATTERN, FieldName, MODEL_NAME_PATTERN, ModelName, RecordId, RESERVED_FIELD } from "./Names.js"

export { FieldName, ModelName, RecordId }
/** Position of an operation in its origin's log, from 1. */
export const Seq = Schema.Int.pipe(Schema.between(1, Number.MAX_SAFE_INTEGER), Schema.annotations({ identifier: "Seq" }))

/** Field values written by a `Create` or `Update`. */
export const Fields = Schema.Record({ key: FieldName, value: Value })
export type Fields = typeof Fields.Type

const header = { origin: NodeId, seq: Seq, ts: Timestamp, model: ModelName, record: RecordId }

/** The record exists from `ts` on, with these fields. */
export const Create = Schema.TaggedStruct("Create", { ...header, fields: Fields })
export type Create = typeof Create.Type

/** Sets fields of a record, last writer wins per field. */
export const Update = Schema.TaggedStruct("Update", { ...header, fields: Fields })
export type Update = typeof Update.Type

/** Tombstones a record: it and every field written before `ts` are gone. */
export const Delete = Schema.TaggedStruct("Delete", header)
export type Delete = typeof Delete.Type

/** Most Automerge changes one `Edit` operation may carry. */
export const MAX_CHANGES_PER_EDIT = 1024

/** Automerge changes to the rich-text field `field` of a record. */
export const Edit = Schema.TaggedStruct("Edit", {
  ...header,
  field: FieldName,
  changes: Schema.Array(Schema.Uint8ArrayFromSelf).pipe(Schema.minItems(1), Schema.maxItems(MAX_CHANGES_PER_EDIT))
})
export type Edit = typeof Edit.Type

/** Any operation. */
export const Operation = Schema.Union(Create, Update, Delete, Edit).annotations({ identifier: "Operation" })
export type Operation = typeof Operation.Type

// The rules of the schemas above as one direct check, for decoding batches: the schemas cost
// microseconds per operation, this a fraction of one. A property test keeps the two in agreement.

const isName = (u: unknown, pattern: RegExp): u is string => typeof u === "string" && pattern.test(u)
const isFieldName = (u: unknown): boolean => isName(u, FIELD_NAME_PATTERN) && !RESERVED_FIELD.test(u as string)

const isFields = (u: unknown): boolean => {
  if (typeof u !== "object" || u === null || Array.isArray(u) || u instanceof Uint8Array) return false
  const proto = Object.getPrototypeOf(u)
  if (proto !== Object.prototype && proto !== null) return false
  for (const key in u) {
    if (!isFieldName(key) || !isValue((u as Record<string, unknown>)[key])) return false
  }
  return true
}

/** Whether `u` satisfies the `Operation` schema. */
export const isOperation = (u: unknown): u is Operation => {
  if (typeof u !== "object" || u === null) return false
  const op = u as Record<string, unknown>
  const ok = isName(op.origin, NODE_ID_PATTERN) &&
    typeof op.seq === "number" && Number.isInteger(op.seq) && op.seq >= 1 && op.seq <= Number.MAX_SAFE_INTEGER &&
    isName(op.ts, TIMESTAMP_PATTERN) &&
    isName(op.model, MODEL_NAME_PATTERN) && !op.model.startsWith("weft_") &&
    typeof op.record === "string" && op.record.length >= 1 && op.record.length <= 256 && isWellFormed(op.record)
  if (!ok) return false
  switch (op._tag) {
    case "Create":
    case "Update":
      return isFields(op.fields)
    case "Delete":
      return true
    case "Edit":
      return isFieldName(op.field) && Array.isArray(op.changes) && op.changes.length >= 1 &&
        op.changes.length <= MAX_CHANGES_PER_EDIT && op.changes.every((c) => c instanceof Uint8Array)
    default:
      return false
  }
}

/** An `Operation` that the decoding transformation has already validated (with `checked`). */
const CheckedOperation: Schema.Schema<Operation> = Schema.declare((_: unknown): _ is Operation => true, {
  identifier: "Operation"
})

const validateOperation = ParseResult.decodeUnknownEither(Operation, { errors: "first", onExcessProperty: "error" })

/** The operation, or the schema's explanation of why it is not one. */
const checked = (op: object): Either.Either<Operation, ParseResult.ParseIssue> =>
  isOperation(op) ? Either.right(op) : validateOperation(op)

/** An operation's identity: its origin and sequence number. */
export const id = (op: Pick<Operation, "origin" | "seq">): string => `${op.origin}/${op.seq}`

/** Orders operations by timestamp, then origin: the order in which last-writer-wins resolves. */
export const order = (a: Operation, b: Operation): number =>
  a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0

/** An operation that could not be decoded from bytes. */
export class OperationDecodeError extends Schema.TaggedError<OperationDecodeError>("weft/OperationDecodeError")(
  "OperationDecodeError",
  { reason: Schema.Literal("MalformedBytes", "InvalidOperation"), detail: Schema.String }
) {
  override get message(): string {
    return `cannot decode operation (${this.reason}): ${this.detail}`
  }
}

// ---------------------------------------------------------------------------
// Wire form

const kinds = ["Create", "Update", "Delete", "Edit"] as const

/** Kind number of an operation in the wire and log forms. */
export const kindOf = (op: Pick<Operation, "_tag">): 0 | 1 | 2 | 3 => kinds.indexOf(op._tag) as 0 | 1 | 2 | 3

/** The payload of an operation in the wire and log forms. */
export const toPayload = (op: typeof Operation.Encoded): unknown =>
  op._tag === "Delete" ? null : op._tag === "Edit" ? [op.field, op.changes] : op.fields

/** One operation as its wire tuple (no validation: for operations already typed). */
export const toWire = (op: typeof Operation.Encoded): ReadonlyArray<unknown> =>
  [kindOf(op), op.origin, op.seq, op.ts, op.model, op.record, toPayload(op)]

/** A batch as its wire tuple, each origin written once (no validation). */
export const toBatchWire = (ops: ReadonlyArray<typeof Operation.Encoded>): ReadonlyArray<unknown> => {
  const index = new Map<string, number>()
  const rows = ops.map((op) => {
    let i = index.get(op.origin)
    if (i === undefined) index.set(op.origin, i = index.size)
    return [kindOf(op), i, op.seq, op.ts, op.model, op.record, toPayload(op)]
  })
  return [[...index.keys()], rows]
}

const isPlainObject = (u: unknown): u is object =>
  typeof u === "object" && u !== null && !Array.isArray(u) && !(u instanceof Uint8Array)

/**
 * An operation's object from its tuple parts, or a reason it cannot be one.
 * Only the shape is checked here; the `Operation` Schema then validates every field, once.
 */
const fromWire = (row: ReadonlyArray<unknown>, origin: unknown): object | string => {
  if (row.length !== 7) return `an operation is 7 elements, not ${row.length}`
  const kind = row[0]
  const payload = row[6]
  switch (kind) {
    case 0:
    case 1:
      return isPlainObject(payload)
        ? { _tag: kinds[kind], origin, seq: row[2], ts: row[3], model: row[4], record: row[5], fields: payload }
        : `a ${kinds[kind]}'s payload is a map of fields`
    case 2:
      return payload === null
        ? { _tag: "Delete", origin, seq: row[2], ts: row[3], model: row[4], record: row[5] }
        : "a Delete carries no payload"
    case 3:
      return Array.isArray(payload) && payload.length === 2
        ? { _tag: "Edit", origin, seq: row[2], ts: row[3], model: row[4], record: row[5], field: payload[0], changes: payload[1] }
        : "an Edit's payload is [field, changes]"
    default:
      return `unknown operation kind ${describe(kind)}`
  }
}

/** One operation as a MessagePack tuple. */
export const OperationFromWire = Schema.transformOrFail(
  Schema.Array(Schema.Unknown),
  CheckedOperation,
  {
    strict: false,
    decode: (row, _, ast) => {
      const op = fromWire(row, row[1])
      return typeof op === "string" ? ParseResult.fail(new ParseResult.Type(ast, row, op)) : checked(op)
    },
    encode: (op) => ParseResult.succeed(toWire(op))
  }
)

/** Most operations one batch may carry. */
export const MAX_BATCH_SIZE = 10_000

/** Default bound on one operation's encoded bytes: well inside a 4 MiB sync frame. */
export const MAX_OPERATION_BYTES = 1024 * 1024

/**
 * A batch's rows: at most `MAX_BATCH_SIZE` arrays, checked in one pass. As
 * `Schema.Array(Schema.Array(Schema.Unknown))` the Schema parsed every row as a tuple of unknowns
 * (pairs of index and element, sorted back): ~2.5 KB allocated per operation received, before the
 * direct check of each operation.
 */
const BatchRows = Schema.declare(
  (u: unknown): u is ReadonlyArray<ReadonlyArray<unknown>> => Array.isArray(u) && u.length <= MAX_BATCH_SIZE && u.every(Array.isArray),
  { identifier: "BatchRows", description: `an array of at most ${MAX_BATCH_SIZE} operation tuples` }
)

/** A batch of operations as a MessagePack tuple with each origin written once. */
export const BatchFromWire = Schema.transformOrFail(
  Schema.Tuple(Schema.Array(Schema.String), BatchRows),
  Schema.Array(CheckedOperation),
  {
    strict: false,
    decode: ([origins, rows], _options, ast) => {
      const ops: Array<Operation> = []
      for (const row of rows) {
        const origin = typeof row[1] === "number" ? origins[row[1]] : undefined
        if (origin === undefined) return ParseResult.fail(new ParseResult.Type(ast, row[1], `no origin at index ${describe(row[1])}`))
        const op = fromWire(row, origin)
        if (typeof op === "string") return ParseResult.fail(new ParseResult.Type(ast, row, op))
        const valid = checked(op)
        if (Either.isLeft(valid)) return ParseResult.fail(valid.left)
        ops.push(valid.right)
      }
      return ParseResult.succeed(ops)
    },
    encode: (ops) => ParseResult.succeed(toBatchWire(ops) as readonly [ReadonlyArray<string>, ReadonlyArray<ReadonlyArray<unknown>>])
  }
)

/** Validates one operation in tuple form (as read back from a log row). */
export const decodeTuple = Schema.decodeUnknownEither(OperationFromWire, { errors: "first" })

/**
 * `decodeTuple` by the direct check (`isOperation`), with the Schema run only to explain a tuple
 * that fails it: the Schema's tuple parse allocated ~3 KB per operation read back from the log.
 */
export const fromTuple = (tuple: ReadonlyArray<unknown>): Either.Either<Operation, ParseResult.ParseError> => {
  const op = fromWire(tuple, tuple[1])
  return typeof op !== "string" && isOperation(op) ? Either.right(op) : decodeTuple(tuple)
}
const decodeBatchWire = Schema.decodeUnknownEither(BatchFromWire, { errors: "first" })

const fromBytes = <A>(
  bytes: Uint8Array,
  decode: (u: unknown) => Either.Either<A, ParseResult.ParseError>
): Either.Either<A, OperationDecodeError> =>
  Binary.decode(bytes).pipe(
    Either.mapLeft((e) => new OperationDecodeError({ reason: "MalformedBytes", detail: e.message })),
    Either.flatMap((u) =>
      Either.mapLeft(
        decode(u),
        (e) => new OperationDecodeError({ reason: "InvalidOperation", detail: ParseError.describe(e) })
      )
    )
  )

/** Encodes one operation. */
export const encode = (op: Operation): Uint8Array => Binary.encode(toWire(op))

/** Decodes one operation from untrusted bytes. */
export const decode = (bytes: Uint8Array): Either.Either<Operation, OperationDecodeError> =>
  fromBytes(bytes, decodeTuple)

/** Encodes a batch of operations (at most `MAX_BATCH_SIZE`). */
export const encodeBatch = (ops: ReadonlyArray<Operation>): Uint8Array => Binary.encode(toBatchWire(ops))

/** Decodes a batch of operations from untrusted bytes. */
export const decodeBatch = (bytes: Uint8Array): Either.Either<ReadonlyArray<Operation>, OperationDecodeError> =>
  fromBytes(bytes, decodeBatchWire)
