/**
 * The Spacedrop plugin (`/weft/spacedrop/3.0.0`): files and folders to any
 * peer, verified chunk by chunk, confined to the folder the receiver chose.
 *
 * @since 0.1.0
 */
export * as Spacedrop from "./Spacedrop.js"
export * as Paths from "./Paths.js"
export * as Protocol from "./Protocol.js"
