import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
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

/** Reads `source` with `read` until it gives `None`, collecting what it gave (or the error it failed with). */
const readAll = <A, E>(source: Stream.Stream<Uint8Array>, read: (reader: Framing.Reader<never>) => Effect.Effect<Option.Option<A>, E>) =>
  Effect.scoped(Effect.gen(function*() {
    const reader = yield* Framing.reader(source, { maxFrameBytes: 1024, peer: "bob", protocol: "/weft/test/1.0.0" })
    const out: Array<Either.Either<A, E>> = []
    while (true) {
      const next = yield* Effect.either(read(reader))
      if (Either.isLeft(next)) {
        out.push(Either.left(next.left))
        return out
      }
      if (Option.isNone(next.right)) return out
      out.push(Either.right(next.right.value))
    }
  }))

describe("Framing.reader", () => {
  it("frames: the same frames as `decode`, however the bytes are chunked; an oversize header fails after the frames before it", () => {
    fc.assert(
      fc.property(frames, offsets, sizes, fc.boolean(), (sent, cutAt, groupBy, withOversize) => {
        const wire = concat([...sent.map(Framing.encode), ...(withOversize ? [header(1025), new Uint8Array(3)] : [])])
        const received = Effect.runSync(readAll(Stream.fromChunks(...group(cut(wire, cutAt), groupBy)), (reader) => reader.frame))
        expect(received.slice(0, sent.length)).toEqual(sent.map((frame) => Either.right(frame)))
        if (withOversize) {
          expect(received).toHaveLength(sent.length + 1)
          const last = received[sent.length]!
          expect(Either.isLeft(last) && last.left).toMatchObject({ _tag: "ProtocolError", reason: "Oversize", peer: "bob" })
        } else {
          expect(received).toHaveLength(sent.length)
        }
      }),
      { numRuns: 300 }
    )
  })

  it.live("frame: an oversize length fails at the header, without waiting for the body", () =>
    Effect.gen(function*() {
      const claim = header(1025)
      const source = Stream.concat(Stream.make(claim.subarray(0, 2), claim.subarray(2)), Stream.never)
      const result = yield* readAll(source, (reader) => reader.frame).pipe(
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => new Error("the reader waited for the body") })
      )
      expect(result).toEqual([Either.left(expect.objectContaining({ _tag: "ProtocolError", reason: "Oversize" }))])
    }))

  it("bytes: exact counts across any chunking; None at a clean end, Reset inside a read", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 40 }), offsets, sizes, (wire, n, cutAt, groupBy) => {
        const received = Effect.runSync(readAll(Stream.fromChunks(...group(cut(wire, cutAt), groupBy)), (reader) => reader.bytes(n)))
        const whole = Math.floor(wire.length / n)
        expect(received.slice(0, whole)).toEqual(Array.from({ length: whole }, (_, i) => Either.right(wire.slice(i * n, (i + 1) * n))))
        if (wire.length % n === 0) expect(received).toHaveLength(whole)
        else expect(received[whole]).toEqual(Either.left(expect.objectContaining({ _tag: "TransportError", reason: "Reset" })))
      }),
      { numRuns: 300 }
    )
  })

  it.effect("rest: the bytes not read yet, then the rest of the stream", () =>
    Effect.scoped(Effect.gen(function*() {
      const reader = yield* Framing.reader(Stream.make(Uint8Array.of(3, 1, 2), Uint8Array.of(3, 4, 5), Uint8Array.of(6)))
      const [length] = Option.getOrThrow(yield* reader.bytes(1))
      expect(Option.getOrThrow(yield* reader.bytes(length!))).toEqual(Uint8Array.of(1, 2, 3))
      expect(concat(Chunk.toArray(yield* Stream.runCollect(reader.rest)))).toEqual(Uint8Array.of(4, 5, 6))
    })))
})

describe("Framing.reader lines", () => {
  const lines = (pieces: ReadonlyArray<string | Uint8Array>, maxBytes: number) =>
    Effect.runSync(readAll(
      Stream.fromIterable(pieces.map((piece) => (typeof piece === "string" ? new TextEncoder().encode(piece) : piece))),
      (reader) => Effect.map(reader.line(maxBytes), Option.map((line) => (line._tag === "Line" ? line.text : "<too long>")))
    )).map(Either.getOrThrow)

  it("cut on newlines across reads, blank lines included; a character split between reads decodes whole", () => {
    const euro = new TextEncoder().encode("€")
    expect(lines(["first\n\nsec", concat([new TextEncoder().encode("ond "), euro.subarray(0, 1)]), concat([euro.subarray(1), new TextEncoder().encode("\n  \nthird\n")])], 1024))
      .toEqual(["first", "", "second €", "  ", "third"])
  })

  it("a line over the bound is said at once and dropped up to its newline, however many reads it spans; reading goes on", () => {
    const long = Array.from({ length: 1000 }, () => "x".repeat(64 * 1024))
    expect(lines(["ok\n" + "x".repeat(10), ...long, "xx\ny\n", "a".repeat(16) + "\n", "b".repeat(17) + "\nc\n"], 16))
      .toEqual(["ok", "<too long>", "y", "a".repeat(16), "<too long>", "c"])
  })

  it.effect("TooLong comes before the line's newline does", () =>
    Effect.scoped(Effect.gen(function*() {
      const reader = yield* Framing.reader(Stream.concat(Stream.make(new TextEncoder().encode("y".repeat(100))), Stream.never))
      expect(yield* reader.line(16)).toEqual(Option.some({ _tag: "TooLong" }))
    })))
})

describe("Framing.encodeText", () => {
  it("is the frame `encode` makes of the text's UTF-8 bytes, whatever the text", () => {
    for (const text of ["", "{\"a\":1}", "é ü 日本 🎉", "x".repeat(70_000)]) {
      expect(new Uint8Array(Framing.encodeText(text))).toEqual(Framing.encode(new TextEncoder().encode(text)))
    }
    fc.assert(fc.property(fc.string({ unit: "grapheme" }), (text) => {
      expect(new Uint8Array(Framing.encodeText(text))).toEqual(Framing.encode(new TextEncoder().encode(text)))
    }))
  })
})
