import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { Framing, RpcPlugin } from "../src/index.js"
import { Hosts, PluginSuite } from "../src/testing.js"
import * as Greet from "./greet.js"


PluginSuite.suite("examples/greet: plugin conformance", {
  protocol: Greet.protocol,
  install: (host) => host.provide(Layer.build(Greet.layer)),
  malformed: [
    { name: "a frame that is not JSON", bytes: Framing.encode(Uint8Array.of(0xff, 0x00)) },
    { name: "a message of no known kind", bytes: PluginSuite.jsonFrame({ _tag: "Shutdown" }) },
    { name: "a call of an unknown procedure", bytes: PluginSuite.jsonFrame({ _tag: "Request", id: "1", tag: "Shutdown", payload: {} }) },
    { name: "a Countdown from below zero", bytes: PluginSuite.jsonFrame({ _tag: "Request", id: "1", tag: "Countdown", payload: { from: -1 } }) },
    { name: "a Greet with a name over its bound", bytes: PluginSuite.jsonFrame({ _tag: "Request", id: "1", tag: "Greet", payload: { name: "x".repeat(101) } }) }
  ],
  oversize: PluginSuite.frameHeader(RpcPlugin.DEFAULT_MAX_FRAME_BYTES + 1),
  maxInboundStreams: 4
  // no silent-stream bound: a client may keep its stream open between calls
})

describe("examples/greet", () => {
  it.scopedLive("Greet greets the caller by its authenticated id; Countdown streams down to zero", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 1 })
      const alice = yield* network.host("alice")
      const bob = yield* network.host("bob")
      yield* bob.provide(Layer.build(Greet.layer))
      yield* alice.connect(bob)
      const greeter = yield* alice.provide(Greet.client(bob.id))
      // the name in the payload is only a name: who calls is the connection's
      expect(yield* greeter.Greet({ name: "bob" })).toBe("hello bob, you are alice")
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(greeter.Countdown({ from: 3 })))).toEqual([3, 2, 1, 0])
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(greeter.Countdown({ from: 0 })))).toEqual([0])
      // both calls on one stream, concurrently
      const [hello, count] = yield* Effect.all([
        greeter.Greet({ name: "again" }),
        Stream.runCount(greeter.Countdown({ from: 1000 }))
      ], { concurrency: "unbounded" })
      expect(hello).toBe("hello again, you are alice")
      expect(count).toBe(1001)
      // another peer is greeted as itself
      const carol = yield* network.host("carol")
      yield* carol.connect(bob)
      expect(yield* Effect.flatMap(carol.provide(Greet.client(bob.id)), (other) => other.Greet({ name: "alice" }))).toBe("hello alice, you are carol")
    }))
})
