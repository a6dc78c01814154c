import { describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as fc from "fast-check"
import { arbitraryNodeId, arbitraryOperation, arbitraryTimestamp } from "../crdt/testing/Arbitraries.js"
import * as VersionVector from "../crdt/VersionVector.js"
import * as Fuzz from "../transport/testing/Fuzz.js"
import * as SyncProtocol from "./SyncProtocol.js"

const entries = fc.uniqueArray(
  fc.tuple(arbitraryNodeId, fc.record({ seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), ts: arbitraryTimestamp })),
  { maxLength: 5, selector: ([origin]) => origin }
)
const vector: fc.Arbitrary<VersionVector.VersionVector> = entries.map((list) => VersionVector.fromEntries(list))

/**
 * Valid frames of the sync protocol, one of each message type: the only
 * part of this file that knows the protocol's messages (retarget it when
 * the protocol changes).
 */
const validFrames = (): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    fc.record({ _tag: fc.constant("Hello" as const), node: arbitraryNodeId, library: fc.stringMatching(/^[A-Za-z0-9._-]{1,40}$/), entries: vector, more: fc.boolean() }),
    fc.record({ _tag: fc.constant("Ops" as const), ops: fc.array(arbitraryOperation, { maxLength: 5 }), hasMore: fc.boolean() }),
    fc.record({ _tag: fc.constant("Ack" as const), entries: vector }),
    fc.record({ _tag: fc.constant("Vector" as const), entries: vector, more: fc.boolean() }),
    fc.record({ _tag: fc.constant("More" as const), entries: vector, more: fc.boolean() }),
    fc.record({ _tag: fc.constant("Abort" as const), reason: fc.string({ maxLength: 64 }), detail: fc.string({ maxLength: 200 }) })
  ).map((message) => SyncProtocol.encode(message as SyncProtocol.Message))

/** A vector page with bytes flipped, lengths changed, cut short or run on: the page form is bytes, below MessagePack. */
const mutatedPages: fc.Arbitrary<Uint8Array> = fc.tuple(
  vector.map((v) => VersionVector.encodePage(v)),
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
  fc.option(fc.nat(), { nil: undefined }),
  fc.uint8Array({ maxLength: 40 })
).map(([page, flips, cut, tail]) => {
  const bytes = new Uint8Array([...page, ...tail])
  for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value
  return cut === undefined || bytes.length === 0 ? bytes : bytes.subarray(0, cut % bytes.length)
})

/** Valid entries of a page: node ids, prototype names among them, perhaps one origin named twice. */
const pageEntries = fc.tuple(
  fc.uniqueArray(
    fc.tuple(
      fc.oneof(arbitraryNodeId, fc.constantFrom(...Fuzz.PROTOTYPE_NAMES.filter((name) => /^[A-Za-z0-9._~-]{1,128}$/.test(name)))),
      fc.record({ seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), ts: arbitraryTimestamp })
    ),
    { maxLength: 8, selector: ([origin]) => origin }
  ),
  fc.boolean()
).map(([list, twice]) => (twice && list.length > 0 ? [...list, list[0]!] : list))

/**
 * A page with one to three of its columns' fields lying (see `VersionVector.encodePage`): the entry
 * count (0, one off, past the bound, 2^32 - 1), an origin's length (0, 129, 255, one off), an origin's
 * byte (not a node id's), a seq (0, -1, NaN, ∞, 2^53, a fraction), a timestamp's bytes (any), then
 * perhaps cut short or run on.
 */
