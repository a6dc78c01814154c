/**
 * The Spacedrop protocol, version 3 (protocol id `/weft/spacedrop/3.0.0`,
 * open to any authenticated peer: a peer need not share a library to send).
 *
 * Wire format: length-prefixed frames (`Framing`: a 4-byte big-endian
 * length, then that many bytes), read by the kit's bounded reader. A frame
 * whose first byte is `0x01` is a chunk of file data (binary: bulk bytes are
 * never re-encoded); any other frame is one JSON object in UTF-8 whose first
 * field is the protocol version, as the kit's `Messages` writes them:
 *
 *   sender   → {"version":3,"type":"Offer","transfer":"…","sender":"Ada's laptop","count":3,"totalBytes":1234,"chunkBytes":65536}
 *   sender   → {"version":3,"type":"Entries","entries":[{"path":"photos","kind":"directory","size":0,"mtime":…},
 *                                                      {"path":"photos/a.jpg","kind":"file","size":1234,"mtime":…,"hash":"<file hash, hex>"}]}
 *              … pages of entries until `count` have come
 *   receiver → {"version":3,"type":"Accepted","entries":[0,2]}     (`entries`: the subset, by index; absent = all)
 *            | {"version":3,"type":"Rejected","reason":"Declined"|"NoListener"|"Timeout"|…,"detail":"…"}  then ends
 *   sender   → chunk frames and FileEnd, file after file in manifest order, without waiting:
 *              [0x01][file index: u32][offset: u64][sha256 of data: 32 bytes][data]
 *              {"version":3,"type":"FileEnd","index":2}
 *   receiver → {"version":3,"type":"Ack","bytes":…,"files":…}   verified so far (every quarter window, or 256 files)
 *   sender   → {"version":3,"type":"Done"}
 *   receiver → {"version":3,"type":"Complete","bytes":…,"files":…}  then ends
 *   either   → {"version":3,"type":"Cancel","reason":"User"|"SourceChanged"|"Corrupt"|"Failed","detail":"…"} then ends
 *   either   → {"version":3,"type":"Pause"} … {"version":3,"type":"Resume"}   the transfer waits while either side holds
 *              it paused; each side lifts only its own pause. The sender sends no chunk while paused; frames
 *              already in flight are still taken, and the receiver's idle timeout does not run.
 *   receiver → {"version":3,"type":"Rewind","index":2,"offset":131072}   a chunk (or, with offset 0, a whole file)
 *              failed its hash: the sender goes back there; the receiver skips what was in flight until the
 *              chunk at that place comes again. A bounded number of times per chunk, then `Cancel` `Corrupt`.
 *
 * Resume: a transfer whose connection dropped (or whose process stopped)
 * is offered again by the sender under the same transfer id and manifest.
 * A receiver holding a record of it (peer, transfer id, SHA-256 of the
 * manifest) answers at once, without asking its user again:
 *
 *   receiver → {"version":3,"type":"Accepted","entries":[…],"from":{"files":12,"offset":4194304}}
 *
 * meaning the first 12 accepted files are in place and the 13th has its
 * first 4 MiB verified (and synced, for a record on disk); the sender starts
 * there and never sends those bytes again. A receiver may ask for that
 * offer itself: it opens a stream whose only message is
 * `{"version":3,"type":"Reoffer","transfer":"…"}`; the sender answers
 * `Accepted` (and offers the transfer again, on a stream of its own) or
 * `Rejected` (`UnknownTransfer`: no such interrupted transfer to that peer,
 * it was cancelled or it is done; the receiver then forgets its record),
 * then ends.
 *
 * Cancel while interrupted (since version 2): a sender that cancels a
 * transfer it could not reach (it waited to reconnect, or it was
 * interrupted) tells the receiver on a stream of its own whose only
 * message is `{"version":3,"type":"Forget","transfer":"…"}`; the receiver
 * drops what it kept of that transfer from that peer (its temporary files,
 * its record) and ends the stream. If the receiver cannot be reached then,
 * it learns it when it next asks for the transfer (`Reoffer` answered
 * `UnknownTransfer`): a record is never kept for a transfer that cannot go
 * on.
 *
 * A receiver that cancels a transfer while its sender is out of reach (the
 * sender waits to reconnect) answers the sender's next offer of it
 * `Rejected` `Declined` ("the receiver cancelled this transfer"), without
 * asking its user again (it remembers the latest 1 024 such cancels, in
 * memory).
 *
 * A receiver whose sender went quiet for its idle timeout, or whose
 * connection dropped, ends its side without a `Cancel` and keeps the
 * transfer for a resume; a re-offer arriving while its old run still waits
 * on a half-open connection stops that run and resumes in its place.
 *
 * Flow: the sender keeps at most its window of bytes sent and not yet
 * acknowledged in flight, so a transfer is one stream of frames in each
 * direction and never a round trip per chunk or per file; the transport's
 * own backpressure bounds what is buffered on the way.
 *
 * Verification: every chunk carries the SHA-256 of its bytes and its offset,
 * and is checked on arrival; each file's hash is in the manifest and is
 * checked before the file is renamed into place.
 *
 * A file's hash (new in version 3) is the SHA-256 of its chunks' SHA-256
 * digests, one after the other, its chunks being of the offer's
 * `chunkBytes` (the last one shorter; an empty file has no chunk: the
 * SHA-256 of nothing). So every chunk but a file's last is exactly
 * `chunkBytes` long (a chunk of another length is a violation), and the
 * receiver makes the file's hash from the digests it verified the chunks
 * with: each byte is hashed once on arrival. Version 2's file hash was the
 * SHA-256 of the bytes themselves, a second pass over every byte on each
 * side (a tenth of the sender's CPU and a twentieth of the receiver's per
 * GiB, measured on the bench) that made it neither safer nor resumable
 * more simply: the chunk digests are what a resume and a `Rewind` build on.
 * SHA-256 (node:crypto), not BLAKE3: node's is native and uses the CPU's
 * SHA extensions (GB/s), needs no dependency, and hashes incrementally;
 * BLAKE3 would need a native addon or a pure-JS hash several times slower.
 *
 * Disk (receiver): a verified file is not synced and put in place on its
 * own: verified files gather in a group (up to 64 files or 32 MiB) whose
 * syncs run at once, then each is linked into place. A file is never put in
 * place before its whole hash matched and its bytes were synced, and
 * nothing counts on a file (progress, a resume record, `Complete`) before
 * it is in place. An `Ack` counts verified bytes and files, in place or
 * not: it only opens the sender's window.
 *
 * Bounds (configurable on the receiver, see `Limits`): the frame, the
 * manifest's bytes and entries, a path's bytes and depth, the chunk size. A
 * frame over the bound, a message that does not decode, or a message out of
 * turn is a violation (`ProtocolError`: the host disconnects the peer); an
 * offer over the other bounds, or with an unsafe path, is refused with a
 * reason the sender reads as a typed `SpacedropError`.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import type { Protocol } from "../Plugin.js"

/** The protocol id. */
export const PROTOCOL_ID = "/weft/spacedrop/3.0.0"

