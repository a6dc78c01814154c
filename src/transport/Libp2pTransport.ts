/**
 * The network transport: `Transport.Service` over js-libp2p 3.
 *
 * Stack: TCP; Noise XX for encryption and mutual authentication with this
 * peer's Ed25519 identity (the remote's `PeerId` is what its handshake
 * proved, and a dial address ending in `/p2p/<id>` fails with
 * `HandshakeFailed` unless that peer answers); Yamux for streams, each opened
 * with multistream-select on a protocol id; identify as a libp2p service;
 * mDNS discovery on the local network when enabled (its adverts carry
 * libp2p's defaults only: a random name, the peer id and its addresses).
 * Ping (`/ipfs/ping/1.0.0`) is not built in: the ping plugin registers it,
 * and answers other libp2p peers and their connection monitors.
 *
 * Bounds: each stream has at most `streamWindowBytes` in flight (Yamux
 * window, and so the largest frame), and buffers at most about one window
 * received-but-unread before it stops granting the sender more; connections
 * are limited by `maxConnections`, to 3 per peer, and by a per-host rate of
 * new inbound connections; a host has at most 4 inbound handshakes under way
 * (64 for all hosts), each given `dialTimeout`, so sockets that connect and
 * never speak cannot keep others out; a protocol runs at most `maxInboundStreams`
 * handlers per peer at once, over all its connections.
 *
 * Streams: closing a stream's scope resets it, as the contract says, but for
 * one case: a handler that ended its stream (`end`) and returned leaves it to
 * the opener until the opener ends or resets it, for at most `linger`.
 *
 * Slots: peers that are not members (`isMember`), strangers, hold at most
 * `maxStrangerConnections` inbound connections, and at most
 * `maxStrangerConnectionsPerHost` from one host, so throwaway identities
 * cannot take the slots members need. A member that connects while every
 * slot is taken gets a stranger's (the stranger connected last, with the
 * fewest streams, is closed); a stranger is refused after its handshake.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Identity from "./Identity.js"
import * as internal from "./internal/libp2pTransport.js"
import { type PeerId, type Service, Transport, type TransportError } from "./Transport.js"

/** How a libp2p transport is set up. */
export interface Options {
  /** This peer's identity; the Noise handshake proves it. */
  readonly identity: Identity.Service
  /** Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/4001` or `/ip4/127.0.0.1/tcp/0` (any free port). Empty: dial only. */
  readonly listen: ReadonlyArray<string>
  /** Advertise and discover peers on the local network with mDNS (default false). */
  readonly mdns?: boolean
  /** Most open connections, members' and strangers' together (default 64). */
  readonly maxConnections?: number
  /**
   * Whether a peer is a member (of a library this node belongs to), asked
   * at each inbound connection and when a slot must be freed: keep it cheap.
   * A member may take any slot, a stranger's if need be; any other peer is a
   * stranger, held to `maxStrangerConnections`. Without it every peer counts
   * as a member (only `maxConnections` applies).
   */
  readonly isMember?: (peer: PeerId) => boolean
  /** Most inbound connections of strangers (default 16, and never over a quarter of `maxConnections` unless set). */
  readonly maxStrangerConnections?: number
  /** Most inbound connections of strangers from one host: an IPv4 address, an IPv6 /64 (default 4). */
  readonly maxStrangerConnectionsPerHost?: number
  /** Most new inbound connections per second from one host (default 5, libp2p's). */
  readonly maxInboundConnectionsPerSecond?: number
  /**
   * Most bytes in flight per stream, and so about what a ping waits behind
   * on a busy connection (default 512 KiB, least 256 KiB; see
   * `DEFAULT_STREAM_WINDOW_BYTES`). A smaller window answers sooner during
   * bulk transfers; a larger one helps links with a long round trip.
   */
  readonly streamWindowBytes?: number
  /** How long `connect`, or `open` (connecting if needed, then agreeing on the protocol), may take (default 10 s). */
  readonly dialTimeout?: Duration.DurationInput
  /**
   * How long an inbound stream whose handler ended it and then returned
   * stays open for the opener to read the rest, before it is reset (default
   * 10 s). Resetting it at once could reach an opener that is still agreeing
   * on the protocol, whose `open` would then fail and lose the answer.
   */
  readonly linger?: Duration.DurationInput
}

/** The default bytes in flight per stream. */
export const DEFAULT_STREAM_WINDOW_BYTES = internal.DEFAULT_STREAM_WINDOW_BYTES

/** A libp2p transport running until the scope closes, when its node stops and its connections close. */
export const make: (options: Options) => Effect.Effect<Service, TransportError, Scope.Scope> = internal.make

/** The transport of the `Identity` in context. */
export const layer = (options: Omit<Options, "identity">): Layer.Layer<Transport, TransportError, Identity.Identity> =>
  Layer.scoped(Transport, Effect.flatMap(Identity.Identity, (identity) => make({ ...options, identity })))
