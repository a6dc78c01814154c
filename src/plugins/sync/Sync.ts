/**
 * The sync plugin: keeps a sync session running with every available peer
 * that belongs to a library this node syncs.
 *
 * Of two peers, the one with the smaller id opens the session (one session
 * per pair and library); it retries with backoff while the peer stays
 * available, and stops when it goes away. Membership is followed as it
 * changes: a peer paired while connected gets its session at once, one
 * removed from a library loses it (inbound sessions included). Libraries are
 * added and removed while the plugin runs (`add`, `remove`); a stream for a
 * library this node has just joined but not yet added waits for it a
 * moment (`joinWait`) instead of being refused, so the first session after a
 * pairing does not fail. Every failure, refusals of the opening included, is
 * a typed error published on `failures`; `status` says what each session is
 * doing.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type * as Engine from "../../engine/Engine.js"
import * as SyncSession from "../../sync/SyncSession.js"
import * as Framing from "../../transport/Framing.js"
import type { Duplex, PeerId, TransportError } from "../../transport/Transport.js"
import { Libraries } from "../../library/Libraries.js"
import * as Plugin from "../Plugin.js"
import { type PermissionError, PluginHost } from "../PluginHost.js"
import * as Protocol from "./Protocol.js"

/** A library this node syncs, and its engine. */
export interface SyncedLibrary {
  readonly id: string
  readonly engine: Engine.Service
}

/** Options of the sync plugin. */
export interface Options {
  /** The libraries synced from the start; more can be added with `add`. */
  readonly libraries: ReadonlyArray<SyncedLibrary>
  /** Session tuning (batch size, window, debounce, anti-entropy interval). */
  readonly session?: Omit<SyncSession.Options, "library" | "remote" | "onEvent">
  /** How a failed session is retried while its peer is available (default: exponential from 100 ms, capped at 10 s, jittered). */
  readonly retry?: Schedule.Schedule<unknown, unknown>
  /** How long an inbound stream for a library of which this node is a member, but which is not added yet, waits for `add` (default 5 s). */
  readonly joinWait?: Duration.DurationInput
  /**
   * Most failures held for a watcher of `failures` that does not keep up; older ones are dropped
   * first (default 64). `status` still keeps each session's last error.
   */
  readonly failureBuffer?: number
}

/** What one session is doing. */
export interface SessionStatus {
  readonly peer: PeerId
  readonly library: string
  readonly state: "connecting" | "syncing" | "failed" | "ended"
  readonly sent: number
  readonly received: number
  readonly error?: string
}

/** A session that failed, or could not be opened, with its typed error. */
export interface Failure {
  readonly peer: PeerId
  readonly library: string
  readonly error: SyncSession.SessionError<TransportError | PermissionError>
}

/** The sync plugin's service. */
export class Sync extends Context.Tag("weft/plugins/Sync")<Sync, {
  /** Sessions by peer and library. */
  readonly status: Effect.Effect<ReadonlyArray<SessionStatus>>
  /** Failed sessions from now on (a watcher that falls behind loses the oldest: see `Options.failureBuffer`). */
  readonly failures: Effect.Effect<Stream.Stream<Failure>, never, Scope.Scope>
  /** The ids of the libraries synced now. */
  readonly libraries: Effect.Effect<ReadonlyArray<string>>
  /** Starts syncing a library with its available members (an id already synced keeps its engine). */
  readonly add: (library: SyncedLibrary) => Effect.Effect<void>
  /** Stops syncing a library: its sessions, both directions, end. */
  readonly remove: (id: string) => Effect.Effect<void>
}>() {}

const defaultRetry = Schedule.exponential(Duration.millis(100)).pipe(
  Schedule.union(Schedule.spaced(Duration.seconds(10))),
  Schedule.jittered
)

