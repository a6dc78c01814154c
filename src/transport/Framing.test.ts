import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import * as fc from "fast-check"
import * as Framing from "./Framing.js"
import * as ProtocolError from "./ProtocolError.js"
import type { Duplex, PeerId } from "./Transport.js"
import { concat } from "uint8arrays"


/** Cuts `bytes` at the given offsets (taken modulo its length + 1), keeping empty pieces. */
const cut = (bytes: Uint8Array, offsets: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = offsets.map((offset) => offset % (bytes.length + 1)).sort((x, y) => x - y)
  const pieces: Array<Uint8Array> = []
  let start = 0
  for (const point of [...points, bytes.length]) {
    pieces.push(bytes.subarray(start, point))
    start = point
  }
  return pieces
}

/** Groups pieces into stream chunks of the given sizes (the rest in one last chunk). */
const group = (pieces: ReadonlyArray<Uint8Array>, sizes: ReadonlyArray<number>): Array<Chunk.Chunk<Uint8Array>> => {
  const chunks: Array<Chunk.Chunk<Uint8Array>> = []
  let start = 0
  for (const size of sizes) {
    if (start >= pieces.length) break
    chunks.push(Chunk.unsafeFromArray(pieces.slice(start, start + size)))
    start += size
  }
  if (start < pieces.length) chunks.push(Chunk.unsafeFromArray(pieces.slice(start)))
  return chunks
}

const header = (length: number) => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, length)
  return out
}

const decodeAll = (maxFrameBytes: number, chunks: ReadonlyArray<Chunk.Chunk<Uint8Array>>) =>
  Stream.fromChunks(...chunks).pipe(Framing.decode(maxFrameBytes), Stream.either, Stream.runCollect, Effect.map(Chunk.toReadonlyArray))

const frames = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 })
const offsets = fc.array(fc.nat(), { maxLength: 40 })
const sizes = fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 40 })

describe("Framing", () => {
  it("frames survive any re-chunking of the byte stream", () => {
    fc.assert(
      fc.property(frames, offsets, sizes, (sent, cutAt, groupBy) => {
        const wire = concat(sent.map(Framing.encode))
        const received = Effect.runSync(decodeAll(1024, group(cut(wire, cutAt), groupBy)))
        expect(received).toEqual(sent.map((frame) => Either.right(frame)))
      }),
      { numRuns: 300 }
    )
  })

  it("a stream that ends inside a frame yields the whole frames before it, then fails with Reset", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 100 }), { minLength: 1, maxLength: 6 }),
        fc.nat(),
        offsets,
        sizes,
        (sent, end, cutAt, groupBy) => {
          const encoded = sent.map(Framing.encode)
          const wire = concat(encoded)
          // where frames end: a truncation anywhere else is inside a frame
          const boundaries = new Set(encoded.reduce((ends, frame) => [...ends, ends[ends.length - 1]! + frame.length], [0]))
          const length = end % wire.length
          fc.pre(!boundaries.has(length))
          const received = Effect.runSync(decodeAll(1024, group(cut(wire.subarray(0, length), cutAt), groupBy)))
          const whole = encoded.filter((_, i) => encoded.slice(0, i + 1).reduce((n, frame) => n + frame.length, 0) <= length).length
          expect(received.slice(0, -1)).toEqual(sent.slice(0, whole).map((frame) => Either.right(frame)))
          const last = received[received.length - 1]!
          expect(Either.isLeft(last) && last.left.reason).toBe("Reset")
        }
      ),
      { numRuns: 300 }
    )
  })

  it.live("an oversize length fails with Oversize at the header, without waiting for the body", () =>
    Effect.gen(function*() {
      const bound = 4 * 1024 * 1024
      const claim = header(bound + 1)
      // the header arrives split and the body never comes: a decoder that buffered the body would hang
      const source = Stream.concat(Stream.make(claim.subarray(0, 3), concat([claim.subarray(3), new Uint8Array(10)])), Stream.never)
      const error = yield* source.pipe(
        Framing.decode(bound, { peer: "bob", protocol: "/weft/test/1.0.0" }),
        Stream.runDrain,
        Effect.flip,
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => new Error("the decoder waited for the body") })
      )
      // the remote broke the protocol: a violation, by its type
      expect(error).toBeInstanceOf(ProtocolError.ProtocolError)
      expect(ProtocolError.isViolation(error)).toBe(true)
      expect(error).toMatchObject({ reason: "Oversize", peer: "bob", protocol: "/weft/test/1.0.0" })
    }))

  it("frames before an oversize header are delivered, however the bytes are chunked", () => {
    fc.assert(
      fc.property(frames, offsets, sizes, (sent, cutAt, groupBy) => {
        const wire = concat([...sent.map(Framing.encode), header(1025), new Uint8Array(8)])
        const received = Effect.runSync(decodeAll(1024, group(cut(wire, cutAt), groupBy)))
        expect(received.slice(0, -1)).toEqual(sent.map((frame) => Either.right(frame)))
        const last = received[received.length - 1]!
        expect(Either.isLeft(last) && last.left.reason).toBe("Oversize")
      }),
      { numRuns: 300 }
    )
  })

  it.effect("a frame of exactly the bound passes, one byte more does not", () =>
    Effect.gen(function*() {
      const bound = 1000
      const exact = new Uint8Array(bound).fill(7)
      expect(yield* decodeAll(bound, [Chunk.of(Framing.encode(exact))])).toEqual([Either.right(exact)])
      const over = yield* decodeAll(bound, [Chunk.of(Framing.encode(new Uint8Array(bound + 1)))])
      expect(over).toHaveLength(1)
      expect(Either.isLeft(over[0]!) && over[0].left.reason).toBe("Oversize")
    }))

  it.effect("empty frames are frames", () =>
    Effect.gen(function*() {
      const empty = new Uint8Array(0)
      const wire = concat([Framing.encode(empty), Framing.encode(Uint8Array.of(1)), Framing.encode(empty)])
      expect(yield* decodeAll(10, [Chunk.of(wire)])).toEqual([Either.right(empty), Either.right(Uint8Array.of(1)), Either.right(empty)])
    }))

  it.effect("send refuses a frame above the bound with Oversize and writes nothing; frames go out length-prefixed", () =>
    Effect.gen(function*() {
      const written: Array<Uint8Array> = []
      const stream: Duplex = {
        protocol: "/weft/test/1.0.0",
        remote: "bob" as PeerId,
        source: Stream.empty,
        write: (chunk) => Effect.sync(() => void written.push(chunk)),
        end: Effect.void,
        reset: Effect.void
      }
      const framed = Framing.make(stream, 8)
      const error = yield* Effect.flip(framed.send(new Uint8Array(9)))
      // our own frame over the bound: a local error, never a reason to disconnect the peer
      expect(error).toMatchObject({ _tag: "TransportError", reason: "Oversize", peer: "bob", protocol: "/weft/test/1.0.0" })
      expect(ProtocolError.isViolation(error)).toBe(false)
      expect(written).toEqual([])
      yield* framed.send(Uint8Array.of(1, 2, 3))
      expect(written).toEqual([Uint8Array.of(0, 0, 0, 3, 1, 2, 3)])
    }))
})
