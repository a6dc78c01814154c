/**
 * A sync session between this engine and one remote peer, over a channel of
 * frames (see `SyncProtocol` for the wire format).
 *
 * Both halves run at once. Sending: from the remote's announced vector, push
 * what it lacks in batches of at most `batchSize` operations, at most
 * `window` batches unacknowledged; then wait for new local commits (debounced)
 * and push those; every `antiEntropyInterval`, re-announce our vector.
 * Receiving: ingest each batch in one transaction, then acknowledge it with
 * our new vector.
 *
 * Invariant kept: per origin the receiver always holds a prefix. Batches
 * carry each origin's operations in order from what the receiver holds; they
 * are applied one at a time, atomically, and the session ends at the first
 * batch that fails (its error is the session's error; nothing of it is
 * written). A dropped connection ends the session; the next one starts from
 * the vectors both sides actually hold, so nothing is skipped or applied twice.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { ClockDriftError } from "../crdt/Hlc.js"
import type * as Operation from "../crdt/Operation.js"
import type { NodeId } from "../crdt/Timestamp.js"
import * as VersionVector from "../crdt/VersionVector.js"
import type { StorageError } from "../engine/Database.js"
import { ProtocolError } from "../transport/ProtocolError.js"
import type * as Engine from "../engine/Engine.js"
import type { IngestError, ValidationError } from "../engine/EngineError.js"
import { describe } from "../internal/describe.js"
import * as SyncProtocol from "./SyncProtocol.js"

/** A bidirectional channel of frames (the transport's `Framing.Framed` is one). */
export interface Channel<E> {
  readonly frames: Stream.Stream<Uint8Array, E>
  readonly send: (frame: Uint8Array) => Effect.Effect<void, E>
}

/** Options of a session. */
export interface Options {
  /** The library both sides must be syncing. */
  readonly library: string
  /** The remote's authenticated id, when the transport proves it: its Hello must name it. */
  readonly remote?: string
  /** Most operations per batch (default 1000). */
  readonly batchSize?: number
  /** Most batches sent and not yet acknowledged (default 4). */
  readonly window?: number
  /** How long to gather local commits before pushing them (default 20 ms). */
  readonly debounce?: Duration.DurationInput
  /** How often to re-announce our vector (default 30 s). */
  readonly antiEntropyInterval?: Duration.DurationInput
  /** Most bytes of one frame (default 4 MiB). */
  readonly maxFrameBytes?: number
  /** How long to wait for the remote's Hello (default 10 s). */
  readonly helloTimeout?: Duration.DurationInput
  /**
   * How long a send may wait for the remote: for an acknowledgement while the
   * window is full, or for it to read what was sent (default 60 s). A remote
   * that stops reading or acknowledging ends the session with `Timeout`.
   */
  readonly stallTimeout?: Duration.DurationInput
  /** Called as the session progresses. */
  readonly onEvent?: (event: Event) => Effect.Effect<void>
}

/** Progress of a session. */
export type Event =
  | { readonly _tag: "Started"; readonly remote: NodeId; readonly vector: VersionVector.VersionVector }
  | { readonly _tag: "Sent"; readonly ops: number; readonly hasMore: boolean }
  | { readonly _tag: "Received"; readonly ops: number; readonly applied: number; readonly hasMore: boolean }

/** A session ended because of the protocol. */
export class SyncError extends Schema.TaggedError<SyncError>("weft/SyncError")("SyncError", {
  reason: Schema.Literal(
    "VersionMismatch",
    "LibraryMismatch",
    "PeerMismatch",
    "RemoteAborted",
    "OperationTooLarge",
    "Timeout"
  ),
  detail: Schema.String
}) {
  override get message(): string {
    return `sync ${this.reason}: ${this.detail}`
  }
}

/**
 * Everything that can end a session. A `ProtocolError` says the remote broke
 * the protocol (a frame that does not decode, a message out of turn): the
 * peer should be disconnected.
 */
