import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Model from "../../engine/Model.js"
import * as Engines from "../../engine/testing/Engines.js"
import * as SyncProtocol from "../../sync/SyncProtocol.js"
import * as Framing from "../../transport/Framing.js"
import * as PluginSuite from "../testing/PluginSuite.js"
import * as Protocol from "./Protocol.js"
import * as Sync from "./Sync.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String }))

PluginSuite.suite("Sync: plugin conformance", {
  protocol: Protocol.protocol,
  install: (host, { library }) =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: host.id })
      yield* host.provide(Sync.make({ libraries: [{ id: library, engine }] }))
    }),
  malformed: [
    // 0xc1 is the one byte MessagePack never uses
    { name: "a frame that is not MessagePack", bytes: Framing.encode(Uint8Array.of(0xc1, 0x00, 0xff)) },
    { name: "a message out of turn (an Ack before the Hello)", bytes: Framing.encode(SyncProtocol.encode({ _tag: "Ack", entries: new Map() })) }
  ],
  oversize: PluginSuite.frameHeader(Protocol.MAX_FRAME_BYTES + 1),
  // the plugin's own limit (not exported): see `Sync.make`
  maxInboundStreams: 8,
  // SyncSession's default wait for the remote's Hello
  silentTimeout: "10 seconds"
})
