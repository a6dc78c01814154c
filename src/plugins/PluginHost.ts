/**
 * The plugin host: routes inbound streams to plugins by protocol id, checks
 * permissions before any handler runs, opens outbound streams, and tracks
 * which peers are available.
 *
 * Routing: each registered plugin is a transport handler for its protocol
 * id; a stream for an unknown protocol or version is refused by the
 * transport's negotiation before any byte reaches a plugin. Each stream runs
 * in its own scope; closing a connection interrupts its handlers.
 *
 * Library-scoped streams start with a host header, so the library is known
 * and checked before the plugin runs:
 *
 *   opener → [n: u8][library id: n bytes of UTF-8]
 *   host   → [1] accepted | [0] refused (then the stream is reset)
 *
 * A peer that this node is pairing into the library right now is answered
 * once the pairing has recorded it (or has failed), not refused at once.
 *
 * The library id travels only inside the authenticated, encrypted stream,
 * and only to a peer the opener chose.
 *
 * Availability: a discovered peer is reported `Available` only once a
 * connection to it has succeeded.
 *
 * Introspection: `streams` counts, per peer and protocol, the inbound
 * streams whose handler is running and the outbound streams whose opening
 * scope is still open, so a dropped peer can be checked to hold nothing.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Framing from "../transport/Framing.js"
import * as PeerAddress from "../transport/PeerAddress.js"
import { isViolation, type ProtocolError } from "../transport/ProtocolError.js"
import { type DiscoverySource, type Duplex, type PeerId, Transport, TransportError } from "../transport/Transport.js"
import { Libraries } from "../library/Libraries.js"
import type { Plugin, Protocol } from "./Plugin.js"
import { describe } from "../internal/describe.js"

/** A peer may not use a protocol. */
export class PermissionError extends Schema.TaggedError<PermissionError>("weft/PermissionError")("PermissionError", {
  reason: Schema.Literal("NotAMember", "MissingLibrary"),
  peer: Schema.String,
  protocol: Schema.String,
  library: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    return `permission ${this.reason}: ${this.detail}`
  }
}

/** What the host reports about peers. */
export type PeerEvent =
  /** Where a peer listens, and who says so (see `Transport.TransportEvent`). */
  | { readonly _tag: "Discovered"; readonly peer: PeerId; readonly addresses: ReadonlyArray<string>; readonly source: DiscoverySource }
  /** A connection to the peer works; `address` is the one this node dialled (none when the peer dialled in). */
  | { readonly _tag: "Available"; readonly peer: PeerId; readonly address?: string }
  /**
   * The peer's last connection closed; `error` says why when it did not close cleanly (a reset socket; a
   * `ProtocolError` when the peer broke the connection's framing).
   */
  | { readonly _tag: "Unavailable"; readonly peer: PeerId; readonly error?: TransportError | ProtocolError }
  | { readonly _tag: "Refused"; readonly peer: PeerId; readonly protocol: string; readonly detail: string }
  /** The peer broke a protocol (malformed, oversize or out-of-protocol input) and was disconnected. */
  | { readonly _tag: "Violation"; readonly peer: PeerId; readonly protocol: string; readonly detail: string }

/** What the host holds for one peer and protocol. */
export interface StreamCount {
  readonly peer: PeerId
  readonly protocol: string
  /** Inbound streams whose handler is running: one fiber each. */
  readonly handlers: number
  /** Streams opened through `open` whose scope is still open. */
  readonly outbound: number
}

/** Options of the host. */
export interface Options {
  /** Connect to peers as they are discovered (default true). */
  readonly connectDiscovered?: boolean
  /** How long a library header may take to arrive (default 10 s). */
  readonly headerTimeout?: Duration.DurationInput
}

/** The host's operations. */
export interface Service {
  readonly peerId: PeerId
  /** Registers a plugin's handler until the scope closes. */
  readonly register: <E, R>(plugin: Plugin<E, R>) => Effect.Effect<void, TransportError, R | Scope.Scope>
  /** Opens a stream of a plugin's protocol to `peer` (naming `library` for library plugins); reset when the scope closes. */
  readonly open: (
    peer: PeerId,
    protocol: Protocol,
    library?: string
  ) => Effect.Effect<Duplex, TransportError | PermissionError, Scope.Scope>
  /** Connects to an address; the peer becomes available. */
  readonly connect: (address: string) => Effect.Effect<PeerId, TransportError>
  /** Peers with a working connection. */
  readonly available: Effect.Effect<ReadonlyArray<PeerId>>
  /**
   * Reports that `peer` broke `protocol` (`error` says how): the host
   * disconnects it and publishes a `Violation` event. Handlers need not call
   * this: a handler failing with a violation (see `ProtocolError.isViolation`) is reported.
   */
  readonly violation: (peer: PeerId, protocol: string, error: unknown) => Effect.Effect<void>
  /** Peer events from now on, subscribed at once (none after this returns is missed). */
  readonly events: Effect.Effect<Stream.Stream<PeerEvent>, never, Scope.Scope>
  /** Streams held now, per peer and protocol (only those with any). */
  readonly streams: Effect.Effect<ReadonlyArray<StreamCount>>
}

