/**
 * The control endpoint of a running node (protocol in `ControlProtocol`):
 * `serve` answers requests on a Unix domain socket for as long as its scope
 * lives; `call` sends one request and waits for its answer.
 *
 * Node's `net` is wrapped here, and its errors become `ControlError`s here
 * only. Each connection runs in a fiber of the server's scope, each request
 * in a fiber of its connection: closing the server interrupts both, a client
 * that disconnects interrupts its requests.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { chmod, unlink } from "node:fs/promises"
import { connect as netConnect, createServer, type Server, type Socket } from "node:net"
import * as Protocol from "./ControlProtocol.js"
import * as Lines from "./internal/lines.js"
import * as ParseError from "../internal/parseError.js"

/** The control endpoint could not be reached or served. */
export class ControlError extends Data.TaggedError("ControlError")<{
  readonly reason:
    | "NotRunning" // no node answers on the socket
    | "AlreadyRunning" // another node already serves this data directory
    | "Malformed" // a line that is not a valid request or response
    | "TooLarge" // an answer over the line bound
    | "Closed" // the connection closed before the answer
    | "Timeout"
    | "Io"
  readonly path: string
  readonly detail: string
}> {
  override get message(): string {
    return `control ${this.reason} (${this.path}): ${this.detail}`
  }
}

/** A request the node answered with an error: its tag, reason and message, as the node sent them. */
export class RemoteError extends Data.TaggedError("RemoteError")<{
  readonly tag: string
  readonly reason: string | undefined
  readonly detail: string
}> {
  override get message(): string {
    return this.detail
  }
}

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))
const codeOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : undefined

/** A typed error as it is sent: tag, reason and message. */
export const failureOf = (error: unknown): Protocol.Failure => {
  const record = typeof error === "object" && error !== null ? (error as Record<string, unknown>) : {}
  const tag = typeof record._tag === "string" ? record._tag : "Error"
  const reason = typeof record.reason === "string" ? record.reason : undefined
  return {
    tag: tag.slice(0, 128),
    ...(reason === undefined ? {} : { reason: reason.slice(0, 128) }),
    message: describe(error).slice(0, 8192)
  }
}

const decodeRequestLine = Schema.decodeUnknownEither(Schema.parseJson(Protocol.RequestLine))
const decodeResponseLine = Schema.decodeUnknownEither(Schema.parseJson(Protocol.ResponseLine))
const idOf = (line: string): number => {
  const match = /"id"\s*:\s*(\d{1,15})/.exec(line)
  return match === null ? 0 : Number(match[1])
}

/** Splits a socket's data into lines of at most `MAX_LINE_BYTES`; `onOversize` (then nothing more) when one is longer. */
const lines = (onLine: (line: string) => void, onOversize: () => void) =>
  Lines.split(Protocol.MAX_LINE_BYTES, {
    // blank lines between requests are allowed, and mean nothing
    onLine: (line) => {
      if (line.trim().length > 0) onLine(line)
    },
    onOversize: () => {
      onOversize()
      return "stop"
    }
  })

/** Connects to a Unix socket; `NotRunning` when nothing listens there. */
const open = (path: string): Effect.Effect<Socket, ControlError, Scope.Scope> =>
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
        resume(Effect.succeed(socket))
      })
      return Effect.sync(() => socket.destroy())
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

/** Answers one request line. */
const answerLine = <E>(
  line: string,
  handle: (request: Protocol.Request) => Effect.Effect<unknown, E>
): Effect.Effect<Protocol.ResponseLine> =>
  Effect.gen(function*() {
    const decoded = decodeRequestLine(line)
    if (Either.isLeft(decoded)) {
      return {
        version: Protocol.VERSION,
        id: idOf(line),
        ok: false as const,
        error: { tag: "ControlError", reason: "Malformed", message: ParseError.describe(decoded.left) }
      }
    }
    const { id, request } = decoded.right
    const exit = yield* Effect.exit(handle(request))
    if (Exit.isSuccess(exit)) {
      const schema = Protocol.successes[request._tag] as Schema.Schema<unknown, unknown>
      const value = yield* Effect.either(Schema.encode(schema)(exit.value))
      if (Either.isRight(value)) return { version: Protocol.VERSION, id, ok: true as const, value: value.right }
      // an answer that does not fit its own schema is a bug of the node
      yield* Effect.logError(`control answer to ${request._tag} does not fit its schema`, value.left)
      return { version: Protocol.VERSION, id, ok: false as const, error: { tag: "Defect", message: `the node could not encode its answer to ${request._tag}` } }
    }
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) return { version: Protocol.VERSION, id, ok: false as const, error: failureOf(failure.value) }
    if (!Cause.isInterruptedOnly(exit.cause)) yield* Effect.logError(`control request ${request._tag} died`, exit.cause)
    return { version: Protocol.VERSION, id, ok: false as const, error: { tag: "Defect", message: Cause.pretty(exit.cause).split("\n")[0]!.slice(0, 8192) } }
  })

