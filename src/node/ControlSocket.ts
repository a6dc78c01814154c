/**
 * A node's control socket: the node's control procedures (`Control.group`,
 * and an app's own) served over a Unix domain socket in its data directory
 * (`weft.sock`, mode 0600, so only the owner's processes reach it), through
 * the plugin kit's RPC (`RpcPlugin`): the same framing, codec and bounds as
 * procedures between peers, so errors that cross it stay typed.
 *
 * Bounds: a frame holds at most `MAX_FRAME_BYTES` either way (an answer
 * over it is refused as `RpcError` `TooLarge`); a connection has at most
 * `MAX_IN_FLIGHT` calls running, as many more read ahead, and is not read
 * further while its answers wait to be written (a client that sends and
 * never reads stops being read); at most `MAX_CONNECTIONS` connections are
 * served at once; a connection with no call in flight for `IDLE_TIMEOUT` is
 * closed. A call whose payload does not decode is refused `Malformed` and
 * the connection serves on; a frame that is not a message closes it.
 *
 * Node's `net` is used here, and its errors become `ControlError`s here only.
 *
 * @since 0.1.0
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import type * as Rpc from "@effect/rpc/Rpc"
import type * as RpcClient from "@effect/rpc/RpcClient"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { chmod, unlink } from "node:fs/promises"
import { connect as netConnect, type Socket } from "node:net"
import * as RpcPlugin from "../plugins/RpcPlugin.js"
import { type Duplex, type PeerId, TransportError } from "../transport/Transport.js"

/** The control socket could not be reached or served. */
export class ControlError extends Data.TaggedError("ControlError")<{
  readonly reason:
    | "NotRunning" // no node answers on the socket
    | "AlreadyRunning" // another node already serves this data directory
    | "Timeout" // the node did not answer in time
    | "Io"
  readonly path: string
  readonly detail: string
}> {
  override get message(): string {
    return `control ${this.reason} (${this.path}): ${this.detail}`
  }
}

/** The protocol name of control streams (for errors and logs; nothing is negotiated on the socket). */
export const PROTOCOL_ID = "/weft/control/1.0.0"
/** The socket's file name in a data directory. */
export const SOCKET_NAME = "weft.sock"
/** Most bytes of one frame, either way (a status with many peers fits easily). */
export const MAX_FRAME_BYTES = 1024 * 1024
/** Calls of one connection running at once. */
export const MAX_IN_FLIGHT = 8
/** Connections served at once. */
export const MAX_CONNECTIONS = 32
/** How long a connection may stay without a call in flight (longer than any call takes). */
export const IDLE_TIMEOUT = Duration.minutes(3)

/** Who is at the other end of a control connection: the local user. */
const LOCAL = "local" as PeerId

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))
const codeOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : undefined

/** A connected socket as a stream of bytes either way, with backpressure both ways. */
const duplexOf = (socket: Socket): Duplex => {
  const where = { peer: LOCAL, protocol: PROTOCOL_ID }
  return {
    protocol: PROTOCOL_ID,
    remote: LOCAL,
    source: NodeStream.fromReadable<TransportError, Uint8Array>(
      () => socket,
      (cause) => new TransportError({ reason: "Reset", ...where, detail: describe(cause) }),
      { closeOnDone: false }
    ),
    // resumes once the bytes are handed to the system: a peer that does not read holds the writer here
    write: (chunk) =>
      Effect.async<void, TransportError>((resume) => {
        if (socket.destroyed || socket.writableEnded) {
          return resume(Effect.fail(new TransportError({ reason: "Reset", ...where, detail: "the socket is closed" })))
        }
        socket.write(chunk, (cause) =>
          resume(cause === undefined || cause === null ? Effect.void : Effect.fail(new TransportError({ reason: "Reset", ...where, detail: describe(cause) }))))
      }),
    end: Effect.sync(() => {
      if (!socket.destroyed) socket.end()
    }),
    reset: Effect.sync(() => socket.destroy())
  }
}

/** Connects to the socket at `path`; `NotRunning` when nothing listens there. Closed with the scope. */
export const connect = (path: string): Effect.Effect<Duplex, ControlError, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.async<Socket, ControlError>((resume) => {
        const socket = netConnect({ path })
        const onError = (cause: Error) => {
          socket.destroy()
          const code = codeOf(cause)
          resume(Effect.fail(
            code === "ENOENT" || code === "ECONNREFUSED"
              ? new ControlError({ reason: "NotRunning", path, detail: "no node is running for this data directory (start one with `weft serve`)" })
              : new ControlError({ reason: "Io", path, detail: describe(cause) })
          ))
        }
        socket.once("error", onError)
        socket.once("connect", () => {
          socket.removeListener("error", onError)
          // later errors surface through reads and writes; unheard, they would be thrown
          socket.on("error", () => {})
          resume(Effect.succeed(socket))
        })
        return Effect.sync(() => socket.destroy())
      }),
      (socket) => Effect.sync(() => socket.destroy())
    ),
    duplexOf
  )

