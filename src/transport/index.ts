/**
 * Transports: authenticated connections, multiplexed streams, discovery.
 *
 * @since 0.1.0
 */
export * as Framing from "./Framing.js"
export * as Identity from "./Identity.js"
export * as Libp2pTransport from "./Libp2pTransport.js"
export * as MemoryTransport from "./MemoryTransport.js"
export * as PeerAddress from "./PeerAddress.js"
export * as ProtocolError from "./ProtocolError.js"
export * as Transport from "./Transport.js"
