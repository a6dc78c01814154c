/**
 * Models: the record types an app declares with Effect Schema. Each model is
 * a real SQL table (`id` plus one column per field) that the app can query,
 * and a factory of typed changes.
 *
 * ```ts
 * const files = Model.make("files", Schema.Struct({
 *   name: Schema.String,
 *   size: Schema.Number,
 *   tags: Schema.Array(Schema.String),
 *   notes: Model.RichText
 * }))
 * engine.mutate([files.create("f1", { name: "a.txt", size: 1, tags: [], notes: "" })])
 * ```
 *
 * Columns follow each field's encoded type: strings are `text`, numbers
 * `real` (`integer` for `Schema.Int`), booleans `integer` 0/1, byte arrays
 * `blob`, rich text `text`, anything else JSON in `text`. Fields are
 * validated with their Schema on every local change and every remote
 * operation; operations carry the encoded values.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import type { ModelName } from "../crdt/Operation.js"
import * as Operation from "../crdt/Operation.js"
import type { Splice } from "../crdt/RichText.js"
import { isValue } from "../crdt/Value.js"
import { isWellFormed } from "../internal/wellFormed.js"
import { ValidationError } from "./EngineError.js"
import * as ParseError from "../internal/parseError.js"

/** Marks a string field as rich text (an Automerge document). */
export const RichTextAnnotationId: unique symbol = Symbol.for("weft/engine/Model/RichText")

/** A rich-text field: a string whose concurrent edits merge character by character. */
export const RichText = Schema.String.annotations({ [RichTextAnnotationId]: true, identifier: "RichText" })

/** How a field is stored in its SQL column. */
export type ColumnKind = "text" | "real" | "integer" | "boolean" | "blob" | "json" | "rich"

/** One field of a model. */
export interface Field {
  readonly name: string
  /** The field's Schema (optional fields: the schema of a present value). */
  readonly schema: Schema.Schema<any, any>
  readonly column: ColumnKind
  readonly optional: boolean
  /** Encodes an app value to the operation's value, validating it. */
  readonly encode: (value: unknown) => Either.Either<unknown, ParseResult.ParseError>
  /** Validates an operation's (encoded) value. */
  readonly validate: (value: unknown) => Either.Either<unknown, ParseResult.ParseError>
}

/** A change an app makes; built with a model's `create`, `update`, `delete`, `splice`. */
export type Change =
  | { readonly _tag: "Create"; readonly model: string; readonly id: string; readonly values: Readonly<Record<string, unknown>> }
  | { readonly _tag: "Update"; readonly model: string; readonly id: string; readonly values: Readonly<Record<string, unknown>> }
  | { readonly _tag: "Delete"; readonly model: string; readonly id: string }
  | { readonly _tag: "Splice"; readonly model: string; readonly id: string; readonly field: string; readonly splice: Splice }

/** Names of the rich-text fields of a struct's fields. */
export type RichFields<F extends Schema.Struct.Fields> = {
  [K in keyof F]: F[K] extends typeof RichText ? K : never
}[keyof F] & string

/** A declared model. */
export interface Model<Name extends string = string, F extends Schema.Struct.Fields = Schema.Struct.Fields> {
  readonly name: Name
  readonly schema: Schema.Struct<F>
  readonly fields: ReadonlyMap<string, Field>
  /** Decodes a projection row (as read from SQL) into the app's type. */
  readonly decodeRow: (row: Readonly<Record<string, unknown>>) => Either.Either<Row<Model<Name, F>>, ParseResult.ParseError>
  /** Creates the record with these field values. */
  readonly create: (id: string, values: Schema.Struct.Type<F>) => Change
  /** Sets some fields (rich-text fields: the new text, merged as a minimal splice). */
  readonly update: (id: string, values: Partial<Schema.Struct.Type<F>>) => Change
  /** Deletes the record (a timestamped tombstone). */
  readonly delete: (id: string) => Change
  /** Edits a rich-text field in place: delete `deleteCount` characters at `index`, insert `insert`. */
  readonly splice: (id: string, field: RichFields<F>, splice: Splice) => Change
}

