/**
 * Weft: a sync engine for local-first apps.
 *
 * @since 0.1.0
 */
export * from "./crdt/index.js"
export * from "./engine/index.js"
export * from "./library/index.js"
export * from "./node/index.js"
export * from "./plugins/index.js"
export * from "./sync/index.js"
export * from "./transport/index.js"
