/**
 * The pairing protocol, version 1 (protocol id `/weft/pair/1.0.0`, open to
 * any authenticated peer): one peer (the requester) asks another (the
 * responder) to share a library; the responder's user approves or refuses;
 * on approval each side adds the other to the library's members.
 *
 * Wire format: the kit's typed messages (`Messages`): length-prefixed frames
 * (a 4-byte big-endian length, then that many bytes), at most
 * `MAX_FRAME_BYTES` each, each one JSON object in UTF-8 whose first field is
 * the protocol version:
 *
 *   requester → {"version":1,"type":"Request","library":{"id":"…","name":"…"}}
 *   responder → {"version":1,"type":"Accepted"}      the requester is now a member here
 *             | {"version":1,"type":"Refused","reason":"Declined"|"Timeout"|"Unsupported"|"Failed"|"Busy"|"Unattended","detail":"…"}
 *   requester → {"version":1,"type":"Confirmed"}     the responder is now a member here too
 *   responder ends the stream                        done
 *
 * Peers are never named in messages: each side knows the other by the
 * identity its handshake proved.
 *
 * Bounds and timeouts: the Request must arrive within `REQUEST_TIMEOUT`; the
 * responder's user has `APPROVAL_TIMEOUT` to decide (then the answer is
 * `Refused`/`Timeout`); the requester waits at most `ANSWER_TIMEOUT` for the
 * answer and `CONFIRM_TIMEOUT` for the end; the responder waits
 * `CONFIRM_TIMEOUT` for Confirmed. A side that does not complete the exchange
 * removes the membership it added (so a refused, timed-out or broken pairing
 * changes nothing on the side that saw it fail). A message that does not
 * decode or comes out of turn ends the exchange as a violation (the peer is
 * disconnected); one that names another version ends it too, and a
 * responder answers it `Refused`/`Unsupported` first.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import { LibraryId } from "../../library/LibraryId.js"
import * as Messages from "../Messages.js"
import type { Protocol } from "../Plugin.js"

/** The protocol id. */
export const PROTOCOL_ID = "/weft/pair/1.0.0"

/** The version every message starts with. */
export const VERSION = 1

/** Any authenticated peer may ask; the responder's user decides. */
export const protocol: Protocol = { protocol: PROTOCOL_ID, permission: "authenticated" }

/** Most bytes of one frame: a library id (128) and name (256) and some JSON. */
export const MAX_FRAME_BYTES = 4096

/** How long the responder waits for the Request. */
export const REQUEST_TIMEOUT = Duration.seconds(10)
/** How long the responder's user has to decide, by default. */
export const APPROVAL_TIMEOUT = Duration.seconds(60)
/** How long the requester waits for the answer, by default (the user's decision and some slack). */
export const ANSWER_TIMEOUT = Duration.seconds(75)
/** How long each side waits for the other's last step (Confirmed, or the end of the stream). */
export const CONFIRM_TIMEOUT = Duration.seconds(10)

/** The library a request names. */
export const LibraryRef = Schema.Struct({
  id: LibraryId,
  name: Schema.String.pipe(Schema.maxLength(256))
})
export type LibraryRef = typeof LibraryRef.Type

/** Why a responder refused. */
export const RefusalReason = Schema.Literal(
  "Declined", // its user said no
  "Timeout", // its user did not answer in time
  "Unsupported", // the request's version is not one it speaks
  "Failed", // it could not record the membership
  "Busy", // its user has too many requests to decide already
  "Unattended" // nobody is there to ask (no terminal or app answers its requests)
)
export type RefusalReason = typeof RefusalReason.Type

/** The requester asks to share a library. */
export const Request = Schema.Struct({ type: Schema.Literal("Request"), library: LibraryRef })
/** The responder added the requester to the library. */
export const Accepted = Schema.Struct({ type: Schema.Literal("Accepted") })
/** The responder refused; nothing changed on its side. */
export const Refused = Schema.Struct({
  type: Schema.Literal("Refused"),
  reason: RefusalReason,
  detail: Schema.String.pipe(Schema.maxLength(512))
})
/** The requester added the responder to the library. */
export const Confirmed = Schema.Struct({ type: Schema.Literal("Confirmed") })

/** Any message. */
export const Message = Schema.Union(Request, Accepted, Refused, Confirmed)
export type Message = typeof Message.Type

/** The messages as the kit reads and writes them (version, bound). */
export const messages = Messages.protocol({ version: VERSION, schema: Message, maxFrameBytes: MAX_FRAME_BYTES })

/** A pairing did not complete. */
export class PairError extends Schema.TaggedError<PairError>("weft/PairError")("PairError", {
  reason: Schema.Literal(
    "Refused", // the remote user declined
    "Timeout", // no answer in time (ours, or the remote user's)
    "Closed", // the remote ended or broke the exchange early
    "VersionMismatch", // the remote speaks another version of the protocol
    "RemoteFailed", // the remote could not record the membership
    "Busy", // the remote's user has too many requests to decide already: ask again later
    "Unattended" // nobody at the remote could be asked (no terminal or app answers its requests)
  ),
  peer: Schema.String,
  library: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    return `pair ${this.reason} (peer ${this.peer}${this.library === undefined ? "" : `, library ${this.library}`}): ${this.detail}`
  }
}
