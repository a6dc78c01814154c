import { describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Fuzz from "../../transport/testing/Fuzz.js"
import * as Fuzzing from "../testing/Fuzzing.js"
import * as Protocol from "./Protocol.js"

const validMessages: fc.Arbitrary<Protocol.Message> = fc.oneof(
  fc.record({
    type: fc.constant("Request" as const),
    library: fc.record({ id: fc.stringMatching(/^[A-Za-z0-9._~-]{1,128}$/), name: fc.string({ maxLength: 256 }) })
  }),
  fc.record({ type: fc.constant("Accepted" as const) }),
  fc.record({
    type: fc.constant("Refused" as const),
    reason: fc.constantFrom("Declined", "Timeout", "Unsupported", "Failed", "Busy", "Unattended"),
    detail: fc.string({ maxLength: 512 })
  }),
  fc.record({ type: fc.constant("Confirmed" as const) })
)

describe("pair messages under structure-aware fuzzing", () => {
  it("every mutated stream of pair frames is messages or a typed error", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.frameStreams(Fuzz.json(validMessages.map((m) => Fuzzing.jsonMessage(Protocol.messages, m))), Protocol.MAX_FRAME_BYTES),
      decode: (stream) => Fuzzing.readMessages(Protocol.messages, stream),
      isTypedError: Fuzzing.isKitError
    }), Fuzz.testTimeout())

})
