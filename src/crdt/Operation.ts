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
import { NodeId, Timestamp } from "./Timestamp.js"
import { Value } from "./Value.js"

/** Name of a model (a record type, and its SQL table): lower snake case, not starting with `weft_`. */
export const ModelName = Schema.String.pipe(
  Schema.pattern(/^[a-z][a-z0-9_]{0,62}$/),
  Schema.filter((name) => !name.startsWith("weft_") || "model names starting with weft_ are reserved"),
  Schema.brand("weft/ModelName"),
  Schema.annotations({ identifier: "ModelName" })
)
export type ModelName = typeof ModelName.Type

/** Name of a field (an SQL column): starts with a letter; `id` and `weft…` are reserved. */
export const FieldName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z][A-Za-z0-9_]{0,62}$/),
  Schema.filter((name) => (name !== "id" && !/^weft/i.test(name)) || "the field names id and weft… are reserved"),
  Schema.annotations({ identifier: "FieldName" })
)
export type FieldName = typeof FieldName.Type

/** Primary key of a record within its model. */
export const RecordId = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(256),
  Schema.annotations({ identifier: "RecordId" })
)
export type RecordId = typeof RecordId.Type

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
const Kind = Schema.Literal(0, 1, 2, 3)
const Payload = Schema.Union(Fields, Schema.Null, Schema.Tuple(FieldName, Edit.fields.changes))

/** Kind number of an operation in the wire and log forms. */
export const kindOf = (op: Pick<Operation, "_tag">): 0 | 1 | 2 | 3 => kinds.indexOf(op._tag) as 0 | 1 | 2 | 3

/** The payload of an operation in the wire and log forms. */
export const toPayload = (op: typeof Operation.Encoded): typeof Payload.Type =>
  op._tag === "Delete" ? null : op._tag === "Edit" ? [op.field, op.changes] : op.fields

const fromWire = (
  kind: 0 | 1 | 2 | 3,
  origin: string,
  seq: number,
  ts: string,
  model: string,
  record: string,
  payload: unknown
): unknown => {
  const tag = kinds[kind]
  const base = { _tag: tag, origin, seq, ts, model, record }
  if (tag === "Delete") return payload === null ? base : { ...base, fields: payload }
  if (tag === "Edit") {
    return Array.isArray(payload) ? { ...base, field: payload[0], changes: payload[1] } : { ...base, field: payload }
  }
  return { ...base, fields: payload }
}

/** One operation as a MessagePack tuple. */
export const OperationFromWire = Schema.transformOrFail(
  Schema.Tuple(Kind, Schema.String, Schema.Number, Schema.String, Schema.String, Schema.String, Payload),
  Operation,
  {
    strict: false,
    decode: ([kind, origin, seq, ts, model, record, payload]) =>
      ParseResult.succeed(fromWire(kind, origin, seq, ts, model, record, payload)),
    encode: (op) =>
      ParseResult.succeed(
        [kindOf(op), op.origin, op.seq, op.ts, op.model, op.record, toPayload(op)] as const
      )
  }
)

/** Most operations one batch may carry. */
export const MAX_BATCH_SIZE = 10_000

/** A batch of operations as a MessagePack tuple with each origin written once. */
export const BatchFromWire = Schema.transformOrFail(
  Schema.Tuple(
    Schema.Array(Schema.String),
    Schema.Array(Schema.Tuple(Kind, Schema.Int, Schema.Number, Schema.String, Schema.String, Schema.String, Payload))
      .pipe(Schema.maxItems(MAX_BATCH_SIZE))
  ),
  Schema.Array(Operation),
  {
    strict: false,
    decode: ([origins, rows], _options, ast) => {
      const ops: Array<unknown> = []
      for (const [kind, originIndex, seq, ts, model, record, payload] of rows) {
        const origin = origins[originIndex]
        if (origin === undefined) {
          return ParseResult.fail(new ParseResult.Type(ast, originIndex, `no origin at index ${originIndex}`))
        }
        ops.push(fromWire(kind, origin, seq, ts, model, record, payload))
      }
      return ParseResult.succeed(ops)
    },
    encode: (ops) => {
      const index = new Map<string, number>()
      const rows = ops.map((op) => {
        let i = index.get(op.origin)
        if (i === undefined) index.set(op.origin, i = index.size)
        return [kindOf(op), i, op.seq, op.ts, op.model, op.record, toPayload(op)] as const
      })
      return ParseResult.succeed([[...index.keys()], rows] as const)
    }
  }
)

/** Validates one operation in tuple form (as read back from a log row). */
export const decodeTuple = Schema.decodeUnknownEither(OperationFromWire, { errors: "first", onExcessProperty: "error" })
const encodeOperation = Schema.encodeSync(OperationFromWire)
const decodeBatchWire = Schema.decodeUnknownEither(BatchFromWire, { errors: "first", onExcessProperty: "error" })
const encodeBatchWire = Schema.encodeSync(BatchFromWire)

const fromBytes = <A>(
  bytes: Uint8Array,
  decode: (u: unknown) => Either.Either<A, ParseResult.ParseError>
): Either.Either<A, OperationDecodeError> =>
  Binary.decode(bytes).pipe(
    Either.mapLeft((e) => new OperationDecodeError({ reason: "MalformedBytes", detail: e.message })),
    Either.flatMap((u) =>
      Either.mapLeft(
        decode(u),
        (e) => new OperationDecodeError({ reason: "InvalidOperation", detail: ParseResult.TreeFormatter.formatErrorSync(e) })
      )
    )
  )

/** Encodes one operation. */
export const encode = (op: Operation): Uint8Array => Binary.encode(encodeOperation(op))

/** Decodes one operation from untrusted bytes. */
export const decode = (bytes: Uint8Array): Either.Either<Operation, OperationDecodeError> =>
  fromBytes(bytes, decodeTuple)

/** Encodes a batch of operations (at most `MAX_BATCH_SIZE`). */
export const encodeBatch = (ops: ReadonlyArray<Operation>): Uint8Array => Binary.encode(encodeBatchWire(ops))

/** Decodes a batch of operations from untrusted bytes. */
export const decodeBatch = (bytes: Uint8Array): Either.Either<ReadonlyArray<Operation>, OperationDecodeError> =>
  fromBytes(bytes, decodeBatchWire)
