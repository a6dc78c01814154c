/**
 * The control protocol, version 1: how `weft` commands talk to the running
 * node (`weft serve`) of a data directory, over the Unix domain socket
 * `<dir>/weft.sock` (mode 0600, so only the owner's processes reach it).
 *
 * Wire format: newline-delimited JSON in UTF-8, one object per line, each at
 * most `MAX_LINE_BYTES`. A client sends requests; the node answers each with
 * one response carrying the same `id`, in any order (requests on one
 * connection run concurrently). A client that disconnects interrupts what
 * its requests were doing.
 *
 *   → {"version":1,"id":7,"request":{"_tag":"Ping","peer":"12D3KooW…","count":3}}
 *   ← {"version":1,"id":7,"ok":true,"value":{"peer":"12D3KooW…","rtts":[…],"min":0.4,"median":0.5,"max":0.9}}
 *   ← {"version":1,"id":8,"ok":false,"error":{"tag":"PairError","reason":"Refused","message":"pair Refused (…): …"}}
 *
 * Requests (`_tag`, fields) and what a success carries:
 *
 *   Status                                   StatusInfo: peer id, addresses, libraries, sessions, counts
 *   Peers                                    PeersInfo: available and discovered peers
 *   Connect  address                         { peer }
 *   Pair     peer, library?                  { peer, library }      peer: a peer id or a multiaddr
 *   Ping     peer, count                     PingResult
 *   NotesAdd library?, title, body, done     Note
 *   NotesList library?, after?, limit?       NotesPage: notes, next?
 *   NotesSet library?, id, title?, body?, done?   Note
 *   NotesRemove library?, id                 { id }
 *
 * `library` defaults to the node's first library. `NotesList` answers one
 * page, ordered by title then id: at most `limit` notes (default
 * `NOTES_PAGE_LIMIT`) and at most `NOTES_PAGE_BYTES` of them; `next`, when
 * present, is the cursor to send as `after` for the following page. Pages
 * hold no note twice, but a note renamed between two pages can come again
 * at its new place (`Control.listNotes` keeps the last). A line that is not a
 * valid request is answered with `ok: false` and tag `ControlError`
 * (reason `Malformed`; `id` 0 when it could not be read); a line over the
 * bound closes the connection.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { RecordId } from "../crdt/Operation.js"
import { LibraryId } from "../library/LibraryId.js"
import { Library } from "../library/Libraries.js"
import { PeerId } from "../transport/Transport.js"
import { Note } from "./Notes.js"

/** The version every line starts with. */
export const VERSION = 1

/** The socket's file name in the data directory. */
export const SOCKET_NAME = "weft.sock"

/** Most bytes of one line (a status with many peers fits easily). */
export const MAX_LINE_BYTES = 1024 * 1024

/** A peer id, or a multiaddr to connect to first (`/ip4/…/tcp/…/p2p/…`). */
export const Target = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(1024))

const Text = (max: number) => Schema.String.pipe(Schema.maxLength(max))
// any record id: a note synced from another peer need not have an id this node would make
const NoteId = RecordId

export const Status = Schema.TaggedStruct("Status", {})
export const Peers = Schema.TaggedStruct("Peers", {})
export const Connect = Schema.TaggedStruct("Connect", { address: Target })
export const Pair = Schema.TaggedStruct("Pair", { peer: Target, library: Schema.optional(LibraryId) })
export const Ping = Schema.TaggedStruct("Ping", { peer: Target, count: Schema.Int.pipe(Schema.between(1, 1000)) })
export const NotesAdd = Schema.TaggedStruct("NotesAdd", {
  library: Schema.optional(LibraryId),
  title: Text(1024),
  body: Text(64 * 1024),
  done: Schema.Boolean
})
/** Where a page of notes starts: after the note with this title and id. */
export const NoteCursor = Schema.Struct({ title: Text(1024), id: NoteId })
export type NoteCursor = typeof NoteCursor.Type

/** Notes per page unless the request says fewer or more. */
export const NOTES_PAGE_LIMIT = 100
/** Most bytes of the notes of one page, as JSON: half a line, so a page with its envelope always fits. */
export const NOTES_PAGE_BYTES = MAX_LINE_BYTES / 2

