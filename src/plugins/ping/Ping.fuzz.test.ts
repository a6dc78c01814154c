import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "fast-check"
import * as Fuzz from "../../transport/testing/Fuzz.js"
import { TransportError } from "../../transport/Transport.js"
import * as Ping from "./Ping.js"
import * as Protocol from "./Protocol.js"

/**
 * What a dialer may send: whole pings (the valid input), and pieces of one,
 * in any chunking. Ping has no structure to mutate beyond its length: the
 * bytes are echoed as they are, so what matters is truncation and chunking.
 */
const streams = fc.tuple(
  fc.array(fc.uint8Array({ minLength: Protocol.PAYLOAD_BYTES, maxLength: Protocol.PAYLOAD_BYTES }), { maxLength: 6 }),
  fc.uint8Array({ maxLength: Protocol.PAYLOAD_BYTES - 1 }),
  fc.boolean(),
  fc.array(fc.nat(), { maxLength: 8 })
).map(([pings, partial, cutShort, cuts]) => {
  const bytes = Uint8Array.from([...pings.flatMap((p) => [...p]), ...(cutShort ? partial : [])])
  const chunks = Fuzz.chunked(bytes, cuts)
  return { bytes, chunks, toString: () => `${bytes.length} bytes in ${chunks.length} chunks` }
})

describe("the ping handler under fuzzing", () => {
  it("echoes every whole ping and ends, or fails with a TransportError on a partial one", () =>
    Fuzz.assertDecoder({
      cases: streams,
      decode: (input) => {
        const stream = Fuzz.scriptedDuplex(input.chunks, Protocol.PROTOCOL_ID)
        return Ping.handle(stream.duplex).pipe(
          Effect.scoped,
          Effect.map(() => ({ echoed: stream.written(), ended: stream.ended() }))
        )
      },
      isTypedError: (e) => e instanceof TransportError && e.reason === "Reset",
      checkValue: (out, input) => {
        expect(input.bytes.length % Protocol.PAYLOAD_BYTES).toBe(0)
        expect(out.echoed).toEqual(input.bytes)
        expect(out.ended).toBe(true)
      }
    }), Fuzz.testTimeout())
})
