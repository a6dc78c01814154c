/**
 * The body of `RpcPlugin`: `@effect/rpc` servers and clients over any
 * `Duplex` (plugin streams, the CLI's local socket), with the kit's framing,
 * bounds and errors. Both sides use `@effect/rpc`'s protocol-free core
 * (`makeNoSerialization`); the serialization is ours, so every byte read is
 * bounded and decoded with Schema, and every failure is typed.
 *
 * @internal
 */
import * as Headers from "@effect/platform/Headers"
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcApi from "@effect/rpc/Rpc"
import * as RpcClient from "@effect/rpc/RpcClient"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcMessage from "@effect/rpc/RpcMessage"
import * as RpcMiddleware from "@effect/rpc/RpcMiddleware"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ParseError from "../../internal/parseError.js"
import { isWellFormedJson } from "../../internal/wellFormed.js"
import * as Framing from "../../transport/Framing.js"
import { ProtocolError } from "../../transport/ProtocolError.js"
import type { Duplex, PeerId, TransportError } from "../../transport/Transport.js"

/** The authenticated caller of a procedure: the peer at the other end of the stream, and its library. */
export interface CallerInfo {
  readonly peer: PeerId
  readonly library: string | undefined
}

/** The caller of the procedure being handled, from the connection. */
export class Caller extends Context.Tag("weft/plugins/RpcPlugin/Caller")<Caller, CallerInfo>() {}

/**
 * The middleware that gives handlers their `Caller`, from the stream the call
 * came on (never from anything the caller sent). Declare it on a group whose
 * handlers read the caller; the kit provides it for every group it serves.
 */
export class CallerMiddleware extends RpcMiddleware.Tag<CallerMiddleware>()("weft/plugins/RpcPlugin/CallerMiddleware", {
  provides: Caller
}) {}

/** A group with the `Caller` middleware on every procedure (adding it again changes nothing). */
const withCaller = <Rpcs extends Rpc.Any>(group: RpcGroup.RpcGroup<Rpcs>): RpcGroup.RpcGroup<Rpcs> =>
  group.middleware(CallerMiddleware) as unknown as RpcGroup.RpcGroup<Rpcs>

/** A call could not be made or answered as the protocol says. */
export class RpcError extends Schema.TaggedError<RpcError>("weft/RpcError")("RpcError", {
  reason: Schema.Literal(
    "Closed", // the stream ended before the answer (the peer went away, or the client's scope closed)
    "Malformed", // the other side could not read the call or its answer (another version, or a bug)
    "TooLarge" // the call or its answer does not fit one frame
  ),
  detail: Schema.String
}) {
  override get message(): string {
    return `rpc ${this.reason}: ${this.detail}`
  }
}

/** Bounds of one stream. */
export interface Bounds {
  /** Most bytes of one frame, either way (default `DEFAULT_MAX_FRAME_BYTES`). */
  readonly maxFrameBytes?: number
  /** Calls of one stream handled at once; the stream is not read while this many run (default `DEFAULT_MAX_IN_FLIGHT`). */
  readonly maxInFlight?: number
}

/** Default bound of one frame: 1 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
/** Default calls of one stream handled at once. */
export const DEFAULT_MAX_IN_FLIGHT = 16

// wire format: one JSON object per frame
const RequestId = Schema.String.pipe(Schema.pattern(/^\d{1,19}$/))
const Tag = Schema.String.pipe(Schema.maxLength(256))
const FromClient = Schema.Union(
  Schema.TaggedStruct("Request", { id: RequestId, tag: Tag, payload: Schema.Unknown }),
  Schema.TaggedStruct("Ack", { requestId: RequestId }),
  Schema.TaggedStruct("Interrupt", { requestId: RequestId }),
  Schema.TaggedStruct("Eof", {})
)
type FromClient = typeof FromClient.Type
const FromServer = Schema.Union(
  Schema.TaggedStruct("Chunk", { requestId: RequestId, values: Schema.NonEmptyArray(Schema.Unknown) }),
  Schema.TaggedStruct("Exit", { requestId: RequestId, exit: Schema.Unknown }),
  Schema.TaggedStruct("Refused", { requestId: RequestId, reason: Schema.Literal("Malformed", "TooLarge"), detail: Schema.String.pipe(Schema.maxLength(4096)) }),
  Schema.TaggedStruct("End", {})
)
type FromServer = typeof FromServer.Type
const decodeFromClient = ParseError.decodeUnknownEither(FromClient)
const decodeFromServer = ParseError.decodeUnknownEither(FromServer)

const decoder = new TextDecoder("utf-8", { fatal: true })