const mutatedColumns: fc.Arbitrary<Uint8Array> = fc.tuple(
  pageEntries,
  fc.array(
    fc.oneof(
      fc.tuple(fc.constant("count" as const), fc.constantFrom(0, 1, -1, VersionVector.PAGE_ENTRIES + 1, 0xffff_ffff, 0x7fff_ffff), fc.boolean()),
      fc.tuple(fc.constant("length" as const), fc.nat(), fc.constantFrom(0, 1, 128, 129, 255, -1, 1)),
      fc.tuple(fc.constant("origin" as const), fc.nat(), fc.integer({ min: 0, max: 255 })),
      fc.tuple(fc.constant("seq" as const), fc.nat(), fc.constantFrom(0, -1, Number.NaN, Infinity, 2 ** 53, 1.5, Number.MAX_SAFE_INTEGER)),
      fc.tuple(fc.constant("ts" as const), fc.nat(), fc.integer({ min: 0, max: 0xffff_ffff }))
    ),
    { minLength: 1, maxLength: 3 }
  ),
  fc.option(fc.nat(), { nil: undefined }),
  fc.uint8Array({ maxLength: 24 })
).map(([entries, mutations, cut, tail]) => {
  const page = VersionVector.encodePage(entries)
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength)
  const n = entries.length
  const originsAt = 4 + n
  const originBytes = entries.reduce((sum, [origin]) => sum + origin.length, 0)
  const seqsAt = originsAt + originBytes
  for (const mutation of mutations) {
    if (mutation[0] === "count") view.setUint32(0, mutation[2] ? mutation[1] >>> 0 : (n + mutation[1]) >>> 0)
    else if (n === 0) continue
    else if (mutation[0] === "length") page[4 + (mutation[1] % n)] = Math.abs(mutation[2] === -1 || mutation[2] === 1 ? (page[4 + (mutation[1] % n)]! + mutation[2]) & 0xff : mutation[2])
    else if (mutation[0] === "origin") page[originsAt + (mutation[1] % Math.max(1, originBytes))] = mutation[2]
    else if (mutation[0] === "seq") view.setFloat64(seqsAt + 8 * (mutation[1] % n), mutation[2])
    else view.setUint32(seqsAt + 8 * n + 4 * (mutation[1] % (2 * n)), mutation[2])
  }
  const bytes = new Uint8Array([...page, ...tail])
  return cut === undefined || bytes.length === 0 ? bytes : bytes.subarray(0, cut % bytes.length)
})

describe("sync frames under structure-aware fuzzing", () => {
  it("decode: every mutated frame is a message or a DecodeFailure", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.msgpack(validFrames()),
      decode: (c) => SyncProtocol.decode(c.bytes),
      isTypedError: (e) => typeof e === "object" && e !== null && ["Malformed", "Version"].includes((e as SyncProtocol.DecodeFailure)._tag)
    }), Fuzz.testTimeout())

  it("a vector page: every mutated page is a vector or a refusal saying why", () =>
    Fuzz.assertDecoder({
      cases: mutatedPages,
      decode: (bytes) => VersionVector.decodePage(bytes, VersionVector.PAGE_ENTRIES),
      isTypedError: (e) => typeof e === "string" && e.length > 0
    }), Fuzz.testTimeout())

  it("a vector page with its columns lying (count, lengths, origins, seqs, timestamps): a vector of checked entries or a refusal saying why", () =>
    Fuzz.assertDecoder({
      cases: mutatedColumns,
      decode: (bytes) => VersionVector.decodePage(bytes, VersionVector.PAGE_ENTRIES),
      isTypedError: (e) => typeof e === "string" && e.length > 0,
      checkValue: (vector, bytes) => {
        // what is accepted holds only what a vector may hold, and is the page it came from
        const entries = [...vector]
        for (const [origin, entry] of entries) {
          if (!/^[A-Za-z0-9._~-]{1,128}$/.test(origin)) throw new Error(`accepted origin ${JSON.stringify(origin)}`)
          if (!Number.isSafeInteger(entry.seq) || entry.seq < 1) throw new Error(`accepted seq ${entry.seq}`)
          if (!/^[0-9a-f]{16}$/.test(entry.ts)) throw new Error(`accepted ts ${entry.ts}`)
        }
        if (new Set(entries.map(([origin]) => origin)).size !== entries.length) throw new Error("an origin accepted twice")
        const again = VersionVector.decodePage(VersionVector.encodePage(entries), VersionVector.PAGE_ENTRIES)
        if (Either.isLeft(again) || again.right.size !== vector.size || bytes.length !== VersionVector.encodePage(entries).length) {
          throw new Error("an accepted page does not encode back to a page of its size")
        }
      }
    }), Fuzz.testTimeout())
})
