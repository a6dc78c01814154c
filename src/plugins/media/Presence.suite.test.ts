import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Framing from "../../transport/Framing.js"
import * as PluginSuite from "../testing/PluginSuite.js"
import * as Mounts from "./Mounts.js"
import * as Presence from "./Presence.js"
import * as Protocol from "./Protocol.js"

const v = Protocol.VERSION

PluginSuite.suite("Presence: plugin conformance", {
  protocol: Protocol.presence,
  install: (host) =>
    Effect.flatMap(Mounts.make(), (mounts) =>
      host.provide(Presence.make({ refresh: Duration.seconds(1), idleTimeout: Duration.seconds(3) }).pipe(Effect.provideService(Mounts.Mounts, mounts)))),
  malformed: [
    { name: "a frame that is not JSON", bytes: Framing.encode(Uint8Array.of(0xff, 0x00, 0x7b)) },
    { name: "a JSON message without a version", bytes: PluginSuite.jsonFrame({ type: "Online", locations: [] }) },
    { name: "an Online whose locations are not a list", bytes: PluginSuite.jsonFrame({ version: v, type: "Online", locations: "l1" }) },
    { name: "an Online with an empty location id", bytes: PluginSuite.jsonFrame({ version: v, type: "Online", locations: [""] }) },
    { name: "an Ack from the announcer", bytes: PluginSuite.jsonFrame({ version: v, type: "Ack" }) }
  ],
  oversize: PluginSuite.frameHeader(Protocol.PresenceMessages.maxFrameBytes + 1),
  maxInboundStreams: 64,
  silentTimeout: Duration.seconds(3)
})