/** Any model. */
export type Any = Model<string, any>

/** A record as the app reads it: `id` and the decoded fields. */
export type Row<M extends Any> = M extends Model<string, infer F> ? { readonly id: string } & Schema.Struct.Type<F> : never

type Column<E> = [E] extends [string] ? string
  : [E] extends [number] ? number
  : [E] extends [boolean] ? number
  : [E] extends [Uint8Array] ? Uint8Array
  : string

/** The SQL row type of a model's table, for typed Kysely queries. */
export type Table<M extends Any> = M extends Model<string, infer F> ?
    & { id: string; weft_state: Uint8Array }
    & { [K in keyof Schema.Struct.Encoded<F>]-?: Column<NonNullable<Schema.Struct.Encoded<F>[K]>> | null }
  : never

/** The Kysely database type of a set of models. */
export type Tables<Models extends ReadonlyArray<Any>> = { [M in Models[number] as M["name"]]: Table<M> }

const isRich = (ast: AST.AST): boolean => ast.annotations[RichTextAnnotationId] === true

const isInteger = (ast: AST.AST): boolean => {
  for (let node: AST.AST = ast; AST.isRefinement(node); node = node.from) {
    const json = AST.getJSONSchemaAnnotation(node)
    if (Option.isSome(json) && (json.value as { type?: unknown }).type === "integer") return true
  }
  return false
}

const kindOf = (typeAst: AST.AST, encoded: AST.AST): ColumnKind => {
  if (isRich(typeAst)) return "rich"
  switch (encoded._tag) {
    case "StringKeyword":
    case "TemplateLiteral":
      return "text"
    case "NumberKeyword":
      return isInteger(typeAst) ? "integer" : "real"
    case "BooleanKeyword":
      return "boolean"
    case "Literal":
      return typeof encoded.literal === "string" ? "text"
        : typeof encoded.literal === "number" ? "real"
        : typeof encoded.literal === "boolean" ? "boolean"
        : "json"
    case "Enums":
      return encoded.enums.every(([, v]) => typeof v === "string") ? "text" : "json"
    case "Declaration":
      return Option.getOrUndefined(AST.getIdentifierAnnotation(encoded)) === "Uint8ArrayFromSelf" ? "blob" : "json"
    case "Union": {
      const members = encoded.types.filter((m) => !(m._tag === "UndefinedKeyword" || (m._tag === "Literal" && m.literal === null)))
      const kinds = new Set(members.map((m) => kindOf(m, m)))
      return kinds.size === 1 ? [...kinds][0]! : "json"
    }
    default:
      return "json"
  }
}

// Strings from a field's encoder must be well-formed, booleans are always values; numbers must
// be finite; anything else is checked in full.
const representable = (column: ColumnKind): ((encoded: unknown) => boolean) =>
  column === "text" || column === "rich" || column === "boolean"
    ? (encoded) => typeof encoded === "string" ? isWellFormed(encoded) : typeof encoded === "boolean" || isValue(encoded)
    : column === "real" || column === "integer"
    ? (encoded) => (typeof encoded === "number" && Number.isFinite(encoded)) || (encoded === null)
    // a JSON column holds JSON: byte arrays inside a structured value would not read back
    : column === "json"
    ? (encoded) => isValue(encoded) && !containsBytes(encoded)
    : isValue

const containsBytes = (value: unknown): boolean =>
  value instanceof Uint8Array ||
  (Array.isArray(value) ? value.some(containsBytes)
    : typeof value === "object" && value !== null ? Object.values(value).some(containsBytes)
    : false)

const notRepresentable = (ast: AST.AST, value: unknown) =>
  ParseResult.parseError(new ParseResult.Type(
    ast,
    value,
    "not representable in an operation (finite numbers, well-formed strings, JSON-like values, and byte arrays only as a field's whole value)"
  ))

const stripUndefined = (ast: AST.AST): AST.AST =>
  AST.isUnion(ast) ? AST.Union.make(ast.types.filter((t) => !AST.isUndefinedKeyword(t))) : ast

