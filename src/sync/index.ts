/**
 * Sync: the wire protocol peers speak to exchange operations, and the
 * sessions that run it over any channel of frames.
 *
 * @since 0.1.0
 */
export * as SyncProtocol from "./SyncProtocol.js"
export * as SyncSession from "./SyncSession.js"