const parse = (frame: Uint8Array): Either.Either<unknown, string> => {
  let text: string
  let json: unknown
  try {
    text = decoder.decode(frame)
    json = JSON.parse(text)
  } catch (cause) {
    return Either.left(`not JSON: ${cause instanceof Error ? cause.message.slice(0, 200) : "undecodable"}`)
  }
  // a lone surrogate (escaped as \uD800) has no UTF-8 form: it would not survive the next hop
  return isWellFormedJson(text, json) ? Either.right(json) : Either.left("not well-formed: a string holds a lone surrogate")
}

/** `message` as one frame, length prefix included. */
const serialize = (message: unknown): Uint8Array => Framing.encodeText(JSON.stringify(message))

/** The bytes of a frame made by `serialize`, prefix left out. */
const bodyBytes = (frame: Uint8Array) => frame.length - Framing.HEADER_BYTES

/**
 * Runs `effect` holding `lock` (one permit): at once when it is free, with
 * no wait set up, else after the holders before it. The frames of one stream
 * are written one at a time, and nearly every write finds the lock free.
 */
const exclusively = (lock: Effect.Semaphore) => {
  const wait = lock.withPermits(1)
  const now = lock.withPermitsIfAvailable(1)
  return <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.flatMap(now(effect), (done) => (Option.isSome(done) ? Effect.succeed(done.value) : wait(effect)))
}

const describe = (error: ParseResult.ParseError) => ParseError.describe(error, 1024)

/** Whether `issue` says a schema needs an effect to run (an async transformation, or one with requirements). */
const needsEffect = (issue: ParseResult.ParseIssue, depth = 0): boolean => {
  if (issue._tag === "Forbidden") return true
  if (depth > 32) return false
  switch (issue._tag) {
    case "Composite":
      return Array.isArray(issue.issues) ? issue.issues.some((i: ParseResult.ParseIssue) => needsEffect(i, depth + 1)) : needsEffect(issue.issues as ParseResult.ParseIssue, depth + 1)
    case "Pointer":
    case "Refinement":
    case "Transformation":
      return needsEffect(issue.issue, depth + 1)
    default:
      return false
  }
}

/**
 * A codec that runs synchronously and answers an `Either` (itself an
 * effect, so callers may branch on it without running one), unless the
 * schema needs an effect: then it runs as one.
 */
const codec = <A, I>(
  sync: (input: I) => Either.Either<A, ParseResult.ParseError>,
  effect: (input: I) => Effect.Effect<A, ParseResult.ParseError>
) =>
(input: I): Effect.Effect<A, ParseResult.ParseError> => {
  const result = sync(input)
  return Either.isLeft(result) && needsEffect(result.left.issue) ? effect(input) : result
}

/** The outcome of a codec, as an `Either` when it ran synchronously (nearly always), else the effect to run. */
const settled = <A>(result: Effect.Effect<A, ParseResult.ParseError>): Either.Either<A, ParseResult.ParseError> | undefined =>
  Either.isEither(result) ? result as Either.Either<A, ParseResult.ParseError> : undefined

/**
 * The schemas of one procedure, compiled once per procedure (each codec
 * synchronous unless its schema needs an effect).
 */
