/**
 * The library content media reads: locations (a directory indexed on some
 * node) and the files found in them, as engine models synced like any
 * app's. Where a location lives on disk is node-local (`Mounts`), never in
 * the log: a location that moves to another node keeps its records.
 *
 * The tables are `media_locations` and `media_files` (prefixed, so an app's
 * own `files` model does not collide). An app that uses media declares
 * `models` beside its own.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as Model from "../../engine/Model.js"

/** A SHA-256 digest in lower-case hex. */
export const Hash = Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/))

/** A location: a directory indexed on some node; `name` is for people. */
export const locations = Model.make("media_locations", Schema.Struct({
  name: Schema.String.pipe(Schema.maxLength(256))
}))

/**
 * A file of a location: its path relative to the location's root (POSIX,
 * `/`-separated), size in bytes, modification time (ms since the epoch),
 * MIME type and SHA-256. Every field is checked again before bytes are
 * served: a record comes from any member, and the disk may have changed.
 */
export const files = Model.make("media_files", Schema.Struct({
  location: Schema.String.pipe(Schema.maxLength(128)),
  path: Schema.String.pipe(Schema.maxLength(4096)),
  size: Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER)),
  mtime: Schema.Number.pipe(Schema.finite()),
  mime: Schema.String.pipe(Schema.maxLength(256)),
  hash: Hash
}))

/** A location record. */
export type Location = Model.Row<typeof locations>
/** A file record. */
export type File = Model.Row<typeof files>

/** The models media needs an engine to declare. */
export const models: ReadonlyArray<Model.Any> = [locations, files]

/**
 * A file record's id: derived from its location and path, so indexing the
 * same tree twice (or on two nodes) names each file once.
 */
export const fileId = (location: string, path: string): string =>
  `f${createHash("sha256").update(location).update("\u0000").update(path).digest("hex").slice(0, 40)}`