export const NotesList = Schema.TaggedStruct("NotesList", {
  library: Schema.optional(LibraryId),
  after: Schema.optional(NoteCursor),
  limit: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000)))
})
export const NotesSet = Schema.TaggedStruct("NotesSet", {
  library: Schema.optional(LibraryId),
  id: NoteId,
  title: Schema.optional(Text(1024)),
  body: Schema.optional(Text(64 * 1024)),
  done: Schema.optional(Schema.Boolean)
})
export const NotesRemove = Schema.TaggedStruct("NotesRemove", { library: Schema.optional(LibraryId), id: NoteId })

/** Any request. */
export const Request = Schema.Union(Status, Peers, Connect, Pair, Ping, NotesAdd, NotesList, NotesSet, NotesRemove)
export type Request = typeof Request.Type

/** A sync session, as the sync plugin reports it. */
export const Session = Schema.Struct({
  peer: Schema.String,
  library: Schema.String,
  state: Schema.Literal("connecting", "syncing", "failed", "ended"),
  sent: Schema.Number,
  received: Schema.Number,
  error: Schema.optional(Schema.String)
})

/** What the node holds for one peer and protocol (see `PluginHost.streams`). */
export const StreamCount = Schema.Struct({
  peer: Schema.String,
  protocol: Schema.String,
  handlers: Schema.Number,
  outbound: Schema.Number
})

/** The node's state. */
export const StatusInfo = Schema.Struct({
  peerId: PeerId,
  addresses: Schema.Array(Schema.String),
  libraries: Schema.Array(Library),
  sessions: Schema.Array(Session),
  /** Peers with an open connection. */
  connections: Schema.Array(Schema.String),
  /** Streams and handler fibers held, per peer and protocol. */
  streams: Schema.Array(StreamCount),
  counts: Schema.Struct({
    connections: Schema.Number,
    /** Streams held (handled and opened). */
    streams: Schema.Number,
    /** Handler fibers running. */
    handlers: Schema.Number,
    /** Sync sessions connecting or syncing. */
    sessions: Schema.Number
  }),
  /** The process's open handles by kind (Node's `getActiveResourcesInfo`), e.g. `TCPSocketWrap`. */
  resources: Schema.Record({ key: Schema.String, value: Schema.Number })
})
export type StatusInfo = typeof StatusInfo.Type

/** Peers as the node sees them. */
export const PeersInfo = Schema.Struct({
  /** Connected peers (a discovered peer shows here only once a connection succeeded). */
  available: Schema.Array(Schema.String),
  discovered: Schema.Array(Schema.Struct({ peer: Schema.String, addresses: Schema.Array(Schema.String) }))
})

export const Connected = Schema.Struct({ peer: Schema.String })
export const Paired = Schema.Struct({ peer: Schema.String, library: Library })
export const PingResult = Schema.Struct({
  peer: Schema.String,
  rtts: Schema.Array(Schema.Number),
  min: Schema.Number,
  median: Schema.Number,
  max: Schema.Number
})
export const Removed = Schema.Struct({ id: Schema.String })
/** One page of notes; `next` is absent on the last page. */
export const NotesPage = Schema.Struct({ notes: Schema.Array(Note), next: Schema.optional(NoteCursor) })
export type NotesPage = typeof NotesPage.Type

/** What a success of each request carries. */
export const successes = {
  Status: StatusInfo,
  Peers: PeersInfo,
  Connect: Connected,
  Pair: Paired,
  Ping: PingResult,
  NotesAdd: Note,
  NotesList: NotesPage,
  NotesSet: Note,
  NotesRemove: Removed
} as const

/** The success type of a request. */
export type Success<R extends Request> = Schema.Schema.Type<(typeof successes)[R["_tag"]]>

/** A failure, as sent: the error's tag, its reason when it has one, and its message. */
export const Failure = Schema.Struct({
  tag: Schema.String.pipe(Schema.maxLength(128)),
  reason: Schema.optional(Schema.String.pipe(Schema.maxLength(128))),
  message: Schema.String.pipe(Schema.maxLength(8192))
})
export type Failure = typeof Failure.Type

/** A request line. */
export const RequestLine = Schema.Struct({
  version: Schema.Literal(VERSION),
  id: Schema.Int.pipe(Schema.nonNegative()),
  request: Request
})

/** A response line; `value` is decoded with the request's success schema. */
export const ResponseLine = Schema.Union(
  Schema.Struct({ version: Schema.Literal(VERSION), id: Schema.Int, ok: Schema.Literal(true), value: Schema.Unknown }),
  Schema.Struct({ version: Schema.Literal(VERSION), id: Schema.Int, ok: Schema.Literal(false), error: Failure })
)
export type ResponseLine = typeof ResponseLine.Type