/** The plugin host. */
export class PluginHost extends Context.Tag("weft/plugins/PluginHost")<PluginHost, Service>() {}

const ACCEPTED = 1
const REFUSED = 0

/** Reads the host's header from the front of a stream with `read`; the stream then goes on after it. */
const readHeader = <A>(
  stream: Duplex,
  read: (reader: Framing.Reader<TransportError>) => Effect.Effect<Option.Option<A>, TransportError>
): Effect.Effect<readonly [A, Duplex], TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const reader = yield* Framing.reader(stream.source, { peer: stream.remote, protocol: stream.protocol })
    const header = yield* read(reader)
    if (Option.isNone(header)) {
      return yield* new TransportError({ reason: "Reset", peer: stream.remote, protocol: stream.protocol, detail: "stream ended inside the host header" })
    }
    return [header.value, withSource(stream, reader.rest)] as const
  })

const withSource = (stream: Duplex, source: Stream.Stream<Uint8Array, TransportError>): Duplex => ({ ...stream, source })

/** Builds the host over the `Transport` and `Libraries` in context. */
export const make = (options: Options = {}): Effect.Effect<Service, never, Transport | Libraries | Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* Transport
    const libraries = yield* Libraries
    const headerTimeout = options.headerTimeout ?? Duration.seconds(10)
    // well within the opener's wait for an answer to its header
    const pairingWait = Duration.divide(headerTimeout, 2).pipe(Option.getOrElse(() => Duration.zero))
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<PeerEvent>(), PubSub.shutdown)
    const available = yield* Ref.make(HashSet.empty<PeerId>())
    const held = yield* Ref.make(new Map<string, StreamCount>())
    // counts a stream (or its handler) as held until the scope it lives in closes
    const hold = (peer: PeerId, protocol: string, kind: "handlers" | "outbound") => {
      const key = `${peer}\u0000${protocol}`
      const change = (delta: number) =>
        Ref.update(held, (counts) => {
          const current = counts.get(key) ?? { peer, protocol, handlers: 0, outbound: 0 }
          const next = { ...current, [kind]: current[kind] + delta }
          const out = new Map(counts)
          if (next.handlers === 0 && next.outbound === 0) out.delete(key)
          else out.set(key, next)
          return out
        })
      return Effect.acquireRelease(change(1), () => change(-1))
    }

    // availability follows the transport's connections; discovered peers are connected to first
    // subscribed before the connections are counted (below), so none made in between is missed
    const events = yield* Effect.flatMap(transport.subscribe, Stream.toPull)
    yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
      const chunk = yield* Effect.catchAll(events, () => Effect.never)
      for (const event of chunk) {
        switch (event._tag) {
          case "Connected":
            if (!HashSet.has(yield* Ref.get(available), event.peer)) {
              yield* Ref.update(available, HashSet.add(event.peer))
              yield* PubSub.publish(pubsub, event.address === undefined ? { _tag: "Available", peer: event.peer } : { _tag: "Available", peer: event.peer, address: event.address })
            }
            break
          case "Disconnected":
            if (HashSet.has(yield* Ref.get(available), event.peer)) {
              yield* Ref.update(available, HashSet.remove(event.peer))
              yield* PubSub.publish(pubsub, event.error === undefined ? { _tag: "Unavailable", peer: event.peer } : { _tag: "Unavailable", peer: event.peer, error: event.error })
            }
            break
          case "Discovered":
            yield* PubSub.publish(pubsub, event)
            // (`firstSuccessOf` of no dials is a defect, not a failure)
            if ((options.connectDiscovered ?? true) && event.source === "discovery" && event.addresses.length > 0) {
              // a failed attempt leaves the peer unavailable; discovery will report it again. An advert can
              // name any address: the dial must reach the advertised peer (a multiaddr ending /p2p/<id>)
              const dials = event.addresses.map((address) => transport.connect(PeerAddress.withPeer(address, event.peer)))
              yield* Effect.forkScoped(Effect.ignore(Effect.firstSuccessOf(dials)))
            }
            break
        }
      }
    })))
    // those made before the subscription
    for (const peer of yield* transport.connections) yield* Ref.update(available, HashSet.add(peer))

    // forked into the host's scope: a handler that reports its own connection must not wait
    // for its own interruption
    const hostScope = yield* Effect.scope
    const violation = (peer: PeerId, protocol: string, error: unknown) =>
      Effect.zipRight(
        PubSub.publish(pubsub, { _tag: "Violation", peer, protocol, detail: error instanceof Error ? error.message : describe(error) }),
        Effect.asVoid(Effect.forkIn(transport.disconnect(peer), hostScope))
      )

    const refuse = (stream: Duplex, detail: string) =>
      Effect.zipRight(
        PubSub.publish(pubsub, { _tag: "Refused", peer: stream.remote, protocol: stream.protocol, detail }),
        Effect.zipRight(Effect.ignore(stream.write(new Uint8Array([REFUSED]))), stream.reset)
      )

    const register = <E, R>(plugin: Plugin<E, R>) =>
      Effect.gen(function*() {
        // the registering scope is left out: each stream runs in its own (the transport's), so what a
        // handler acquires is released when it returns or its connection drops, not at unregistration
        const context = Context.omit(Scope.Scope)(yield* Effect.context<R>()) as Context.Context<R>
        const run = (stream: Duplex, library: string | undefined) => {
          const handled = plugin.handle(stream, { peer: stream.remote, library })
          return (plugin.timeout === undefined ? handled : Effect.timeout(handled, plugin.timeout)).pipe(
            Effect.tapError((error) => (isViolation(error) ? violation(stream.remote, stream.protocol, error) : Effect.void)),
            Effect.provide(context)
          )
        }
        yield* transport.handle(
          plugin.protocol,
          (stream) => {
            if (plugin.permission === "authenticated") return Effect.zipRight(hold(stream.remote, stream.protocol, "handlers"), run(stream, undefined))
            const where = { peer: stream.remote, protocol: stream.protocol }
            return Effect.gen(function*() {
              yield* hold(stream.remote, stream.protocol, "handlers")
              const [header, rest] = yield* readHeader(stream, (reader) =>
                Effect.flatMap(reader.bytes(1), Option.match({ onNone: () => Effect.succeedNone, onSome: ([n]) => reader.bytes(n!) }))).pipe(
                Effect.timeoutFail({ duration: headerTimeout, onTimeout: () => new TransportError({ reason: "Timeout", ...where, detail: "no library header" }) })
              )
              const library = new TextDecoder().decode(header)
              // a peer being paired right now is waited for (see `Libraries.pairing`)
              if (!(yield* libraries.admits(library, stream.remote, pairingWait))) {
                return yield* refuse(stream, `${stream.remote} is not a member of the library it named`)
              }
              yield* stream.write(new Uint8Array([ACCEPTED]))
              return yield* run(rest, library)
            })
          },
          plugin.maxInboundStreams === undefined ? {} : { maxInboundStreams: plugin.maxInboundStreams }
        )
      })

    const open = (peer: PeerId, protocol: Protocol, library?: string) =>
      Effect.gen(function*() {
        if (protocol.permission === "library" && library === undefined) {
          return yield* new PermissionError({ reason: "MissingLibrary", peer, protocol: protocol.protocol, detail: "a library protocol needs a library" })
        }
        const stream = yield* transport.open(peer, protocol.protocol)
        yield* hold(peer, protocol.protocol, "outbound")
        if (protocol.permission === "authenticated") return stream
        const name = new TextEncoder().encode(library!)
        if (name.length > 255) {
          return yield* new PermissionError({ reason: "MissingLibrary", peer, protocol: protocol.protocol, library: library!, detail: "library id too long" })
        }
        const header = new Uint8Array(1 + name.length)
        header[0] = name.length
        header.set(name, 1)
        yield* stream.write(header)
        const where = { peer, protocol: protocol.protocol }
        const [status, rest] = yield* readHeader(stream, (reader) => reader.bytes(1)).pipe(
          Effect.timeoutFail({ duration: headerTimeout, onTimeout: () => new TransportError({ reason: "Timeout", ...where, detail: "no answer to the library header" }) }),
          Effect.catchTag("TransportError", (e): Effect.Effect<never, TransportError | PermissionError> =>
            e.reason === "Reset" || e.reason === "Closed"
              ? Effect.fail(new PermissionError({ reason: "NotAMember", peer, protocol: protocol.protocol, library: library!, detail: `${peer} refused the stream for library ${library}` }))
              : Effect.fail(e))
        )
        if (status[0] !== ACCEPTED) {
          return yield* new PermissionError({ reason: "NotAMember", peer, protocol: protocol.protocol, library: library!, detail: `${peer} refused the stream for library ${library}` })
        }
        return rest
      })

    return {
      peerId: transport.peerId,
      register,
      open,
      connect: transport.connect,
      violation,
      available: Effect.map(Ref.get(available), (set) => [...set]),
      events: Effect.map(PubSub.subscribe(pubsub), Stream.fromQueue),
      streams: Effect.map(Ref.get(held), (counts) => [...counts.values()])
    }
  })

/** Layer of the host. */
export const layer = (options: Options = {}): Layer.Layer<PluginHost, never, Transport | Libraries> =>
  Layer.scoped(PluginHost, make(options))
