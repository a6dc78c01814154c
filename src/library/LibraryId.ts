/**
 * A library's id: the name under which a group of peers syncs one set of
 * records. It travels in sync Hellos, library stream headers and pairing
 * requests, and names the library's database file, so it is short and
 * made of characters safe in a file name: `[A-Za-z0-9._~-]`, 1 to 128 of them.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/** A library id. */
export const LibraryId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9._~-]{1,128}$/),
  Schema.annotations({ identifier: "LibraryId" })
)
export type LibraryId = typeof LibraryId.Type
