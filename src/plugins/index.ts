/**
 * The plugin host and its plugins.
 *
 * @since 0.1.0
 */
export * as Plugin from "./Plugin.js"
export * as PluginHost from "./PluginHost.js"
export * as PairPlugin from "./pair/index.js"
export * as PingPlugin from "./ping/index.js"
export * as SyncPlugin from "./sync/index.js"