interface Schemas {
  readonly rpc: Rpc.AnyWithProps
  readonly decodePayload: (u: unknown) => Effect.Effect<unknown, ParseResult.ParseError>
  readonly encodePayload: (a: unknown) => Effect.Effect<unknown, ParseResult.ParseError>
  readonly encodeExit: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<unknown, ParseResult.ParseError>
  readonly decodeExit: (u: unknown) => Effect.Effect<Exit.Exit<unknown, unknown>, ParseResult.ParseError>
  readonly encodeChunk: ((values: ReadonlyArray<unknown>) => Effect.Effect<unknown, ParseResult.ParseError>) | undefined
  readonly decodeChunk: ((values: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<unknown>, ParseResult.ParseError>) | undefined
}

const schemasOf = (group: RpcGroup.RpcGroup<any>) => {
  const cache = new Map<string, Schemas>()
  return (tag: string): Schemas | undefined => {
    const cached = cache.get(tag)
    if (cached !== undefined) return cached
    const rpc = group.requests.get(tag) as Rpc.AnyWithProps | undefined
    if (rpc === undefined) return undefined
    const stream = RpcSchema.getStreamSchemas(rpc.successSchema.ast)
    const exit = RpcApi.exitSchema(rpc as any) as unknown as Schema.Schema<Exit.Exit<unknown, unknown>, unknown>
    const chunk = Option.isSome(stream) ? Schema.Array(stream.value.success as Schema.Schema<unknown, unknown>) : undefined
    const payload = rpc.payloadSchema as Schema.Schema<unknown, unknown>
    const schemas: Schemas = {
      rpc,
      decodePayload: codec(ParseError.decodeUnknownEither(payload), ParseError.decodeUnknown(payload)),
      encodePayload: codec(Schema.encodeUnknownEither(payload), Schema.encodeUnknown(payload)),
      encodeExit: codec(Schema.encodeEither(exit), Schema.encode(exit)),
      decodeExit: codec(ParseError.decodeUnknownEither(exit), ParseError.decodeUnknown(exit)),
      encodeChunk: chunk === undefined ? undefined : codec(Schema.encodeEither(chunk), Schema.encode(chunk)),
      decodeChunk: chunk === undefined ? undefined : codec(ParseError.decodeUnknownEither(chunk), ParseError.decodeUnknown(chunk))
    }
    cache.set(tag, schemas)
    return schemas
  }
}

/** A call read and not started yet, or the client's end of its calls. */
type Waiting =
  | { readonly _tag: "Request"; readonly id: string; readonly tag: string; readonly payload: unknown }
  | { readonly _tag: "Eof" }

/** What the server knows of one stream it serves. */
interface Client {
  readonly caller: CallerInfo
  /** Writes one message to the stream (serialised, bounded). */
  readonly send: (message: FromServer) => Effect.Effect<boolean>
  /** The procedure of each call in flight. */
  readonly calls: Map<string, Schemas>
  /** The call is answered: its slot is free. */
  readonly done: (requestId: string) => Effect.Effect<void>
  readonly ended: () => void
}

/** Serves a group's procedures to any number of streams. */
export interface Server {
  /**
   * Serves the calls of one stream until the client ends it (after its
   * calls are answered) or it breaks; the scope closing interrupts its calls.
   * Fails with a `ProtocolError` when the client breaks the protocol.
   */
  readonly serve: (stream: Duplex, caller: CallerInfo) => Effect.Effect<void, ProtocolError | TransportError, Scope.Scope>
}

/** Options of a server. */
export interface ServerOptions extends Bounds {
  /**
   * What a call whose payload does not decode gets: `"violation"` (default)
   * fails the stream with a `ProtocolError`, so a plugin's peer is
   * disconnected; `"answer"` refuses that call with `RpcError` `Malformed`
   * and serves on (the CLI's control socket).
   */
  readonly malformedCall?: "violation" | "answer"
  /** How long a stream may stay with no call in flight and nothing read before it is closed (default: as long as it likes). */
  readonly idleTimeout?: Duration.DurationInput
  /**
   * Decides whether `caller` may make a call of `tag` (a procedure of the
   * group or not) before its payload is read: `Some(error)`, an error already
   * encoded as JSON, answers the call with that failure, and nothing of it
   * runs. So a refused caller learns the same of a procedure that does not
   * exist as of one it may not call, and a payload is never decoded for it.
   */
  readonly authorize?: (tag: string, caller: CallerInfo) => Effect.Effect<Option.Option<unknown>>
}

/** Makes a server of `group`, with the handlers in context, running until the scope closes. */
export const makeServer = <Rpcs extends Rpc.Any>(
  group: RpcGroup.RpcGroup<Rpcs>,
  options: ServerOptions = {}
): Effect.Effect<Server, never, Rpc.ToHandler<Rpcs> | Exclude<Rpc.Middleware<Rpcs>, CallerMiddleware> | Scope.Scope> =>
  Effect.gen(function*() {
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT
    const schemas = schemasOf(group)
    const clients = new Map<number, Client>()
    let nextClient = 0

    const encodeDefect = Schema.encodeSync(Schema.Defect)
    const answer = (client: Client, response: RpcMessage.FromServer<any>): Effect.Effect<void> => {
      switch (response._tag) {
        case "Chunk": {
          const requestId = String(response.requestId)
          const call = client.calls.get(requestId)
          if (call?.encodeChunk === undefined) return Effect.void
          return call.encodeChunk(response.values).pipe(
            Effect.flatMap((values) => client.send({ _tag: "Chunk", requestId, values: values as [unknown, ...Array<unknown>] })),
            Effect.flatMap((fits) =>
              fits ? Effect.void : Effect.all([
                client.send({ _tag: "Refused", requestId, reason: "TooLarge", detail: `a chunk of the answer does not fit a frame of ${maxFrameBytes} bytes` }),
                client.done(requestId),
                server.write(response.clientId, { _tag: "Interrupt", requestId: response.requestId, interruptors: [] })
              ], { discard: true })
            ),
            Effect.catchAll((error) => failCall(client, requestId, error))
          )
        }
        case "Exit": {
          const requestId = String(response.requestId)
          const call = client.calls.get(requestId)
          if (call === undefined) return Effect.void
          // the slot is freed once the answer is written: a client that does not read its answers
          // holds at most maxInFlight of them here, and is not read meanwhile
          const write = (exit: unknown) =>
            Effect.flatMap(client.send({ _tag: "Exit", requestId, exit }), (fits) =>
              fits ? Effect.void : Effect.asVoid(client.send({
                _tag: "Refused",
                requestId,
                reason: "TooLarge",
                detail: `the answer does not fit a frame of ${maxFrameBytes} bytes`
              })))
          const encoded = call.encodeExit(response.exit)
          const now = settled(encoded)
          const answered = now === undefined
            ? Effect.matchEffect(encoded, { onFailure: (error) => failCall(client, requestId, error), onSuccess: write })
            : Either.isRight(now)
            ? write(now.right)
            : failCall(client, requestId, now.left)
          return Effect.ensuring(answered, client.done(requestId))
        }
        case "Defect":
          // with fatal defects off, a handler's defect ends its own call; this one is the server's own
          return Effect.logError("rpc server defect", response.defect)
        case "ClientEnd":
          return Effect.asVoid(Effect.zipRight(client.send({ _tag: "End" }), Effect.sync(() => client.ended())))
      }
    }
    // an answer that does not fit its own schema is a bug of the handler: the call dies, the stream goes on
    const failCall = (client: Client, requestId: string, error: ParseResult.ParseError) =>
      Effect.zipRight(
        Effect.logError(`an rpc answer does not fit its schema: ${describe(error)}`),
        Effect.asVoid(client.send({
          _tag: "Exit",
          requestId,
          exit: { _tag: "Failure", cause: { _tag: "Die", defect: encodeDefect("the server could not encode its answer") } }
        }))
      ).pipe(Effect.ensuring(client.done(requestId)))

    const made = RpcServer.makeNoSerialization(withCaller(group), {
      onFromServer: (response) => {
        const client = clients.get(response.clientId)
        return client === undefined ? Effect.void : answer(client, response)
      },
      disableTracing: true,
      disableSpanPropagation: true,
      // a handler's defect ends its call, not every call of the stream
      disableFatalDefects: true,
      concurrency: "unbounded"
    })
    const server = yield* (made.pipe(Effect.provideService(CallerMiddleware, ({ clientId }) => {
      const client = clients.get(clientId)
      return client === undefined ? Effect.die(`no stream for rpc client ${clientId}`) : Effect.succeed(client.caller)
    })) as unknown as Effect.Effect<RpcServer.RpcServer<any>, never, Scope.Scope>)

    const serve = (stream: Duplex, caller: CallerInfo) =>
      Effect.gen(function*() {
        const where = { peer: stream.remote, protocol: stream.protocol }
        const violation = (reason: ProtocolError["reason"], detail: string) => new ProtocolError({ reason, ...where, detail })
        const id = nextClient++
        const writing = exclusively(yield* Effect.makeSemaphore(1))
        // calls started and not answered yet, and calls in `waiting` not started yet; `slotFreed`
        // opens when an answer frees a slot
        let running = 0
        let queued = 0
        const slotFreed = Effect.unsafeMakeLatch(false)
        const ended = yield* Deferred.make<void>()
        // calls read and not started yet (the client may send more than maxInFlight at once); the stream
        // is not read while this many wait, but acknowledgements and interruptions behind them still flow
        // as long as it sends no more than twice maxInFlight
        const waiting = yield* Queue.bounded<Waiting>(maxInFlight)
        const clock = yield* Effect.clock
        let lastActive = clock.unsafeCurrentTimeMillis()
        const started = new Set<string>()
        const cancelled = new Set<string>()
        let endOfCalls = false
        const endCalls = Effect.suspend(() => {
          if (endOfCalls) return Effect.void
          endOfCalls = true
          return enqueue({ _tag: "Eof" })
        })
        // false when the message does not fit a frame (nothing was written)
        const send = (message: FromServer): Effect.Effect<boolean> => {
          const frame = serialize(message)
          if (bodyBytes(frame) > maxFrameBytes) return Effect.succeed(false)
          // a stream that broke is seen by the reader; answers to it are dropped
          return writing(Effect.as(Effect.ignore(stream.write(frame)), true))
        }
        const client: Client = {
          caller,
          send,
          calls: new Map(),
          // the slot is freed once the call's answer is written
          done: (requestId) =>
            Effect.suspend(() => {
              client.calls.delete(requestId)
              lastActive = clock.unsafeCurrentTimeMillis()
              if (started.delete(requestId)) {
                running--
                slotFreed.unsafeOpen()
              }
              return Effect.void
            }),
          ended: () => Deferred.unsafeDone(ended, Exit.void)
        }
        clients.set(id, client)
        yield* Effect.addFinalizer(() => Effect.zipRight(server.disconnect(id), Effect.sync(() => clients.delete(id))))

        // takes a slot for `call` if one is free: nothing else may run between the look and the take
        const take = (call: string) => {
          if (running >= maxInFlight) return false
          running++
          started.add(call)
          return true
        }
        const start = (next: Extract<Waiting, { _tag: "Request" }>) =>
          server.write(id, {
            _tag: "Request",
            id: RpcMessage.RequestId(next.id),
            tag: next.tag as any,
            payload: next.payload as any,
            headers: Headers.empty
          })
        // a call starts at once when a slot is free and none waits before it; otherwise it waits its turn
        // (and the reader stops once `waiting` is full), as does the end of the calls behind them
        const enqueue = (next: Waiting) =>
          Effect.suspend(() => {
            if (queued === 0) {
              if (next._tag === "Eof") return server.write(id, { _tag: "Eof" })
              if (take(next.id)) return start(next)
            }
            queued++
            return Queue.offer(waiting, next)
          })
        yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
          const next = yield* Queue.take(waiting)
          if (next._tag === "Eof") {
            queued--
            return yield* server.write(id, { _tag: "Eof" })
          }
          while (true) {
            // closed before the look, so an answer after the look opens it again
            slotFreed.unsafeClose()
            if (cancelled.delete(next.id)) {
              client.calls.delete(next.id)
              queued--
              return
            }
            if (take(next.id)) break
            yield* slotFreed.await
          }
          queued--
          yield* start(next)
        })))

