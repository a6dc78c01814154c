import * as Layer from "effect/Layer"
import * as PluginSuite from "../testing/PluginSuite.js"
import * as Ping from "./Ping.js"
import * as Protocol from "./Protocol.js"

PluginSuite.suite("Ping: plugin conformance", {
  protocol: Protocol.protocol,
  install: (host) => host.provide(Layer.build(Ping.layer)),
  // every byte is part of some ping, and there are no frames to oversize
  malformed: [],
  maxInboundStreams: Ping.plugin.maxInboundStreams!,
  silentTimeout: Ping.IDLE_TIMEOUT
})