const fieldOf = (signature: AST.PropertySignature): Field => {
  const schema = Schema.make(signature.type)
  const encoded = Schema.encodedSchema(schema)
  const encode = Schema.encodeUnknownEither(schema)
  // a remote value: what the parser throws on a hostile one (String({toString: 1}) on a union tag) is a ParseError
  const check = ParseError.decodeUnknownEither(schema)
  const column = kindOf(signature.type, AST.encodedAST(signature.type))
  const fits = representable(column)
  // a field that is a bare string, number or boolean encodes to itself: checked by its type, no
  // Schema encode per value (anything the check refuses gets the Schema's own error below)
  const bare = signature.type._tag === "StringKeyword" ? (v: unknown) => typeof v === "string" && isWellFormed(v)
    : signature.type._tag === "NumberKeyword" ? (v: unknown) => typeof v === "number" && Number.isFinite(v)
    : signature.type._tag === "BooleanKeyword" ? (v: unknown) => typeof v === "boolean"
    : undefined
  const encodeFully = (value: unknown) => Either.flatMap(encode(value), (e) => fits(e) ? Either.right(e) : Either.left(notRepresentable(encoded.ast, e)))
  return {
    name: String(signature.name),
    schema: signature.isOptional ? Schema.make(stripUndefined(signature.type)) : schema,
    column,
    optional: signature.isOptional,
    // the encoded form must also be a Value, so that every peer and every store reads it back the same
    encode: bare === undefined ? encodeFully : (value) => bare(value) ? Either.right(value) : encodeFully(value),
    // the same shortcut for remote values: a bare type's check and `fits` both hold of what `bare` accepts
    // (the Schema decode was ~0.5 KB and a few hundred ns per field of every operation ingested)
    validate: (value) =>
      bare !== undefined && bare(value) ? Either.right(value)
        : Either.flatMap(check(value), () => fits(value) ? Either.right(value) : Either.left(notRepresentable(encoded.ast, value)))
  }
}

const readColumn = (field: Field, raw: unknown): unknown =>
  field.column === "boolean" ? raw === 1 || raw === true
    : field.column === "json" && typeof raw === "string" ? JSON.parse(raw)
    : raw

/**
 * Declares a model: its name (the SQL table) and its fields. Names are
 * checked when an engine starts with the model (`check`).
 */
export const make = <const Name extends string, F extends Schema.Struct.Fields>(
  name: Name,
  schema: Schema.Struct<F>
): Model<Name, F> => {
  const fields = new Map<string, Field>()
  for (const signature of (schema.ast as AST.TypeLiteral).propertySignatures) {
    fields.set(String(signature.name), fieldOf(signature))
  }
  const decode = ParseError.decodeUnknownEither(schema as unknown as Schema.Schema<Schema.Struct.Type<F>, unknown>)
  const modelName = name as unknown as ModelName
  return {
    name,
    schema,
    fields,
    decodeRow: (row) =>
      Either.flatMap(
        Either.try({
          try: () => {
            const values: Record<string, unknown> = {}
            for (const field of fields.values()) {
              const raw = row[field.name]
              // NULL is an unset optional field, or a null value (the schema decides whether null is allowed)
              if (raw !== null && raw !== undefined) values[field.name] = readColumn(field, raw)
              else if (!field.optional) values[field.name] = null
            }
            return values
          },
          catch: (cause) => ParseResult.parseError(new ParseResult.Type(schema.ast, row, `unreadable column: ${String(cause)}`))
        }),
        (values) => Either.map(decode(values), (decoded) => ({ id: String(row.id), ...(decoded as object) }) as unknown as Row<Model<Name, F>>)
      ),
    create: (id, values) => ({ _tag: "Create", model: modelName, id, values: values as Record<string, unknown> }),
    update: (id, values) => ({ _tag: "Update", model: modelName, id, values: values as Record<string, unknown> }),
    delete: (id) => ({ _tag: "Delete", model: modelName, id }),
    splice: (id, field, splice) => ({ _tag: "Splice", model: modelName, id, field, splice })
  }
}

