import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as fc from "fast-check"
import { createHash } from "node:crypto"
import { ProtocolError } from "../../transport/ProtocolError.js"
import * as Framing from "../../transport/Framing.js"
import * as Fuzz from "../../transport/testing/Fuzz.js"
import { PeerId } from "../../transport/Transport.js"
import * as Messages from "../Messages.js"
import * as Fuzzing from "../testing/Fuzzing.js"
import * as Files from "./internal/files.js"
import * as Receive from "./internal/receive.js"
import * as Records from "./internal/records.js"
import * as Registry from "./internal/registry.js"
import * as Wire from "./internal/wire.js"
import * as Protocol from "./Protocol.js"

const MAX_FRAME = 64 * 1024
const protocol = Messages.protocol({ version: Protocol.VERSION, schema: Protocol.Message, maxFrameBytes: MAX_FRAME })
const messages = (message: Protocol.Message) => Fuzzing.jsonMessage(protocol, message)
const hash = fc.stringMatching(/^[0-9a-f]{64}$/)
const count = fc.nat({ max: 2 ** 40 })
const path = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.array(fc.constantFrom("a", "..", ".", "", "CON", "é", "e\u0301", "A", "b\\c", "C:", "x y"), { minLength: 1, maxLength: 5 }).map((names) => names.join("/"))
)
const entry: fc.Arbitrary<Protocol.Entry> = fc.oneof(
  fc.record({ path, kind: fc.constant("file" as const), size: fc.nat({ max: 1 << 20 }), mtime: fc.double({ noNaN: true, noDefaultInfinity: true }), hash }),
  fc.record({ path, kind: fc.constantFrom("directory" as const, "symlink" as const), size: fc.constant(0), mtime: fc.integer() })
)
const detail = fc.string({ maxLength: 64 })
const validMessages: fc.Arbitrary<Protocol.Message> = fc.oneof(
  fc.record({
    type: fc.constant("Offer" as const),
    transfer: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/).map((t) => t as Protocol.TransferId),
    sender: fc.string({ maxLength: 256 }),
    count,
    totalBytes: count,
    chunkBytes: fc.integer({ min: 1, max: 2 ** 30 })
  }),
  fc.record({ type: fc.constant("Entries" as const), entries: fc.array(entry, { maxLength: 6 }) }),
  fc.record({ type: fc.constant("Accepted" as const), entries: fc.array(count, { maxLength: 6 }) }),
  fc.record({ type: fc.constant("Accepted" as const), from: fc.record({ files: count, offset: count }) }),
  fc.record({ type: fc.constant("Rejected" as const), reason: fc.constantFrom(...Protocol.RejectReason.literals), detail }),
  fc.record({ type: fc.constant("FileEnd" as const), index: count }),
  fc.record({ type: fc.constant("Ack" as const), bytes: count, files: count }),
  fc.record({ type: fc.constant("Done" as const) }),
  fc.record({ type: fc.constant("Complete" as const), bytes: count, files: count }),
  fc.record({ type: fc.constant("Cancel" as const), reason: fc.constantFrom(...Protocol.CancelReason.literals), detail }),
  fc.record({ type: fc.constantFrom("Pause" as const, "Resume" as const) }),
  fc.record({ type: fc.constant("Rewind" as const), index: count, offset: count }),
  fc.record({ type: fc.constant("Reoffer" as const), transfer: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/).map((t) => t as Protocol.TransferId) })
)

const isTyped = (e: unknown) => Fuzzing.isKitError(e)
const where = { peer: "fuzzer", protocol: Protocol.PROTOCOL_ID }


/** Every frame of a hostile stream through the wire reader, until its end or a typed error. */
const readAll = (stream: Fuzz.FrameStream) =>
  Effect.scoped(Effect.gen(function*() {
    const wire = yield* Wire.make(Fuzz.scriptedDuplex(stream.chunks, Protocol.PROTOCOL_ID).duplex, MAX_FRAME)
    const read: Array<Protocol.Frame> = []
    while (true) {
      const frame = yield* wire.next
      if (Option.isNone(frame)) return read
      read.push(frame.value)
    }
  }))

/** A chunk frame's body: valid, or with its header cut short. */
const chunkBodies = fc.tuple(fc.nat(), fc.nat({ max: 2 ** 40 }), fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 60 }), fc.boolean()).map(
  ([index, offset, data, cut, truncate]) => {
    const { seal } = Wire.chunkFrame(index, offset, data.length)
    const frame = seal()
    frame.set(data, 4 + Protocol.CHUNK_HEADER_BYTES)
    const body = frame.subarray(4)
    return truncate ? body.subarray(0, Math.min(cut, body.length)) : body
  }
)

