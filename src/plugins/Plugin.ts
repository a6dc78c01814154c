/**
 * The plugin contract. A plugin is data plus a handler: a protocol id with
 * its version, what a peer needs to be allowed in, limits, and a handler for
 * inbound streams. The host registers it with the transport for as long as
 * the registering scope lives.
 *
 * Writing a plugin: see the README's guide and `examples/greet.ts` (a
 * whole plugin on `RpcPlugin`); `plugins/ping` shows a plugin on a raw
 * stream.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ProtocolError from "../transport/ProtocolError.js"
import type { Duplex, PeerId } from "../transport/Transport.js"

/**
 * Who may open a plugin's streams:
 * - `authenticated` — any peer that completed the handshake (ping, Spacedrop);
 * - `library` — a member of the library the stream names (sync, media, rspc).
 */
export type Permission = "authenticated" | "library"

/** What the host tells a handler about a stream. */
export interface StreamContext {
  /** The authenticated remote peer. */
  readonly peer: PeerId
  /** For `library` plugins: the library the stream is for (the peer is one of its members). */
  readonly library: string | undefined
}

/** A protocol as the host needs it to open streams. */
export interface Protocol {
  readonly protocol: string
  readonly permission: Permission
}

/** A plugin. */
export interface Plugin<E = unknown, R = never> extends Protocol {
  /** A short name for logs and status. */
  readonly name: string
  /** Most inbound streams open at once per peer (default 32). */
  readonly maxInboundStreams?: number
  /** Most time one inbound stream may run; unbounded by default (sync sessions live long). */
  readonly timeout?: Duration.DurationInput
  /** Serves one inbound stream; its scope closes when it returns or the connection drops. */
  readonly handle: (stream: Duplex, context: StreamContext) => Effect.Effect<void, E, R | Scope.Scope>
}

/**
 * Whether an error says the remote broke its protocol: its type carries the
 * violation marker (`ProtocolError`, or a plugin's own error marked with
 * `ProtocolError.ViolationTypeId`). A handler that fails with one gets the
 * peer disconnected by the host.
 */
export const isViolation = ProtocolError.isViolation

/** Declares a plugin (an identity function that fixes the types). */
export const make = <E, R>(plugin: Plugin<E, R>): Plugin<E, R> => plugin