        const reader = yield* Framing.reader(stream.source, { ...where, maxFrameBytes })
        // a call the caller may make: its payload is decoded, then it starts or waits its turn
        const admit = (message: Extract<FromClient, { _tag: "Request" }>): Effect.Effect<void, ProtocolError> => {
          const refuse = (detail: string) =>
            options.malformedCall === "answer"
              ? Effect.asVoid(send({ _tag: "Refused", requestId: message.id, reason: "Malformed", detail: detail.slice(0, 4096) }))
              : Effect.fail(violation("Malformed", detail))
          const call = schemas(message.tag)
          if (call === undefined) return refuse(`no procedure ${message.tag.slice(0, 64)}`)
          const start = (payload: Either.Either<unknown, ParseResult.ParseError>) => {
            if (Either.isLeft(payload)) return refuse(`the payload of ${message.tag}: ${describe(payload.left)}`)
            client.calls.set(message.id, call)
            return enqueue({ _tag: "Request", id: message.id, tag: message.tag, payload: payload.right })
          }
          const decoded = call.decodePayload(message.payload)
          const now = settled(decoded)
          return now === undefined ? Effect.flatMap(Effect.either(decoded), start) : start(now)
        }
        const handle = (message: FromClient): Effect.Effect<void, ProtocolError> => {
          switch (message._tag) {
            case "Request": {
              if (client.calls.has(message.id)) return Effect.fail(violation("Unexpected", `call ${message.id} is in flight already`))
              if (endOfCalls) return Effect.fail(violation("Unexpected", "a call after the end of calls"))
              if (options.authorize === undefined) return admit(message)
              return Effect.flatMap(options.authorize(message.tag, caller), (refusal) =>
                Option.isSome(refusal)
                  ? Effect.asVoid(send({ _tag: "Exit", requestId: message.id, exit: { _tag: "Failure", cause: { _tag: "Fail", error: refusal.value } } }))
                  : admit(message))
            }
            case "Ack":
              return server.write(id, { _tag: "Ack", requestId: RpcMessage.RequestId(message.requestId) })
            case "Interrupt":
              // a call still waiting is dropped before it starts
              if (!started.has(message.requestId)) {
                if (client.calls.delete(message.requestId)) cancelled.add(message.requestId)
                return Effect.void
              }
              return server.write(id, { _tag: "Interrupt", requestId: RpcMessage.RequestId(message.requestId), interruptors: [] })
            case "Eof":
              return endCalls
          }
        }
        const calls = Effect.gen(function*() {
          while (true) {
            const frame = yield* reader.frame
            if (Option.isNone(frame)) return
            lastActive = clock.unsafeCurrentTimeMillis()
            const message = Either.flatMap(parse(frame.value), (json) => Either.mapLeft(decodeFromClient(json), describe))
            if (Either.isLeft(message)) return yield* violation("Malformed", message.left)
            yield* handle(message.right)
          }
        })
        // an idle stream (no call in flight, nothing read) is closed once its time is up
        const idleFor = options.idleTimeout === undefined ? undefined : Duration.toMillis(Duration.decode(options.idleTimeout))
        const idle = idleFor === undefined ? Effect.never : Effect.gen(function*() {
          while (true) {
            const left = lastActive + idleFor - clock.unsafeCurrentTimeMillis()
            if (left <= 0 && client.calls.size === 0) return yield* stream.reset
            yield* Effect.sleep(Duration.millis(Math.max(left, idleFor / 10)))
          }
        })
        if (yield* Effect.raceFirst(Effect.as(calls, false), Effect.as(idle, true))) return
        // the client ended its side: its calls are answered, then the stream ends
        yield* endCalls
        yield* Deferred.await(ended)
        yield* stream.end
      })

    return { serve }
  })

