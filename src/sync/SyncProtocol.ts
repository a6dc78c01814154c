/**
 * The sync protocol, version 1 (protocol id `/weft/sync/1.0.0`).
 *
 * A session runs over one byte stream cut into length-prefixed frames. Each
 * frame is one MessagePack array; its first element is the protocol version,
 * its second the message type:
 *
 *   [1, 0, node, library, vector]   Hello   who I am, which library, what I hold
 *   [1, 1, batch, hasMore]          Ops     operations the other side lacks (batch wire form
 *                                           of `Operation`), per origin in order; hasMore:
 *                                           the sender knows of more
 *   [1, 2, vector]                  Ack     the batch is applied; what I hold now (one credit back)
 *   [1, 3, vector]                  Vector  anti-entropy: what I hold now
 *   [1, 4, reason, detail]          Abort   why I end the session
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
export const PROTOCOL_ID = "/weft/sync/1.0.0"

/** The protocol version every message starts with. */
export const VERSION = 1

/** Opening message. */
export const Hello = Schema.TaggedStruct("Hello", { node: NodeId, library: LibraryId, vector: VersionVector.VersionVector })
/** A batch of operations. */
export const Ops = Schema.TaggedStruct("Ops", { ops: Schema.Array(Operation.Operation), hasMore: Schema.Boolean })
/** A batch was applied. */
export const Ack = Schema.TaggedStruct("Ack", { vector: VersionVector.VersionVector })
/** Anti-entropy announcement. */
export const Vector = Schema.TaggedStruct("Vector", { vector: VersionVector.VersionVector })
/** The sender ends the session. */
export const Abort = Schema.TaggedStruct("Abort", { reason: Schema.String.pipe(Schema.maxLength(64)), detail: Schema.String.pipe(Schema.maxLength(4096)) })

/** Any message. */
export const Message = Schema.Union(Hello, Ops, Ack, Vector, Abort)
export type Message = typeof Message.Type

const types = ["Hello", "Ops", "Ack", "Vector", "Abort"] as const

// One frame schema per message type: the type byte picks the schema, so a frame is
// validated once, by the schema of what it claims to be.
const frames = [
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(0), NodeId, LibraryId, VersionVector.VersionVector),
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(1), Operation.BatchFromWire, Schema.Boolean),
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(2), VersionVector.VersionVector),
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(3), VersionVector.VersionVector),
  Schema.Tuple(Schema.Literal(VERSION), Schema.Literal(4), Abort.fields.reason, Abort.fields.detail)
] as const
const decoders = frames.map((frame) => Schema.decodeUnknownEither(frame as unknown as Schema.Schema<ReadonlyArray<any>, ReadonlyArray<unknown>>, { errors: "first" }))

const toMessage = (frame: ReadonlyArray<any>): Message => {
  switch (frame[1] as 0 | 1 | 2 | 3 | 4) {
    case 0:
      return { _tag: "Hello", node: frame[2], library: frame[3], vector: frame[4] }
    case 1:
      return { _tag: "Ops", ops: frame[2], hasMore: frame[3] }
    case 2:
      return { _tag: "Ack", vector: frame[2] }
    case 3:
      return { _tag: "Vector", vector: frame[2] }
    case 4:
      return { _tag: "Abort", reason: frame[2], detail: frame[3] }
  }
}

/** Why a frame is not a message of this protocol. */
export type DecodeFailure =
  | { readonly _tag: "Malformed"; readonly detail: string }
  | { readonly _tag: "Version"; readonly version: unknown }

/** Encodes a message as frame bytes (our own messages: built directly, without validation). */
export const encode = (message: Message): Uint8Array => {
  const type = types.indexOf(message._tag)
  switch (message._tag) {
    case "Hello":
      return Binary.encode([VERSION, type, message.node, message.library, message.vector])
    case "Ops":
      return Binary.encode([VERSION, type, Operation.toBatchWire(message.ops), message.hasMore])
    case "Ack":
    case "Vector":
      return Binary.encode([VERSION, type, message.vector])
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
