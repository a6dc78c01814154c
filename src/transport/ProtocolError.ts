/**
 * Protocol violations: errors that say the remote peer broke a protocol. It
 * sent bytes that do not decode, a message over its bound, or a message out
 * of turn. Whoever sees one disconnects that peer: the transport does for
 * its own framing, the plugin host for a handler that fails with one, and a
 * node counts it against the peer's redial penalty.
 *
 * Whether an error is a violation is a marker on its type
 * (`ViolationTypeId`), never read from a `reason` string: a local error that
 * happens to be called `Oversize` never disconnects anyone. `ProtocolError`
 * is the violation Weft raises; a plugin may mark an error class of its own
 * the same way:
 *
 * ```ts
 * class GameError extends Schema.TaggedError<GameError>()("GameError", { detail: Schema.String }) {
 *   readonly [ProtocolError.ViolationTypeId] = ProtocolError.ViolationTypeId
 * }
 * ```
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/** The marker of errors that mean "the remote broke the protocol: disconnect it". */
export const ViolationTypeId: unique symbol = Symbol.for("weft/transport/Violation")
export type ViolationTypeId = typeof ViolationTypeId

/** An error that says the remote broke a protocol. */
export interface Violation {
  readonly [ViolationTypeId]: ViolationTypeId
}

/** Whether `u` is a violation: an error whose type carries the marker. */
export const isViolation = (u: unknown): u is Violation => Predicate.hasProperty(u, ViolationTypeId)

/** The remote broke a protocol; the peer is disconnected. */
export class ProtocolError extends Schema.TaggedError<ProtocolError>("weft/ProtocolError")("ProtocolError", {
  reason: Schema.Literal(
    "Malformed", // bytes that do not decode as a message of the protocol
    "Oversize", // a frame or message over its bound
    "Unexpected" // a message the protocol does not allow now (out of turn, or after the end)
  ),
  peer: Schema.optional(Schema.String),
  protocol: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  readonly [ViolationTypeId]: ViolationTypeId = ViolationTypeId

  override get message(): string {
    return `protocol ${this.reason}${this.peer === undefined ? "" : ` (peer ${this.peer})`}${this.protocol === undefined ? "" : ` [${this.protocol}]`}: ${this.detail}`
  }
}
