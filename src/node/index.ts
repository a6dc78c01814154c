/**
 * A full Weft node that apps embed: identity, transport, libraries, plugin
 * host, plugins, an engine per library, reconnection.
 *
 * @since 0.1.0
 */
export * as AddressBook from "./AddressBook.js"
