/**
 * The pair plugin (`/weft/pair/1.0.0`): adds a peer to a library on both
 * sides once the responder's user approves.
 *
 * @since 0.1.0
 */
export * as Pair from "./Pair.js"
export * as Control from "./Control.js"
export * as Protocol from "./Protocol.js"