/** The version every JSON message starts with. */
export const VERSION = 3

/** Any authenticated peer may offer files; the receiving app decides. */
export const protocol: Protocol = { protocol: PROTOCOL_ID, permission: "authenticated" }

/** The first byte of a chunk frame. */
export const CHUNK_KIND = 0x01

/** Bytes of a chunk frame before its data: kind, index, offset, hash. */
export const CHUNK_HEADER_BYTES = 1 + 4 + 8 + 32

/** How long the receiver waits for the offer once the stream is open. */
export const OFFER_TIMEOUT = Duration.seconds(10)

/** A transfer's id: chosen by the sender, unique enough to name temporary files and logs. */
export const TransferId = Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_-]{1,64}$/), Schema.brand("weft/spacedrop/TransferId"))
export type TransferId = typeof TransferId.Type

/** A SHA-256 digest in lower-case hex. */
export const Hash = Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/))

const Count = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))

/**
 * One entry of a manifest. `path` is relative and POSIX (`/`-separated);
 * the receiver checks it (see `Paths`). `symlink` is decoded so that an
 * offer naming one is refused with a reason, not a disconnect: Weft never
 * sends or writes links.
 */
export const Entry = Schema.Struct({
  path: Schema.String,
  kind: Schema.Literal("file", "directory", "symlink"),
  size: Count,
  /** Modification time, milliseconds since the epoch. */
  mtime: Schema.Number.pipe(Schema.finite()),
  /** The file's hash (files only): the SHA-256 of its chunks' SHA-256 digests (see above). */
  hash: Schema.optional(Hash)
})
export type Entry = typeof Entry.Type

