/**
 * The names records go by: of a model (a record type, and its SQL table), of
 * a field (an SQL column), and of a record within its model. Schemas only,
 * so a front end can check them without loading the rest of the core.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { isWellFormed } from "../internal/wellFormed.js"

/** A model name's shape. */
export const MODEL_NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/
/** A field name's shape. */
export const FIELD_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,62}$/
/**
 * Field names kept for the engine (`id` and `weft…`), and the names of
 * `Object.prototype`'s members: field names become keys of objects, where a
 * lookup of `constructor` or `toString` would find the inherited member.
 */
export const RESERVED_FIELD = /^(id$|weft|(constructor|hasownproperty|isprototypeof|propertyisenumerable|tolocalestring|tostring|valueof)$)/i

/** Name of a model (a record type, and its SQL table): lower snake case, not starting with `weft_`. */
export const ModelName = Schema.String.pipe(
  Schema.pattern(MODEL_NAME_PATTERN),
  Schema.filter((name) => !name.startsWith("weft_") || "model names starting with weft_ are reserved"),
  Schema.brand("weft/ModelName"),
  Schema.annotations({ identifier: "ModelName" })
)
export type ModelName = typeof ModelName.Type

/** Name of a field (an SQL column): starts with a letter; `id`, `weft…` and `Object.prototype`'s member names are reserved. */
export const FieldName = Schema.String.pipe(
  Schema.pattern(FIELD_NAME_PATTERN),
  Schema.filter((name) => !RESERVED_FIELD.test(name) || "the field names id, weft… and those of Object.prototype's members are reserved"),
  Schema.annotations({ identifier: "FieldName" })
)
export type FieldName = typeof FieldName.Type

/** Primary key of a record within its model. */
export const RecordId = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(256),
  Schema.filter((id) => isWellFormed(id) || "a record id is well-formed UTF-16 (no lone surrogate)"),
  Schema.annotations({ identifier: "RecordId" })
)
export type RecordId = typeof RecordId.Type

