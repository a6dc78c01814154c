/**
 * Thumbnails as library records: one per (original's content hash,
 * recipe), so the same picture in two locations, or on two nodes, names one
 * thumbnail, and a file moved or renamed keeps it. The record says whether
 * the thumbnail exists and what it is (size, dimensions, its own hash) or
 * why it could not be made; the bytes never go through the log (see
 * `Protocol.ts`).
 *
 * Two nodes that make the same thumbnail at once write the same record id:
 * the engine's last-writer-wins keeps one, and the bytes of the other are
 * simply never asked for (they are addressed by their own hash).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as Model from "../../../engine/Model.js"
import { Hash } from "../Models.js"

/** How a thumbnail is made: bumped whenever the output would change, so old ones are not mixed with new. */
export const Recipe = Schema.String.pipe(Schema.pattern(/^[a-z0-9-]{1,64}$/))

/** Why a thumbnail could not be made. */
export const FailureReason = Schema.Literal(
  "Undecodable", // the decoder refused the bytes (corrupt, truncated, or a codec this build lacks)
  "TooLarge" // the original or its thumbnail is over the bounds
)
export type FailureReason = typeof FailureReason.Type

/**
 * A thumbnail (`state: "ready"`: `hash`, `bytes`, `width`, `height`, `mime`
 * set) or a recorded failure (`state: "failed"`: `reason`, `detail`), of
 * the original with content hash `source`, made by `recipe`.
 */
export const thumbnails = Model.make("media_thumbnails", Schema.Struct({
  source: Hash,
  recipe: Recipe,
  state: Schema.Literal("ready", "failed"),
  hash: Schema.optional(Hash),
  bytes: Schema.optional(Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))),
  width: Schema.optional(Schema.Int.pipe(Schema.between(1, 65535))),
  height: Schema.optional(Schema.Int.pipe(Schema.between(1, 65535))),
  mime: Schema.optional(Schema.String.pipe(Schema.maxLength(64))),
  reason: Schema.optional(FailureReason),
  detail: Schema.optional(Schema.String.pipe(Schema.maxLength(512)))
}))

/** A thumbnail record. */
export type Thumbnail = Model.Row<typeof thumbnails>

/** The models preview needs an engine to declare (beside `Models.models` of media). */
export const models: ReadonlyArray<Model.Any> = [thumbnails]

/** A thumbnail record's id: derived from the original's hash and the recipe, so every node names it alike. */
export const thumbnailId = (source: string, recipe: string): string =>
  `t${createHash("sha256").update(source).update("\u0000").update(recipe).digest("hex").slice(0, 40)}`