/** Why a receiver refused an offer. */
export const RejectReason = Schema.Literal(
  "Declined", // the user said no
  "NoListener", // nobody watches for offers on the receiver
  "Timeout", // nobody answered in time
  "Busy", // too many offers are waiting for an answer
  "UnsafePath", // a path would leave the target, or is not portable, or collides, or is a link
  "Exists", // a file exists where the offer needs a directory, or refusal of existing files was asked
  "NoSpace", // the target's file system has too little free space
  "TooLarge", // the offer is over the receiver's bounds
  "Failed", // the receiver could not prepare the target
  "UnknownTransfer" // (answering a `Reoffer`) no interrupted transfer of that id to that peer is kept here
)
export type RejectReason = typeof RejectReason.Type

/** Why a side cancelled a transfer under way. */
export const CancelReason = Schema.Literal(
  "User", // its user cancelled
  "SourceChanged", // the sender's file changed while it was being sent
  "Corrupt", // a chunk or a file did not match its hash
  "Failed" // a local error (disk full, permission, a timeout)
)
export type CancelReason = typeof CancelReason.Type

const Detail = Schema.String.pipe(Schema.maxLength(1024))

/** The sender opens with the offer's summary; the entries follow in pages. */
export const Offer = Schema.Struct({
  type: Schema.Literal("Offer"),
  transfer: TransferId,
  /** The sender's display name (its user's words: shown, never trusted). */
  sender: Schema.String.pipe(Schema.maxLength(256)),
  count: Count,
  totalBytes: Count,
  /** The most data bytes of one chunk. */
  chunkBytes: Schema.Int.pipe(Schema.between(1, 2 ** 30))
})
export const Entries = Schema.Struct({ type: Schema.Literal("Entries"), entries: Schema.Array(Entry) })
/** Where a resumed transfer starts: this many accepted files are complete, and the next has `offset` bytes verified. */
export const Position = Schema.Struct({ files: Count, offset: Count })
export type Position = typeof Position.Type
export const Accepted = Schema.Struct({
  type: Schema.Literal("Accepted"),
  entries: Schema.optional(Schema.Array(Count)),
  /** A resumed transfer: what the receiver already holds verified (absent: from the start). */
  from: Schema.optional(Position)
})
export const Rejected = Schema.Struct({ type: Schema.Literal("Rejected"), reason: RejectReason, detail: Detail })
export const FileEnd = Schema.Struct({ type: Schema.Literal("FileEnd"), index: Count })
export const Ack = Schema.Struct({ type: Schema.Literal("Ack"), bytes: Count, files: Count })
export const Done = Schema.Struct({ type: Schema.Literal("Done") })
export const Complete = Schema.Struct({ type: Schema.Literal("Complete"), bytes: Count, files: Count })
export const Cancel = Schema.Struct({ type: Schema.Literal("Cancel"), reason: CancelReason, detail: Detail })
/** Either side holds the transfer paused (until it sends `Resume`). */
export const Pause = Schema.Struct({ type: Schema.Literal("Pause") })
export const Resume = Schema.Struct({ type: Schema.Literal("Resume") })
/** The receiver rejected a chunk (or a whole file): send entry `index` again from `offset`. */
export const Rewind = Schema.Struct({ type: Schema.Literal("Rewind"), index: Count, offset: Count })
/** The receiver asks the sender to offer an interrupted transfer again (the first and only message of its stream). */
export const Reoffer = Schema.Struct({ type: Schema.Literal("Reoffer"), transfer: TransferId })

