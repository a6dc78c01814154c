/**
 * A full Weft node that apps embed: identity, transport, libraries, plugin
 * host, plugins, an engine per library, reconnection; its data directory
 * and its control socket.
 *
 * @since 0.1.0
 */
export * as AddressBook from "./AddressBook.js"
export * as Control from "./Control.js"
export * as ControlSocket from "./ControlSocket.js"
export * as DataDir from "./DataDir.js"
export * as DirectoryLock from "./DirectoryLock.js"
export * as Engines from "./Engines.js"
export * as LocationControl from "./LocationControl.js"
export * as Locations from "./Locations.js"
export * as Node from "./Node.js"
export * as Previews from "./Previews.js"
export * as Reconnect from "./Reconnect.js"
