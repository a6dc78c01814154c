import * as Framing from "../../transport/Framing.js"
import * as PluginSuite from "../testing/PluginSuite.js"
import * as Protocol from "./Protocol.js"
import * as Spacedrop from "./Spacedrop.js"

PluginSuite.suite("Spacedrop: plugin conformance", {
  protocol: Protocol.protocol,
  install: (host) => host.provide(Spacedrop.make()),
  malformed: [
    { name: "a frame that is not JSON", bytes: Framing.encode(Uint8Array.of(0xff, 0x00, 0x7b)) },
    { name: "a JSON message without a version", bytes: PluginSuite.jsonFrame({ type: "Done" }) },
    {
      name: "an Offer whose transfer id is not one",
      bytes: PluginSuite.jsonFrame({ version: Protocol.VERSION, type: "Offer", transfer: "../x", sender: "s", count: 0, totalBytes: 0, chunkBytes: 1 })
    },
    { name: "a chunk before any offer", bytes: Framing.encode(new Uint8Array(Protocol.CHUNK_HEADER_BYTES + 8).fill(1, 0, 1)) },
    { name: "a message out of turn (Done before any Offer)", bytes: PluginSuite.jsonFrame({ version: Protocol.VERSION, type: "Done" }) },
    {
      name: "an offer whose files do not add up to its total",
      bytes: new Uint8Array([
        ...PluginSuite.jsonFrame({ version: Protocol.VERSION, type: "Offer", transfer: "t", sender: "s", count: 1, totalBytes: 5, chunkBytes: 65536 }),
        ...PluginSuite.jsonFrame({ version: Protocol.VERSION, type: "Entries", entries: [{ path: "a", kind: "file", size: 1, mtime: 0, hash: "0".repeat(64) }] })
      ])
    }
  ],
  oversize: PluginSuite.frameHeader(Spacedrop.maxFrameBytes(Spacedrop.DEFAULT_LIMITS) + 1),
  maxInboundStreams: Spacedrop.DEFAULT_MAX_INBOUND_STREAMS,
  // the receiver waits this long for the offer
  silentTimeout: Protocol.OFFER_TIMEOUT
})
