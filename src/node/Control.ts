/**
 * A node's control procedures: what front ends (the `weft` CLI, an app's
 * window) ask a running node, as `@effect/rpc` groups. This module holds
 * the node's own procedures and the schemas of their answers, and nothing
 * heavier, so a client loads quickly; the node serves them
 * (`Node.controlHandlers`), over its control socket (`ControlSocket`).
 *
 * Each plugin contributes its own procedures (`PingPlugin.Control`,
 * `PairPlugin.Control`); `group` is all of them together, and an app
 * merges in its own (the CLI adds its notes).
 *
 * Procedures (`_tag`, payload → success | errors):
 *
 *   Status                          → StatusInfo: peer id, addresses, libraries, sessions, counts
 *   Peers                           → PeersInfo: available and discovered peers
 *   Connect  address                → { peer } | TransportError
 *   ConsentPending                  → the questions waiting for an answer (pairing requests)
 *   ConsentWatch                    → stream: the questions waiting, then each asked or settled;
 *                                     the caller attends (requests wait for it) while it reads
 *   ConsentAnswer  id, approve      → void | ConsentError (NotFound, AlreadyDecided)
 *   Ping  peer, count               → PingResult | PingError | TransportError | PermissionError | ProtocolError
 *   Pair  peer, library?            → { peer, library } | PairError | LibraryError | TransportError | …
 *
 * @since 0.1.0
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import { Library } from "../library/Libraries.js"
import { ConsentError, Pending, QuestionEvent } from "../plugins/Consent.js"
import * as PairControl from "../plugins/pair/Control.js"
import * as PingControl from "../plugins/ping/Control.js"
import { PeerId, TransportError } from "../transport/Transport.js"

/** A multiaddr to connect to (`/ip4/…/tcp/…/p2p/…`). */
export const Address = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(1024))

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
  /** The library a request that names none is about. */
  defaultLibrary: Schema.optional(Schema.String),
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
export type PeersInfo = typeof PeersInfo.Type

/** A request the node cannot serve as asked. */
export class NodeError extends Schema.TaggedError<NodeError>("weft/NodeError")("NodeError", {
  reason: Schema.Literal("NoLibrary"),
  detail: Schema.String
}) {
  override get message(): string {
    return `node ${this.reason}: ${this.detail}`
  }
}

/** The node's own procedures. */
export class NodeControl extends RpcGroup.make(
  Rpc.make("Status", { success: StatusInfo }),
  Rpc.make("Peers", { success: PeersInfo }),
  Rpc.make("Connect", { payload: { address: Address }, success: Schema.Struct({ peer: PeerId }), error: TransportError }),
  Rpc.make("ConsentPending", { success: Schema.Array(Pending) }),
  Rpc.make("ConsentWatch", { success: QuestionEvent, stream: true }),
  Rpc.make("ConsentAnswer", { payload: { id: Schema.String.pipe(Schema.maxLength(64)), approve: Schema.Boolean }, error: ConsentError })
) {}

/** Every procedure of a node: its own and its plugins'. */
export const group = NodeControl.merge(PingControl.Control, PairControl.Control)
export type Group = typeof group
