/**
 * rspc, `/weft/rspc/1.0.0`: an app's own procedures, called by the peers of
 * a library it granted them to. Schemas and constants only.
 *
 * An app declares its procedures as an `RpcGroup` whose every procedure
 * names the capability it needs (`capability`), with `Guard` on the group:
 *
 * ```ts
 * class Notes extends RpcGroup.make(
 *   Rpc.make("List", { success: Schema.Array(Note) }).pipe(Protocol.capability("notes.read")),
 *   Rpc.make("Watch", { success: Note, stream: true }).pipe(Protocol.capability("notes.read")),
 *   Rpc.make("Add", { payload: { title: Schema.String }, success: Note }).pipe(Protocol.capability("notes.write"))
 * ).middleware(Protocol.Guard) {}
 * ```
 *
 * Wire format: `RpcPlugin`'s (length-prefixed JSON frames, one stream per
 * client), after the host's library header; the protocol is `library`, so
 * only a member of the library the stream names gets a stream at all.
 *
 * What a call must pass, in this order, before its payload is even decoded:
 * the caller (the stream's authenticated peer, never anything it sent) is a
 * member of the stream's library, the procedure exists, and the caller holds
 * its capability in that library. Any failure is one answer, `Forbidden`
 * `NotGranted`, whatever failed, so a caller learns nothing of what exists.
 * The check runs again as the handler starts (`Guard`), and a call in flight
 * ends with `Forbidden` `Revoked` the moment its grant or its caller's
 * membership goes.
 *
 * Bounds: frames of at most `DEFAULT_LIMITS.maxFrameBytes`; at most
 * `maxInFlight` calls read per stream, `maxStreams` streams per peer, and
 * `maxCallsPerPeer` handlers of one peer running at once, whatever streams
 * its calls came on (the others wait); a plain call lasts at most `callTimeout`
 * (`CallTimeout`). Bytes that are not a message, an oversize frame or a
 * payload that does not decode are protocol violations: the peer is
 * disconnected.
 *
 * @since 0.1.0
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcMiddleware from "@effect/rpc/RpcMiddleware"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Protocol as PluginProtocol } from "../Plugin.js"

/** The protocol id. */
export const PROTOCOL_ID = "/weft/rspc/1.0.0"

/** rspc is a `library` protocol: a stream names its library, and only its members are served. */
export const protocol: PluginProtocol = { protocol: PROTOCOL_ID, permission: "library" }

/** A capability: dotted lower-case words, as `notes.read`. */
export const Capability = Schema.String.pipe(
  Schema.pattern(/^[a-z][a-z0-9-]{0,31}(\.[a-z][a-z0-9-]{0,31}){0,7}$/),
  Schema.maxLength(128),
  Schema.brand("weft/rspc/Capability")
)
export type Capability = typeof Capability.Type

/** The annotation naming the capability a procedure needs. A procedure without one can be called by nobody. */
export class Needs extends Context.Tag("weft/plugins/rspc/Needs")<Needs, string>() {}

/**
 * Annotates a procedure with the capability it needs
 * (`rpc.pipe(capability("notes.read"))`); the server refuses to start on a
 * name that is not a `Capability`.
 */
export const capability = (name: string) => <R extends Rpc.Rpc<any, any, any, any, any>>(rpc: R): R => rpc.annotate(Needs, name) as R

const isCapability = Schema.is(Capability)

const capabilities = new WeakMap<Rpc.AnyWithProps, Option.Option<Capability>>()

/** The capability `rpc` needs, if it names a valid one (looked up once per procedure: every call asks). */
export const capabilityOf = (rpc: Rpc.AnyWithProps): Option.Option<Capability> => {
  let found = capabilities.get(rpc)
  if (found === undefined) {
    found = Option.filter(Context.getOption(rpc.annotations, Needs), isCapability)
    capabilities.set(rpc, found)
  }
  return found
}

/** A call the caller may not make: the procedure is not granted to it, does not exist, or its grant went while the call ran. */
export class Forbidden extends Schema.TaggedError<Forbidden>("weft/rspc/Forbidden")("Forbidden", {
  reason: Schema.Literal(
    "NotGranted", // not granted, not a member, or no such procedure: one answer for all
    "Revoked" // the grant or the membership went while the call ran
  ),
  procedure: Schema.String.pipe(Schema.maxLength(256)),
  detail: Schema.String.pipe(Schema.maxLength(1024))
}) {
  override get message(): string {
    return `forbidden (${this.reason}): ${this.detail}`
  }
}

/** A plain call ran past its time and was interrupted. */
export class CallTimeout extends Schema.TaggedError<CallTimeout>("weft/rspc/CallTimeout")("CallTimeout", {
  reason: Schema.Literal("Timeout"),
  procedure: Schema.String.pipe(Schema.maxLength(256)),
  millis: Schema.Number
}) {
  override get message(): string {
    return `${this.procedure} took longer than ${this.millis} ms`
  }
}

/** The answer to a call of a procedure that is not granted (or does not exist), the same for every procedure. */
export const notGranted = (procedure: string): Forbidden =>
  new Forbidden({ reason: "NotGranted", procedure: procedure.slice(0, 256), detail: `${procedure.slice(0, 256)} is not granted to you here` })

/**
 * The middleware every rspc procedure carries: it checks the caller's
 * grant as the handler starts and ends the call when the grant goes. The
 * server provides it; clients learn its failures from the group.
 */
export class Guard extends RpcMiddleware.Tag<Guard>()("weft/plugins/rspc/Guard", {
  failure: Schema.Union(Forbidden, CallTimeout),
  wrap: true
}) {}

/** Bounds of the server. */
export interface Limits {
  /** Most bytes of one frame, either way. */
  readonly maxFrameBytes: number
  /** Most calls of one stream running at once (more are not read). */
  readonly maxInFlight: number
  /** Most streams (clients) of one peer open at once. */
  readonly maxStreams: number
  /** Most handlers of one peer's calls running at once, over all its streams (more wait for one to end). */
  readonly maxCallsPerPeer: number
  /** Most time one plain call may run (streams run until the client, the grant or the connection ends them). */
  readonly callTimeout: Duration.Duration
  /** A stream with no call in flight and nothing read for this long is closed. */
  readonly idleTimeout: Duration.Duration
}

/** The default bounds: 256 KiB frames, 32 calls on each of 4 streams per peer, 128 running per peer, 30 s per call, 60 s idle. */
export const DEFAULT_LIMITS: Limits = {
  maxFrameBytes: 256 * 1024,
  maxInFlight: 32,
  maxStreams: 4,
  maxCallsPerPeer: 128,
  callTimeout: Duration.seconds(30),
  idleTimeout: Duration.seconds(60)
}

/** A client could not be made for the peer it names. There is no fallback: nothing runs on this node instead. */
export class Unavailable extends Schema.TaggedError<Unavailable>("weft/rspc/Unavailable")("Unavailable", {
  reason: Schema.Literal(
    "NotConnected", // no working connection to the peer now
    "Refused", // the peer refused the stream (this node is not a member of the library there)
    "Unreachable", // the stream could not be opened (the peer has no rspc, or the connection broke)
    "Local" // the peer named is this node: calls never go to the local node
  ),
  peer: Schema.String,
  library: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `peer ${this.peer} unavailable (${this.reason}): ${this.detail}`
  }
}
