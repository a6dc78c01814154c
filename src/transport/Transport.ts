/**
 * The transport: authenticated peer connections carrying multiplexed byte
 * streams, each stream speaking one protocol.
 *
 * The shape follows libp2p, which backs the real implementation: a peer
 * registers a handler per protocol id (`/<ns>/<name>/<version>`); opening a
 * stream names a protocol, and a peer with no handler for it refuses the
 * stream with `UnsupportedProtocol`. Peers are known by their `PeerId`, proven
 * by the connection's handshake, never by what a message claims.
 *
 * Implementations: `MemoryTransport` (in-process, with seeded fault
 * injection, for simulation) and `Libp2pTransport` (TCP, Noise, Yamux, mDNS).
 * Both pass the conformance suite in `transport/testing`.
 *
 * Lifetimes: a stream lives in the `Scope` it was opened (or handled) in;
 * closing the scope resets it. Closing a connection resets its streams and
 * interrupts the handlers it started.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { ProtocolError } from "./ProtocolError.js"

/** A peer's printable identity (for libp2p, its base58 peer id). Also the node id of its operations. */
export const PeerId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9._~-]{1,128}$/),
  Schema.brand("weft/PeerId"),
  Schema.annotations({ identifier: "PeerId" })
)
export type PeerId = typeof PeerId.Type

/** A protocol id: `/<namespace>/<name>/<semver>`. */
export const ProtocolId = Schema.String.pipe(
  Schema.pattern(/^(\/[A-Za-z0-9._-]+)+\/\d+\.\d+\.\d+$/),
  Schema.annotations({ identifier: "ProtocolId" })
)

/** A transport operation failed. */
export class TransportError extends Schema.TaggedError<TransportError>("weft/TransportError")("TransportError", {
  reason: Schema.Literal(
    "Unreachable", // no route or connection to the peer
    "UnsupportedProtocol", // the peer has no handler for the protocol
    "Refused", // the peer (or a limit) refused the connection or stream
    "Reset", // the stream or connection was aborted
    "Closed", // the transport is shut down
    "Timeout",
    "HandshakeFailed", // authentication or encryption could not be established
    "Oversize" // a frame or buffer of ours exceeded its bound (the remote's are `ProtocolError`s)
  ),
  peer: Schema.optional(Schema.String),
  protocol: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    return `transport ${this.reason}${this.peer === undefined ? "" : ` (peer ${this.peer})`}${this.protocol === undefined ? "" : ` [${this.protocol}]`}: ${this.detail}`
  }
}

/** One bidirectional byte stream of a protocol, on an authenticated connection. */
export interface Duplex {
  readonly protocol: string
  /** The authenticated peer at the other end. */
  readonly remote: PeerId
  /**
   * Where the connection this stream is on comes from, as this node sees it
   * (a multiaddr such as `/ip4/192.0.2.7/tcp/4001`, or `memory://<id>`); bounds
   * per host go by it (see `PeerAddress.host`). Unlike `remote` it is not
   * proven: it says where packets come from, not who sent them.
   */
  readonly remoteAddress?: string
  /**
   * Bytes from the remote, in order. Ends when the remote ends its side;
   * fails with `Reset` when the stream or connection is aborted. Consume it once.
   */
  readonly source: Stream.Stream<Uint8Array, TransportError>
  /** Sends bytes; waits while the stream's window is full (backpressure). */
  readonly write: (chunk: Uint8Array) => Effect.Effect<void, TransportError>
  /** Ends our side; the remote's `source` ends after what was written. */
  readonly end: Effect.Effect<void>
  /** Aborts both directions. */
  readonly reset: Effect.Effect<void>
}

/** Handles one inbound stream; runs in a scope that closes when it ends or its connection drops. */
export type Handler = (stream: Duplex) => Effect.Effect<void, unknown, Scope.Scope>

/** Limits of a protocol handler. */
export interface HandleOptions {
  /** Most inbound streams of this protocol open at once, per peer (default 32). */
  readonly maxInboundStreams?: number
}

/** Who told this node where a peer listens (see `TransportEvent`). */
export type DiscoverySource = "discovery" | "identify"

/** Connection lifecycle and discovery. */
export type TransportEvent =
  /** The first connection to `peer` opened; `address` is the one this node dialled (none when the peer dialled in). */
  | { readonly _tag: "Connected"; readonly peer: PeerId; readonly address?: string }
  /**
   * The last connection to `peer` closed; `error` says why when it did not
   * close cleanly: a `ProtocolError` when the peer broke the connection's
   * framing (a malformed or undecryptable frame, one over the window).
   */
  | { readonly _tag: "Disconnected"; readonly peer: PeerId; readonly error?: TransportError | ProtocolError }
  /**
   * Where a peer listens. `source` says who says so: `discovery`, an advert
   * (mDNS) that anyone on the network could have sent for any id; `identify`,
   * the peer itself, over its authenticated connection.
   */
  | { readonly _tag: "Discovered"; readonly peer: PeerId; readonly addresses: ReadonlyArray<string>; readonly source: DiscoverySource }

/** The transport service. */
export interface Service {
  /** This peer's id. */
  readonly peerId: PeerId
  /** Addresses other peers can connect to. */
  readonly addresses: Effect.Effect<ReadonlyArray<string>>
  /** Registers `handler` for inbound streams of `protocol` until the scope closes. */
  readonly handle: (
    protocol: string,
    handler: Handler,
    options?: HandleOptions
  ) => Effect.Effect<void, TransportError, Scope.Scope>
  /** Connects to the peer at `address`; succeeds with its authenticated id. */
  readonly connect: (address: string) => Effect.Effect<PeerId, TransportError>
  /** Opens a stream of `protocol` to `peer` (connecting if its address is known); reset when the scope closes. */
  readonly open: (peer: PeerId, protocol: string) => Effect.Effect<Duplex, TransportError, Scope.Scope>
  /** Closes every connection to `peer`: its streams reset, its handlers are interrupted. */
  readonly disconnect: (peer: PeerId) => Effect.Effect<void>
  /** Peers with an open connection. */
  readonly connections: Effect.Effect<ReadonlyArray<PeerId>>
  /** Connection and discovery events from now on. */
  readonly events: Stream.Stream<TransportEvent>
  /**
   * The same events, subscribed when this returns (none after it is missed,
   * whichever fiber reads them and whenever), until the scope closes.
   */
  readonly subscribe: Effect.Effect<Stream.Stream<TransportEvent>, never, Scope.Scope>
}

/** The transport of this peer. */
export class Transport extends Context.Tag("weft/transport/Transport")<Transport, Service>() {}