/** Answers one request line, whatever goes wrong. */
const answer = <E>(
  line: string,
  handle: (request: Protocol.Request) => Effect.Effect<unknown, E>
): Effect.Effect<Protocol.ResponseLine> =>
  Effect.catchAllDefect(answerLine(line, handle), (defect) =>
    Effect.as(Effect.logError("answering a control request failed", defect), {
      version: Protocol.VERSION,
      id: idOf(line),
      ok: false as const,
      error: { tag: "Defect", message: "the node could not answer this request" }
    }))

/** Requests of one connection answered at once; more wait, and its socket is not read meanwhile. */
const MAX_IN_FLIGHT = 8
/** Answer bytes a connection may have waiting to be read before its socket is not read. */
const WRITE_HIGH_WATER_BYTES = 256 * 1024
/** Connections served at once. */
const MAX_CONNECTIONS = 32
/** How long a connection may stay without a request in flight (longer than any request takes). */
const IDLE_TIMEOUT_MILLIS = 180_000

/** The answer as one line, or a TooLarge failure when it would pass the line bound. */
const lineOf = (response: Protocol.ResponseLine): string => {
  const line = JSON.stringify(response)
  if (Buffer.byteLength(line) < Protocol.MAX_LINE_BYTES) return line + "\n"
  return JSON.stringify({
    version: Protocol.VERSION,
    id: response.id,
    ok: false,
    error: { tag: "ControlError", reason: "TooLarge", message: `the answer takes ${Buffer.byteLength(line)} bytes; a line holds at most ${Protocol.MAX_LINE_BYTES}` }
  } satisfies Protocol.ResponseLine) + "\n"
}

/** Serves one connection until it closes (its requests are interrupted then) or the scope closes. */
const connection = <E>(socket: Socket, handle: (request: Protocol.Request) => Effect.Effect<unknown, E>) =>
  Effect.scoped(Effect.gen(function*() {
    yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    const send = (response: Protocol.ResponseLine) =>
      Effect.sync(() => {
        if (!socket.destroyed) socket.write(lineOf(response))
      })
    // bounded: at most MAX_IN_FLIGHT requests answered at once, and the socket is not read while
    // they are, or while its answers wait unread past the high-water mark (a client that sends
    // and never reads stops being read)
    let inFlight = 0
    const waiting: Array<string> = []
    const blocked = () => inFlight >= MAX_IN_FLIGHT || socket.writableLength > WRITE_HIGH_WATER_BYTES
    const flow = () => {
      while (waiting.length > 0 && !blocked()) start(waiting.shift()!)
      if (blocked() || waiting.length > 0) socket.pause()
      else if (socket.isPaused()) socket.resume()
    }
    const start = (line: string) => {
      inFlight++
      run(Effect.flatMap(answer(line, handle), send).pipe(Effect.ensuring(Effect.sync(() => {
        inFlight--
        flow()
      }))))
    }
    yield* Effect.async<void>((resume) => {
      const onData = lines(
        (line) => {
          if (blocked()) waiting.push(line)
          else start(line)
          flow()
        },
        () => socket.destroy(new Error("line over the bound"))
      )
      const onClose = () => resume(Effect.void)
      const onIdle = () => {
        if (inFlight === 0 && waiting.length === 0) socket.destroy()
      }
      socket.setTimeout(IDLE_TIMEOUT_MILLIS)
      socket.on("timeout", onIdle)
      socket.on("drain", flow)
      socket.on("data", onData)
      socket.on("error", () => socket.destroy()) // reported as 'close' next
      socket.once("close", onClose)
      return Effect.sync(() => {
        socket.removeListener("data", onData)
        socket.removeListener("drain", flow)
        socket.removeListener("timeout", onIdle)
        socket.removeListener("close", onClose)
      })
    })
  }))

const listen = (server: Server, path: string): Effect.Effect<void, ControlError> =>
  Effect.async<void, ControlError>((resume) => {
    const onError = (cause: Error) => resume(Effect.fail(new ControlError({ reason: "Io", path, detail: describe(cause) })))
    server.once("error", onError)
    server.listen({ path, exclusive: true }, () => {
      server.removeListener("error", onError)
      resume(Effect.void)
    })
  })

/** Whether a node answers on `path` (nothing is removed). */
export const answers = (path: string): Effect.Effect<boolean> =>
  Effect.scoped(open(path)).pipe(Effect.as(true), Effect.orElseSucceed(() => false))

/** Fails with `AlreadyRunning` when a node answers on `path`; removes a stale socket file left by a crash. */
export const claim = (path: string): Effect.Effect<void, ControlError> =>
  Effect.scoped(open(path)).pipe(
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

/** Serves the control endpoint at `path` until the scope closes (the socket file is removed then). */
export const serve = <E>(
  path: string,
  handle: (request: Protocol.Request) => Effect.Effect<unknown, E>
): Effect.Effect<void, ControlError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* claim(path)
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    const sockets = new Set<Socket>()
    const server = createServer((socket) => {
      sockets.add(socket)
      socket.once("close", () => sockets.delete(socket))
      run(connection(socket, handle))
    })
    server.maxConnections = MAX_CONNECTIONS
    yield* Effect.acquireRelease(
      listen(server, path),
      () =>
        Effect.async<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          server.close(() => resume(Effect.void))
        }).pipe(
          Effect.zipRight(Effect.tryPromise(() => unlink(path)).pipe(Effect.ignore)) // gone already: nothing to remove
        )
    )
    yield* Effect.tryPromise({
      try: () => chmod(path, 0o600),
      catch: (cause) => new ControlError({ reason: "Io", path, detail: describe(cause) })
    })
  })

