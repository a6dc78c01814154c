import { describe, expect, it } from "@effect/vitest"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import * as Fuzz from "../../transport/testing/Fuzz.js"
import type * as Messages from "../Messages.js"
import * as Fuzzing from "../testing/Fuzzing.js"
import * as Protocol from "./Protocol.js"

const hash = fc.stringMatching(/^[0-9a-f]{64}$/)
const count = fc.nat({ max: 2 ** 40 })
const locationId = fc.string({ minLength: 1, maxLength: 128 })

const reads: fc.Arbitrary<Protocol.Read> = fc.record({
  type: fc.constant("Read" as const),
  file: fc.oneof(fc.record({ id: fc.string({ minLength: 1, maxLength: 256 }) }), fc.record({ hash })),
  offset: count,
  length: fc.option(fc.integer({ min: 1, max: 2 ** 40 }), { nil: undefined }),
  verify: fc.boolean()
}, { requiredKeys: ["type", "file", "offset", "verify"] })

const answers = fc.oneof(
  fc.record({
    type: fc.constant("Header" as const),
    id: fc.string({ maxLength: 256 }),
    size: count,
    mtime: fc.double({ noNaN: true, noDefaultInfinity: true }),
    hash,
    mime: fc.string({ maxLength: 64 }),
    offset: count,
    length: count
  }),
  fc.record({ type: fc.constant("Error" as const), reason: fc.constantFrom(...Protocol.Reason.literals), detail: fc.string({ maxLength: 64 }) })
)

const presence = fc.oneof(
  fc.record({ type: fc.constant("Online" as const), locations: fc.array(locationId, { maxLength: 8 }) }),
  fc.record({ type: fc.constant("Ack" as const) })
)

/** Hostile streams of frames mutated from valid messages of `protocol`, read by the kit's reader. */
const fuzz = <A, I>(protocol: Messages.Protocol<A, I>, valid: fc.Arbitrary<A>) =>
  Fuzz.assertDecoder({
    cases: Fuzz.frameStreams(Fuzz.json(valid.map((m) => Fuzzing.jsonMessage(protocol, m))), protocol.maxFrameBytes),
    decode: (stream) => Fuzzing.readMessages(protocol, stream),
    isTypedError: Fuzzing.isKitError,
    // whatever gets through is a message the protocol allows
    checkValue: (messages) => expect(messages.every(Schema.is(protocol.schema))).toBe(true)
  })

describe("media's wire decoders under fuzzing", () => {
  it("requests (what a server reads)", () => fuzz(Protocol.Requests, reads), Fuzz.testTimeout())
  it("answers (what a reader reads before the bytes)", () => fuzz(Protocol.Answers, answers), Fuzz.testTimeout())
  it("presence announcements and acks", () => fuzz(Protocol.PresenceMessages, presence), Fuzz.testTimeout())
})
