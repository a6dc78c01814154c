/**
 * A sync session between this engine and one remote peer, over a channel of
 * frames (see `SyncProtocol` for the wire format).
 *
 * Both halves run at once. Sending: from the remote's announced vector, push
 * what it lacks in batches of at most `batchSize` operations, at most
 * `window` batches unacknowledged; then push new local commits as they come:
 * at once when the sender is free, gathered into one batch while a send is
 * in flight or the window is full; every `antiEntropyInterval`, re-announce
 * our vector.
 * Receiving: ingest each batch in one transaction, then acknowledge it with
 * our new vector. Batches that arrived back to back (already read from the
 * channel, nothing waited for) are ingested together in one transaction, up
 * to `maxIngestOps` operations, and each is acknowledged after it: one commit
 * for several batches of a catch-up instead of one each.
 *
 * Invariant kept: per origin the receiver always holds a prefix. Batches
 * carry each origin's operations in order from what the receiver holds; they
 * are applied in order, atomically (alone, or with the batches ingested
 * together with it), and the session ends at the first batch that fails (its
 * error is the session's error; nothing of it, nor of the batches ingested
 * with it, is written). A dropped connection ends the session; the next one starts from
 * the vectors both sides actually hold, so nothing is skipped or applied twice.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { ClockDriftError } from "../crdt/Hlc.js"
import * as Operation from "../crdt/Operation.js"
import type { NodeId } from "../crdt/Timestamp.js"
import * as VersionVector from "../crdt/VersionVector.js"
import type { StorageError } from "../engine/Database.js"
import { ProtocolError } from "../transport/ProtocolError.js"
import type * as Engine from "../engine/Engine.js"
import type { IngestError, ValidationError } from "../engine/EngineError.js"
import * as Documents from "../engine/internal/documents.js"
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
  /**
   * Most operations ingested in one transaction when batches received back to back are ingested
   * together (default 4000; keep it within the engine's `maxBatchSize`). A batch larger than it is
   * ingested alone.
   */
  readonly maxIngestOps?: number
  /**
   * Opt-in: how long to gather local commits before pushing them (default none: a commit goes out
   * as soon as the session is free, and commits gather only while a send is in flight or the
   * window is full). A delay trades latency for fewer, larger batches on a link that charges per frame.
   */
  readonly debounce?: Duration.DurationInput
  /** How often to re-announce our vector (default 30 s). */
  readonly antiEntropyInterval?: Duration.DurationInput
  /**
   * How often the remote may have what it already acknowledged sent again, by announcing a vector
   * that holds less (default: the anti-entropy interval). Between two, such a vector only adds.
   */
  readonly replayInterval?: Duration.DurationInput
  /** Most entries per page of the vectors this side sends (default `VersionVector.PAGE_ENTRIES`; smaller in tests, to page small vectors). */
  readonly pageEntries?: number
  /** Most origins a remote vector may name (default `VersionVector.DEFAULT_MAX_ORIGINS`, as the engine's). */
  readonly maxOrigins?: number
  /** Most bytes of one frame (default 4 MiB). */
  readonly maxFrameBytes?: number
  /** How long to wait for the remote's Hello (default 10 s). */
  readonly helloTimeout?: Duration.DurationInput
  /**
   * How long a send may wait for the remote: for an acknowledgement while the
   * window is full, or for it to read what was sent (default 60 s). A remote
   * that stops reading or acknowledging ends the session with `Timeout` (checked every quarter of
   * it: at most 1.25 times it after the wait began).
   */
  readonly stallTimeout?: Duration.DurationInput
  /** Called as the session progresses. */
  readonly onEvent?: (event: Event) => Effect.Effect<void>
}

/** One batch of a page, encoded. */
interface Batch {
  readonly frame: Uint8Array
  readonly ops: number
  readonly hasMore: boolean
}

/** Progress of a session. */
export type Event =
  | { readonly _tag: "Started"; readonly remote: NodeId; readonly vector: VersionVector.VersionVector }
  | { readonly _tag: "Sent"; readonly ops: number; readonly hasMore: boolean }
  /** One ingest: of one batch, or of the batches received back to back and ingested together. */
  | { readonly _tag: "Received"; readonly ops: number; readonly applied: number; readonly hasMore: boolean }

