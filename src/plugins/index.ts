/**
 * The plugin host, the kit for protocol authors (typed messages, RPC,
 * consent), and the plugins.
 *
 * @since 0.1.0
 */
export * as Consent from "./Consent.js"
export * as Messages from "./Messages.js"
export * as Plugin from "./Plugin.js"
export * as PluginHost from "./PluginHost.js"
export * as RpcPlugin from "./RpcPlugin.js"
export * as MediaPlugin from "./media/index.js"
export * as PairPlugin from "./pair/index.js"
export * as PingPlugin from "./ping/index.js"
export * as RspcPlugin from "./rspc/index.js"
export * as SpacedropPlugin from "./spacedrop/index.js"
export * as SyncPlugin from "./sync/index.js"