/** Options of a call. */
export interface CallOptions {
  /** Most time to wait for the answer (default: `defaultTimeout` of the request). */
  readonly timeout?: Duration.DurationInput
}

/**
 * How long a request may take by default: longer than the node itself lets
 * it take (a pairing waits up to 75 s for a person, a ping up to 10 s per
 * round trip, a dial 10 s), so that only a node that stopped answering (one
 * suspended with Ctrl-Z, say) runs into it.
 */
export const defaultTimeout = (request: Protocol.Request): Duration.Duration =>
  request._tag === "Pair" ? Duration.minutes(2)
    : request._tag === "Ping" ? Duration.seconds(30 + 10 * request.count)
    : Duration.seconds(30)

/** Sends one request to the node at `path` and waits for its answer. */
export const call = <R extends Protocol.Request>(
  path: string,
  request: R,
  options: CallOptions = {}
): Effect.Effect<Protocol.Success<R>, ControlError | RemoteError> => {
  const exchange = Effect.scoped(Effect.gen(function*() {
    const encoded = yield* Schema.encode(Protocol.RequestLine)({ version: Protocol.VERSION, id: 1, request }).pipe(
      Effect.mapError((error) => new ControlError({ reason: "Malformed", path, detail: ParseError.describe(error) }))
    )
    const socket = yield* open(path)
    const line = yield* Effect.async<string, ControlError>((resume) => {
      let done = false
      const finish = (effect: Effect.Effect<string, ControlError>) => {
        if (done) return
        done = true
        resume(effect)
      }
      const onData = lines(
        (received) => finish(Effect.succeed(received)),
        () => finish(Effect.fail(new ControlError({ reason: "Malformed", path, detail: "an answer over the bound" })))
      )
      const onClose = () => finish(Effect.fail(new ControlError({ reason: "Closed", path, detail: "the node closed the connection before answering" })))
      const onError = (cause: Error) => finish(Effect.fail(new ControlError({ reason: "Io", path, detail: describe(cause) })))
      socket.on("data", onData)
      socket.once("close", onClose)
      socket.once("error", onError)
      socket.write(JSON.stringify(encoded) + "\n")
      return Effect.sync(() => {
        socket.removeListener("data", onData)
        socket.removeListener("close", onClose)
        socket.removeListener("error", onError)
      })
    })
    const response = yield* Either.mapLeft(
      decodeResponseLine(line),
      (error) => new ControlError({ reason: "Malformed", path, detail: ParseError.describe(error) })
    )
    if (!response.ok) {
      return yield* new RemoteError({ tag: response.error.tag, reason: response.error.reason, detail: response.error.message })
    }
    const schema = Protocol.successes[request._tag] as unknown as Schema.Schema<Protocol.Success<R>, unknown>
    return yield* Schema.decodeUnknown(schema)(response.value).pipe(
      Effect.mapError((error) => new ControlError({ reason: "Malformed", path, detail: ParseError.describe(error) }))
    )
  }))
  const timeout = Duration.decode(options.timeout ?? defaultTimeout(request))
  return exchange.pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new ControlError({ reason: "Timeout", path, detail: `no answer within ${Duration.format(timeout)}` })
    })
  )
}

/**
 * Every note of a library (default: the node's first), following `NotesList`
 * pages until the last one; a note changed meanwhile is listed once, as last
 * seen.
 */
export const listNotes = (
  path: string,
  library?: string,
  options: CallOptions = {}
): Effect.Effect<ReadonlyArray<Protocol.NotesPage["notes"][number]>, ControlError | RemoteError> =>
  Effect.gen(function*() {
    // by id: a note changed between two pages may come again at its new place, and is shown there only
    const notes = new Map<string, Protocol.NotesPage["notes"][number]>()
    let after: Protocol.NoteCursor | undefined = undefined
    do {
      const page: Protocol.NotesPage = yield* call(path, {
        _tag: "NotesList",
        ...(library === undefined ? {} : { library }),
        ...(after === undefined ? {} : { after })
      }, options)
      // a page that promises more but holds nothing would repeat forever
      if (page.next !== undefined && page.notes.length === 0) {
        return yield* new ControlError({ reason: "Malformed", path, detail: "a page of notes with a next cursor but no notes" })
      }
      for (const note of page.notes) {
        notes.delete(note.id)
        notes.set(note.id, note)
      }
      after = page.next
    } while (after !== undefined)
    return [...notes.values()]
  })
