import * as Framing from "../../transport/Framing.js"
import * as PluginSuite from "../testing/PluginSuite.js"
import * as Pair from "./Pair.js"
import * as Protocol from "./Protocol.js"

const frame = (value: unknown) => Framing.encode(new TextEncoder().encode(JSON.stringify(value)))
const header = (length: number) => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, length)
  return out
}

PluginSuite.suite("Pair: plugin conformance", {
  protocol: Protocol.protocol,
  install: (host) => host.provide(Pair.make()),
  malformed: [
    { name: "a frame that is not JSON", bytes: Framing.encode(Uint8Array.of(0xff, 0x00, 0x7b)) },
    { name: "a JSON message without a version", bytes: frame({ type: "Request", library: { id: "lib", name: "lib" } }) },
    { name: "a Request whose library id is not one", bytes: frame({ version: Protocol.VERSION, type: "Request", library: { id: "not a library id!", name: "x" } }) },
    { name: "a message out of turn (Confirmed before any Request)", bytes: frame({ version: Protocol.VERSION, type: "Confirmed" }) }
  ],
  oversize: header(Protocol.MAX_FRAME_BYTES + 1),
  maxInboundStreams: Pair.plugin().maxInboundStreams!,
  // the responder waits this long for the Request
  silentTimeout: Protocol.REQUEST_TIMEOUT
})