/** Starts the plugin on the `PluginHost` in context; it stops with the scope. */
export const make = (options: Options) =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const libraries = yield* Libraries
    const engines = yield* SubscriptionRef.make<ReadonlyMap<string, Engine.Service>>(
      new Map(options.libraries.map((l) => [l.id, l.engine]))
    )
    const joinWait = Duration.decode(options.joinWait ?? Duration.seconds(5))
    // updated in place: a session's counters move with every batch, and a copy of every session's
    // status per batch cost more than the rest of the plugin's work on it
    const statuses = new Map<string, SessionStatus>()
    // sliding: a watcher that stops reading while a peer keeps failing its retries must not hold
    // every failure since in memory
    const failures = yield* Effect.acquireRelease(PubSub.sliding<Failure>(Math.max(1, options.failureBuffer ?? 64)), PubSub.shutdown)
    const key = (peer: string, library: string) => `${peer}\u0000${library}`

    const setStatus = (peer: PeerId, library: string, f: (s: SessionStatus) => SessionStatus) => {
      const k = key(peer, library)
      return Effect.sync(() => {
        statuses.set(k, f(statuses.get(k) ?? { peer, library, state: "connecting", sent: 0, received: 0 }))
      })
    }
    const fail = (peer: PeerId, library: string, error: Failure["error"]) =>
      Effect.zipRight(
        setStatus(peer, library, (s) => ({ ...s, state: "failed", error: error instanceof Error ? error.message : String(error) })),
        PubSub.publish(failures, { peer, library, error })
      )

    // succeeds once the library is no longer synced or the peer no longer a member of it; the
    // membership is checked once subscribed too, as it may have gone while the session was starting
    const revoked = (peer: PeerId, library: string) =>
      Effect.scoped(Effect.gen(function*() {
        const changes = yield* libraries.changes
        yield* Stream.merge(
          Stream.map(engines.changes, (m) => m.has(library)),
          Stream.mapEffect(Stream.concat(Stream.make(undefined), changes), () => libraries.isMember(library, peer))
        ).pipe(Stream.filter((allowed) => !allowed), Stream.runHead)
      }))

    const session = (stream: Duplex, peer: PeerId, library: string, engine: Engine.Service) => {
      const set = (f: (s: SessionStatus) => SessionStatus) => setStatus(peer, library, f)
      return Effect.zipRight(
        set((s) => ({ ...s, state: "syncing" })),
        SyncSession.run(engine, Framing.make(stream, Protocol.MAX_FRAME_BYTES), {
          ...options.session,
          library,
          remote: peer,
          onEvent: (event) =>
            event._tag === "Sent" ? set((s) => ({ ...s, sent: s.sent + event.ops }))
              : event._tag === "Received" ? set((s) => ({ ...s, received: s.received + event.applied }))
              : Effect.void
        })
      ).pipe(
        Effect.tapBoth({
          onFailure: (error) => fail(peer, library, error),
          onSuccess: () => set((s) => ({ ...s, state: "ended" }))
        }),
        // stopped (the peer went away, the library was removed, or the plugin stops): no longer syncing
        Effect.onInterrupt(() => set((s) => ({ ...s, state: "ended" }))),
        (running) => Effect.raceFirst(running, revoked(peer, library))
      )
    }

    // the engine of a library, waiting a moment for one this node has joined but not yet added
    // (`changes` starts with the current libraries)
    const engineFor = (library: string) =>
      engines.changes.pipe(
        Stream.filterMap((m) => Option.fromNullable(m.get(library))),
        Stream.runHead,
        Effect.timeoutTo({ duration: joinWait, onSuccess: (engine) => engine, onTimeout: () => Option.none<Engine.Service>() })
      )

    yield* host.register(Plugin.make({
      name: "sync",
      ...Protocol.protocol,
      maxInboundStreams: 8,
      handle: (stream, context) =>
        Effect.gen(function*() {
          // the host let the peer in, so `library` is one this node is a member of
          const library = context.library!
          const engine = yield* engineFor(library)
          // a library this node does not sync, or a peer removed from it while waiting: nothing to serve
          if (Option.isNone(engine) || !(yield* libraries.isMember(library, context.peer))) return yield* stream.reset
          // failures are published by `session`; a protocol violation also goes to the host, which disconnects the peer
          yield* session(stream, context.peer, library, engine.value).pipe(
            Effect.catchAll((error) => (Plugin.isViolation(error) ? Effect.fail(error) : Effect.void))
          )
        })
    }))

    // the opening side: one fiber per (peer, library), retried while the peer is available
    const active = yield* FiberMap.make<string>()
    const open = (peer: PeerId, library: string, engine: Engine.Service) =>
      Effect.scoped(Effect.flatMap(
        Effect.tapError(host.open(peer, Protocol.protocol, library), (error) => fail(peer, library, error)),
        (stream) => session(stream, peer, library, engine)
      )).pipe(
        // a remote that broke the protocol is disconnected (for inbound streams the host sees the handler fail)
        Effect.tapError((error) => (Plugin.isViolation(error) ? host.violation(peer, Protocol.protocol.protocol, error) : Effect.void))
      )
    const startOne = (peer: PeerId, library: string, engine: Engine.Service) =>
      Effect.gen(function*() {
        if (host.peerId >= peer || !(yield* libraries.isMember(library, peer))) return
        // a session that ends (the remote closed it) or fails is started again after a pause
        const forever = Effect.retry(Effect.zipRight(open(peer, library, engine), Effect.fail("ended" as const)), options.retry ?? defaultRetry)
        yield* FiberMap.run(active, key(peer, library), forever, { onlyIfMissing: true })
      })
    // starting and stopping sessions, and adding and removing libraries, take turns: a session
    // started from a stale set of libraries would outlive its library's removal
    const lock = yield* Effect.makeSemaphore(1)
    const startAll = (peer: PeerId) =>
      Effect.flatMap(SubscriptionRef.get(engines), (m) =>
        Effect.forEach(m, ([library, engine]) => startOne(peer, library, engine), { discard: true }))
    const start = (peer: PeerId) => lock.withPermits(1)(startAll(peer))
    // every session with the peer, whatever library it is for
    const stop = (peer: PeerId) =>
      lock.withPermits(1)(Effect.suspend(() =>
        Effect.forEach(
          // listed once the lock is held: a session started meanwhile is in the list
          [...active].map(([k]) => k).filter((k) => k.startsWith(key(peer, ""))),
          (k) => FiberMap.remove(active, k),
          { discard: true }
        )
      ))

    // membership changes while a peer stays connected (pairing adds it, a removal revokes it):
    // start what is now allowed, stop what no longer is
    const reconcile = lock.withPermits(1)(Effect.gen(function*() {
      const synced = yield* SubscriptionRef.get(engines)
      for (const peer of yield* host.available) {
        yield* startAll(peer)
        for (const library of synced.keys()) {
          if (!(yield* libraries.isMember(library, peer))) yield* FiberMap.remove(active, key(peer, library))
        }
      }
    }))

    const add = (library: SyncedLibrary) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const existing = yield* SubscriptionRef.modify(engines, (m) =>
          m.has(library.id) ? [true, m] as const : [false, new Map(m).set(library.id, library.engine)] as const)
        if (existing) return
        for (const peer of yield* host.available) yield* startOne(peer, library.id, library.engine)
      }))
    const remove = (id: string) =>
      lock.withPermits(1)(Effect.gen(function*() {
        // inbound sessions of the library see the change and end (see `revoked`)
        yield* SubscriptionRef.update(engines, (m) => {
          const next = new Map(m)
          next.delete(id)
          return next
        })
        for (const peer of yield* host.available) yield* FiberMap.remove(active, key(peer, id))
      }))

    const events = yield* host.events
    const changes = yield* libraries.changes
    for (const peer of yield* host.available) yield* start(peer)
    yield* Effect.forkScoped(Stream.runForEach(events, (event) =>
      event._tag === "Available" ? start(event.peer) : event._tag === "Unavailable" ? stop(event.peer) : Effect.void
    ))
    yield* Effect.forkScoped(Stream.runForEach(changes, () => reconcile))

    return {
      status: Effect.sync(() => [...statuses.values()]),
      failures: Effect.map(PubSub.subscribe(failures), Stream.fromQueue),
      libraries: Effect.map(SubscriptionRef.get(engines), (m) => [...m.keys()]),
      add,
      remove
    }
  })

/** Layer of the sync plugin. */
export const layer = (options: Options) => Layer.scoped(Sync, make(options))
