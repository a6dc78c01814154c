import * as Framing from "../../transport/Framing.js"
import * as PluginSuite from "../testing/PluginSuite.js"
import * as Pair from "./Pair.js"
import * as Protocol from "./Protocol.js"


PluginSuite.suite("Pair: plugin conformance", {
  protocol: Protocol.protocol,
  install: (host) => host.provide(Pair.make()),
  malformed: [
    { name: "a frame that is not JSON", bytes: Framing.encode(Uint8Array.of(0xff, 0x00, 0x7b)) },
    { name: "a JSON message without a version", bytes: PluginSuite.jsonFrame({ type: "Request", library: { id: "lib", name: "lib" } }) },
    { name: "a Request whose library id is not one", bytes: PluginSuite.jsonFrame({ version: Protocol.VERSION, type: "Request", library: { id: "not a library id!", name: "x" } }) },
    { name: "a message out of turn (Confirmed before any Request)", bytes: PluginSuite.jsonFrame({ version: Protocol.VERSION, type: "Confirmed" }) }
  ],
  oversize: PluginSuite.frameHeader(Protocol.MAX_FRAME_BYTES + 1),
  maxInboundStreams: Pair.plugin().maxInboundStreams!,
  // the responder waits this long for the Request
  silentTimeout: Protocol.REQUEST_TIMEOUT
})
