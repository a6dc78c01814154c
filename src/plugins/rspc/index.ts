/**
 * rspc (`/weft/rspc/1.0.0`): an app's procedures called by the peers it
 * granted them to.
 *
 * @since 0.1.0
 */
export * as Grants from "./Grants.js"
export * as Protocol from "./Protocol.js"
export * as Rspc from "./Rspc.js"
