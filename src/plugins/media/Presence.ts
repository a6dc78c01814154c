/**
 * Presence: which locations are online on which connected node, kept in
 * memory (protocol and wire format in `Protocol.ts`).
 *
 * - Announcing: for each connected peer that is a member of a library here,
 *   a stream tells it the locations online on this node in that library
 *   (`Mounts.online`): on connect, on every change (mounted, unmounted, a
 *   root gone or back) and every `refresh`. A stream that fails is opened
 *   again with backoff while the peer stays connected and a member.
 * - Receiving: the table location → peers, per library. A peer's entries go
 *   when its stream ends, fails or goes silent, or its connection drops.
 *   Every change is an event on `changes`.
 * - Choosing: `peers` lists the peers a location is online on, fastest
 *   first by the round trip of their last announcement's acknowledgement.
 *
 * A location that moves (unmounted on A, mounted on B) is announced offline
 * by A and online by B: readers follow, and the library is never written.
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
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Libraries } from "../../library/Libraries.js"
import { ProtocolError } from "../../transport/ProtocolError.js"
import { type Duplex, type PeerId, TransportError } from "../../transport/Transport.js"
import * as Messages from "../Messages.js"
import * as Plugin from "../Plugin.js"
import { PluginHost } from "../PluginHost.js"
import { Mounts } from "./Mounts.js"
import * as Protocol from "./Protocol.js"

/** A location went online or offline on a peer. */
export interface Change {
  readonly _tag: "Online" | "Offline"
  readonly library: string
  readonly location: string
  readonly peer: PeerId
}

/** A peer a location is online on. */
export interface Holder {
  readonly peer: PeerId
  /** Milliseconds of the last announcement's round trip to it, if measured. */
  readonly rtt: number | undefined
}

/** Options of presence. */
export interface Options {
  /** How often the whole set is announced again with nothing changed (default 30 s). */
  readonly refresh?: Duration.DurationInput
  /** How long an announcer may be silent before it is forgotten (default 3 × `refresh`). */
  readonly idleTimeout?: Duration.DurationInput
  /** How a failed announcement stream is opened again (default: exponential from 200 ms, capped at 30 s). */
  readonly retry?: Schedule.Schedule<unknown, unknown>
  /**
   * Most changes held for a watcher of `changes` that does not keep up; older ones are dropped first
   * (default 1024): a member toggling its locations must not grow a lagging watcher's memory. The
   * table itself (`peers`, `table`) is always whole.
   */
  readonly changeBuffer?: number
}

/** Presence on a node. */
export interface Service {
  /** The peers `location` of `library` is online on, fastest first (unmeasured last). */
  readonly peers: (library: string, location: string) => Effect.Effect<ReadonlyArray<Holder>>
  /** The whole table: library → location → peers. */
  readonly table: Effect.Effect<ReadonlyMap<string, ReadonlyMap<string, ReadonlyArray<PeerId>>>>
  /** Changes from now on, subscribed at once. */
  readonly changes: Effect.Effect<Stream.Stream<Change>, never, Scope.Scope>
}

/** Presence on a node. */
export class Presence extends Context.Tag("weft/plugins/media/Presence")<Presence, Service>() {}

interface Entry {
  readonly library: string
  readonly peer: PeerId
  readonly locations: ReadonlySet<string>
  /** The stream that set it: a newer stream from the same peer takes over, and the old one's end clears nothing. */
  readonly owner: symbol
}

const entryKey = (library: string, peer: string) => `${library}\u0000${peer}`

