/**
 * The ping plugin (libp2p's `/ipfs/ping/1.0.0`).
 *
 * @since 0.1.0
 */
export * as Ping from "./Ping.js"
export * as Control from "./Control.js"
export * as Protocol from "./Protocol.js"
