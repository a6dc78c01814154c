/**
 * A whole plugin on `RpcPlugin`, the example of the guide "Writing a
 * plugin": a typed protocol of two procedures (one of them streaming), its
 * handlers, a layer that serves it on the plugin host, and a typed client.
 *
 * ```ts
 * // on bob: serve it (with a `PluginHost` in context)
 * Layer.provide(Greet.layer, PluginHost.layer())
 * // on alice: call it
 * const greeter = yield* Greet.client(bob)
 * yield* greeter.Greet({ name: "Bob" })                    // "hello Bob, you are alice"
 * yield* Stream.runCollect(greeter.Countdown({ from: 3 })) // 3, 2, 1, 0
 * ```
 *
 * `examples/greet.test.ts` runs the plugin conformance suite on it.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { RpcPlugin, type Transport } from "../src/index.js"

/** The procedures, as Schemas: every payload from the wire is decoded and bounded before a handler sees it. */
export class Greeter extends RpcGroup.make(
  Rpc.make("Greet", {
    payload: { name: Schema.String.pipe(Schema.maxLength(100)) },
    success: Schema.String
  }),
  Rpc.make("Countdown", {
    payload: { from: Schema.Int.pipe(Schema.between(0, 1000)) },
    success: Schema.Int,
    stream: true
  })
).middleware(RpcPlugin.CallerMiddleware) {}

/** The protocol: a versioned id, who may open it, and its procedures. */
export const protocol = { protocol: "/example/greet/1.0.0", permission: "authenticated", group: Greeter } as const

/** The handlers. `Caller` is the peer the connection authenticated, whatever name the payload gives. */
export const handlers = Greeter.toLayer({
  Greet: ({ name }) => Effect.map(RpcPlugin.Caller, (caller) => `hello ${name}, you are ${caller.peer}`),
  Countdown: ({ from }) => Stream.iterate(from, (n) => n - 1).pipe(Stream.take(from + 1))
})

/** Serves the greeter on the `PluginHost` in context, to at most 4 clients of each peer at once. */
export const layer = RpcPlugin.layer({ name: "greet", ...protocol, maxInboundStreams: 4 }).pipe(Layer.provide(handlers))

/** A typed client of the greeter on `peer`, over one stream that closes with the scope. */
export const client = (peer: Transport.PeerId) => RpcPlugin.client(protocol, peer)
