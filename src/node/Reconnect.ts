/**
 * Reconnection: a node stays connected to the peers it shares libraries
 * with, and to the addresses its user pinned, without being made to dial
 * for peers that misbehave.
 *
 * - Members that drop are redialled at the addresses the address book
 *   keeps for them, with backoff, after a restart too.
 * - The address book holds library members only, at addresses they gave
 *   themselves (identify, over their authenticated connection) or that this
 *   node dialled and reached (as typed, for addresses the user gave): an mDNS
 *   advert can be sent by anyone for any id, and a connection comes from any
 *   identity, so neither may push a member's real addresses out of its
 *   bounded entry.
 * - Peers found by discovery (mDNS) are dialled at their advertised
 *   addresses, with their id appended, so only that peer can answer.
 * - Penalties: a peer disconnected for breaking a protocol is redialled (or
 *   dialled when discovered) only after a wait: 1 minute, doubling with each
 *   violation, up to an hour; a connection that then stays up an hour clears
 *   the count. Only members and pinned peers are tracked, so the state is
 *   bounded by them. Time is the `Clock`'s.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Libraries } from "../library/Libraries.js"
import * as Plugin from "../plugins/Plugin.js"
import { type PeerEvent, PluginHost } from "../plugins/PluginHost.js"
import * as PeerAddress from "../transport/PeerAddress.js"
import type { PeerId, TransportError } from "../transport/Transport.js"
import * as AddressBook from "./AddressBook.js"
import * as Penalties from "./internal/penalties.js"

/** Options of reconnection. */
export interface Options {
  /** How a dropped member or pinned address is retried (default: exponential from 500 ms, at most every 30 s). */
  readonly redial?: Schedule.Schedule<unknown, unknown>
  /** Dial peers found by discovery (default true). */
  readonly dialDiscovered?: boolean
}

/** Reconnection's operations. */
export interface Service {
  /**
   * Connects to an address the user gave. When it reaches a member, the
   * address is remembered as typed (a DNS name outlives an IP).
   */
  readonly dial: (address: string) => Effect.Effect<PeerId, TransportError>
  /**
   * Stays connected to `address` until the scope closes: dials it now, and
   * again whenever the connection drops (after its penalty when the peer
   * broke a protocol). Whatever peer answers there is the pinned one.
   */
  readonly pin: (address: string) => Effect.Effect<void, never, Scope.Scope>
  /** Whether `peer` is waiting out a penalty now (it is not dialled meanwhile). */
  readonly held: (peer: PeerId) => Effect.Effect<boolean>
}

/** Reconnection. */
export class Reconnect extends Context.Tag("weft/node/Reconnect")<Reconnect, Service>() {}

/** Peers whose last addresses are kept in memory (connected ones, mostly), at most. */
const MAX_LOCATED = 256

const defaultRedial = Schedule.exponential(Duration.millis(500)).pipe(Schedule.union(Schedule.spaced(Duration.seconds(30))))