/** Options of a client. */
export interface ClientOptions extends Bounds {
  /** Told when the server breaks the protocol (an answer that does not decode); the stream is closed then. */
  readonly onViolation?: (error: ProtocolError) => Effect.Effect<void>
}

/** A client of `group` over `stream`; calls fail with `RpcError` `Closed` once the stream ends or the scope closes. */
export const makeClient = <Rpcs extends Rpc.Any>(
  group: RpcGroup.RpcGroup<Rpcs>,
  stream: Duplex,
  options: ClientOptions = {}
): Effect.Effect<RpcClient.RpcClient<Rpcs, RpcError>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    const where = { peer: stream.remote, protocol: stream.protocol }
    const schemas = schemasOf(group)
    const calls = new Map<string, Schemas>()
    // the plain calls made here (see `plain`): how each is handed its answer
    const answers = new Map<string, (exit: Exit.Exit<unknown, unknown>) => void>()
    // request ids, shared by the plain calls made here and the streams made by @effect/rpc's client
    let nextId = 0
    // at most maxInFlight calls outstanding: the server takes no more at once, and a call beyond would
    // wait in front of the acknowledgements and interruptions sent after it
    const permits = yield* Effect.makeSemaphore(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT)
    const holding = new Set<string>()
    const settle = (requestId: string) =>
      Effect.suspend(() => {
        calls.delete(requestId)
        answers.delete(requestId)
        return holding.delete(requestId) ? permits.release(1) : Effect.void
      })
    const writing = exclusively(yield* Effect.makeSemaphore(1))
    let closed: RpcError | undefined
    const send = (message: FromClient): Effect.Effect<void, RpcError> =>
      Effect.suspend(() => {
        if (closed !== undefined) return Effect.fail(closed)
        const frame = serialize(message)
        if (bodyBytes(frame) > maxFrameBytes) {
          return Effect.fail(new RpcError({ reason: "TooLarge", detail: `the call takes ${bodyBytes(frame)} bytes; a frame holds at most ${maxFrameBytes}` }))
        }
        return writing(stream.write(frame)).pipe(
          Effect.mapError((error) => new RpcError({ reason: "Closed", detail: error.message }))
        )
      })
    const interrupt = (requestId: string) =>
      Effect.all([settle(requestId), stopDelivery(requestId), Effect.ignore(Effect.timeout(send({ _tag: "Interrupt", requestId }), Duration.seconds(1)))], {
        discard: true
      })

    /**
     * A plain call, made here rather than through @effect/rpc's client: no fiber, runtime or span
     * of its own; the reader hands the answer straight to the caller. Interrupting the caller
     * interrupts the call on the server.
     */
    const request = (call: Schemas, tag: string, payload: unknown): Effect.Effect<unknown, unknown> =>
      Effect.suspend(() => {
        const requestId = String(nextId++)
        let answer: Exit.Exit<unknown, unknown> | undefined
        let resume: ((exit: Exit.Exit<unknown, unknown>) => void) | undefined
        // the answer may come while the request is still being written (the write waited for the window)
        const answered = Effect.async<unknown, unknown>((callback) => {
          if (answer === undefined) resume = callback
          else callback(answer)
        })
        const registered = Effect.sync(() => {
          holding.add(requestId)
          calls.set(requestId, call)
          answers.set(requestId, (exit) => {
            if (resume === undefined) answer = exit
            else resume(exit)
          })
        })
        const sent = Effect.tapError(send({ _tag: "Request", id: requestId, tag, payload }), () => settle(requestId))
        // the permit, once taken, is registered before an interruption can land: settling (on the
        // answer, a failed write or an interruption) gives it back; taken and not registered, it
        // would be lost to the client for good
        return Effect.uninterruptibleMask((restore) =>
          Effect.onInterrupt(
            Effect.zipRight(Effect.zipRight(restore(permits.take(1)), registered), restore(Effect.zipRight(sent, answered))),
            () => (calls.has(requestId) ? interrupt(requestId) : Effect.void)
          )
        )
      })
    const plain = (rpc: Rpc.AnyWithProps) => {
      const call = schemas(rpc._tag)!
      const make = (rpc.payloadSchema as { readonly make?: (props: unknown) => unknown }).make
      const malformed = (cause: unknown) =>
        new RpcError({
          reason: "Malformed",
          detail: `the call of ${rpc._tag} does not fit its schema: ${ParseResult.isParseError(cause) ? describe(cause) : String(cause)}`
        })
      // the payload as given, or else as its schema's constructor makes it (defaults filled in), as
      // @effect/rpc's client makes it before anything: a payload that fits neither is `Malformed`
      const encode = (payload: unknown): Effect.Effect<unknown, RpcError> => {
        const encoded = call.encodePayload(payload)
        const now = settled(encoded)
        if (now !== undefined && Either.isRight(now)) return Effect.succeed(now.right)
        if (make === undefined) return Effect.mapError(encoded, malformed)
        let made: unknown
        try {
          made = make(payload)
        } catch (cause) {
          return Effect.fail(malformed(cause))
        }
        return Effect.mapError(call.encodePayload(made), malformed)
      }
      return (payload: unknown) => Effect.flatMap(encode(payload), (encoded) => request(call, rpc._tag, encoded))
    }

    // closing: the client's calls are interrupted first (below), then it says it has no more and
    // ends its side, so the server winds down instead of seeing a reset
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => (closed === undefined ? Effect.ignore(send({ _tag: "Eof" })) : Effect.void)).pipe(
        Effect.zipRight(stream.end),
        Effect.timeout(Duration.seconds(1)),
        Effect.ignore
      )
    )
    const made = RpcClient.makeNoSerialization(group, {
      onFromClient: ({ message }): Effect.Effect<void, RpcError> => {
        switch (message._tag) {
          case "Request": {
            const requestId = String(message.id)
            const call = schemas(message.tag)!
            // a payload that does not fit its schema never leaves: the caller learns where it is wrong
            const malformed = (error: ParseResult.ParseError) =>
              new RpcError({ reason: "Malformed", detail: `the call of ${message.tag} does not fit its schema: ${describe(error)}` })
            const sent = (payload: unknown) =>
              Effect.zipRight(
                permits.take(1),
                Effect.suspend(() => {
                  holding.add(requestId)
                  calls.set(requestId, call)
                  return send({ _tag: "Request", id: requestId, tag: message.tag, payload })
                })
              ).pipe(Effect.tapError(() => settle(requestId)))
            const encoded = call.encodePayload(message.payload)
            const now = settled(encoded)
            if (now === undefined) return Effect.flatMap(Effect.mapError(encoded, malformed), sent)
            return Either.isRight(now) ? sent(now.right) : Effect.fail(malformed(now.left))
          }
          case "Ack":
            return send({ _tag: "Ack", requestId: String(message.requestId) })
          case "Interrupt": {
            const requestId = String(message.requestId)
            return calls.has(requestId) ? interrupt(requestId) : Effect.void
          }
          case "Eof":
            return Effect.ignore(send({ _tag: "Eof" }))
        }
      },
      supportsAck: true,
      disableTracing: true,
      generateRequestId: () => RpcMessage.RequestId(String(nextId++))
    })
    const { client, write } = yield* (made as unknown as Effect.Effect<{
      readonly client: RpcClient.RpcClient<Rpcs, RpcError>
      readonly write: (message: RpcMessage.FromServer<any>) => Effect.Effect<void>
    }, never, Scope.Scope>)

    /** Settles the call and hands it its answer. */
    const finish = (requestId: string, value: Exit.Exit<unknown, unknown>) =>
      Effect.suspend(() => {
        const plainCall = answers.get(requestId)
        if (plainCall === undefined) {
          return Effect.zipRight(settle(requestId), write({ _tag: "Exit", clientId: 0, requestId: RpcMessage.RequestId(requestId), exit: value as any }))
        }
        return Effect.zipRight(settle(requestId), Effect.sync(() => plainCall(value)))
      })
    /** Ends every call in flight with `error`; later calls fail with it at once. */
    const close = (error: RpcError) =>
      Effect.suspend(() => {
        closed ??= error
        return Effect.forEach([...calls.keys()], (requestId) => Effect.zipRight(stopDelivery(requestId), finish(requestId, Exit.fail(error))), {
          discard: true
        })
      })

    // a chunk is handed to its call's consumer in a fiber of its own: a consumer that stopped taking
    // (interrupted after a few values) would otherwise hold up every other call's answers
    const scope = yield* Effect.scope
    const deliveries = new Map<string, Fiber.RuntimeFiber<void>>()
    const stopDelivery = (requestId: string) =>
      Effect.suspend(() => {
        const delivery = deliveries.get(requestId)
        deliveries.delete(requestId)
        return delivery === undefined ? Effect.void : Fiber.interrupt(delivery)
      })
    const deliver = (requestId: string, values: ReadonlyArray<unknown>) =>
      Effect.flatMap(
        Effect.forkIn(write({ _tag: "Chunk", clientId: 0, requestId: RpcMessage.RequestId(requestId), values: values as any }), scope),
        (fiber) =>
          Effect.sync(() => {
            deliveries.set(requestId, fiber)
            fiber.addObserver(() => {
              if (deliveries.get(requestId) === fiber) deliveries.delete(requestId)
            })
          })
      )

    const reader = yield* Framing.reader(stream.source, { ...where, maxFrameBytes })
    const receive = (message: FromServer): Effect.Effect<void, ProtocolError> => {
      const violation = (detail: string) => new ProtocolError({ reason: "Malformed", ...where, detail })
      switch (message._tag) {
        case "Chunk": {
          const call = calls.get(message.requestId)
          if (call?.decodeChunk === undefined) return Effect.void
          return call.decodeChunk(message.values).pipe(
            Effect.mapError((error) => violation(`a chunk of ${call.rpc._tag}: ${describe(error)}`)),
            Effect.flatMap((values) => (values.length === 0 ? Effect.void : deliver(message.requestId, values)))
          )
        }
        case "Exit": {
          const call = calls.get(message.requestId)
          if (call === undefined) return Effect.void
          // a call whose answer does not decode is failed with the others when the stream closes on it
          const answered = (value: Exit.Exit<unknown, unknown>) => finish(message.requestId, value)
          const decoded = call.decodeExit(message.exit)
          const now = settled(decoded)
          if (now !== undefined && Either.isRight(now)) return answered(now.right)
          return decoded.pipe(
            Effect.mapError((error) => violation(`the answer of ${call.rpc._tag}: ${describe(error)}`)),
            Effect.flatMap(answered)
          )
        }
        case "Refused": {
          if (!calls.has(message.requestId)) return Effect.void
          return finish(message.requestId, Exit.fail(new RpcError({ reason: message.reason, detail: `the server refused the call: ${message.detail}` })))
        }
        case "End":
          return Effect.void
      }
    }
    yield* Effect.forkScoped(Effect.gen(function*() {
      while (true) {
        const frame = yield* reader.frame
        if (Option.isNone(frame)) return yield* close(new RpcError({ reason: "Closed", detail: "the server ended the stream" }))
        const message = Either.flatMap(parse(frame.value), (json) => Either.mapLeft(decodeFromServer(json), describe))
        if (Either.isLeft(message)) return yield* new ProtocolError({ reason: "Malformed", ...where, detail: message.left })
        yield* receive(message.right)
      }
    }).pipe(
      Effect.catchAll((error) =>
        Effect.zipRight(
          close(new RpcError({ reason: error._tag === "ProtocolError" ? "Malformed" : "Closed", detail: error.message })),
          error._tag === "ProtocolError" ? Effect.zipRight(options.onViolation?.(error) ?? Effect.void, stream.reset) : Effect.void
        )
      ),
      Effect.ensuring(Effect.suspend(() => close(new RpcError({ reason: "Closed", detail: "the client's scope closed" }))))
    ))
    return procedures(client, group, plain, yield* Effect.context<never>())
  })

