/**
 * Libraries: the id a group of peers syncs under, and the libraries this
 * peer belongs to with their members.
 *
 * @since 0.1.0
 */
export * as Libraries from "./Libraries.js"
export * as LibraryId from "./LibraryId.js"
