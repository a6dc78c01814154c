/**
 * Spacedrop's frames on a stream (see `Protocol` for the format): JSON
 * messages, decoded as the kit's `Messages` decodes them (well-formed UTF-8
 * and strings, a version, then the Schema), and binary chunk frames.
 *
 * `Messages` has no binary frames, and bulk data re-encoded as JSON would
 * cost a third more bytes and a copy: hence this reader beside it. It is
 * the kit's frame reader (`Framing.reader`: the same bound, checked at the
 * length prefix; the same errors) except for a chunk's data, which it hands
 * on as the pieces the transport delivered (views, no copy): a chunk of a
 * MiB was gathered into a fresh, zeroed buffer of its own before, a copy and
 * an allocation per chunk that the receiver only hashed and wrote out (and
 * the collector then freed). Both read from the same `ByteQueue`.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as ParseError from "../../../internal/parseError.js"
import * as ByteQueue from "../../../transport/ByteQueue.js"
import * as Framing from "../../../transport/Framing.js"
import { ProtocolError } from "../../../transport/ProtocolError.js"
import { type Duplex, TransportError } from "../../../transport/Transport.js"
import { decodeJson, type MessageError } from "../../Messages.js"
import * as Protocol from "../Protocol.js"

/** Frames in and out of one Spacedrop stream. */
export interface Wire {
  /** The next frame; `None` once the remote ended its side. */
  readonly next: Effect.Effect<Option.Option<Protocol.Frame>, ProtocolError | MessageError | TransportError>
  readonly send: (message: Protocol.Message) => Effect.Effect<void, TransportError>
  /** Sends a chunk frame made with `chunkFrame` (length prefix included). */
  readonly sendRaw: (frame: Uint8Array) => Effect.Effect<void, TransportError>
  readonly end: Effect.Effect<void>
}

const decodeMessage = ParseError.decodeUnknownEither(Protocol.Message)
const encodeMessage = Schema.encodeSync(Protocol.Message)
const encoder = new TextEncoder()

/** Who a stream is with, for errors. */
export interface Where {
  readonly peer: string
  readonly protocol: string
}

/** A chunk frame from its header (`CHUNK_HEADER_BYTES`) and its data, as pieces of `length` bytes in all. */
const chunkOf = (header: Uint8Array, data: Array<Uint8Array>, length: number, where: Where): Either.Either<Protocol.Frame, ProtocolError> => {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength)
  const offset = view.getUint32(5) * 2 ** 32 + view.getUint32(9)
  if (!Number.isSafeInteger(offset)) return Either.left(new ProtocolError({ reason: "Malformed", ...where, detail: "a chunk offset past 2^53" }))
  return Either.right({ _tag: "Chunk", index: view.getUint32(1), offset, hash: header.subarray(13, 45), data, length })
}

/** One frame's body as a frame: a chunk, or a JSON message checked as `Messages` checks it. */
export const decodeFrame = (frame: Uint8Array, where: Where): Either.Either<Protocol.Frame, ProtocolError | MessageError> => {
  if (frame[0] === Protocol.CHUNK_KIND) {
    if (frame.length < Protocol.CHUNK_HEADER_BYTES) {
      return Either.left(new ProtocolError({ reason: "Malformed", ...where, detail: `a chunk frame of ${frame.length} bytes (its header is ${Protocol.CHUNK_HEADER_BYTES})` }))
    }
    const header = frame.subarray(0, Protocol.CHUNK_HEADER_BYTES)
    return chunkOf(header, [frame.subarray(Protocol.CHUNK_HEADER_BYTES)], frame.length - Protocol.CHUNK_HEADER_BYTES, where)
  }
  return Either.map(decodeJson(frame, Protocol.VERSION, decodeMessage, where), (message) => ({ _tag: "Message", message, bytes: frame.length }))
}

/** A whole message frame (length prefix included), as `send` writes it. */
export const messageFrame = (message: Protocol.Message): Uint8Array =>
  Framing.encode(encoder.encode(JSON.stringify({ version: Protocol.VERSION, ...(encodeMessage(message) as object) })))

/**
 * A chunk frame with room for `length` data bytes: fill `data`, then `seal`
 * it (hashes the data into the header). One buffer: file bytes are read
 * straight into the frame that is written. `endsFile`: the file's `FileEnd`
 * frame follows in the same buffer (a small file's one chunk and its end go
 * out in one write, not two: a write is a trip through the muxer and the
 * encryption per file).
 */
