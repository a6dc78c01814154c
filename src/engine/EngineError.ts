/**
 * Errors of the engine's public operations. Each carries what a caller needs
 * to understand and recover: which model, record, field or operation, and why.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/** A change or operation does not fit the app's models. Nothing was written. */
export class ValidationError extends Schema.TaggedError<ValidationError>("weft/ValidationError")("ValidationError", {
  reason: Schema.Literal(
    "UnknownModel",
    "UnknownField",
    "InvalidValue",
    "MissingField",
    "NotRichText",
    "MalformedChange",
    "TooLarge" // an operation over `maxOperationBytes`, which no sync frame could carry
  ),
  model: Schema.String,
  record: Schema.optional(Schema.String),
  field: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    const where = [this.model, this.record, this.field].filter((part) => part !== undefined).join(" / ")
    return `${this.reason} (${where}): ${this.detail}`
  }
}

/** A local change does not apply to the current state. Nothing was written. */
export class MutationError extends Schema.TaggedError<MutationError>("weft/MutationError")("MutationError", {
  reason: Schema.Literal("RecordNotFound", "RecordExists", "TooManyChanges"),
  model: Schema.String,
  record: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `${this.reason} (${this.model} / ${this.record}): ${this.detail}`
  }
}

/**
 * Remote operations break the log's invariants: each origin's operations must
 * extend what is held without a gap, with increasing timestamps. Nothing was written.
 */
export class IngestError extends Schema.TaggedError<IngestError>("weft/IngestError")("IngestError", {
  reason: Schema.Literal(
    "Gap",
    "TimestampNotIncreasing",
    "TooManyOperations",
    "TooManyOrigins", // more origins than the engine's `maxOrigins`
    "TooLarge" // rich-text changes that stand for more operations than the engine's limits (see `Engine.Options.richText`)
  ),
  origin: Schema.String,
  seq: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return `${this.reason} (${this.origin}/${this.seq}): ${this.detail}`
  }
}

/** A database operation failed. */
export class StorageError extends Schema.TaggedError<StorageError>("weft/StorageError")("StorageError", {
  reason: Schema.Literal("Open", "Query", "Corrupt", "Migration", "NodeMismatch"),
  detail: Schema.String,
  /** What the database driver threw, when it threw. */
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `storage ${this.reason}: ${this.detail}`
  }
}

/**
 * A `subscribe` reader fell too far behind the commits: changes past its buffer were not kept. Query
 * the current state and subscribe again.
 */
export class LaggedError extends Schema.TaggedError<LaggedError>("weft/LaggedError")("LaggedError", {
  reason: Schema.Literal("Lagged"),
  /** The buffer it outgrew, in changes. */
  buffered: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return `subscription ${this.reason}: ${this.detail}`
  }
}
