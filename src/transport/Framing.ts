/**
 * Length-prefixed frames over a byte stream, with a size bound.
 *
 * Wire format: each frame is a 4-byte big-endian unsigned length followed by
 * that many bytes. A length above the bound ends the stream with a
 * `ProtocolError` `Oversize` (a violation: the remote broke the protocol)
 * before any of the frame is buffered; a stream that ends inside a frame
 * fails with `TransportError` `Reset` (truncated).
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { ProtocolError } from "./ProtocolError.js"
import { type Duplex, TransportError } from "./Transport.js"

/** Default bound on one frame: 4 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024

/** Frames in and out of a stream. */
export interface Framed {
  /** Incoming frames; fails on an oversize (`ProtocolError`) or truncated (`TransportError`) frame. */
  readonly frames: Stream.Stream<Uint8Array, TransportError | ProtocolError>
  /** Sends one frame. */
  readonly send: (frame: Uint8Array) => Effect.Effect<void, TransportError>
}

/** Encodes one frame (length prefix and bytes). */
export const encode = (frame: Uint8Array): Uint8Array => {
  const out = new Uint8Array(4 + frame.length)
  new DataView(out.buffer).setUint32(0, frame.length)
  out.set(frame, 4)
  return out
}

/** Splits a byte stream into frames of at most `maxFrameBytes`. */
export const decode = (maxFrameBytes: number, context: { readonly peer?: string; readonly protocol?: string } = {}) =>
<E>(bytes: Stream.Stream<Uint8Array, E>): Stream.Stream<Uint8Array, E | TransportError | ProtocolError> =>
  Stream.suspend(() => {
    // pending bytes, as a queue of chunks, so large frames are copied once
    let chunks: Array<Uint8Array> = []
    let buffered = 0
    const take = (n: number): Uint8Array => {
      const out = new Uint8Array(n)
      let filled = 0
      while (filled < n) {
        const head = chunks[0]!
        const used = Math.min(head.length, n - filled)
        out.set(head.subarray(0, used), filled)
        filled += used
        if (used === head.length) chunks.shift()
        else chunks[0] = head.subarray(used)
      }
      buffered -= n
      return out
    }
    const peekLength = (): number => {
      const header = take(4)
      chunks.unshift(header)
      buffered += 4
      return new DataView(header.buffer, header.byteOffset, 4).getUint32(0)
    }
    const truncated = (detail: string) => new TransportError({ reason: "Reset", detail, ...context })
    const oversize = (detail: string) => new ProtocolError({ reason: "Oversize", detail, ...context })
    // each decoded frame is a Right; a bad header becomes a Left after the frames before it,
    // so those are still delivered before the stream fails on it
    let failed = false
    return bytes.pipe(
      Stream.mapChunks((input) => {
        const out: Array<Either.Either<Uint8Array, ProtocolError>> = []
        for (const chunk of input) {
          if (failed) break
          if (chunk.length > 0) {
            chunks.push(chunk)
            buffered += chunk.length
          }
          while (buffered >= 4) {
            const length = peekLength()
            if (length > maxFrameBytes) {
              failed = true
              out.push(Either.left(oversize(`frame of ${length} bytes exceeds the bound of ${maxFrameBytes}`)))
              break
            }
            if (buffered < 4 + length) break
            take(4)
            out.push(Either.right(take(length)))
          }
        }
        return Chunk.unsafeFromArray(out)
      }),
      Stream.mapEffect((frame) => frame),
      Stream.concat(Stream.suspend(() =>
        buffered === 0 ? Stream.empty : Stream.fail(truncated(`stream ended inside a frame (${buffered} bytes pending)`))
      )),
      Stream.ensuring(Effect.sync(() => {
        chunks = []
        buffered = 0
      }))
    )
  })

/** Frames over a duplex stream; outgoing frames above the bound are refused with `Oversize`. */
export const make = (stream: Duplex, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES): Framed => ({
  frames: decode(maxFrameBytes, { peer: stream.remote, protocol: stream.protocol })(stream.source),
  send: (frame) =>
    frame.length > maxFrameBytes
      ? Effect.fail(new TransportError({ reason: "Oversize", peer: stream.remote, protocol: stream.protocol, detail: `frame of ${frame.length} bytes exceeds the bound of ${maxFrameBytes}` }))
      : stream.write(encode(frame))
})

