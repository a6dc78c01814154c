/**
 * Typed messages over a plugin stream, for protocols that take turns (pair;
 * Spacedrop's offer and decision). Request/response and streaming calls
 * are better served by `RpcPlugin`, raw bulk bytes by the stream itself.
 *
 * Wire format: length-prefixed frames (`Framing`: a 4-byte big-endian
 * length, then that many bytes), each one JSON object in UTF-8 whose first
 * field is the protocol's version, followed by the message's own fields:
 *
 *   {"version":1,"type":"Request","library":{"id":"…","name":"…"}}
 *
 * Reading a message checks, in turn: the frame's bound (`ProtocolError`
 * `Oversize`), that it is JSON in UTF-8 whose strings are well-formed (no
 * lone surrogate escaped as `\uD800`), an object with an integer `version`
 * (`ProtocolError` `Malformed`), the version (`MessageError`
 * `VersionMismatch`, not a violation: the remote may be newer, and can be
 * told so), and the message against the protocol's Schema (`ProtocolError`
 * `Malformed`). A `ProtocolError` is a violation: a handler that fails with
 * it gets the peer disconnected.
 *
 * ```ts
 * const Greeting = Messages.protocol({
 *   version: 1,
 *   maxFrameBytes: 1024,
 *   schema: Schema.Struct({ type: Schema.Literal("Hello"), name: Schema.String.pipe(Schema.maxLength(100)) })
 * })
 * const handle = (stream: Duplex) => Effect.gen(function*() {
 *   const channel = yield* Messages.make(stream, Greeting)
 *   const hello = yield* channel.next("a Hello", "10 seconds")
 *   yield* channel.send({ type: "Hello", name: `you are ${hello.name}` })
 *   yield* channel.end
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as ParseError from "../internal/parseError.js"
import { isWellFormedJson } from "../internal/wellFormed.js"
import * as Framing from "../transport/Framing.js"
import { ProtocolError } from "../transport/ProtocolError.js"
import type { Duplex, TransportError } from "../transport/Transport.js"

/** A protocol's messages: their Schema, the version they are of, and the bound of one frame. */
export interface Protocol<A, I> {
  readonly version: number
  /** The messages, each a JSON object (without `version`, which is added and checked here). */
  readonly schema: Schema.Schema<A, I>
  /** Most bytes of one frame. */
  readonly maxFrameBytes: number
}

/** Declares a protocol's messages (an identity function that fixes the types). */
export const protocol = <A, I>(protocol: Protocol<A, I>): Protocol<A, I> => protocol

/** A message exchange did not go as the protocol says, through no violation. */
export class MessageError extends Schema.TaggedError<MessageError>("weft/MessageError")("MessageError", {
  reason: Schema.Literal(
    "VersionMismatch", // the remote speaks another version of the protocol
    "Closed", // the remote ended its side when a message was due
    "Timeout" // no message came in time
  ),
  peer: Schema.String,
  protocol: Schema.String,
  /** The version the remote sent (`VersionMismatch`). */
  version: Schema.optional(Schema.Number),
  detail: Schema.String
}) {
  override get message(): string {
    return `message ${this.reason} (peer ${this.peer}) [${this.protocol}]: ${this.detail}`
  }
}

/** Messages in and out of one stream. */
export interface Channel<A> {
  /** The next message; `None` once the remote has ended its side. */
  readonly receive: Effect.Effect<Option.Option<A>, MessageError | ProtocolError | TransportError>
  /**
   * The next message, due within `timeout`: `MessageError` `Closed` when the
   * remote ends its side first, `Timeout` when nothing comes. `what` names
   * the message awaited, for the error.
   */
  readonly next: (what: string, timeout: Duration.DurationInput) => Effect.Effect<A, MessageError | ProtocolError | TransportError>
  /** Sends a message (ours are encoded without validation: the types vouch for them). */
  readonly send: (message: A) => Effect.Effect<void, TransportError>
  /** Ends our side of the stream. */
  readonly end: Effect.Effect<void>
}

const Header = Schema.Struct({ version: Schema.Int })
const decodeHeader = ParseError.decodeUnknownEither(Header)
const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

/**
 * One frame's body as a message of `version`: well-formed UTF-8 JSON, no lone surrogate in a
 * string, the version, then `decodeMessage`. Plugins with frames of their own (Spacedrop's binary
 * chunks) decode their JSON frames with it.
 */
export const decodeJson = <A>(
  frame: Uint8Array,
  version: number,
  decodeMessage: (u: unknown) => Either.Either<A, ParseResult.ParseError>,
  where: { readonly peer: string; readonly protocol: string }
): Either.Either<A, MessageError | ProtocolError> => {
  const malformed = (detail: string) => new ProtocolError({ reason: "Malformed", ...where, detail })
  let json: unknown
  let text: string
  try {
    text = decoder.decode(frame)
    json = JSON.parse(text)
  } catch (cause) {
    return Either.left(malformed(`not a JSON message: ${cause instanceof Error ? cause.message.slice(0, 200) : "undecodable"}`))
  }
  if (!isWellFormedJson(text, json)) return Either.left(malformed("a string holds a lone surrogate (\\uD800-\\uDFFF escape)"))
  const header = decodeHeader(json)
  if (Either.isLeft(header)) return Either.left(malformed(`no version: ${ParseError.describe(header.left, 300)}`))
  if (header.right.version !== version) {
    return Either.left(new MessageError({
      reason: "VersionMismatch",
      ...where,
      version: header.right.version,
      detail: `the peer speaks version ${header.right.version}, we speak ${version}`
    }))
  }
  return Either.mapLeft(decodeMessage(json), (error) => malformed(`malformed message: ${ParseError.describe(error, 300)}`))
}

/** Messages of `protocol` over `stream`, until the scope closes. */
export const make = <A, I>(stream: Duplex, protocol: Protocol<A, I>): Effect.Effect<Channel<A>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const where = { peer: stream.remote, protocol: stream.protocol }
    const reader = yield* Framing.reader(stream.source, { ...where, maxFrameBytes: protocol.maxFrameBytes })
    const decodeMessage = ParseError.decodeUnknownEither(protocol.schema)
    const encodeMessage = Schema.encodeSync(protocol.schema)

    const decode = (frame: Uint8Array) => decodeJson(frame, protocol.version, decodeMessage, where)

    const receive = Effect.flatMap(
      reader.frame,
      Option.match({ onNone: () => Effect.succeedNone, onSome: (frame) => Effect.map(decode(frame), Option.some) })
    )

    const next = (what: string, timeout: Duration.DurationInput) =>
      receive.pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new MessageError({ reason: "Timeout", ...where, detail: `no ${what} within ${Duration.format(Duration.decode(timeout))}` })
        }),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new MessageError({ reason: "Closed", ...where, detail: `the peer ended the stream before ${what}` })),
          onSome: Effect.succeed
        }))
      )

    const framed = Framing.make(stream, protocol.maxFrameBytes)
    const send = (message: A) =>
      framed.send(encoder.encode(JSON.stringify({ version: protocol.version, ...(encodeMessage(message) as object) })))

    return { receive, next, send, end: stream.end }
  })
