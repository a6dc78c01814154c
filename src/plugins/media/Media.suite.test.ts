import * as Effect from "effect/Effect"
import * as Engine from "../../engine/Engine.js"
import * as Framing from "../../transport/Framing.js"
import * as PluginSuite from "../testing/PluginSuite.js"
import * as Media from "./Media.js"
import * as Models from "./Models.js"
import * as Mounts from "./Mounts.js"
import * as Presence from "./Presence.js"
import * as Protocol from "./Protocol.js"

const v = Protocol.VERSION

PluginSuite.suite("Media: plugin conformance", {
  protocol: Protocol.media,
  install: (host) =>
    Effect.gen(function*() {
      const engine = yield* Engine.makeSqlite({ models: Models.models, node: host.id, filename: ":memory:" })
      const mounts = yield* Mounts.make()
      const presence = yield* host.provide(Presence.make().pipe(Effect.provideService(Mounts.Mounts, mounts)))
      return yield* host.provide(Media.make({ engine: () => Effect.succeed(engine) }).pipe(
        Effect.provideService(Mounts.Mounts, mounts),
        Effect.provideService(Presence.Presence, presence)
      ))
    }),
  malformed: [
    { name: "a frame that is not JSON", bytes: Framing.encode(Uint8Array.of(0xff, 0x00, 0x7b)) },
    { name: "a JSON message without a version", bytes: PluginSuite.jsonFrame({ type: "Read", file: { id: "f" }, offset: 0, verify: false }) },
    { name: "a Read naming no file", bytes: PluginSuite.jsonFrame({ version: v, type: "Read", file: {}, offset: 0, verify: false }) },
    { name: "a Read with a negative offset", bytes: PluginSuite.jsonFrame({ version: v, type: "Read", file: { id: "f" }, offset: -1, verify: false }) },
    { name: "a Read whose hash is not one", bytes: PluginSuite.jsonFrame({ version: v, type: "Read", file: { hash: "../etc" }, offset: 0, verify: false }) }
  ],
  oversize: PluginSuite.frameHeader(Protocol.Requests.maxFrameBytes + 1),
  maxInboundStreams: Media.DEFAULT_MAX_INBOUND_STREAMS,
  silentTimeout: Protocol.REQUEST_TIMEOUT
})