/** Starts reconnecting for the host, libraries and address book in context, until the scope closes. */
export const make = (options: Options = {}): Effect.Effect<Service, never, PluginHost | Libraries | AddressBook.AddressBook | Scope.Scope> =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const libraries = yield* Libraries
    const book = yield* AddressBook.AddressBook
    const redial = options.redial ?? defaultRedial
    const penalties = Penalties.make()
    const now = Clock.currentTimeMillis
    const scope = yield* Effect.scope

    const members = Effect.map(libraries.list, (list) =>
      new Set(list.flatMap((library) => library.members).filter((member) => member !== host.peerId)))

    // losing an address is not worth failing a request or a connection for
    const remember = (peer: PeerId, addresses: ReadonlyArray<string>) =>
      book.remember(peer, addresses).pipe(Effect.catchAll((error) => Effect.logWarning(`could not remember ${peer}'s addresses: ${error.message}`)))
    // where connected peers said they are, or were reached: kept for members once they are members
    const located = new Map<PeerId, ReadonlyArray<string>>()
    const locate = (peer: PeerId, addresses: ReadonlyArray<string>) => {
      const known = located.get(peer) ?? []
      located.delete(peer)
      located.set(peer, AddressBook.merge(addresses, known))
      if (located.size > MAX_LOCATED) located.delete(located.keys().next().value!)
    }
    const rememberMember = (peer: PeerId) =>
      Effect.gen(function*() {
        const addresses = located.get(peer)
        if (addresses !== undefined && (yield* members).has(peer)) yield* remember(peer, addresses)
      })

    const dial = (address: string) =>
      Effect.tap(host.connect(address), (peer) => Effect.zipRight(Effect.sync(() => locate(peer, [address])), rememberMember(peer)))

    // the peer each pinned address reached last (an address can come to reach another peer)
    const pinnedAt = new Map<string, PeerId>()
    const pinned = (peer: PeerId) => [...pinnedAt.values()].includes(peer)
    const reconnecting = yield* FiberMap.make<PeerId>()
    const violated = (peer: PeerId) =>
      Effect.gen(function*() {
        if (!pinned(peer) && !(yield* members).has(peer)) return
        penalties.violated(peer)
        // a redial under way (the peer got back in meanwhile) makes way for one that waits
        yield* FiberMap.remove(reconnecting, peer)
      })
    const penalty = (peer: PeerId) =>
      Effect.flatMap(now, (at) => {
        const wait = penalties.take(peer, at)
        return wait === 0 ? Effect.void : Effect.zipRight(
          Effect.logInfo(`redialling ${peer} in ${wait / 1000} s (it broke a protocol)`),
          Effect.sleep(Duration.millis(wait))
        )
      })
    const reconnect = (peer: PeerId) =>
      Effect.gen(function*() {
        if (pinned(peer) || !(yield* members).has(peer)) return
        const attempt = Effect.gen(function*() {
          // a peer removed from its libraries meanwhile is no longer redialled
          if (!(yield* members).has(peer) || (yield* host.available).includes(peer)) return
          const addresses = yield* book.get(peer)
          if (addresses.length === 0) return
          yield* Effect.firstSuccessOf(addresses.map((address) => host.connect(PeerAddress.withPeer(address, peer))))
          yield* Effect.logInfo(`reconnected to ${peer}`)
        })
        yield* FiberMap.run(reconnecting, peer, Effect.zipRight(penalty(peer), Effect.retry(attempt, redial)), { onlyIfMissing: true })
      })
    const held = (peer: PeerId) => Effect.map(now, (at) => penalties.held(peer, at))

    // new members: where they are can be kept now; members gone: what they owed goes with them
    let known = new Map((yield* libraries.list).map((library) => [library.id, library]))
    yield* Effect.forkScoped(Stream.runForEach(yield* libraries.changes, (list) =>
      Effect.gen(function*() {
        for (const library of list) {
          const before = known.get(library.id)
          for (const member of library.members) {
            if (member !== host.peerId && !before?.members.includes(member)) yield* rememberMember(member)
          }
        }
        const current = new Set(list.flatMap((library) => library.members))
        for (const library of known.values()) {
          for (const member of library.members) if (!current.has(member) && !pinned(member)) penalties.forget(member)
        }
        known = new Map(list.map((library) => [library.id, library]))
      })))

    yield* Effect.forkScoped(Stream.runForEach(yield* host.events, (event): Effect.Effect<void> => {
      switch (event._tag) {
        case "Discovered":
          if (event.source === "identify") {
            locate(event.peer, event.addresses)
            return rememberMember(event.peer)
          }
          if ((options.dialDiscovered ?? true) && event.addresses.length > 0) {
            // a failed attempt leaves the peer unavailable; discovery will report it again. An advert can name
            // any address: the dial must reach the advertised peer (a multiaddr ending /p2p/<id>)
            return Effect.flatMap(held(event.peer), (waiting) =>
              waiting ? Effect.void : Effect.asVoid(Effect.forkIn(Effect.ignore(
                Effect.firstSuccessOf(event.addresses.map((address) => host.connect(PeerAddress.withPeer(address, event.peer))))
              ), scope)))
          }
          return Effect.void
        case "Available":
          return Effect.flatMap(now, (at) => {
            penalties.connected(event.peer, at)
            if (event.address !== undefined) locate(event.peer, [event.address])
            return rememberMember(event.peer)
          })
        case "Unavailable":
          return Effect.flatMap(now, (at) => {
            located.delete(event.peer)
            penalties.disconnected(event.peer, at)
            return Effect.zipRight(
              // broken framing below the plugins (an oversize or malformed frame) counts as a violation too
              // (once: a plugin's Violation event, just before, already counted this one). A pinned peer's
              // loop counts its own peer's, as it sees them
              Plugin.isViolation(event.error) && !penalties.pending(event.peer) && !pinned(event.peer) ? violated(event.peer) : Effect.void,
              reconnect(event.peer)
            )
          })
        case "Violation":
          return pinned(event.peer) ? Effect.void : violated(event.peer)
        case "Refused":
          return Effect.void
      }
    }))

    // peers this node shares a library with: reconnected at their remembered addresses when not connected
    for (const peer of yield* members) {
      if (!(yield* host.available).includes(peer)) yield* reconnect(peer)
    }

    const pin = (address: string) =>
      Effect.asVoid(Effect.forkScoped(Effect.forever(Effect.gen(function*() {
        const peer = yield* dial(address).pipe(
          Effect.tapError((error) => Effect.logDebug(`could not connect to ${address}: ${error.message}`)),
          Effect.retry(redial)
        )
        pinnedAt.set(address, peer)
        yield* Effect.logInfo(`connected to ${address}`)
        // subscribed only while connected (an unread subscription would keep every event); what ended the
        // connection is seen here, so its penalty is known before the redial
        const ending = yield* Effect.scoped(Effect.gen(function*() {
          const watch = yield* host.events
          if (!(yield* host.available).includes(peer)) return Chunk.empty<PeerEvent>()
          return yield* watch.pipe(
            Stream.filter((event) => (event._tag === "Violation" || event._tag === "Unavailable") && event.peer === peer),
            Stream.takeUntil((event) => event._tag === "Unavailable"),
            Stream.runCollect
          )
        }))
        if (Chunk.some(ending, (event) => event._tag === "Violation" || (event._tag === "Unavailable" && Plugin.isViolation(event.error)))) {
          yield* violated(peer)
        }
        yield* Effect.sleep(Duration.millis(500))
        yield* penalty(peer)
      }))))

    return { dial, pin, held }
  })

/** Layer of reconnection. */
export const layer = (options: Options = {}): Layer.Layer<Reconnect, never, PluginHost | Libraries | AddressBook.AddressBook> =>
  Layer.scoped(Reconnect, make(options))