/** The sender cancelled an interrupted transfer: the receiver forgets what it kept of it (the first and only message of its stream). */
export const Forget = Schema.Struct({ type: Schema.Literal("Forget"), transfer: TransferId })

/** Any JSON message. */
export const Message = Schema.Union(Offer, Entries, Accepted, Rejected, FileEnd, Ack, Done, Complete, Cancel, Pause, Resume, Rewind, Reoffer, Forget)
export type Message = typeof Message.Type

/** A chunk of file data, as read off the wire. */
export interface Chunk {
  readonly _tag: "Chunk"
  readonly index: number
  readonly offset: number
  readonly hash: Uint8Array
  /** The data, as the pieces it arrived in (views of what the transport delivered: no copy). */
  readonly data: ReadonlyArray<Uint8Array>
  /** Bytes of data, all pieces. */
  readonly length: number
}

/** One frame: a message or a chunk. */
export type Frame = { readonly _tag: "Message"; readonly message: Message; /** its bytes on the wire */ readonly bytes: number } | Chunk

/** The receiver acknowledges what it verified at least every this many bytes… */
export const ACK_EVERY_BYTES = 1024 * 1024
/** …and every this many files. */
export const ACK_EVERY_FILES = 256
/** Most bytes of one page of entries the sender writes. */
export const MAX_PAGE_BYTES = 512 * 1024

/** Who did something to a transfer. */
export const Side = Schema.Literal("sender", "receiver")
export type Side = typeof Side.Type

/** A transfer did not go through. */
export class SpacedropError extends Schema.TaggedError<SpacedropError>("weft/SpacedropError")("SpacedropError", {
  reason: Schema.Literal(
    // the receiver refused the offer (see `RejectReason`)
    "Declined",
    "NoListener",
    "Timeout", // no answer, or no frame, in time
    "Busy",
    "UnsafePath",
    "Exists",
    "NoSpace",
    "TooLarge",
    "Failed", // a local error on one side (`detail` says which)
    "Cancelled", // one side cancelled (`by` says which)
    "SourceChanged", // a source file changed while it was sent; the receiver kept nothing of it
    "Corrupt", // a chunk or file did not match its hash; the receiver kept nothing of that file
    "Closed", // the other side ended or dropped the stream early
    "VersionMismatch", // the other side speaks another version
    "Unsupported", // the sender was asked to send what Spacedrop does not (a link, a special file)
    "UnknownTransfer" // no transfer of that id is known here (running, paused or resumable)
  ),
  peer: Schema.String,
  transfer: Schema.optional(Schema.String),
  /** For `Cancelled` (and failures reported by the other side): who. */
  by: Schema.optional(Side),
  /** The entry concerned, when one is. */
  path: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    return `spacedrop ${this.reason}${this.by === undefined ? "" : ` by the ${this.by}`} (peer ${this.peer}${
      this.transfer === undefined ? "" : `, transfer ${this.transfer}`
    }${this.path === undefined ? "" : `, ${JSON.stringify(this.path)}`}): ${this.detail}`
  }
}

/** An offer could not be decided as asked. */
export class DecisionError extends Schema.TaggedError<DecisionError>("weft/spacedrop/DecisionError")("DecisionError", {
  reason: Schema.Literal(
    "AlreadyDecided", // another front end answered first
    "Expired" // the offer timed out, or the sender withdrew it
  ),
  transfer: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `offer ${this.transfer}: ${this.reason}: ${this.detail}`
  }
}
