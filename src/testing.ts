/**
 * Test helpers, arbitraries and conformance suites for apps and plugin authors.
 *
 * @since 0.1.0
 */
export * as Histories from "./crdt/testing/Histories.js"
export * as Reference from "./crdt/testing/Reference.js"
export * as Snapshot from "./engine/testing/Snapshot.js"
export * as ChannelPair from "./sync/testing/ChannelPair.js"
export * as Engines from "./engine/testing/Engines.js"
export * as TransportSuite from "./transport/testing/TransportSuite.js"
export * as Convergence from "./plugins/sync/testing/Convergence.js"
export * as Hosts from "./plugins/testing/Hosts.js"
export * as PluginSuite from "./plugins/testing/PluginSuite.js"
export * as Fuzz from "./transport/testing/Fuzz.js"
export * as PluginFuzzing from "./plugins/testing/Fuzzing.js"
export * as Arbitraries from "./crdt/testing/Arbitraries.js"