/**
 * The client's procedures: each plain one made by `plain` (unless a client
 * middleware of it is in `context`: @effect/rpc's client runs those), the
 * others @effect/rpc's, with a payload that fails its schema's checks a
 * typed `RpcError` `Malformed` (the client of `@effect/rpc` throws it from
 * the call, before there is an effect to fail). A plain call asked to
 * `discard` its answer is @effect/rpc's too.
 */
const procedures = <C>(
  client: C,
  group: RpcGroup.RpcGroup<any>,
  plain: (rpc: Rpc.AnyWithProps) => (payload: unknown) => Effect.Effect<unknown, unknown>,
  context: Context.Context<never>
): C => {
  const malformed = (tag: string, cause: unknown) =>
    new RpcError({
      reason: "Malformed",
      detail: `the call of ${tag} does not fit its schema: ${ParseResult.isParseError(cause) ? describe(cause) : String(cause)}`
    })
  const out: Record<string, unknown> = { ...(client as Record<string, unknown>) }
  for (const rpc of group.requests.values() as Iterable<Rpc.AnyWithProps>) {
    const [prefix, tag] = rpc._tag.includes(".") ? [rpc._tag.slice(0, rpc._tag.indexOf(".")), rpc._tag.slice(rpc._tag.indexOf(".") + 1)] : [undefined, rpc._tag]
    const target = (prefix === undefined ? out : ((out[prefix] = { ...(out[prefix] as object) }) as Record<string, unknown>))
    const call = target[tag] as (payload: unknown, options?: { readonly discard?: boolean }) => unknown
    const stream = RpcSchema.isStreamSchema(rpc.successSchema)
    const guarded = (payload: unknown, options?: { readonly discard?: boolean }) => {
      try {
        return call(payload, options)
      } catch (cause) {
        return stream ? Stream.fail(malformed(rpc._tag, cause)) : Effect.fail(malformed(rpc._tag, cause))
      }
    }
    const clientSide = [...rpc.middlewares].some((middleware) => context.unsafeMap.has(`${middleware.key}/Client`))
    if (stream || clientSide) {
      target[tag] = guarded
      continue
    }
    const lean = plain(rpc)
    target[tag] = (payload: unknown, options?: { readonly discard?: boolean }) => (options?.discard === true ? guarded(payload, options) : lean(payload))
  }
  return out as C
}