export type SessionError<E> = SyncError | ProtocolError | E | ValidationError | IngestError | ClockDriftError | StorageError

const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024

/**
 * Runs a session until the remote ends the channel (success) or something
 * fails (the error; an Abort frame tells the remote why, when possible).
 */
export const run = <E>(
  engine: Engine.Service,
  channel: Channel<E>,
  options: Options
): Effect.Effect<void, SessionError<E>> =>
  Effect.scoped(Effect.gen(function*() {
    const batchSize = Math.max(1, options.batchSize ?? 1000)
    const window = Math.max(1, options.window ?? 4)
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    const onEvent = options.onEvent ?? (() => Effect.void)
    const lock = yield* Effect.makeSemaphore(1)
    const stallTimeout = Duration.decode(options.stallTimeout ?? Duration.seconds(60))
    const unlessStalled = (what: string) => <A, E2, R>(effect: Effect.Effect<A, E2, R>) =>
      Effect.timeoutFail(effect, {
        duration: stallTimeout,
        onTimeout: () => new SyncError({ reason: "Timeout", detail: `the remote did not ${what} within ${Duration.format(stallTimeout)}` })
      })
    const sendFrame = (frame: Uint8Array) => lock.withPermits(1)(channel.send(frame)).pipe(unlessStalled("read what was sent"))
    const send = (message: SyncProtocol.Message) => sendFrame(SyncProtocol.encode(message))
    const violation = (reason: ProtocolError["reason"], detail: string) =>
      new ProtocolError({ reason, ...(options.remote === undefined ? {} : { peer: options.remote }), protocol: SyncProtocol.PROTOCOL_ID, detail })

    // subscribe before reading our vector, so no commit falls between the two
    const commits = yield* engine.commits
    yield* send({ _tag: "Hello", node: engine.node, library: options.library, vector: yield* engine.versionVector })

    const pull = yield* Stream.toPull(channel.frames)
    const next = Effect.map(pull, (chunk) => [...chunk])
    const decode = (bytes: Uint8Array) =>
      Either.match(SyncProtocol.decode(bytes), {
        onLeft: (failure) =>
          Effect.fail(
            failure._tag === "Version"
              ? new SyncError({ reason: "VersionMismatch", detail: `remote speaks version ${describe(failure.version)}, we speak ${SyncProtocol.VERSION}` })
              : violation("Malformed", failure.detail)
          ),
        onRight: Effect.succeed
      })

    // the remote's Hello
    const first = yield* next.pipe(
      Effect.catchAll((e): Effect.Effect<never, E | ProtocolError> =>
        Option.isNone(e) ? Effect.fail(violation("Unexpected", "the remote closed before its Hello")) : Effect.fail(e.value)
      ),
      Effect.timeoutFail({
        duration: options.helloTimeout ?? Duration.seconds(10),
        onTimeout: () => new SyncError({ reason: "Timeout", detail: "no Hello from the remote" })
      })
    )
    const hello = yield* decode(first[0]!)
    if (hello._tag !== "Hello") return yield* violation("Unexpected", `expected Hello, got ${hello._tag}`)
    if (hello.library !== options.library) {
      return yield* new SyncError({ reason: "LibraryMismatch", detail: `remote syncs library ${hello.library}, we sync ${options.library}` })
    }
    if (options.remote !== undefined && hello.node !== options.remote) {
      return yield* new SyncError({ reason: "PeerMismatch", detail: `remote authenticated as ${options.remote} but names itself ${hello.node}` })
    }
    yield* onEvent({ _tag: "Started", remote: hello.node, vector: hello.vector })

    // what the remote holds, as far as we know: announced, acknowledged, or sent to it
    let theirs: VersionVector.VersionVector = hello.vector
    let inflight = 0
    const credits = yield* Effect.makeSemaphore(window)
    const wake = yield* Queue.sliding<void>(1)
    yield* Queue.offer(wake, undefined)

    const sendOps = (ops: ReadonlyArray<Operation.Operation>, hasMore: boolean): Effect.Effect<void, E | SyncError> =>
      Effect.gen(function*() {
        const frame = SyncProtocol.encode({ _tag: "Ops", ops, hasMore })
        if (frame.length > maxFrameBytes) {
          if (ops.length === 1) {
            return yield* new SyncError({ reason: "OperationTooLarge", detail: `operation ${ops[0]!.origin}/${ops[0]!.seq} needs ${frame.length} bytes; frames are bounded at ${maxFrameBytes}` })
          }
          const half = Math.ceil(ops.length / 2)
          yield* sendOps(ops.slice(0, half), true)
          return yield* sendOps(ops.slice(half), hasMore)
        }
        yield* credits.take(1).pipe(unlessStalled("acknowledge a batch"))
        inflight++
        theirs = VersionVector.advance(theirs, ops)
        yield* sendFrame(frame)
        yield* onEvent({ _tag: "Sent", ops: ops.length, hasMore })
      })

    const sender = Effect.forever(Effect.gen(function*() {
      yield* Queue.take(wake)
      yield* Effect.sleep(options.debounce ?? Duration.millis(20))
      yield* Queue.takeAll(wake)
      while (true) {
        const page = yield* engine.opsSince(theirs, batchSize)
        if (page.ops.length === 0) break
        yield* sendOps(page.ops, page.hasMore)
        if (!page.hasMore) break
      }
    }))

    const watcher = Effect.forever(Effect.zipRight(Queue.take(commits), Queue.offer(wake, undefined)))

    const antiEntropy = Effect.forever(Effect.gen(function*() {
      yield* Effect.sleep(options.antiEntropyInterval ?? Duration.seconds(30))
      yield* send({ _tag: "Vector", vector: yield* engine.versionVector })
    }))

    const handle = (message: SyncProtocol.Message): Effect.Effect<void, SessionError<E>> => {
      switch (message._tag) {
        case "Ops":
          return Effect.gen(function*() {
            const result = yield* engine.ingest(message.ops)
            // the remote holds what it sends: never send it back
            theirs = VersionVector.advance(theirs, message.ops)
            yield* send({ _tag: "Ack", vector: yield* engine.versionVector })
            yield* onEvent({ _tag: "Received", ops: message.ops.length, applied: result.applied, hasMore: message.hasMore })
          })
        case "Ack":
          if (inflight === 0) return Effect.fail(violation("Unexpected", "Ack with no batch in flight"))
          inflight--
          theirs = VersionVector.merge(theirs, message.vector)
          return credits.release(1)
        case "Vector":
          // with nothing in flight the announcement is exact: a peer restored from an older copy is served again
          theirs = inflight === 0 ? message.vector : VersionVector.merge(theirs, message.vector)
          return Queue.offer(wake, undefined)
        case "Abort":
          return Effect.fail(new SyncError({ reason: "RemoteAborted", detail: `${message.reason}: ${message.detail}` }))
        case "Hello":
          return Effect.fail(violation("Unexpected", "second Hello"))
      }
    }

    const receiver = Effect.gen(function*() {
      for (const frame of first.slice(1)) yield* handle(yield* decode(frame))
      while (true) {
        const chunk = yield* Effect.catchAll(next, (e) => (Option.isNone(e) ? Effect.succeed(undefined) : Effect.fail(e.value)))
        if (chunk === undefined) return
        for (const frame of chunk) yield* handle(yield* decode(frame))
      }
    })

    const background = Effect.all([sender, watcher, antiEntropy], { concurrency: "unbounded", discard: true })
    yield* Effect.raceFirst(receiver, background).pipe(
      Effect.tapError((error) => {
        const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : "Error"
        const detail = error instanceof Error ? error.message : String(error)
        // best effort: the channel may be what failed
        return Effect.ignore(Effect.timeout(send({ _tag: "Abort", reason: tag.slice(0, 64), detail: detail.slice(0, 4096) }), Duration.seconds(1)))
      })
    )
  })) as Effect.Effect<void, SessionError<E>>
