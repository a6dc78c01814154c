import { describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { arbitraryNodeId, arbitraryOperation, arbitraryTimestamp } from "../crdt/testing/Arbitraries.js"
import type * as VersionVector from "../crdt/VersionVector.js"
import * as Fuzz from "../transport/testing/Fuzz.js"
import * as SyncProtocol from "./SyncProtocol.js"

const vector: fc.Arbitrary<VersionVector.VersionVector> = fc.dictionary(
  arbitraryNodeId,
  fc.record({ seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), ts: arbitraryTimestamp }),
  { maxKeys: 5 }
)

/**
 * Valid frames of the sync protocol, one of each message type: the only
 * part of this file that knows the protocol's messages (retarget it when
 * the protocol changes).
 */
const validFrames = (): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    fc.record({ _tag: fc.constant("Hello" as const), node: arbitraryNodeId, library: fc.stringMatching(/^[A-Za-z0-9._-]{1,40}$/), vector }),
    fc.record({ _tag: fc.constant("Ops" as const), ops: fc.array(arbitraryOperation, { maxLength: 5 }), hasMore: fc.boolean() }),
    fc.record({ _tag: fc.constant("Ack" as const), vector }),
    fc.record({ _tag: fc.constant("Vector" as const), vector }),
    fc.record({ _tag: fc.constant("Abort" as const), reason: fc.string({ maxLength: 64 }), detail: fc.string({ maxLength: 200 }) })
  ).map((message) => SyncProtocol.encode(message as SyncProtocol.Message))

describe("sync frames under structure-aware fuzzing", () => {
  it("decode: every mutated frame is a message or a DecodeFailure", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.msgpack(validFrames()),
      decode: (c) => SyncProtocol.decode(c.bytes),
      isTypedError: (e) => typeof e === "object" && e !== null && ["Malformed", "Version"].includes((e as SyncProtocol.DecodeFailure)._tag)
    }), Fuzz.testTimeout())
})
