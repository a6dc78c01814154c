/**
 * Request/response and streaming protocols for plugins, with `@effect/rpc`:
 * a plugin declares its procedures as an `RpcGroup` of Schemas, serves them
 * with handlers built by `group.toLayer`, and peers call them through a
 * typed client. The kit carries the calls over the plugin host's streams.
 *
 * ```ts
 * class Notes extends RpcGroup.make(
 *   Rpc.make("Count", { success: Schema.Number }),
 *   Rpc.make("Titles", { success: Schema.String, stream: true })
 * ).middleware(RpcPlugin.CallerMiddleware) {}
 *
 * const protocol = { protocol: "/example/notes/1.0.0", permission: "library" } as const
 * const handlers = Notes.toLayer({
 *   Count: () => Effect.map(RpcPlugin.Caller, (caller) => caller.peer.length),
 *   Titles: () => Stream.make("a", "b")
 * })
 * // on one peer: serve while the scope lives
 * yield* RpcPlugin.serve({ name: "notes", ...protocol, group: Notes }).pipe(Effect.provide(handlers))
 * // on another: call it
 * const notes = yield* RpcPlugin.client({ group: Notes, ...protocol }, peer, library)
 * const count = yield* notes.Count()
 * ```
 *
 * Identity: a handler learns who calls from `Caller`, provided from the
 * authenticated stream the call came on (the peer, and the library for a
 * `library` plugin), never from anything the caller sent. Declare
 * `CallerMiddleware` on the group so the types know `Caller` is provided.
 *
 * Wire format, on one stream per client: length-prefixed frames (`Framing`),
 * each one JSON object:
 *
 *   client → {"_tag":"Request","id":"7","tag":"Count","payload":…}   a call (id: a decimal integer)
 *          | {"_tag":"Ack","requestId":"7"}                          a streamed chunk was taken
 *          | {"_tag":"Interrupt","requestId":"7"}                    the caller gave up
 *          | {"_tag":"Eof"}                                          no more calls
 *   server → {"_tag":"Chunk","requestId":"7","values":[…]}           part of a streamed answer
 *          | {"_tag":"Exit","requestId":"7","exit":…}                the answer (`Schema.Exit`)
 *          | {"_tag":"Refused","requestId":"7","reason":"Malformed"|"TooLarge","detail":"…"}
 *          | {"_tag":"End"}                                          every call answered after Eof
 *
 * Payloads, answers and errors are the procedures' Schemas encoded as JSON
 * (bytes need an encoding such as `Schema.Uint8ArrayFromBase64`; bulk data
 * is better sent on a raw stream).
 *
 * Bounds: a frame holds at most `maxFrameBytes` either way. A client keeps
 * at most `maxInFlight` calls outstanding on its stream (more wait on the
 * client); the server runs at most that many at once, holds as many more
 * read ahead, and then stops reading, and a call's slot is freed only once
 * its answer is written, so a client that never reads its answers stops
 * being read. A server that breaks the
 * protocol (a frame over the bound, bytes that are not a message, a payload
 * that does not decode) fails the handler with a `ProtocolError`, so the
 * host disconnects the peer; a client that gets an answer it cannot decode
 * reports the violation the same way. Calls fail with `RpcError` (`Closed`
 * when the stream ended, `TooLarge`, `Malformed`) beside each procedure's
 * own errors. Interrupting a call interrupts its handler; closing the
 * client's scope, or the connection, ends every call.
 *
 * @since 0.1.0
 */
import type * as Rpc from "@effect/rpc/Rpc"
import type * as RpcClient from "@effect/rpc/RpcClient"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { ProtocolError } from "../transport/ProtocolError.js"
import type { Duplex, PeerId, TransportError } from "../transport/Transport.js"
import * as internal from "./internal/rpc.js"
import * as Plugin from "./Plugin.js"
import { type PermissionError, PluginHost } from "./PluginHost.js"

/** The caller of the procedure being handled: the authenticated peer, and the library for a `library` plugin. */
export const Caller = internal.Caller
export type Caller = internal.Caller
export type CallerInfo = internal.CallerInfo

/** The middleware that provides `Caller` to handlers; declare it on the group (`group.middleware(CallerMiddleware)`). */
export const CallerMiddleware = internal.CallerMiddleware
export type CallerMiddleware = internal.CallerMiddleware

/** A call could not be made or answered as the protocol says (`Closed`, `Malformed`, `TooLarge`). */
export const RpcError = internal.RpcError
export type RpcError = internal.RpcError

/** Default bound of one frame: 1 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = internal.DEFAULT_MAX_FRAME_BYTES
/** Default calls of one stream handled at once. */
export const DEFAULT_MAX_IN_FLIGHT = internal.DEFAULT_MAX_IN_FLIGHT