/** Checks a model's name and field names (they become SQL identifiers). */
export const check = (model: Any): Either.Either<void, ValidationError> => {
  const name = Schema.decodeUnknownEither(Operation.ModelName)(model.name)
  if (Either.isLeft(name)) {
    return Either.left(new ValidationError({ reason: "UnknownModel", model: model.name, detail: `invalid model name: ${ParseError.describe(name.left)}` }))
  }
  for (const field of model.fields.keys()) {
    const checked = Schema.decodeUnknownEither(Operation.FieldName)(field)
    if (Either.isLeft(checked)) {
      return Either.left(new ValidationError({ reason: "UnknownField", model: model.name, field, detail: `invalid field name: ${ParseError.describe(checked.left)}` }))
    }
  }
  return Either.void
}

const invalid = (model: string, record: string | undefined, field: string, error: ParseResult.ParseError) =>
  new ValidationError({
    reason: "InvalidValue",
    model,
    ...(record === undefined ? {} : { record }),
    field,
    detail: ParseError.describe(error)
  })

/**
 * Encodes and validates the values of a local create or update; rich-text
 * values stay strings. An optional field given as `undefined` is not set.
 */
export const encodeValues = (
  model: Any,
  id: string,
  values: Readonly<Record<string, unknown>>,
  requireAll: boolean
): Either.Either<Record<string, unknown>, ValidationError> => {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(values)) {
    // an optional field given as undefined is simply not set
    if (values[key] === undefined && model.fields.get(key)?.optional === true) continue
    const field = model.fields.get(key)
    if (field === undefined) {
      return Either.left(new ValidationError({ reason: "UnknownField", model: model.name, record: id, field: key, detail: `model ${model.name} has no field ${key}` }))
    }
    const encoded = field.encode(values[key])
    if (Either.isLeft(encoded)) return Either.left(invalid(model.name, id, key, encoded.left))
    out[key] = encoded.right
  }
  if (requireAll) {
    for (const field of model.fields.values()) {
      if (!field.optional && field.column !== "rich" && !(field.name in out)) {
        return Either.left(new ValidationError({ reason: "MissingField", model: model.name, record: id, field: field.name, detail: `a new ${model.name} needs ${field.name}` }))
      }
    }
  }
  return Either.right(out)
}

/** Validates an operation (local or remote) against the models. */
export const validateOperation = (
  models: ReadonlyMap<string, Any>,
  op: Operation.Operation
): Either.Either<void, ValidationError> => {
  const model = models.get(op.model)
  if (model === undefined) {
    return Either.left(new ValidationError({ reason: "UnknownModel", model: op.model, record: op.record, detail: `operation ${Operation.id(op)} names a model this app does not declare` }))
  }
  if (op._tag === "Delete") return Either.void
  if (op._tag === "Edit") {
    const field = model.fields.get(op.field)
    if (field === undefined || field.column !== "rich") {
      return Either.left(new ValidationError({ reason: field === undefined ? "UnknownField" : "NotRichText", model: op.model, record: op.record, field: op.field, detail: `operation ${Operation.id(op)} edits a field that is not rich text` }))
    }
    return Either.void
  }
  for (const key of Object.keys(op.fields)) {
    const field = model.fields.get(key)
    if (field === undefined || field.column === "rich") {
      return Either.left(new ValidationError({ reason: field === undefined ? "UnknownField" : "InvalidValue", model: op.model, record: op.record, field: key, detail: field === undefined ? `operation ${Operation.id(op)} sets an unknown field` : `operation ${Operation.id(op)} sets a rich-text field as a value` }))
    }
    const checked = field.validate(op.fields[key])
    if (Either.isLeft(checked)) return Either.left(invalid(op.model, op.record, key, checked.left))
  }
  // a create from anywhere needs what a local create needs: a record without a required field could
  // not be read back, and every query of its model would fail
  if (op._tag === "Create") {
    for (const field of model.fields.values()) {
      if (!field.optional && field.column !== "rich" && !(field.name in op.fields)) {
        return Either.left(new ValidationError({ reason: "MissingField", model: op.model, record: op.record, field: field.name, detail: `operation ${Operation.id(op)} creates a ${model.name} without ${field.name}` }))
      }
    }
  }
  return Either.void
}
