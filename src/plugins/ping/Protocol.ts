/**
 * The ping protocol of libp2p, `/ipfs/ping/1.0.0`, so Weft peers and any
 * libp2p peer can ping each other.
 *
 * Wire format: the dialer sends 32 random bytes; the listener sends the same
 * 32 bytes back; the dialer may repeat on the same stream, and ends it when
 * done. Nothing else: no framing, no version byte (the protocol id is the
 * version).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import type { Protocol } from "../Plugin.js"

/** The protocol id (libp2p's). */
export const PROTOCOL_ID = "/ipfs/ping/1.0.0"

/** Bytes of one ping. */
export const PAYLOAD_BYTES = 32

/** Ping is open to any authenticated peer. */
export const protocol: Protocol = { protocol: PROTOCOL_ID, permission: "authenticated" }

/** A ping failed. */
export class PingError extends Schema.TaggedError<PingError>("weft/PingError")("PingError", {
  reason: Schema.Literal("Timeout", "WrongEcho", "Closed"),
  peer: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `ping ${this.reason} (${this.peer}): ${this.detail}`
  }
}
