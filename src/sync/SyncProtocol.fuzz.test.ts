import { describe, it } from "@effect/vitest"
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
})
