/**
 * Reading a byte stream in bounded pieces, and writing frames: the one
 * reader every protocol uses, whatever its wire format (the plugin host's
 * library header, ping's 32-byte pings, the length-prefixed frames of pair,
 * sync and RPC, the lines a person types).
 *
 * Frame wire format: a 4-byte big-endian unsigned length, then that many
 * bytes. A length above the bound fails with a `ProtocolError` `Oversize`
 * (a violation: the remote broke the protocol) as soon as the 4 length bytes
 * are in, before any of the frame is buffered; a stream that ends inside a
 * frame, or inside any read, fails with `TransportError` `Reset`
 * (truncated). A stream that ends between two reads ends cleanly (`None`).
 *
 * Two shapes over the same buffer: `reader` pulls one piece at a time
 * (exact byte counts, frames, lines, then the rest as a stream), for
 * protocols that take turns; `decode` turns a byte stream into a stream of
 * frames, for protocols that stream (sync).
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ByteQueue from "./ByteQueue.js"
import { ProtocolError } from "./ProtocolError.js"
import { type Duplex, TransportError } from "./Transport.js"

/** Default bound on one frame: 4 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024

/** Who and what a stream is, for the errors it fails with. */
export interface Context {
  readonly peer?: string
  readonly protocol?: string
}

/** Frames in and out of a stream. */
export interface Framed {
  /** Incoming frames; fails on an oversize (`ProtocolError`) or truncated (`TransportError`) frame. */
  readonly frames: Stream.Stream<Uint8Array, TransportError | ProtocolError>
  /** Sends one frame; one over the bound is refused with `TransportError` `Oversize` (ours: no violation). */
  readonly send: (frame: Uint8Array) => Effect.Effect<void, TransportError>
}

/** Bytes of a frame's length prefix. */
export const HEADER_BYTES = 4

/** Encodes one frame (length prefix and bytes). */
export const encode = (frame: Uint8Array): Uint8Array => {
  const out = new Uint8Array(HEADER_BYTES + frame.length)
  new DataView(out.buffer).setUint32(0, frame.length)
  out.set(frame, HEADER_BYTES)
  return out
}

/**
 * Encodes one frame of `text` as UTF-8, written once into one buffer (no
 * encoded body to copy behind the prefix); `encode` of its UTF-8 bytes.
 */
export const encodeText = (text: string): Uint8Array => {
  const bytes = Buffer.byteLength(text, "utf8")
  const out = Buffer.allocUnsafe(HEADER_BYTES + bytes)
  out.writeUInt32BE(bytes, 0)
  out.write(text, HEADER_BYTES, "utf8")
  return out
}

const truncated = (context: Context, detail: string) => new TransportError({ reason: "Reset", detail, ...context })
const oversize = (context: Context, length: number, bound: number) =>
  new ProtocolError({ reason: "Oversize", detail: `frame of ${length} bytes exceeds the bound of ${bound}`, ...context })