/** A session ended because of the protocol. */
export class SyncError extends Schema.TaggedError<SyncError>("weft/SyncError")("SyncError", {
  reason: Schema.Literal(
    "VersionMismatch",
    "LibraryMismatch",
    "PeerMismatch",
    "RemoteAborted",
    "OperationTooLarge",
    "Timeout",
    "TooManyOrigins"
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
    const maxIngestOps = Math.max(1, Math.min(options.maxIngestOps ?? 4000, Operation.MAX_BATCH_SIZE))
    const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    const maxOrigins = options.maxOrigins ?? VersionVector.DEFAULT_MAX_ORIGINS
    const pageEntries = Math.max(1, Math.min(options.pageEntries ?? VersionVector.PAGE_ENTRIES, VersionVector.PAGE_ENTRIES))
    const antiEntropyInterval = Duration.decode(options.antiEntropyInterval ?? Duration.seconds(30))
    const replayInterval = Duration.toMillis(options.replayInterval ?? antiEntropyInterval)
    const onEvent = options.onEvent ?? (() => Effect.void)
    const debounce = options.debounce === undefined || Duration.toMillis(options.debounce) <= 0 ? undefined : Duration.decode(options.debounce)
    const lock = yield* Effect.makeSemaphore(1)
    const stallTimeout = Duration.decode(options.stallTimeout ?? Duration.seconds(60))
    const stallMillis = Duration.toMillis(stallTimeout)
    const stalled = (what: string) =>
      new SyncError({ reason: "Timeout", detail: `the remote did not ${what} within ${Duration.format(stallTimeout)}` })
    const unlessStalled = (what: string) => <A, E2, R>(effect: Effect.Effect<A, E2, R>) =>
      Effect.timeoutFail(effect, { duration: stallTimeout, onTimeout: () => stalled(what) })
    // Past the Hello, a wait on the remote (a send it does not read, a credit it does not give back)
    // is marked while it lasts, and one watchdog ends the session once a mark is older than
    // `stallTimeout`: no timer is armed and cleared for every message (a timeout per send cost
    // more CPU than the rest of the session's work per live update)
    const clock = yield* Effect.clock
    const waits = new Set<{ readonly since: number; readonly what: string }>()
    const watched = (what: string) => <A, E2, R>(effect: Effect.Effect<A, E2, R>) =>
      Effect.suspend(() => {
        const mark = { since: clock.unsafeCurrentTimeMillis(), what }
        waits.add(mark)
        // on failure the session ends: the mark may stay
        return Effect.tap(effect, () => waits.delete(mark))
      })
    const watchdog = Effect.forever(Effect.gen(function*() {
      yield* Effect.sleep(Math.max(1, stallMillis / 4))
      const now = clock.unsafeCurrentTimeMillis()
      for (const mark of waits) if (now - mark.since >= stallMillis) return yield* stalled(mark.what)
    }))
    // the frames of one message (the pages of a vector) go out back to back
    // (one frame, the live case, is sent as it is: no loop over a list of one)
    const sendFrames = (frames: ReadonlyArray<Uint8Array>) =>
      lock.withPermits(1)(
        frames.length === 1 ? channel.send(frames[0]!) : Effect.forEach(frames, (frame) => channel.send(frame), { discard: true })
      ).pipe(watched("read what was sent"))
    const send = (message: SyncProtocol.Message) => sendFrames([SyncProtocol.encode(message)])
    const violation = (reason: ProtocolError["reason"], detail: string) =>
      new ProtocolError({ reason, ...(options.remote === undefined ? {} : { peer: options.remote }), protocol: SyncProtocol.PROTOCOL_ID, detail })

    // observe commits before reading our vector, so no commit falls between the two; those before the
    // session is set up wait in `early`
    const early: Array<Engine.Commit> = []
    let onCommit = (commit: Engine.Commit): void => void early.push(commit)
    yield* engine.observe((commit) => onCommit(commit))
    const hello = SyncProtocol.vectorFrames(
      yield* engine.versionVector,
      (entries, more) => ({ _tag: "Hello", node: engine.node, library: options.library, entries, more }),
      pageEntries
    )
    // sent while the remote's Hello is read: both sides send theirs first, and a vector of many
    // pages would fill a bounded channel both ways before either side reads
    const helloSent = yield* Effect.fork(lock.withPermits(1)(Effect.forEach(hello, (frame) => channel.send(frame), { discard: true })).pipe(unlessStalled("read what was sent")))

    const pull = yield* Stream.toPull(channel.frames)
    const buffered: Array<Uint8Array> = []
    /** The next frame, or undefined once the remote ended the channel. */
    const nextFrame: Effect.Effect<Uint8Array | undefined, E> = Effect.suspend(() =>
      buffered.length > 0
        ? Effect.succeed(buffered.shift())
        : Effect.matchEffect(pull, {
          onFailure: (e) => (Option.isNone(e) ? Effect.succeed(undefined) : Effect.fail(e.value)),
          onSuccess: (chunk) => {
            buffered.push(...chunk)
            return Effect.succeed(buffered.shift())
          }
        })
    )
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

    /** Reads the rest of a vector whose first page is `first` (More frames while `more`), bounded by `maxOrigins`. */
    const readVector = (first: VersionVector.VersionVector, more: boolean) =>
      Effect.gen(function*() {
        // the pages are joined once, at the end (sorted columns, no map grown page by page); the
        // bound counts every entry received, so an origin repeated across pages counts twice
        const pages = [first]
        let entries = first.size
        let pending = more
        while (true) {
          if (entries > maxOrigins) {
            return yield* new SyncError({ reason: "TooManyOrigins", detail: `the remote's vector names more than ${maxOrigins} origins (maxOrigins)` })
          }
          if (!pending) return VersionVector.union(pages)
          const frame = yield* nextFrame
          if (frame === undefined) return yield* violation("Unexpected", "the remote closed inside a vector")
          const page = yield* decode(frame)
          if (page._tag !== "More") return yield* violation("Unexpected", `expected the next page of a vector, got ${page._tag}`)
          pages.push(page.entries)
          entries += page.entries.size
          pending = page.more
        }
      })

    // the remote's Hello, whole
    const remote = yield* Effect.gen(function*() {
      const frame = yield* nextFrame
      if (frame === undefined) return yield* violation("Unexpected", "the remote closed before its Hello")
      const first = yield* decode(frame)
      if (first._tag !== "Hello") return yield* violation("Unexpected", `expected Hello, got ${first._tag}`)
      if (first.library !== options.library) {
        return yield* new SyncError({ reason: "LibraryMismatch", detail: `remote syncs library ${first.library}, we sync ${options.library}` })
      }
      if (options.remote !== undefined && first.node !== options.remote) {
        return yield* new SyncError({ reason: "PeerMismatch", detail: `remote authenticated as ${options.remote} but names itself ${first.node}` })
      }
      return { node: first.node, vector: yield* readVector(first.entries, first.more) }
    }).pipe(
      Effect.timeoutFail({
        duration: options.helloTimeout ?? Duration.seconds(10),
        onTimeout: () => new SyncError({ reason: "Timeout", detail: "no Hello from the remote" })
      })
    )
    yield* Fiber.join(helloSent)
    yield* onEvent({ _tag: "Started", remote: remote.node, vector: remote.vector })

    // what the remote holds, as far as we know: announced, acknowledged, or sent to it (this session's own copy)
    const theirs = remote.vector
    // a vector that lowers `theirs` (a peer restored from an older copy) is honored once per interval:
    // more often, a member could have the whole log re-sent with every frame it sends
    let replayedAt = yield* Clock.currentTimeMillis
    // origins that moved here since the last Ack: the next one tells the remote, so it does not send them
    const moved = new Map<string, VersionVector.Entry>()
    let inflight = 0
    const credits = yield* Effect.makeSemaphore(window)
    const wake = yield* Queue.sliding<void>(1)
    yield* Queue.offer(wake, undefined)

    /**
     * `ops` as the batches that carry them: halved until each fits a frame, and a receiver's bound on
     * rich-text work (the engine's default), so honest edits that fit one by one are sent in batches that fit too.
     */
    const batches = (ops: ReadonlyArray<Operation.Operation>, hasMore: boolean, out: Array<Batch>): Effect.Effect<Array<Batch>, SyncError> =>
      Effect.suspend(() => {
        const halves = () => {
          const half = Math.ceil(ops.length / 2)
          return Effect.flatMap(batches(ops.slice(0, half), true, out), () => batches(ops.slice(half), hasMore, out))
        }
        if (ops.length > 1 && Documents.work(ops) > Documents.defaultLimits.maxOpsPerBatch) return halves()
        const frame = SyncProtocol.encode({ _tag: "Ops", ops, hasMore })
        if (frame.length > maxFrameBytes) {
          if (ops.length === 1) {
            return Effect.fail(new SyncError({ reason: "OperationTooLarge", detail: `operation ${ops[0]!.origin}/${ops[0]!.seq} needs ${frame.length} bytes; frames are bounded at ${maxFrameBytes}` }))
          }
          return halves()
        }
        out.push({ frame, ops: ops.length, hasMore })
        return Effect.succeed(out)
      })

    const takeCredit = credits.take(1).pipe(watched("acknowledge a batch"))

    /** Sends a page of operations; a credit is held for its first batch. */
    const sendPage = (ops: ReadonlyArray<Operation.Operation>, hasMore: boolean): Effect.Effect<void, E | SyncError> =>
      Effect.gen(function*() {
        const split = yield* batches(ops, hasMore, [])
        // what the remote will hold once the page is in (it holds what we send, whatever it acknowledges)
        VersionVector.advanceInPlace(theirs, ops)
        for (let i = 0; i < split.length; i++) {
          if (i > 0) yield* takeCredit
          inflight++
          yield* sendFrames([split[i]!.frame])
          yield* onEvent({ _tag: "Sent", ops: split[i]!.ops, hasMore: split[i]!.hasMore })
        }
      })

    // What the remote lacks is read from the log only when it may lack something older than what
    // committed since the last read (at the start, after an announced vector, past a page). Otherwise
    // the sender sends the operations of the commits it was told of: on a live session, a commit
    // goes out with no query and no row decoded back into the operations it already has.
    let lacking = true
    // the operations of commits since the last read of the log, in commit order; bounded by a batch
    // (past it, the log is read instead)
    let fresh: Array<Operation.Operation> = []
    let overflow = false

    /** `fresh` less what the remote holds, if it follows on from what it holds for every origin. */
    const followOn = (): ReadonlyArray<Operation.Operation> | undefined => {
      const ops: Array<Operation.Operation> = []
      const next = new Map<string, number>()
      for (const op of fresh) {
        const held = next.get(op.origin) ?? VersionVector.seqOf(theirs, op.origin)
        if (op.seq <= held) continue
        if (op.seq !== held + 1) return undefined
        next.set(op.origin, op.seq)
        ops.push(op)
      }
      return ops
    }

    // No fixed wait: a commit is sent as soon as the sender is free. Commits gather only while it is
    // busy (a send in flight, or the window full: the credit is taken before the page is read, so
    // whatever commits while it waits goes in the one page read after), so a burst goes in few batches
    // and a quiet session adds nothing to a write's way out.
    const sender = Effect.forever(Effect.gen(function*() {
      yield* Queue.take(wake)
      if (debounce !== undefined) yield* Effect.sleep(debounce)
      yield* takeCredit
      yield* Queue.takeAll(wake)
      const live = lacking || overflow ? undefined : followOn()
      fresh = []
      overflow = false
      if (live !== undefined) return yield* (live.length === 0 ? credits.release(1) : sendPage(live, false))
      const page = yield* engine.opsSince(theirs, batchSize)
      // read after `fresh` was emptied: a commit in between is in both, and sent once (the remote holds it then)
      lacking = page.hasMore
      if (page.ops.length === 0) return yield* credits.release(1)
      yield* sendPage(page.ops, page.hasMore)
      // the rest of what the remote lacks: at once, as credits allow
      if (page.hasMore) yield* Queue.offer(wake, undefined)
    }))

    // each commit, as it commits (called by the engine: no fiber, no queue per commit)
    const watch = (commit: Engine.Commit): void => {
      // bounded: past a page, the remote learns of the rest from the next Vector
      if (moved.size < VersionVector.PAGE_ENTRIES) VersionVector.advanceInPlace(moved, commit.ops)
      // the remote's own operations (it sent them: `theirs` holds them already) wake nothing
      let news = false
      for (const op of commit.ops) {
        if (op.seq <= VersionVector.seqOf(theirs, op.origin)) continue
        news = true
        if (overflow) continue
        if (fresh.length >= batchSize) {
          fresh = []
          overflow = true
        } else {
          fresh.push(op)
        }
      }
      // a sliding queue of one: a wake already pending is enough
      if (news) wake.unsafeOffer(undefined)
    }
    onCommit = watch
    for (const commit of early.splice(0)) watch(commit)

    const antiEntropy = Effect.forever(Effect.gen(function*() {
      yield* Effect.sleep(antiEntropyInterval)
      const vector = yield* engine.versionVector
      yield* sendFrames(SyncProtocol.vectorFrames(vector, (entries, more) => ({ _tag: "Vector", entries, more }), pageEntries))
    }))

    // a message decoded while looking for batches to ingest together, and not one of them: handled next
    let aside: SyncProtocol.Message | undefined

    /**
     * The batches already received right behind `first` (no wait for the channel), while they fit
     * `maxIngestOps` with it. A frame that does not decode is left for the receiver, which fails on it
     * after these are in.
     */
    const together = (first: SyncProtocol.Message & { readonly _tag: "Ops" }) => {
      const batches = [first]
      let total = first.ops.length
      while (buffered.length > 0 && total < maxIngestOps) {
        const decoded = SyncProtocol.decode(buffered[0]!)
        if (Either.isLeft(decoded)) break
        buffered.shift()
        const next = decoded.right
        if (next._tag !== "Ops" || total + next.ops.length > maxIngestOps) {
          aside = next
          break
        }
        batches.push(next)
        total += next.ops.length
      }
      return batches
    }

    const handle = (message: SyncProtocol.Message): Effect.Effect<void, SessionError<E>> => {
      switch (message._tag) {
        case "Ops":
          return Effect.gen(function*() {
            const batches = together(message)
            const ops = batches.length === 1 ? message.ops : batches.flatMap((batch) => batch.ops)
            // the remote holds what it sends (marked before the ingest, so that its commit wakes no send;
            // if the ingest fails, the session ends)
            VersionVector.advanceInPlace(theirs, ops)
            // an edit that expands past the engine's limits is the sender's violation: its own engine
            // would have refused to make it (local edits are split or refused by the same limits)
            const result = yield* engine.ingest(ops).pipe(
              Effect.catchIf(
                (e): e is IngestError => e._tag === "IngestError" && e.reason === "TooLarge",
                (e) => Effect.fail(violation("Oversize", e.message))
              )
            )
            // after the ingest we hold every origin of each batch at least to its last operation there:
            // one Ack per batch (a credit each), what moved since the last Ack told once, with the first
            for (const batch of batches) {
              const held = new Map(moved)
              moved.clear()
              VersionVector.advanceInPlace(held, batch.ops)
              yield* send({ _tag: "Ack", entries: held })
            }
            yield* onEvent({ _tag: "Received", ops: ops.length, applied: result.applied, hasMore: batches[batches.length - 1]!.hasMore })
          })
        case "Ack":
          if (inflight === 0) return Effect.fail(violation("Unexpected", "Ack with no batch in flight"))
          inflight--
          VersionVector.mergeInPlace(theirs, message.entries)
          return credits.release(1)
        case "Vector":
          return Effect.gen(function*() {
            const vector = yield* readVector(message.entries, message.more)
            const now = yield* Clock.currentTimeMillis
            // with nothing in flight the announcement is exact: a peer restored from an older copy is served again
            if (inflight === 0 && now - replayedAt >= replayInterval && !VersionVector.covers(vector, theirs)) {
              replayedAt = now
              theirs.clear()
            }
            VersionVector.mergeInPlace(theirs, vector)
            // the remote may lack more than what committed lately (a copy restored from before it)
            lacking = true
            yield* Queue.offer(wake, undefined)
          })
        case "Abort":
          return Effect.fail(new SyncError({ reason: "RemoteAborted", detail: `${message.reason}: ${message.detail}` }))
        case "Hello":
          return Effect.fail(violation("Unexpected", "second Hello"))
        case "More":
          return Effect.fail(violation("Unexpected", "a vector page with no vector before it"))
      }
    }

    const receiver = Effect.gen(function*() {
      while (true) {
        if (aside !== undefined) {
          const message = aside
          aside = undefined
          yield* handle(message)
          continue
        }
        const frame = yield* nextFrame
        if (frame === undefined) return
        yield* handle(yield* decode(frame))
      }
    })

    const background = Effect.all([sender, antiEntropy, watchdog], { concurrency: "unbounded", discard: true })
    yield* Effect.raceFirst(receiver, background).pipe(
      Effect.tapError((error) => {
        const tag = typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : "Error"
        const detail = error instanceof Error ? error.message : describe(error)
        // best effort: the channel may be what failed
        return Effect.ignore(Effect.timeout(send({ _tag: "Abort", reason: tag.slice(0, 64), detail: detail.slice(0, 4096) }), Duration.seconds(1)))
      })
    )
  })) as Effect.Effect<void, SessionError<E>>