/** Registers presence on the host in context and provides the service; both stop with the scope. */
export const make = (options: Options = {}): Effect.Effect<Service, TransportError, PluginHost | Libraries | Mounts | Scope.Scope> =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const libraries = yield* Libraries
    const mounts = yield* Mounts
    const refresh = Duration.decode(options.refresh ?? Duration.seconds(30))
    const idleTimeout = Duration.decode(options.idleTimeout ?? Duration.times(refresh, 3))
    const retry = options.retry ?? Schedule.exponential(Duration.millis(200)).pipe(Schedule.union(Schedule.spaced(Duration.seconds(30))))

    const entries = yield* Ref.make(new Map<string, Entry>())
    const rtts = yield* Ref.make(new Map<PeerId, number>())
    const pubsub = yield* Effect.acquireRelease(PubSub.sliding<Change>(Math.max(1, options.changeBuffer ?? 1024)), PubSub.shutdown)

    /** Sets what `peer` holds in `library` (as `owner`), publishing the difference. */
    const set = (library: string, peer: PeerId, owner: symbol, locations: ReadonlySet<string>, onlyIfOwner: boolean) =>
      Effect.flatMap(
        Ref.modify(entries, (all) => {
          const key = entryKey(library, peer)
          const before = all.get(key)
          if (onlyIfOwner && before?.owner !== owner) return [[] as Array<Change>, all] as const
          const next = new Map(all)
          if (locations.size === 0) next.delete(key)
          else next.set(key, { library, peer, locations, owner })
          const old = before?.locations ?? new Set<string>()
          const changes: Array<Change> = [
            ...[...old].filter((l) => !locations.has(l)).map((location): Change => ({ _tag: "Offline", library, location, peer })),
            ...[...locations].filter((l) => !old.has(l)).map((location): Change => ({ _tag: "Online", library, location, peer }))
          ]
          return [changes, next] as const
        }),
        (changes) => PubSub.publishAll(pubsub, changes)
      )

    // receiving: one announcer's stream, until it ends, fails or goes silent
    const handle = (stream: Duplex, context: Plugin.StreamContext) =>
      Effect.gen(function*() {
        const library = context.library!
        const owner = Symbol(context.peer)
        yield* Effect.addFinalizer(() => set(library, context.peer, owner, new Set(), true))
        const channel = yield* Messages.make(stream, Protocol.PresenceMessages)
        while (true) {
          const message = yield* channel.receive.pipe(
            Effect.timeoutFail({
              duration: idleTimeout,
              onTimeout: () => new Messages.MessageError({ reason: "Timeout", peer: context.peer, protocol: stream.protocol, detail: "no announcement in time" })
            })
          )
          if (Option.isNone(message)) return yield* channel.end
          if (message.value.type !== "Online") {
            return yield* new ProtocolError({ reason: "Unexpected", peer: context.peer, protocol: stream.protocol, detail: "an Ack from the announcer" })
          }
          yield* set(library, context.peer, owner, new Set(message.value.locations), false)
          yield* channel.send({ type: "Ack" })
        }
      }).pipe(
        // silence, an early end and a reset are how an announcer goes: not worth more than forgetting it
        Effect.catchIf(
          (e): e is Messages.MessageError | TransportError =>
            (e instanceof Messages.MessageError && e.reason !== "VersionMismatch") || (e instanceof TransportError && (e.reason === "Reset" || e.reason === "Closed")),
          () => stream.reset
        )
      )

    yield* host.register(Plugin.make({ name: "presence", ...Protocol.presence, maxInboundStreams: 64, handle }))

    // announcing: one stream per (connected member, library)
    const announce = (peer: PeerId, library: string) =>
      Effect.scoped(Effect.gen(function*() {
        const stream = yield* host.open(peer, Protocol.presence, library)
        const channel = yield* Messages.make(stream, Protocol.PresenceMessages)
        const clock = yield* Effect.clock
        const ours = mounts.online.changes.pipe(Stream.map((online) => online.get(library) ?? []))
        const ticks = Stream.fromSchedule(Schedule.spaced(refresh)).pipe(
          Stream.mapEffect(() => Effect.map(mounts.online.get, (online) => online.get(library) ?? []))
        )
        yield* Stream.runForEach(Stream.merge(ours, ticks), (locations) =>
          Effect.gen(function*() {
            const start = clock.unsafeCurrentTimeNanos()
            yield* channel.send({ type: "Online", locations })
            const ack = yield* channel.next("an Ack", idleTimeout)
            if (ack.type !== "Ack") {
              return yield* new ProtocolError({ reason: "Unexpected", peer, protocol: stream.protocol, detail: "an Online from the receiver" })
            }
            const rtt = Number(clock.unsafeCurrentTimeNanos() - start) / 1e6
            yield* Ref.update(rtts, (all) => new Map(all).set(peer, rtt))
          }))
      })).pipe(Effect.retry(retry))

    const announcers = yield* FiberMap.make<string>()
    const reconcile = Effect.gen(function*() {
      const available = new Set(yield* host.available)
      const wanted = new Map<string, readonly [PeerId, string]>()
      for (const library of yield* libraries.list) {
        for (const peer of library.members) {
          if (peer !== host.peerId && available.has(peer)) wanted.set(entryKey(library.id, peer), [peer, library.id])
        }
      }
      for (const [key] of [...announcers]) {
        if (!wanted.has(key)) yield* FiberMap.remove(announcers, key)
      }
      for (const [key, [peer, library]] of wanted) {
        yield* FiberMap.run(announcers, key, Effect.ignore(announce(peer, library)), { onlyIfMissing: true })
      }
    })
    const peerEvents = yield* host.events
    const libraryChanges = yield* libraries.changes
    yield* Effect.forkScoped(Stream.runForEach(
      Stream.merge(Stream.filter(peerEvents, (e) => e._tag === "Available" || e._tag === "Unavailable"), libraryChanges),
      () => reconcile
    ))
    yield* reconcile

    const peers = (library: string, location: string) =>
      Effect.gen(function*() {
        const all = yield* Ref.get(entries)
        const times = yield* Ref.get(rtts)
        const holders: Array<Holder> = []
        for (const entry of all.values()) {
          if (entry.library === library && entry.locations.has(location)) holders.push({ peer: entry.peer, rtt: times.get(entry.peer) })
        }
        return holders.sort((a, b) => (a.rtt ?? Number.POSITIVE_INFINITY) - (b.rtt ?? Number.POSITIVE_INFINITY) || (a.peer < b.peer ? -1 : 1))
      })

    return {
      peers,
      table: Effect.map(Ref.get(entries), (all) => {
        const out = new Map<string, Map<string, Array<PeerId>>>()
        for (const entry of all.values()) {
          const locations = out.get(entry.library) ?? new Map<string, Array<PeerId>>()
          for (const location of entry.locations) locations.set(location, [...(locations.get(location) ?? []), entry.peer].sort())
          out.set(entry.library, locations)
        }
        return out
      }),
      changes: Effect.map(PubSub.subscribe(pubsub), Stream.fromQueue)
    }
  })

/** Layer of presence. */
export const layer = (options: Options = {}): Layer.Layer<Presence, TransportError, PluginHost | Libraries | Mounts> =>
  Layer.scoped(Presence, make(options))