export const chunkFrame = (index: number, offset: number, length: number, endsFile = false) => {
  const end = endsFile ? fileEndFrame(index) : undefined
  const chunkBytes = 4 + Protocol.CHUNK_HEADER_BYTES + length
  // not zeroed (a chunk is read over it whole, or never sent), and not from the shared pool
  const frame: Uint8Array = Buffer.allocUnsafeSlow(chunkBytes + (end?.length ?? 0))
  if (end !== undefined) frame.set(end, chunkBytes)
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  view.setUint32(0, Protocol.CHUNK_HEADER_BYTES + length)
  frame[4] = Protocol.CHUNK_KIND
  view.setUint32(5, index)
  view.setUint32(9, Math.floor(offset / 2 ** 32))
  view.setUint32(13, offset % 2 ** 32)
  const data = frame.subarray(4 + Protocol.CHUNK_HEADER_BYTES, chunkBytes)
  return {
    frame,
    data,
    /** Writes the data's hash into the header; the frame is ready to send. */
    seal: (dataLength: number = length) => {
      createHash("sha256").update(data.subarray(0, dataLength)).digest().copy(frame, 17)
      return frame
    },
    /** The digest `seal` wrote (a view of the header: what the file's hash folds in, see `Files.FileHash`). */
    digest: () => frame.subarray(17, 49)
  }
}

/**
 * The frame of `{"type":"FileEnd","index":…}`, written without the Schema
 * encoder (one per file: thousands a second); the same bytes as
 * `messageFrame` gives for it.
 */
export const fileEndFrame = (index: number): Uint8Array =>
  Framing.encode(encoder.encode(`{"version":${Protocol.VERSION},"type":"FileEnd","index":${index}}`))

/** Frames of `stream`, each at most `maxFrameBytes`, until the scope closes. */
export const make = (stream: Duplex, maxFrameBytes: number): Effect.Effect<Wire, never, Scope.Scope> =>
  Effect.map(Stream.toPull(stream.source), (pull) => {
    const where = { peer: stream.remote, protocol: stream.protocol }
    const pending = new ByteQueue.ByteQueue()
    const more = ByteQueue.filler(pull, pending).more

    /** The frame at the head of `pending`, if it is all in (its length prefix checked against the bound). */
    const ready = (): Either.Either<Option.Option<Protocol.Frame>, ProtocolError | MessageError> => {
      if (pending.length < Framing.HEADER_BYTES) return Either.right(Option.none())
      const length = pending.peekUint32()
      // refused at the prefix: the body is never waited for
      if (length > maxFrameBytes) {
        return Either.left(new ProtocolError({ reason: "Oversize", ...where, detail: `frame of ${length} bytes exceeds the bound of ${maxFrameBytes}` }))
      }
      if (pending.length < Framing.HEADER_BYTES + length) return Either.right(Option.none())
      pending.drop(Framing.HEADER_BYTES)
      if (length >= Protocol.CHUNK_HEADER_BYTES && pending.byteAt(0) === Protocol.CHUNK_KIND) {
        // the header copied (45 bytes), the data handed on as it lies
        const header = pending.take(Protocol.CHUNK_HEADER_BYTES)
        const dataBytes = length - Protocol.CHUNK_HEADER_BYTES
        return Either.map(chunkOf(header, pending.views(dataBytes), dataBytes, where), Option.some)
      }
      return Either.map(decodeFrame(pending.take(length), where), Option.some)
    }

    const next: Effect.Effect<Option.Option<Protocol.Frame>, ProtocolError | MessageError | TransportError> = Effect.suspend(() => {
      const frame = ready()
      if (Either.isLeft(frame)) return Effect.fail(frame.left)
      if (Option.isSome(frame.right)) return Effect.succeed(frame.right)
      return Effect.flatMap(more, (pulled) => {
        if (pulled) return next
        return pending.length === 0
          ? Effect.succeedNone
          : Effect.fail(new TransportError({ reason: "Reset", ...where, detail: `stream ended inside a frame (${pending.length} bytes pending)` }))
      })
    })

    return {
      next,
      // each write is one whole frame, and the transports take a write whole: frames from
      // several fibers (a Pause, a Cancel beside the chunks) never interleave
      send: (message) => stream.write(messageFrame(message)),
      sendRaw: stream.write,
      end: stream.end
    }
  })
