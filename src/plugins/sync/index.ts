/**
 * The sync plugin.
 *
 * @since 0.1.0
 */
export * as Protocol from "./Protocol.js"
export * as Sync from "./Sync.js"
