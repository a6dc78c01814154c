import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Framing from "../../transport/Framing.js"
import * as PluginSuite from "../testing/PluginSuite.js"
import * as Grants from "./Grants.js"
import * as Protocol from "./Protocol.js"
import * as Rspc from "./Rspc.js"

class Echo extends RpcGroup.make(
  Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String }).pipe(Protocol.capability("echo.call"))
).middleware(Protocol.Guard) {}

const limits = { idleTimeout: Duration.seconds(3) }

PluginSuite.suite("rspc: plugin conformance", {
  protocol: Protocol.protocol,
  install: (host, { library }) =>
    host.provide(Rspc.serve({ group: Echo, limits })).pipe(
      Effect.provide(Echo.toLayer({ Echo: ({ text }) => Effect.succeed(text) })),
      // the opener may call Echo, so a malformed payload reaches the decoder
      Effect.provide(Grants.layerMemory([{ peer: PluginSuite.peers.opener as never, library, capabilities: ["echo.call" as Protocol.Capability] }]))
    ),
  malformed: [
    { name: "a frame that is not JSON", bytes: Framing.encode(Uint8Array.of(0xff, 0x00, 0x7b)) },
    { name: "a message of no known kind", bytes: PluginSuite.jsonFrame({ _tag: "Shutdown" }) },
    { name: "a granted call whose payload does not decode", bytes: PluginSuite.jsonFrame({ _tag: "Request", id: "1", tag: "Echo", payload: { text: 7 } }) },
    { name: "a request id that is not a number", bytes: PluginSuite.jsonFrame({ _tag: "Request", id: "x", tag: "Echo", payload: { text: "a" } }) }
  ],
  oversize: PluginSuite.frameHeader(Protocol.DEFAULT_LIMITS.maxFrameBytes + 1),
  maxInboundStreams: Protocol.DEFAULT_LIMITS.maxStreams,
  silentTimeout: limits.idleTimeout
})
