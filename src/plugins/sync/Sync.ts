/**
 * The sync plugin: keeps a sync session running with every available peer
 * that belongs to a library this node syncs.
 *
 * Of two peers, the one with the smaller id opens the session (one session
 * per pair and library); it retries with backoff while the peer stays
 * available, and stops when it goes away. Membership is followed as it
 * changes: a peer paired while connected gets its session at once, one
 * removed from a library loses it. Session failures are typed errors
 * published on `failures`; `status` says what each session is doing.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Engine from "../../engine/Engine.js"
import * as SyncSession from "../../engine/SyncSession.js"
import * as Framing from "../../transport/Framing.js"
import type { Duplex, PeerId, TransportError } from "../../transport/Transport.js"
import { Libraries } from "../Libraries.js"
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
  readonly libraries: ReadonlyArray<SyncedLibrary>
  /** Session tuning (batch size, window, debounce, anti-entropy interval). */
  readonly session?: Omit<SyncSession.Options, "library" | "remote" | "onEvent">
  /** How a failed session is retried while its peer is available (default: exponential from 100 ms, capped at 10 s, jittered). */
  readonly retry?: Schedule.Schedule<unknown, unknown>
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

/** A session that failed, with its typed error. */
export interface Failure {
  readonly peer: PeerId
  readonly library: string
  readonly error: SyncSession.SessionError<TransportError | PermissionError>
}

/** The sync plugin's service. */
export class Sync extends Context.Tag("weft/plugins/Sync")<Sync, {
  /** Sessions by peer and library. */
  readonly status: Effect.Effect<ReadonlyArray<SessionStatus>>
  /** Failed sessions from now on. */
  readonly failures: Effect.Effect<Stream.Stream<Failure>, never, Scope.Scope>
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
    const engines = new Map(options.libraries.map((l) => [l.id, l.engine]))
    const statuses = yield* Ref.make(new Map<string, SessionStatus>())
    const failures = yield* Effect.acquireRelease(PubSub.unbounded<Failure>(), PubSub.shutdown)
    const key = (peer: string, library: string) => `${peer}\u0000${library}`

    const session = (stream: Duplex, peer: PeerId, library: string, engine: Engine.Service) => {
      const k = key(peer, library)
      const set = (f: (s: SessionStatus) => SessionStatus) =>
        Ref.update(statuses, (m) => new Map(m).set(k, f(m.get(k) ?? { peer, library, state: "connecting", sent: 0, received: 0 })))
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
          onFailure: (error) =>
            Effect.zipRight(
              set((s) => ({ ...s, state: "failed", error: error instanceof Error ? error.message : String(error) })),
              PubSub.publish(failures, { peer, library, error })
            ),
          onSuccess: () => set((s) => ({ ...s, state: "ended" }))
        }),
        // stopped (the peer went away, or the plugin stops): no longer syncing
        Effect.onInterrupt(() => set((s) => ({ ...s, state: "ended" })))
      )
    }

    yield* host.register(Plugin.make({
      name: "sync",
      ...Protocol.protocol,
      maxInboundStreams: 8,
      handle: (stream, context) => {
        const engine = context.library === undefined ? undefined : engines.get(context.library)
        // a member of a library this node does not sync (any more): nothing to serve
        // failures are published by `session`; a protocol violation also goes to the host, which disconnects the peer
        return engine === undefined
          ? stream.reset
          : session(stream, context.peer, context.library!, engine).pipe(
            Effect.catchAll((error) => (Plugin.isViolation(error) ? Effect.fail(error) : Effect.void))
          )
      }
    }))

    // the opening side: one fiber per (peer, library), retried while the peer is available
    const active = yield* FiberMap.make<string>()
    const start = (peer: PeerId) =>
      Effect.gen(function*() {
        if (host.peerId >= peer) return
        for (const { engine, id } of options.libraries) {
          if (!(yield* libraries.isMember(id, peer))) continue
          const run = Effect.scoped(Effect.flatMap(host.open(peer, Protocol.protocol, id), (stream) => session(stream, peer, id, engine))).pipe(
            // a remote that broke the protocol is disconnected (for inbound streams the host sees the handler fail)
            Effect.tapError((error) => (Plugin.isViolation(error) ? host.violation(peer, Protocol.protocol.protocol, error) : Effect.void))
          )
          // a session that ends (the remote closed it) or fails is started again after a pause
          const forever = Effect.retry(Effect.zipRight(run, Effect.fail("ended" as const)), options.retry ?? defaultRetry)
          yield* FiberMap.run(active, key(peer, id), forever, { onlyIfMissing: true })
        }
      })
    const stop = (peer: PeerId) =>
      Effect.forEach(options.libraries, ({ id }) => FiberMap.remove(active, key(peer, id)), { discard: true })

    // membership changes while a peer stays connected (pairing adds it, a removal revokes it):
    // start what is now allowed, stop what no longer is
    const reconcile = Effect.gen(function*() {
      for (const peer of yield* host.available) {
        yield* start(peer)
        for (const { id } of options.libraries) {
          if (!(yield* libraries.isMember(id, peer))) yield* FiberMap.remove(active, key(peer, id))
        }
      }
    })

    const events = yield* host.events
    const changes = yield* libraries.changes
    for (const peer of yield* host.available) yield* start(peer)
    yield* Effect.forkScoped(Stream.runForEach(events, (event) =>
      event._tag === "Available" ? start(event.peer) : event._tag === "Unavailable" ? stop(event.peer) : Effect.void
    ))
    yield* Effect.forkScoped(Stream.runForEach(changes, () => reconcile))

    return {
      status: Effect.map(Ref.get(statuses), (m) => [...m.values()]),
      failures: Effect.map(PubSub.subscribe(failures), Stream.fromQueue)
    }
  })

/** Layer of the sync plugin. */
export const layer = (options: Options) => Layer.scoped(Sync, make(options))
