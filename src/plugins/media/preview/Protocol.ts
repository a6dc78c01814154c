/**
 * Preview sync, version 2 (`/weft/preview/2.0.0`, permission `library`):
 * thumbnail bytes fetched from any member that holds them. Which
 * thumbnails exist, and their hashes, come from the library's log
 * (`Models.thumbnails`); only bytes go over this protocol, addressed by
 * their own SHA-256, so a reader checks each one before it keeps it.
 *
 * Wire format: length-prefixed frames (`Framing`: a 4-byte big-endian
 * length, then that many bytes). A request is a JSON frame, an object in
 * UTF-8 whose first field is the version; an answer is a binary frame that
 * starts with the version byte. One stream per peer, opened by the reader,
 * carrying one `Get` or several (pipelined: a reader sends the next before
 * the previous is answered, a bounded number ahead):
 *
 *   reader → {"version":2,"type":"Get","hashes":["<sha256>",…]}         1 to MAX_BATCH hashes
 *   server → for each hash, in order, one answer frame:
 *              [2][1][32 bytes: the hash][the thumbnail's bytes]      a Thumbnail (at most MAX_THUMBNAIL_BYTES)
 *            | [2][0][32 bytes: the hash]                             Missing
 *   … more Gets, each answered in full, in the order they came
 *   reader ends its side → server ends
 *
 * (Version 1 answered with a JSON header per thumbnail, then its bytes in a
 * frame of their own: two frames and a JSON parse and Schema decode per
 * thumbnail, a third of a fetch's CPU besides the transport.)
 *
 * Answers are matched to requests by order: the answers of each `Get`, in
 * the order of its hashes, then those of the next `Get`.
 *
 * A server answers only hashes that are thumbnails of the stream's library
 * (a member of one library cannot probe another's by hash) and that it
 * holds in its cache. An answer for another hash than asked, of another
 * version or kind, over `MAX_ANSWER_BYTES`, or bytes whose hash differs,
 * is a violation: the reader refuses it and asks the next peer.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import type { Protocol } from "../../Plugin.js"
import { Hash } from "../Models.js"

/** The protocol id. */
export const PREVIEW_ID = "/weft/preview/2.0.0"
/** The version every message starts with (a JSON field of a request, the first byte of an answer). */
export const VERSION = 2
/** Members of the library only. */
export const preview: Protocol = { protocol: PREVIEW_ID, permission: "library" }

/** Most hashes one `Get` asks for. */
export const MAX_BATCH = 256
/** Largest thumbnail made, stored or accepted. */
export const MAX_THUMBNAIL_BYTES = 1024 * 1024
/** An answer's header: version, kind, hash. */
export const ANSWER_HEADER = 2 + 32
/** Kinds of answer (an answer frame's second byte). */
export const MISSING = 0
export const THUMBNAIL = 1
/** Largest answer frame. */
export const MAX_ANSWER_BYTES = ANSWER_HEADER + MAX_THUMBNAIL_BYTES
/** Largest JSON frame (a `Get` of `MAX_BATCH` hashes fits). */
export const MAX_MESSAGE_BYTES = 64 + MAX_BATCH * 67
/** How long a server waits for each `Get` (or the reader's end), and a reader for each answer. */
export const TIMEOUT = Duration.seconds(10)

export const Get = Schema.Struct({
  type: Schema.Literal("Get"),
  hashes: Schema.Array(Hash).pipe(Schema.minItems(1), Schema.maxItems(MAX_BATCH))
})
export type Get = typeof Get.Type

/** Why a thumbnail could not be shown. */
export const Reason = Schema.Literal(
  "NotFound", // no such file, or no thumbnail recorded for it (yet)
  "Failed", // the thumbnail could not be made (the record says why)
  "Unavailable", // no online member holds its bytes
  "Storage" // the library or the cache could not be read or written
)
export type Reason = typeof Reason.Type

/** A thumbnail could not be made, found or fetched. */
export class PreviewError extends Schema.TaggedError<PreviewError>("weft/PreviewError")("PreviewError", {
  reason: Reason,
  library: Schema.String,
  /** The file or hash as asked for. */
  subject: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `preview ${this.reason} (library ${this.library}, ${this.subject}): ${this.detail}`
  }
}
