/**
 * The sync protocol, version 3 (protocol id `/weft/sync/3.0.0`; version 2 sent vector pages as MessagePack maps).
 *
 * A session runs over one byte stream cut into length-prefixed frames. Each
 * frame is one MessagePack array; its first element is the protocol version,
 * its second the message type. A vector travels as pages of entries (each a
 * MessagePack `bin` of columns: count, origin lengths, origins, seqs,
 * timestamps; see `VersionVector.encodePage`), at most
 * `VersionVector.PAGE_ENTRIES` entries per page, so a vector of any size fits
 * bounded frames:
 *
 *   [3, 0, node, library, entries, more]   Hello   who I am, which library, what I hold
 *   [3, 1, batch, hasMore]                 Ops     operations the other side lacks (batch wire form
 *                                                  of `Operation`), per origin in order; hasMore:
 *                                                  the sender knows of more
 *   [3, 2, entries]                        Ack     the batch is applied; what I now hold of the
 *                                                  origins it named and of those that moved since
 *                                                  (one credit back)
 *   [3, 3, entries, more]                  Vector  anti-entropy: what I hold now
 *   [3, 4, reason, detail]                 Abort   why I end the session
 *   [3, 5, entries, more]                  More    the next page of the Hello or Vector before it
 *
 * `more` says a `More` frame follows at once: the pages of one vector are
 * sent back to back, and a vector counts once its last page is in.
 *
 * Both sides send Hello first, then run symmetric halves: each pushes what
 * the other lacks, with at most `window` Ops unacknowledged (so a slow
 * receiver bounds what the sender has in flight), then pushes new local
 * operations as they commit, and now and then re-announces its vector.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Binary from "../crdt/Binary.js"
import * as Operation from "../crdt/Operation.js"
import { NodeId } from "../crdt/Timestamp.js"
import * as VersionVector from "../crdt/VersionVector.js"
import { describe } from "../internal/describe.js"
import * as ParseError from "../internal/parseError.js"
import { LibraryId } from "../library/LibraryId.js"

/** The protocol id sessions run on. */
export const PROTOCOL_ID = "/weft/sync/3.0.0"

/** The protocol version every message starts with. */
export const VERSION = 3

const Entries = VersionVector.Page

/** Opening message: the first page of what the sender holds. */
export const Hello = Schema.TaggedStruct("Hello", { node: NodeId, library: LibraryId, entries: Entries, more: Schema.Boolean })
/** A batch of operations. */
export const Ops = Schema.TaggedStruct("Ops", { ops: Schema.Array(Operation.Operation), hasMore: Schema.Boolean })
/** A batch was applied: what the sender now holds of the origins named. */
export const Ack = Schema.TaggedStruct("Ack", { entries: Entries })
/** Anti-entropy announcement: the first page of what the sender holds. */
export const Vector = Schema.TaggedStruct("Vector", { entries: Entries, more: Schema.Boolean })
/** The sender ends the session. */
export const Abort = Schema.TaggedStruct("Abort", { reason: Schema.String.pipe(Schema.maxLength(64)), detail: Schema.String.pipe(Schema.maxLength(4096)) })
/** The next page of the Hello or Vector before it. */
export const More = Schema.TaggedStruct("More", { entries: Entries, more: Schema.Boolean })

/** Any message. */
export const Message = Schema.Union(Hello, Ops, Ack, Vector, Abort, More)
export type Message = typeof Message.Type

const types = ["Hello", "Ops", "Ack", "Vector", "Abort", "More"] as const

// One frame schema per message type: the type byte picks the schema, so a frame is
// validated once, by the schema of what it claims to be.
const frames = [
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(0), NodeId, LibraryId, Entries, Schema.Boolean),
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(1), Operation.BatchFromWire, Schema.Boolean),
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(2), Entries),
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(3), Entries, Schema.Boolean),
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(4), Abort.fields.reason, Abort.fields.detail),
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(5), Entries, Schema.Boolean)
] as const
const decoders = frames.map((frame) => Schema.decodeUnknownEither(frame as unknown as Schema.Schema<ReadonlyArray<any>, ReadonlyArray<unknown>>, { errors: "first" }))

const toMessage = (frame: ReadonlyArray<any>): Message => {
  switch (frame[1] as 0 | 1 | 2 | 3 | 4 | 5) {
    case 0:
      return { _tag: "Hello", node: frame[2], library: frame[3], entries: frame[4], more: frame[5] }
    case 1:
      return { _tag: "Ops", ops: frame[2], hasMore: frame[3] }
    case 2:
      return { _tag: "Ack", entries: frame[2] }
    case 3:
      return { _tag: "Vector", entries: frame[2], more: frame[3] }
    case 4:
      return { _tag: "Abort", reason: frame[2], detail: frame[3] }
    case 5:
      return { _tag: "More", entries: frame[2], more: frame[3] }
  }
}

/**
 * A whole vector as frames: the first page as Hello (or Vector), the rest as More.
 */
export const vectorFrames = (
  vector: VersionVector.VersionVector,
  first: (entries: VersionVector.VersionVector, more: boolean) => Message,
  pageEntries = VersionVector.PAGE_ENTRIES
): Array<Uint8Array> => {
  // the pages are encoded in one pass over the vector: no list of entries, no map built only to be taken apart again
  const pages = VersionVector.encodePages(vector, pageEntries)
  return pages.map((page, i) => {
    const more = i < pages.length - 1
    const message: Message = i === 0 ? first(VersionVector.empty, more) : { _tag: "More", entries: VersionVector.empty, more }
    return encode(message, page)
  })
}

/** Why a frame is not a message of this protocol. */
export type DecodeFailure =
  | { readonly _tag: "Malformed"; readonly detail: string }
  | { readonly _tag: "Version"; readonly version: unknown }

/**
 * Encodes a message as frame bytes (our own messages: built directly, without validation);
 * `page`, when given, is the message's entries already encoded.
 */
export const encode = (message: Message, page?: Uint8Array): Uint8Array => {
  const type = types.indexOf(message._tag)
  switch (message._tag) {
    case "Hello":
      return Binary.encode([VERSION, type, message.node, message.library, page ?? VersionVector.encodePage(message.entries), message.more])
    case "Ops":
      return Binary.encode([VERSION, type, Operation.toBatchWire(message.ops), message.hasMore])
    case "Ack":
      return Binary.encode([VERSION, type, page ?? VersionVector.encodePage(message.entries)])
    case "Vector":
    case "More":
      return Binary.encode([VERSION, type, page ?? VersionVector.encodePage(message.entries), message.more])
    case "Abort":
      return Binary.encode([VERSION, type, message.reason, message.detail])
  }
}

/** Decodes frame bytes from the network, validating every field. */
export const decode = (bytes: Uint8Array): Either.Either<Message, DecodeFailure> =>
  Either.flatMap(
    Either.mapLeft(Binary.decode(bytes), (e): DecodeFailure => ({ _tag: "Malformed", detail: e.message })),
    (u) => {
      if (!Array.isArray(u) || u.length < 2) return Either.left({ _tag: "Malformed", detail: "a frame is an array [version, type, …]" })
      if (u[0] !== VERSION) return Either.left({ _tag: "Version", version: u[0] })
      const decoder = typeof u[1] === "number" ? decoders[u[1]] : undefined
      if (decoder === undefined) return Either.left({ _tag: "Malformed", detail: `unknown message type ${describe(u[1])}` })
      return Either.mapBoth(decoder(u), {
        onLeft: (e): DecodeFailure => ({ _tag: "Malformed", detail: ParseError.describe(e) }),
        onRight: toMessage
      })
    }
  )
