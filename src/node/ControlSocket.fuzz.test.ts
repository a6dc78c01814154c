import { describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as fc from "fast-check"
import * as Fuzzing from "../plugins/testing/Fuzzing.js"
import * as RpcPlugin from "../plugins/RpcPlugin.js"
import * as Fuzz from "../transport/testing/Fuzz.js"
import type { PeerId } from "../transport/Transport.js"
import * as Control from "./Control.js"
import * as ControlSocket from "./ControlSocket.js"

// The node's real procedures, with handlers that answer at once: what is under test is
// the reading of the client's frames and payloads, not the node behind them
const handlers = Control.group.toLayer({
  Status: () => Effect.die("not under test"),
  Peers: () => Effect.die("not under test"),
  Connect: () => Effect.die("not under test"),
  ConsentPending: () => Effect.succeed([]),
  ConsentWatch: () => Stream.empty,
  ConsentAnswer: () => Effect.void,
  Ping: () => Effect.die("not under test"),
  Pair: () => Effect.die("not under test")
})

const id = fc.integer({ min: 0, max: 20 }).map(String)
const peer = fc.constantFrom("12D3KooWQmZ8cW", "peer-b", "x".repeat(128))
const request = fc.oneof(
  fc.record({ tag: fc.constant("Ping"), payload: fc.record({ peer, count: fc.integer({ min: 1, max: 1000 }) }) }),
  fc.record({ tag: fc.constant("Pair"), payload: fc.record({ peer, library: fc.constantFrom("lib-1", "notes") }, { requiredKeys: ["peer"] }) }),
  fc.record({ tag: fc.constant("Connect"), payload: fc.record({ address: fc.constantFrom("/ip4/127.0.0.1/tcp/4001", "12D3KooWQmZ8cW") }) }),
  fc.record({ tag: fc.constant("ConsentAnswer"), payload: fc.record({ id: fc.string({ maxLength: 64 }), approve: fc.boolean() }) }),
  fc.record({ tag: fc.constantFrom("Status", "Peers", "ConsentPending", "ConsentWatch"), payload: fc.constant(null) })
)

/** Valid frames a control client sends (`rpc.ts`'s wire format). */
const validFrames = fc.oneof(
  { arbitrary: fc.tuple(id, request).map(([i, r]) => ({ _tag: "Request", id: i, ...r })), weight: 4 },
  fc.record({ _tag: fc.constantFrom("Ack", "Interrupt"), requestId: id }),
  fc.constant({ _tag: "Eof" })
).map((message) => new TextEncoder().encode(JSON.stringify(message)))

describe("control socket frames under structure-aware fuzzing", () => {
  it("the control server reads every mutated stream of frames to its end or a typed error", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.frameStreams(Fuzz.json(validFrames), ControlSocket.MAX_FRAME_BYTES),
      decode: (stream) =>
        Effect.gen(function*() {
          const server = yield* RpcPlugin.makeServer(Control.group, {
            maxFrameBytes: ControlSocket.MAX_FRAME_BYTES,
            maxInFlight: ControlSocket.MAX_IN_FLIGHT,
            malformedCall: "answer"
          })
          yield* server.serve(Fuzz.scriptedDuplex(stream.chunks, ControlSocket.PROTOCOL_ID).duplex, { peer: "local" as PeerId, library: undefined })
        }).pipe(Effect.scoped, Effect.provide(handlers)),
      isTypedError: Fuzzing.isKitError
    }), Fuzz.testTimeout())
})