/** Splits a byte stream into frames of at most `maxFrameBytes`. */
export const decode = (maxFrameBytes: number, context: Context = {}) =>
<E>(bytes: Stream.Stream<Uint8Array, E>): Stream.Stream<Uint8Array, E | TransportError | ProtocolError> =>
  Stream.suspend(() => {
    const pending = new ByteQueue.ByteQueue()
    // each decoded frame is a Right; a bad header becomes a Left after the frames before it,
    // so those are still delivered before the stream fails on it
    let failed = false
    return bytes.pipe(
      Stream.mapChunks((input) => {
        const out: Array<Either.Either<Uint8Array, ProtocolError>> = []
        for (const chunk of input) {
          if (failed) break
          pending.push(chunk)
          while (pending.length >= 4) {
            const length = pending.peekUint32()
            if (length > maxFrameBytes) {
              failed = true
              out.push(Either.left(oversize(context, length, maxFrameBytes)))
              break
            }
            if (pending.length < 4 + length) break
            pending.drop(4)
            out.push(Either.right(pending.take(length)))
          }
        }
        return Chunk.unsafeFromArray(out)
      }),
      Stream.mapEffect((frame) => frame),
      Stream.concat(Stream.suspend(() =>
        pending.length === 0 ? Stream.empty : Stream.fail(truncated(context, `stream ended inside a frame (${pending.length} bytes pending)`))
      )),
      Stream.ensuring(Effect.sync(() => pending.drain()))
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

/** A line a person typed, or one longer than the bound (dropped, up to its newline). */
export type Line =
  | { readonly _tag: "Line"; readonly text: string }
  | { readonly _tag: "TooLong" }

/** Reads a byte stream one piece at a time. Pieces are read in turn, never concurrently. */
export interface Reader<E> {
  /**
   * Exactly `n` bytes: `None` when the stream ended before any of them,
   * `Reset` when it ended inside them.
   */
  readonly bytes: (n: number) => Effect.Effect<Option.Option<Uint8Array>, E | TransportError>
  /** The next frame: `None` when the stream ended between frames. */
  readonly frame: Effect.Effect<Option.Option<Uint8Array>, E | TransportError | ProtocolError>
  /**
   * The next line (its newline cut off), decoded as UTF-8 once whole (a
   * character split between two chunks arrives intact); `TooLong` as soon
   * as more than `maxBytes` of it arrived, and the rest of that line is
   * dropped as it comes. At most `maxBytes` of a line are held. `None` when
   * the stream ended (a last line without a newline is dropped).
   */
  readonly line: (maxBytes: number) => Effect.Effect<Option.Option<Line>, E>
  /** What was not read yet, as a stream; the reader is done with once this is taken. */
  readonly rest: Stream.Stream<Uint8Array, E>
}

/** Options of a reader. */
export interface ReaderOptions extends Context {
  /** The bound of `frame` (default `DEFAULT_MAX_FRAME_BYTES`). */
  readonly maxFrameBytes?: number
}

const decoder = new TextDecoder()

/** A reader of `source`, pulling from it as the scope allows. */
export const reader = <E>(source: Stream.Stream<Uint8Array, E>, options: ReaderOptions = {}): Effect.Effect<Reader<E>, never, Scope.Scope> =>
  Effect.map(Stream.toPull(source), (pull) => {
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    const context: Context = {
      ...(options.peer === undefined ? {} : { peer: options.peer }),
      ...(options.protocol === undefined ? {} : { protocol: options.protocol })
    }
    const pending = new ByteQueue.ByteQueue()
    // in a line over the bound, until its newline
    let skipping = false

    const filler = ByteQueue.filler(pull, pending)
    const more = filler.more

    const bytes = (n: number): Effect.Effect<Option.Option<Uint8Array>, E | TransportError> =>
      Effect.suspend(() => {
        if (pending.length >= n) return Effect.succeed(Option.some(pending.take(n)))
        return Effect.flatMap(more, (pulled) => {
          if (pulled) return bytes(n)
          return pending.length === 0
            ? Effect.succeed(Option.none())
            : Effect.fail(truncated(context, `stream ended inside a read of ${n} bytes (${pending.length} arrived)`))
        })
      })

    const frame: Effect.Effect<Option.Option<Uint8Array>, E | TransportError | ProtocolError> = Effect.suspend(() => {
      if (pending.length >= 4) {
        const length = pending.peekUint32()
        // refused at the header: the body is never waited for
        if (length > maxFrameBytes) return Effect.fail(oversize(context, length, maxFrameBytes))
        if (pending.length >= 4 + length) {
          pending.drop(4)
          return Effect.succeed(Option.some(pending.take(length)))
        }
      }
      return Effect.flatMap(more, (pulled) => {
        if (pulled) return frame
        return pending.length === 0
          ? Effect.succeed(Option.none())
          : Effect.fail(truncated(context, `stream ended inside a frame (${pending.length} bytes pending)`))
      })
    })

    const line = (maxBytes: number): Effect.Effect<Option.Option<Line>, E> =>
      Effect.suspend(() => {
        const newline = pending.indexOf(0x0a)
        if (skipping) {
          if (newline >= 0) {
            pending.drop(newline + 1)
            skipping = false
            return line(maxBytes)
          }
          pending.drain()
        } else if (newline >= 0 && newline <= maxBytes) {
          const text = decoder.decode(pending.take(newline))
          pending.drop(1)
          return Effect.succeed(Option.some({ _tag: "Line", text } as const))
        } else if (newline > maxBytes) {
          pending.drop(newline + 1)
          return Effect.succeed(Option.some({ _tag: "TooLong" } as const))
        } else if (pending.length > maxBytes) {
          // said at once; the rest of the line is dropped as it arrives
          pending.drain()
          skipping = true
          return Effect.succeed(Option.some({ _tag: "TooLong" } as const))
        }
        return Effect.flatMap(more, (pulled) => (pulled ? line(maxBytes) : Effect.succeed(Option.none())))
      })

    const rest = Stream.suspend(() => {
      const remaining = Stream.repeatEffectChunkOption(filler.ended() ? Effect.fail(Option.none()) : pull)
      const buffered = pending.drain()
      return buffered.length > 0 ? Stream.concat(Stream.fromIterable(buffered), remaining) : remaining
    })

    return { bytes, frame, line, rest }
  })
