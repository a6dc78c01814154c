/**
 * The one place where js-libp2p's exceptions become `TransportError`s, or
 * `ProtocolError`s when a connection ended because of what the remote sent.
 *
 * libp2p signals failures with `Error` subclasses told apart by `name`
 * (`UnsupportedProtocolError`, `EncryptionFailedError`, …), socket errors by
 * Node's `code`, and dial failures sometimes as an `AggregateError` of the
 * attempts. What a name means can depend on what was being done, so the
 * operation is part of the input.
 *
 * @internal
 */
import { ProtocolError } from "../ProtocolError.js"
import { TransportError } from "../Transport.js"

/** What the transport was doing when libp2p failed. */
export type Operation = "start" | "handle" | "dial" | "open" | "write" | "end" | "stream"

/** Who and what the failure concerns. */
export interface Context {
  readonly operation: Operation
  readonly peer?: string
  readonly protocol?: string
}

type Reason = TransportError["reason"]

const handshake = new Set([
  "EncryptionFailedError",
  "UnexpectedPeerError",
  "InvalidCryptoExchangeError",
  "InvalidPublicKeyError",
  "InvalidPrivateKeyError",
  "UnsupportedKeyTypeError",
  "MuxerUnavailableError"
])
const reset = new Set([
  "StreamResetError",
  "StreamAbortedError",
  "StreamStateError",
  "StreamClosedError",
  "ConnectionClosedError",
  "ConnectionClosingError",
  "MuxerClosedError",
  "ConnectionFailedError"
])
const refused = new Set([
  "TooManyInboundProtocolStreamsError",
  "TooManyOutboundProtocolStreamsError",
  "DialDeniedError",
  "LimitedConnectionError",
  "DuplicateProtocolHandlerError",
  "ListenError"
])
const unreachable = new Set([
  "NoValidAddressesError",
  "InvalidMultiaddrError",
  "InvalidPeerIdError",
  "InvalidParametersError",
  "DialError",
  "NotFoundError"
])
// a connection ended by its muxer or encryption because of what the remote sent
const violation = new Set([
  "ProtocolError",
  "InvalidFrameError",
  "UnRequestedPingError",
  // an answer to a ping other than the one in flight (yamux keeps one in flight now and then: keepalive)
  "NotMatchingPingError",
  "StreamAlreadyExistsError",
  "DecodeInvalidVersionError",
  "BothClientsError",
  "InvalidParametersError"
])
const overLimit = new Set(["FrameTooLargeError", "ReceiveWindowExceededError", "MaxEarlyStreamsError"])
const socketUnreachable = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ENOTFOUND", "EPIPE"])

const nameOf = (cause: unknown): string =>
  cause instanceof Error ? cause.name : typeof cause === "object" && cause !== null && "name" in cause ? String(cause.name) : "Error"
const codeOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : undefined
const messageOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** The most telling error inside an aggregate of dial attempts: a handshake failure beats a refused socket. */
const innermost = (cause: unknown): unknown => {
  if (cause instanceof AggregateError && cause.errors.length > 0) {
    const errors = cause.errors.map(innermost)
    return errors.find((error) => handshake.has(nameOf(error))) ?? errors[0]
  }
  return cause
}

const reasonOf = (name: string, code: string | undefined, operation: Operation): Reason => {
  if (name === "UnsupportedProtocolError") {
    // on a dial it means no common encryption or muxer: the connection never got secured
    return operation === "open" ? "UnsupportedProtocol" : "HandshakeFailed"
  }
  if (handshake.has(name)) return "HandshakeFailed"
  if (name === "TimeoutError" || name === "AbortError" || code === "ETIMEDOUT" || code === "ABORT_ERR") return "Timeout"
  if (name === "StreamBufferError") return "Oversize"
  if (name === "NotStartedError") return "Closed"
  if (refused.has(name) || code === "EADDRINUSE" || code === "EACCES") return "Refused"
  if (reset.has(name)) return operation === "dial" ? "Unreachable" : "Reset"
  if (unreachable.has(name) || (code !== undefined && socketUnreachable.has(code))) {
    return operation === "write" || operation === "stream" || operation === "end" ? "Reset" : "Unreachable"
  }
  switch (operation) {
    case "dial":
    case "open":
      return "Unreachable"
    case "start":
    case "handle":
      return "Refused"
    case "write":
    case "end":
    case "stream":
      return "Reset"
  }
}

/** Translates anything libp2p threw or rejected with. */
export const fromLibp2p = (cause: unknown, context: Context): TransportError => {
  if (cause instanceof TransportError) return cause
  const inner = innermost(cause)
  const name = nameOf(inner)
  const code = codeOf(inner)
  return new TransportError({
    reason: reasonOf(name, code, context.operation),
    ...(context.peer === undefined ? {} : { peer: context.peer }),
    ...(context.protocol === undefined ? {} : { protocol: context.protocol }),
    detail: plainly(name, code, messageOf(inner)) ?? `${context.operation}: ${name}${code === undefined ? "" : ` (${code})`}: ${messageOf(inner)}`
  })
}

/** What a person needs to read for the failures people run into, instead of libp2p's wording. */
const plainly = (name: string, code: string | undefined, message: string): string | undefined => {
  if (name === "NoValidAddressesError") return "it is not connected, and no address of it is known"
  // node says "listen EADDRINUSE: address already in use 127.0.0.1:4001", which libp2p wraps, with a stack
  const inUse = /EADDRINUSE: address already in use (\S+):(\d+)/.exec(message)
  if (inUse !== null) return `port ${inUse[2]} on ${inUse[1]} is in use`
  if (code === "EADDRINUSE") return "the address to listen on is in use"
  return undefined
}

/**
 * Why a connection to `peer` ended, from the error libp2p closed it with: a
 * `ProtocolError` when the remote broke the connection's framing (a
 * malformed or undecryptable frame, one over the window), else a
 * `TransportError`.
 */
export const connectionEnding = (cause: unknown, peer: string): TransportError | ProtocolError => {
  if (cause instanceof TransportError || cause instanceof ProtocolError) return cause
  const inner = innermost(cause)
  const name = nameOf(inner)
  const code = codeOf(inner)
  const message = messageOf(inner)
  const detail = `connection: ${name}${code === undefined ? "" : ` (${code})`}: ${message}`
  if (overLimit.has(name)) return new ProtocolError({ reason: "Oversize", peer, detail })
  // Noise's decryption failure is a plain Error, told apart by its message
  if (violation.has(name) || /decrypt/i.test(message)) return new ProtocolError({ reason: "Malformed", peer, detail })
  return new TransportError({ reason: handshake.has(name) ? "HandshakeFailed" : "Reset", peer, detail })
}
