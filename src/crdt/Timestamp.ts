/**
 * Totally ordered timestamps of the hybrid logical clock.
 *
 * A `Timestamp` is the clock part of an operation's identity: 48 bits of
 * milliseconds since the Unix epoch and a 16-bit logical counter, written as
 * 16 lowercase hex digits (`mmmmmmmmmmmmcccc`). Fixed width makes the string
 * order equal the numeric order, in JavaScript and in SQL (`TEXT` compares
 * bytewise), and 48 bits of milliseconds sort correctly until the year 10889
 * (no 2038 overflow).
 *
 * Ties between peers are broken by the origin's `NodeId`: a `Stamp` is the
 * timestamp followed by the node id, and comparing two stamps as strings gives
 * the total order (physical, counter, origin).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/** Pattern of node ids. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9._~-]{1,128}$/

/** Pattern of timestamps. */
export const TIMESTAMP_PATTERN = /^[0-9a-f]{16}$/

/** Identifies a peer (an origin of operations). Printable ASCII, 1–128 characters. */
export const NodeId = Schema.String.pipe(
  Schema.pattern(NODE_ID_PATTERN),
  Schema.brand("weft/NodeId"),
  Schema.annotations({ identifier: "NodeId" })
)
export type NodeId = typeof NodeId.Type

/** The clock part of an operation id: 12 hex digits of milliseconds, 4 of counter. */
export const Timestamp = Schema.String.pipe(
  Schema.pattern(TIMESTAMP_PATTERN),
  Schema.brand("weft/Timestamp"),
  Schema.annotations({ identifier: "Timestamp" })
)
export type Timestamp = typeof Timestamp.Type

/** A timestamp followed by its origin: compares as the total order of operations. */
export type Stamp = string & { readonly Stamp: unique symbol }

/** Largest representable milliseconds (2^48 - 1). */
export const MAX_MILLIS = 0xffff_ffff_ffff
/** Largest logical counter; the clock moves to the next millisecond past it. */
export const MAX_COUNTER = 0xffff

/** The smallest timestamp: every real timestamp is greater. */
export const zero = "0000000000000000" as Timestamp

/** Builds a timestamp; callers guarantee 0 ≤ millis ≤ MAX_MILLIS and 0 ≤ counter ≤ MAX_COUNTER. */
export const make = (millis: number, counter: number): Timestamp =>
  (millis.toString(16).padStart(12, "0") + counter.toString(16).padStart(4, "0")) as Timestamp

/** Milliseconds part of a timestamp. */
export const millis = (ts: Timestamp): number => parseInt(ts.slice(0, 12), 16)

/** Logical counter part of a timestamp. */
export const counter = (ts: Timestamp): number => parseInt(ts.slice(12, 16), 16)

/** The total-order key of an operation: its timestamp, then its origin. */
export const stamp = (ts: Timestamp, node: NodeId): Stamp => (ts + node) as Stamp

/** Orders timestamps (or stamps): negative, zero or positive. */
export const compare = <A extends string>(a: A, b: A): -1 | 0 | 1 => (a < b ? -1 : a > b ? 1 : 0)

/** The larger of two timestamps (or stamps). */
export const max = <A extends string>(a: A, b: A): A => (a < b ? b : a)