describe("Spacedrop's decoders under structure-aware fuzzing", () => {
  it("every mutated stream of Spacedrop's JSON frames is frames or a typed error", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.frameStreams(Fuzz.json(validMessages.map(messages)), MAX_FRAME),
      decode: readAll,
      isTypedError: isTyped
    }), Fuzz.testTimeout())

  it("every chunk frame, whole or cut short, decodes to its fields or a typed error", () =>
    Fuzz.assertDecoder({
      cases: chunkBodies,
      decode: (body) => Wire.decodeFrame(body, where),
      isTypedError: (e) => e instanceof ProtocolError,
      allowIllFormed: true,
      checkValue: (frame, body) => {
        expect(frame._tag).toBe("Chunk")
        if (frame._tag === "Chunk") expect(frame.length).toBe(body.length - Protocol.CHUNK_HEADER_BYTES)
      }
    }), Fuzz.testTimeout())

  it("chunk frames and messages cut into pieces anywhere read back whole: a chunk's data is its pieces, in order", () =>
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.nat({ max: 1000 }), fc.uint8Array({ maxLength: 600 })), { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat({ max: 700 }), { maxLength: 12 }),
      (chunks, cuts) => {
        const frames = chunks.flatMap(([index, data], k) => {
          const chunk = Wire.chunkFrame(index, k * 1000, data.length)
          chunk.data.set(data)
          return [chunk.seal(), Wire.fileEndFrame(index)]
        })
        const bytes = Buffer.concat(frames)
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
        const pieces = [0, ...points, bytes.length].slice(1).map((end, i, all) => bytes.subarray(i === 0 ? 0 : all[i - 1]!, end))
        const read = Effect.runSync(readAll({ chunks: pieces } as unknown as Fuzz.FrameStream))
        expect(read).toHaveLength(2 * chunks.length)
        for (const [k, [index, data]] of chunks.entries()) {
          const chunk = read[2 * k]!
          const end = read[2 * k + 1]!
          expect(chunk._tag).toBe("Chunk")
          if (chunk._tag !== "Chunk") continue
          expect({ index: chunk.index, offset: chunk.offset, length: chunk.length }).toEqual({ index, offset: k * 1000, length: data.length })
          expect(Buffer.concat(chunk.data)).toEqual(Buffer.from(data))
          expect(Buffer.from(chunk.hash)).toEqual(createHash("sha256").update(data).digest())
          expect(end).toMatchObject({ _tag: "Message", message: { type: "FileEnd", index } })
        }
      }
    )))

  it("a file's hash is the SHA-256 of its chunks' SHA-256 digests, however its bytes are fed (and from the digests alone)", () =>
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), fc.integer({ min: 1, max: 300 }), fc.array(fc.nat({ max: 2000 }), { maxLength: 8 }), (bytes, chunkBytes, cuts) => {
      const digests: Array<Buffer> = []
      for (let at = 0; at < bytes.length; at += chunkBytes) digests.push(createHash("sha256").update(bytes.subarray(at, at + chunkBytes)).digest())
      const expected = createHash("sha256").update(Buffer.concat(digests)).digest("hex")
      expect(Files.hashOfBytes(bytes, chunkBytes)).toBe(expected)
      const points = [0, ...[...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b), bytes.length]
      const fed = new Files.FileHash(chunkBytes)
      for (let i = 1; i < points.length; i++) fed.update(bytes.subarray(points[i - 1]!, points[i]!))
      expect(fed.digest()).toBe(expected)
      const folded = new Files.FileHash(chunkBytes)
      for (const digest of digests) folded.addChunk(digest)
      expect(folded.digest()).toBe(expected)
    })))

  it("the receiver's handler, fed an offer and a mutated page of entries, refuses or ends without a defect", () => {
    const shared = Effect.runSync(Effect.gen(function*() {
      return {
        settings: { limits: Receive.DEFAULT_LIMITS, decisionTimeout: Duration.seconds(1), idleTimeout: Duration.seconds(1), onExisting: "rename" as const, maxPendingOffers: 1, maxRetries: 3 },
        watchers: yield* Ref.make(0),
        pending: yield* Ref.make(0),
        offers: yield* PubSub.unbounded<Receive.IncomingOffer>(),
        registry: Registry.make(Records.memory(4)),
        reoffer: () => Effect.void
      } satisfies Receive.Shared
    }))
    const decoder = new TextDecoder()
    // a whole handler per case costs several times a decode: a fifth of the runs (the decoders above get them all)
    const runs = Math.ceil(Fuzz.runs() / 5)
    return Fuzz.assertDecoder({
      runs,
      cases: Fuzz.json(fc.array(entry, { maxLength: 8 }).map((entries) => messages({ type: "Entries", entries }))),
      decode: (page) => {
        // the offer agrees with the page as far as it still reads as one, so the checks past the count are reached
        let parsed: unknown
        try {
          parsed = JSON.parse(decoder.decode(page.bytes))
        } catch {
          parsed = undefined
        }
        const listed = typeof parsed === "object" && parsed !== null && Array.isArray((parsed as { entries?: unknown }).entries)
          ? (parsed as { entries: Array<{ kind?: unknown; size?: unknown }> }).entries
          : []
        const total = listed.reduce((n, e) => n + (e?.kind === "file" && typeof e.size === "number" ? e.size : 0), 0)
        const offer = messages({
          type: "Offer",
          transfer: "fuzz" as Protocol.TransferId,
          sender: "fuzzer",
          count: Math.max(1, listed.length),
          totalBytes: Number.isSafeInteger(total) && total >= 0 ? total : 0,
          chunkBytes: 65536
        })
        const duplex = Fuzz.scriptedDuplex([Framing.encode(offer), Framing.encode(page.bytes)], Protocol.PROTOCOL_ID)
        return Receive.handle(shared)(duplex.duplex, { peer: PeerId.make("fuzzer"), library: undefined }).pipe(
          Effect.scoped,
          Logger.withMinimumLogLevel(LogLevel.None),
          Effect.map(() => ({ answer: duplex.written() }))
        )
      },
      isTypedError: (e) => e instanceof ProtocolError,
      checkValue: ({ answer }) => {
        // nobody watches: whatever was offered, what goes back is a refusal (or nothing, if the stream ended early)
        if (answer.length === 0) return
        const frame = Wire.decodeFrame(answer.subarray(4), where)
        expect(Either.isRight(frame) && frame.right._tag === "Message" && frame.right.message.type).toBe("Rejected")
      }
    })
  }, Fuzz.testTimeout(Math.ceil(Fuzz.runs() / 5)))
})