/** A client of `group` on the node at `path`; the connection closes with the scope. */
export const client = <Rpcs extends Rpc.Any>(
  path: string,
  group: RpcGroup.RpcGroup<Rpcs>
): Effect.Effect<RpcClient.RpcClient<Rpcs, RpcPlugin.RpcError>, ControlError, Scope.Scope> =>
  Effect.flatMap(connect(path), (stream) => RpcPlugin.makeClient(group, stream, { maxFrameBytes: MAX_FRAME_BYTES, maxInFlight: MAX_IN_FLIGHT }))

/** Whether a node answers on `path` (nothing is removed). */
export const answers = (path: string): Effect.Effect<boolean> =>
  Effect.scoped(connect(path)).pipe(Effect.as(true), Effect.orElseSucceed(() => false))

/** Fails with `AlreadyRunning` when a node answers on `path`; removes a stale socket file left by a crash. */
export const claim = (path: string): Effect.Effect<void, ControlError> =>
  Effect.scoped(connect(path)).pipe(
    Effect.matchEffect({
      onSuccess: () => Effect.fail(new ControlError({ reason: "AlreadyRunning", path, detail: "a node already serves this data directory" })),
      onFailure: (error) =>
        error.reason === "NotRunning"
          ? Effect.tryPromise({ try: () => unlink(path), catch: (cause) => cause }).pipe(
            Effect.catchAll((cause) =>
              codeOf(cause) === "ENOENT" ? Effect.void : Effect.fail(new ControlError({ reason: "Io", path, detail: describe(cause) }))
            )
          )
          : Effect.fail(error)
    })
  )

/** Options of the server (defaults: the bounds above). */
export interface ServeOptions {
  readonly maxConnections?: number
  readonly idleTimeout?: Duration.DurationInput
}

/**
 * Serves `group`, with its handlers in context, on the socket at `path`
 * until the scope closes; the socket file is removed then.
 */
export const serve = <Rpcs extends Rpc.Any>(
  path: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  options: ServeOptions = {}
): Effect.Effect<void, ControlError, Rpc.ToHandler<Rpcs> | Exclude<Rpc.Middleware<Rpcs>, RpcPlugin.CallerMiddleware> | Scope.Scope> =>
  Effect.gen(function*() {
    const maxConnections = options.maxConnections ?? MAX_CONNECTIONS
    yield* claim(path)
    const rpc = yield* RpcPlugin.makeServer(group, {
      maxFrameBytes: MAX_FRAME_BYTES,
      maxInFlight: MAX_IN_FLIGHT,
      malformedCall: "answer",
      idleTimeout: options.idleTimeout ?? IDLE_TIMEOUT
    })
    // loaded here: clients (every `weft` command) never need the server's modules
    const [NodeSocket, NodeSocketServer] = yield* Effect.promise(() =>
      Promise.all([import("@effect/platform-node/NodeSocket"), import("@effect/platform-node/NodeSocketServer")]))
    const server = yield* NodeSocketServer.make({ path, exclusive: true }).pipe(
      Effect.mapError((error) => new ControlError({ reason: "Io", path, detail: describe(error.cause) }))
    )
    yield* Effect.addFinalizer(() => Effect.ignore(Effect.tryPromise(() => unlink(path))))
    yield* Effect.tryPromise({
      try: () => chmod(path, 0o600),
      catch: (cause) => new ControlError({ reason: "Io", path, detail: describe(cause) })
    })
    let connections = 0
    // each connection in its own fiber of the server's; closing the server interrupts them
    const connection = Effect.gen(function*() {
      const socket = yield* Effect.acquireRelease(NodeSocket.NetSocket, (socket) => Effect.sync(() => socket.destroy()))
      socket.on("error", () => {})
      if (connections >= maxConnections) return
      connections++
      yield* Effect.addFinalizer(() => Effect.sync(() => connections--))
      // a client that breaks the protocol (a frame that is not a message, or over the bound) is closed
      yield* rpc.serve(duplexOf(socket), { peer: LOCAL, library: undefined }).pipe(
        Effect.catchAll((error) => Effect.logDebug(`control connection closed: ${error.message}`))
      )
    }).pipe(Effect.scoped)
    // (the socket server provides each connection's NetSocket)
    yield* Effect.forkScoped(server.run(() => connection as Effect.Effect<void>).pipe(
      Effect.catchAll((error) => Effect.logError(`the control socket stopped: ${describe(error)}`))
    ))
  })

/** Layer serving `group` on the socket at `path`. */
export const layer = <Rpcs extends Rpc.Any>(
  path: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  options: ServeOptions = {}
): Layer.Layer<never, ControlError, Rpc.ToHandler<Rpcs> | Exclude<Rpc.Middleware<Rpcs>, RpcPlugin.CallerMiddleware>> =>
  Layer.scopedDiscard(serve(path, group, options))
