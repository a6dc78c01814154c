/**
 * The media protocols, version 1: presence (which locations are online on
 * which node) and remote loading (bytes of a file, from the node that holds
 * it). Both are `library` protocols: the host's header names the library,
 * and only its members get past it.
 *
 * Wire format: length-prefixed frames (`Framing`: a 4-byte big-endian
 * length, then that many bytes), each a JSON object in UTF-8 whose first
 * field is the version (as the kit's `Messages` writes them), except the
 * file's bytes, which follow a `Header` raw, unframed.
 *
 * Presence (`/weft/presence/1.0.0`), one stream per library from each node
 * to each connected member, opened by the announcer:
 *
 *   announcer → {"version":1,"type":"Online","locations":["l…","l…"]}   the whole set, on open,
 *               on every change, and every `refresh` (so silence means gone)
 *   receiver  → {"version":1,"type":"Ack"}                              after each Online (the
 *               announcer times the round trip: the RTT used to choose a peer)
 *
 * The receiver holds the set for the (library, announcer) until the stream
 * ends, fails, goes silent for `idleTimeout`, or the connection drops, and
 * then forgets it. Nothing is persisted.
 *
 * Media (`/weft/media/1.0.0`), a stream opened by the reader, for one read
 * after another:
 *
 *   reader → {"version":1,"type":"Read","file":{"id":"f…"}|{"hash":"<sha256>"},"offset":0,"length":65536,"verify":false}
 *   server → {"version":1,"type":"Header","id":"f…","size":…,"mtime":…,"hash":"…","mime":"…","offset":…,"length":…}
 *            then exactly `length` bytes, then ends
 *          | {"version":1,"type":"Error","reason":"NotFound"|"Offline"|"Changed"|"RangeNotSatisfiable"|"Unsafe","detail":"…"} then ends
 *
 * `length` absent means to the end; a range past the end is cut to it; an
 * `offset` at or past the end (of a non-empty file) is `RangeNotSatisfiable`.
 * The server writes as the transport lets it (backpressure), with a bounded
 * read-ahead (`Media.READ_AHEAD` chunks) in memory.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import * as Messages from "../Messages.js"
import type { Protocol } from "../Plugin.js"
import { Hash } from "./Models.js"

/** Presence's protocol id. */
export const PRESENCE_ID = "/weft/presence/1.0.0"
/** Remote loading's protocol id. */
export const MEDIA_ID = "/weft/media/1.0.0"
/** The version every JSON message starts with. */
export const VERSION = 1

/** Presence: members of the library only. */
export const presence: Protocol = { protocol: PRESENCE_ID, permission: "library" }
/** Remote loading: members of the library only. */
export const media: Protocol = { protocol: MEDIA_ID, permission: "library" }

/** Most locations one node announces in one library. */
export const MAX_LOCATIONS = 4096
/** A location id as announced. */
export const LocationId = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128))

export const Online = Schema.Struct({
  type: Schema.Literal("Online"),
  locations: Schema.Array(LocationId).pipe(Schema.maxItems(MAX_LOCATIONS))
})
export const Ack = Schema.Struct({ type: Schema.Literal("Ack") })

/** Presence messages (both directions). */
export const PresenceMessages = Messages.protocol({
  version: VERSION,
  schema: Schema.Union(Online, Ack),
  maxFrameBytes: 64 + MAX_LOCATIONS * (128 + 3)
})

const Count = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))

/** A file named by its record id, or by its content hash (any record with it). */
export const FileRef = Schema.Union(
  Schema.Struct({ id: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256)) }),
  Schema.Struct({ hash: Hash })
)
export type FileRef = typeof FileRef.Type

export const Read = Schema.Struct({
  type: Schema.Literal("Read"),
  file: FileRef,
  offset: Count,
  length: Schema.optional(Schema.Int.pipe(Schema.between(1, Number.MAX_SAFE_INTEGER))),
  /** Hash the whole file before serving, and refuse it `Changed` if it differs from its record. */
  verify: Schema.Boolean
})
export type Read = typeof Read.Type

/** Requests (reader → server). */
export const Requests = Messages.protocol({ version: VERSION, schema: Read, maxFrameBytes: 1024 })

/** Why a file could not be read. */
export const Reason = Schema.Literal(
  "NotFound", // no such record (by id or hash) in the library
  "Offline", // the file's location is online nowhere this node can reach
  "Changed", // the file on disk no longer matches its record (size, time, hash), or is gone
  "RangeNotSatisfiable", // the range starts at or past the end
  "Unsafe", // its path leads out of the location's root (`..`, a link)
  "Failed" // every source failed (transport errors, a peer that broke the protocol)
)
export type Reason = typeof Reason.Type

export const Header = Schema.Struct({
  type: Schema.Literal("Header"),
  id: Schema.String.pipe(Schema.maxLength(256)),
  size: Count,
  mtime: Schema.Number.pipe(Schema.finite()),
  hash: Hash,
  mime: Schema.String.pipe(Schema.maxLength(256)),
  offset: Count,
  length: Count
})
export type Header = typeof Header.Type
export const ErrorMessage = Schema.Struct({
  type: Schema.Literal("Error"),
  reason: Reason,
  detail: Schema.String.pipe(Schema.maxLength(1024))
})

/** Answers (server → reader), before the bytes. */
export const Answers = Messages.protocol({ version: VERSION, schema: Schema.Union(Header, ErrorMessage), maxFrameBytes: 4096 })

/** How long a server waits for the next Read on a stream that answered one (then ends it). */
export const IDLE_TIMEOUT = Duration.seconds(30)

/** Most Reads answered on one stream (then the server ends it). */
export const MAX_READS_PER_STREAM = 4096

/** How long a server waits for the request once the stream is open. */
export const REQUEST_TIMEOUT = Duration.seconds(10)

/** A file could not be read. */
export class MediaError extends Schema.TaggedError<MediaError>("weft/MediaError")("MediaError", {
  reason: Reason,
  library: Schema.String,
  /** The file as asked for (its id or hash). */
  file: Schema.String,
  /** The peer that answered, when one did (absent: this node). */
  peer: Schema.optional(Schema.String),
  /** The file's size, for `RangeNotSatisfiable` (HTTP's `Content-Range: bytes *\/size`). */
  size: Schema.optional(Count),
  detail: Schema.String
}) {
  override get message(): string {
    return `media ${this.reason} (library ${this.library}, file ${this.file}${this.peer === undefined ? "" : `, peer ${this.peer}`}): ${this.detail}`
  }
}