/** An RPC protocol: its id and permission, its procedures, and the bound of one frame. */
export interface Protocol<Rpcs extends Rpc.Any> extends Plugin.Protocol {
  readonly group: RpcGroup.RpcGroup<Rpcs>
  /** Most bytes of one frame, either way (default `DEFAULT_MAX_FRAME_BYTES`). */
  readonly maxFrameBytes?: number
  /** Calls of one stream outstanding at once: clients send no more, servers run no more (default `DEFAULT_MAX_IN_FLIGHT`). */
  readonly maxInFlight?: number
}

/** How a plugin serves its procedures. */
export interface ServeOptions<Rpcs extends Rpc.Any> extends Protocol<Rpcs> {
  /** A short name for logs and status. */
  readonly name: string
  /** Most streams (clients) of one peer at once (default 32). */
  readonly maxInboundStreams?: number
  /** Most time one stream, with all its calls, may stay open (default: unbounded). */
  readonly timeout?: Duration.DurationInput
}

/** The plugin serving `options.group`, with the handlers (and middlewares but `CallerMiddleware`) in context. */
export const plugin = <Rpcs extends Rpc.Any>(
  options: ServeOptions<Rpcs>
): Effect.Effect<Plugin.Plugin<TransportError | ProtocolError>, never, Rpc.ToHandler<Rpcs> | Exclude<Rpc.Middleware<Rpcs>, CallerMiddleware> | Scope.Scope> =>
  Effect.map(
    internal.makeServer(options.group, {
      ...(options.maxFrameBytes === undefined ? {} : { maxFrameBytes: options.maxFrameBytes }),
      ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight })
    }),
    (server) =>
      Plugin.make<TransportError | ProtocolError, never>({
        name: options.name,
        protocol: options.protocol,
        permission: options.permission,
        ...(options.maxInboundStreams === undefined ? {} : { maxInboundStreams: options.maxInboundStreams }),
        ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
        handle: (stream, context) => server.serve(stream, { peer: context.peer, library: context.library })
      })
  )

/** Serves the group's procedures on the host in context until the scope closes. */
export const serve = <Rpcs extends Rpc.Any>(
  options: ServeOptions<Rpcs>
): Effect.Effect<void, TransportError, PluginHost | Rpc.ToHandler<Rpcs> | Exclude<Rpc.Middleware<Rpcs>, CallerMiddleware> | Scope.Scope> =>
  Effect.flatMap(plugin(options), (served) => Effect.flatMap(PluginHost, (host) => host.register(served)))

/** Layer serving the group's procedures on the host. */
export const layer = <Rpcs extends Rpc.Any>(
  options: ServeOptions<Rpcs>
): Layer.Layer<never, TransportError, PluginHost | Rpc.ToHandler<Rpcs> | Exclude<Rpc.Middleware<Rpcs>, CallerMiddleware>> =>
  Layer.scopedDiscard(serve(options))

/**
 * A client of the protocol's procedures on `peer` (for a `library` protocol,
 * in `library`), over one stream opened through the host in context. Its
 * calls run concurrently on that stream; they fail with `RpcError` `Closed`
 * once it ends. The stream closes with the scope. A server that breaks the
 * protocol is reported to the host, which disconnects it.
 */
export const client = <Rpcs extends Rpc.Any>(
  protocol: Protocol<Rpcs>,
  peer: PeerId,
  library?: string
): Effect.Effect<RpcClient.RpcClient<Rpcs, RpcError>, TransportError | PermissionError, PluginHost | Scope.Scope> =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const stream = yield* host.open(peer, protocol, library)
    return yield* internal.makeClient(protocol.group, stream, {
      ...(protocol.maxFrameBytes === undefined ? {} : { maxFrameBytes: protocol.maxFrameBytes }),
      ...(protocol.maxInFlight === undefined ? {} : { maxInFlight: protocol.maxInFlight }),
      onViolation: (error) => host.violation(peer, protocol.protocol, error)
    })
  })

/** A server of a group over any streams (the CLI's control socket uses it directly). */
export type Server = internal.Server
/** Options of a server over any streams. */
export type ServerOptions = internal.ServerOptions

/** Makes a server of `group`, with its handlers in context, to serve any `Duplex` with (`server.serve`). */
export const makeServer: <Rpcs extends Rpc.Any>(
  group: RpcGroup.RpcGroup<Rpcs>,
  options?: ServerOptions
) => Effect.Effect<Server, never, Rpc.ToHandler<Rpcs> | Exclude<Rpc.Middleware<Rpcs>, CallerMiddleware> | Scope.Scope> = internal
  .makeServer

/** A client of `group` over any `Duplex`. */
export const makeClient: <Rpcs extends Rpc.Any>(
  group: RpcGroup.RpcGroup<Rpcs>,
  stream: Duplex,
  options?: internal.ClientOptions
) => Effect.Effect<RpcClient.RpcClient<Rpcs, RpcError>, never, Scope.Scope> = internal.makeClient
