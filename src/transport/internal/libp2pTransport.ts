/**
 * The body of `Libp2pTransport`: a js-libp2p 3 node (TCP, Noise, Yamux,
 * identify, optional mDNS) behind `Transport.Service`.
 *
 * Ownership: the node lives in the scope of `make` and is stopped with it.
 * Each inbound stream's handler is a fiber forked into the `FiberSet` of the
 * `handle` call that registered it (so unregistering interrupts it) and
 * indexed by its connection (so a closing connection interrupts it too).
 *
 * @internal
 */
import "./promiseWithResolvers.js"
import { noise } from "@chainsafe/libp2p-noise"
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys"
import { identify } from "@libp2p/identify"
import type {
  Connection,
  IdentifyResult,
  Libp2p,
  MultiaddrConnection,
  PeerId as Libp2pPeerId,
  PeerInfo,
  Stream as Libp2pStream
} from "@libp2p/interface"
import { mdns } from "@libp2p/mdns"
import { peerIdFromString } from "@libp2p/peer-id"
import { tcp } from "@libp2p/tcp"
import { multiaddr } from "@multiformats/multiaddr"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as PubSub from "effect/PubSub"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createLibp2p } from "libp2p"
import type { Options } from "../Libp2pTransport.js"
import {
  type Duplex,
  type Handler,
  type HandleOptions,
  PeerId,
  type Service,
  TransportError,
  type TransportEvent
} from "../Transport.js"
import * as PeerAddress from "../PeerAddress.js"
import type { ProtocolError } from "../ProtocolError.js"
import * as Libp2pDuplex from "./libp2pDuplex.js"
import { connectionEnding, fromLibp2p } from "./libp2pError.js"
import { loggerFor } from "./quietLogger.js"
import * as Slots from "./slots.js"
import { guardedYamux } from "./yamuxGuard.js"

/** Yamux's smallest allowed stream window (its specification's initial window). */
export const MIN_STREAM_WINDOW_BYTES = 256 * 1024
/**
 * The default most bytes in flight per stream. A ping on a connection that
 * also carries a bulk stream waits behind what that stream has in flight, so
 * its round trip is about the window over the transfer's rate, and the rate
 * falls with the machine's load while the window does not. Measured on
 * loopback (two processes, 2 cores shared): at load 3.5, ping p50 behind the
 * transfer 1.9-2.2 ms at 512 KiB against 7.9-8.2 ms at 2 MiB (5.3 at 1 MiB,
 * 1.9 at 256 KiB, which also cost a third of the throughput); at load 10,
 * 7.9-8.1 ms against 30-37 ms, with throughput alone and CPU per byte within
 * the noise of each other (41 against 37 MB/s median, 12.6-19 against
 * 13-16 CPU s/GB). @libp2p/ping on the same stack and window waits the same.
 */
export const DEFAULT_STREAM_WINDOW_BYTES = 512 * 1024
/** The default most open connections. */
export const DEFAULT_MAX_CONNECTIONS = 64
/**
 * The default most inbound connections of peers that are not members: a
 * quarter of the slots (16 of the default 64), so members always have the
 * rest. Strangers only ask to pair (one request each, see `Consent`) or ping.
 */
export const DEFAULT_MAX_STRANGER_CONNECTIONS = 16
/** The default most inbound connections of strangers from one host (an IPv4 address, an IPv6 /64). */
export const DEFAULT_MAX_STRANGER_CONNECTIONS_PER_HOST = 4
/**
 * Connections libp2p lets open beyond `maxConnections`, before its own pruning: a member's connection must
 * get as far as its handshake (where it is known to be a member) while the slots are full, and the
 * stranger it replaces takes a moment to close.
 */
const EVICTION_HEADROOM = 8
/**
 * Most inbound connections whose handshake is under way, and most of them from one host: a socket that
 * connects and never speaks holds one until the handshake times out (`dialTimeout`), and libp2p's own
 * bound (10, for all hosts together) let ten such sockets keep every peer out.
 */
export const MAX_PENDING_INBOUND = 64
export const MAX_PENDING_INBOUND_PER_HOST = 4
/**
 * Most connections one peer may hold with this node: two peers dialling each other at once make two,
 * and one more may still be closing; beyond that a peer would only take slots from others.
 */
export const MAX_CONNECTIONS_PER_PEER = 3
/** The default most inbound streams of one protocol per connection (as the contract says). */
export const DEFAULT_MAX_INBOUND_STREAMS = 32

const toPeerId = (id: Libp2pPeerId): PeerId => PeerId.make(id.toString())

/** Whether a multiaddr is on the loopback interface. */
const isLoopback = (address: string): boolean => /^\/(ip4\/127\.|ip6\/::1\/)/.test(address)

/** Whether a handler's end needs no report: it succeeded or was interrupted (its connection or registration went away). */
const isQuietEnd = (cause: Cause.Cause<unknown>): boolean => Cause.isEmpty(cause) || Cause.isInterruptedOnly(cause)

/** How long a connection may take to close gracefully before it is aborted. */
const CLOSE_TIMEOUT = Duration.seconds(1)

/**
 * Resets the connection's streams (the remote sees each reset), then closes
 * the emptied connection gracefully, so what was written is flushed. Done when
 * libp2p's close completes or the connection reports itself closed, whichever
 * comes first: when both ends close at once, libp2p's close can wait for a
 * 'drain' of a socket that is already gone. Not done within `CLOSE_TIMEOUT`:
 * aborted.
 */
const closeConnection = (connection: Connection, why: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    const reason = new Error(why)
    for (const stream of [...connection.streams]) stream.abort(reason)
    if (connection.status === "closed") return Effect.void
    return Effect.async<void>((resume) => {
      let done = false
      const finish = () => {
        if (done) return
        done = true
        connection.removeEventListener("close", finish)
        resume(Effect.void)
      }
      const controller = new AbortController()
      connection.addEventListener("close", finish)
      connection.close({ signal: controller.signal }).then(finish, (cause: unknown) => {
        connection.abort(cause instanceof Error ? cause : reason)
        finish()
      })
      return Effect.sync(() => {
        done = true
        connection.removeEventListener("close", finish)
        controller.abort()
      })
    }).pipe(
      Effect.timeout(CLOSE_TIMEOUT),
      Effect.catchTag("TimeoutException", () => Effect.sync(() => connection.abort(reason)))
    )
  })

export const make = (options: Options): Effect.Effect<Service, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const window = Math.max(MIN_STREAM_WINDOW_BYTES, options.streamWindowBytes ?? DEFAULT_STREAM_WINDOW_BYTES)
    const settings: Libp2pDuplex.Settings = { highWaterBytes: window }
    const dialTimeout = Duration.decode(options.dialTimeout ?? Duration.seconds(10))
    const lingerMillis = Duration.toMillis(options.linger ?? Duration.seconds(10))
    // libp2p drops its own dial and negotiation timeouts when given a signal (ours, for interruption)
    const timeLimit = (what: string, context: { readonly peer?: string; readonly protocol?: string }) =>
      Effect.timeoutFail({
        duration: dialTimeout,
        onTimeout: () =>
          new TransportError({ reason: "Timeout", ...context, detail: `${what} took over ${Duration.format(dialTimeout)}` })
      })

    const privateKey = yield* Effect.tryPromise({
      try: () => generateKeyPairFromSeed("Ed25519", Redacted.value(options.identity.seed)),
      catch: (cause) => fromLibp2p(cause, { operation: "start" })
    })

    // the node, once made: the connection gater counts connections on it
    let started: Libp2p | undefined = undefined
    // the transport's background work, once its scope is set up
    let runBackground: ((effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>) | undefined = undefined

    // slots: members may use all; strangers (not members) are bounded apart, and make room for members
    const maxConnections = Math.max(1, options.maxConnections ?? DEFAULT_MAX_CONNECTIONS)
    const limits: Slots.Limits = {
      maxConnections,
      maxStrangers: Math.min(
        maxConnections,
        options.maxStrangerConnections ?? Math.min(DEFAULT_MAX_STRANGER_CONNECTIONS, Math.max(1, Math.floor(maxConnections / 4)))
      ),
      maxStrangersPerHost: options.maxStrangerConnectionsPerHost ?? DEFAULT_MAX_STRANGER_CONNECTIONS_PER_HOST
    }
    const isMember = options.isMember ?? (() => true)
    // connections being closed to make room for a member: no longer counted
    const evicting = new Set<string>()
    // inbound connections admitted by the last gate and not listed yet (by peer): libp2p lists a connection
    // a few microtasks after that gate returns (nothing in between waits on the network), so each is counted
    // until its connection opens, or the next turn of the event loop at the latest
    const reserved = new Map<Slots.Held, string>()
    let reservations = 0
    const held = (): Array<Slots.Held> => [
      ...(started?.getConnections() ?? [])
        .filter((connection) => connection.status === "open" && !evicting.has(connection.id))
        .map((connection): Slots.Held => ({
          id: connection.id,
          member: isMember(toPeerId(connection.remotePeer)),
          inbound: connection.direction === "inbound",
          host: PeerAddress.host(connection.remoteAddr.toString()),
          streams: connection.streams.length,
          openedAt: connection.timeline.open,
          evictable: true
        })),
      ...reserved.keys()
    ]
    // closes a stranger's connection so that a member can have its slot
    const evict = (id: string, why: string) => {
      const connection = started?.getConnections().find((c) => c.id === id)
      if (connection === undefined || runBackground === undefined) return
      evicting.add(id)
      connection.addEventListener("close", () => evicting.delete(id), { once: true })
      runBackground(Effect.zipRight(
        Effect.logInfo(`closing the connection of ${connection.remotePeer.toString()}, not a member: ${why}`),
        closeConnection(connection, `this node needs the slot: ${why}`)
      ))
    }
    // inbound connections whose handshake is under way, by host; each released once, when it is upgraded
    // (its connection opens, with the same address) or closed (refused, failed, timed out)
    const pendingByHost = new Map<string, number>()
    const pendingRelease = new Map<object, () => void>()
    const denyPending = (connection: MultiaddrConnection): boolean => {
      const host = PeerAddress.host(connection.remoteAddr.toString()) ?? connection.remoteAddr.toString()
      const count = pendingByHost.get(host) ?? 0
      if (count >= MAX_PENDING_INBOUND_PER_HOST) return true
      pendingByHost.set(host, count + 1)
      const release = () => {
        if (!pendingRelease.delete(connection.remoteAddr)) return
        const left = (pendingByHost.get(host) ?? 1) - 1
        if (left > 0) pendingByHost.set(host, left)
        else pendingByHost.delete(host)
      }
      pendingRelease.set(connection.remoteAddr, release)
      connection.addEventListener("close", release, { once: true })
      return false
    }
    const candidate = (peer: Libp2pPeerId, address: { toString(): string }) => ({
      member: isMember(toPeerId(peer)),
      host: PeerAddress.host(address.toString())
    })

    const logger = loggerFor(process.env)
    const node = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          createLibp2p({
            privateKey,
            // libp2p's logger costs a few `isatty` calls and closures per stream even when nothing is logged
            ...(logger === undefined ? {} : { logger }),
            // identify tells connected peers this, instead of the Node and OS versions
            nodeInfo: { name: "weft", version: "0.1.0", userAgent: "weft/0.1.0" },
            addresses: {
              listen: [...options.listen],
              // what this node tells others (identify, mDNS): its loopback addresses only when it has no other
              announceFilter: (addresses) => {
                const reachable = addresses.filter((address) => !isLoopback(address.toString()))
                return reachable.length > 0 ? reachable : addresses
              }
            },
            transports: [tcp()],
            connectionEncrypters: [noise()],
            streamMuxers: [
              guardedYamux({
                streamOptions: {
                  // bounds a frame, and so what a ping waits behind on a busy connection
                  maxStreamWindowSize: window,
                  // a paused stream receives at most one window more; anything beyond is a broken peer
                  maxReadBufferLength: 2 * window
                }
              }, window)
            ],
            peerDiscovery: options.mdns === true ? [mdns()] : [],
            connectionGater: {
              // a socket, before any handshake: a host has only so many handshakes under way
              denyInboundConnection: denyPending,
              // once the handshake proved who it is: a quick look, so a stranger over its bound is refused
              // before its muxer is set up
              denyInboundEncryptedConnection: (peer, connection) =>
                (started?.getConnections(peer).length ?? 0) >= MAX_CONNECTIONS_PER_PEER ||
                Slots.admit(limits, held(), candidate(peer, connection.remoteAddr))._tag === "Refuse",
              // the last gate: the decision, and the slot taken (a stranger's closed for a member, if need be)
              denyInboundUpgradedConnection: (peer, connection) => {
                const incoming = candidate(peer, connection.remoteAddr)
                const admission = Slots.admit(limits, held(), incoming)
                if (admission._tag === "Refuse") return true
                if (admission._tag === "Evict") {
                  evict(admission.victim, incoming.member
                    ? `a member (${peer.toString()}) connected while all slots were taken`
                    : `a peer from a less crowded host (${peer.toString()}) connected while the slots of peers that are not members were taken`)
                }
                const reservation: Slots.Held = {
                  id: `reserved-${++reservations}`,
                  ...incoming,
                  inbound: true,
                  streams: 0,
                  openedAt: 0,
                  evictable: false
                }
                reserved.set(reservation, peer.toString())
                setImmediate(() => reserved.delete(reservation))
                return false
              }
            },
            connectionManager: {
              maxConnections: limits.maxConnections + EVICTION_HEADROOM,
              maxIncomingPendingConnections: MAX_PENDING_INBOUND,
              inboundUpgradeTimeout: Duration.toMillis(dialTimeout),
              dialTimeout: Duration.toMillis(dialTimeout),
              ...(options.maxInboundConnectionsPerSecond === undefined
                ? {}
                : { inboundConnectionThreshold: options.maxInboundConnectionsPerSecond })
            },
            // no ping service: `/ipfs/ping/1.0.0` is the ping plugin's to register (libp2p's connection
            // monitor counts a peer that refuses the protocol as alive, and uses the plugin once it is registered)
            services: { identify: identify() }
          }),
        catch: (cause) => fromLibp2p(cause, { operation: "start" })
      }),
      (node) =>
        Effect.forEach(
          node.getConnections(),
          (connection) => closeConnection(connection, "the transport is shutting down"),
          { concurrency: "unbounded", discard: true }
        ).pipe(Effect.zipRight(Effect.tryPromise({
          try: async () => node.stop(),
          catch: (cause) => fromLibp2p(cause, { operation: "start" })
        })), Effect.catchAll((error) => Effect.logWarning("stopping the libp2p node failed", error)))
    )
    started = node
    const self = toPeerId(node.peerId)

    // background work of the transport itself (interrupting handlers of closed connections, evictions)
    const runInBackground = yield* FiberSet.makeRuntime<never, void, never>()
    runBackground = (effect) => runInBackground(effect)

    // handler fibers by connection id
    const handlersByConnection = new Map<string, Set<Fiber.RuntimeFiber<void>>>()
    const interruptHandlers = (connectionId: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const fibers = handlersByConnection.get(connectionId)
        handlersByConnection.delete(connectionId)
        return fibers === undefined ? Effect.void : Fiber.interruptAll(fibers)
      })
    // before the node stops: interrupt every handler, so their finalizers run while streams still work
    yield* Effect.addFinalizer(() =>
      Effect.forEach([...handlersByConnection.keys()], interruptHandlers, { concurrency: "unbounded", discard: true })
    )
    const track = (connection: Connection, fiber: Fiber.RuntimeFiber<void>) => {
      let fibers = handlersByConnection.get(connection.id)
      if (fibers === undefined) {
        const created = new Set<Fiber.RuntimeFiber<void>>()
        fibers = created
        handlersByConnection.set(connection.id, created)
        connection.addEventListener("close", () => {
          runInBackground(interruptHandlers(connection.id))
        }, { once: true })
      }
      const set = fibers
      set.add(fiber)
      fiber.addObserver(() => {
        set.delete(fiber)
      })
    }

    // events
    const events = yield* Effect.acquireRelease(PubSub.unbounded<TransportEvent>(), PubSub.shutdown)
    const runtime = yield* Effect.runtime<never>()
    const publish = (event: TransportEvent) => {
      // an exit, never a throw: an event after shutdown (a late libp2p callback) is dropped
      Runtime.runSyncExit(runtime)(PubSub.publish(events, event))
    }
    const onConnect = (event: CustomEvent<Libp2pPeerId>) => {
      const peer = toPeerId(event.detail)
      // libp2p lists the connection before it announces the peer
      const dialled = node.getConnections(event.detail).find((connection) => connection.direction === "outbound")
      publish(dialled === undefined ? { _tag: "Connected", peer } : { _tag: "Connected", peer, address: dialled.remoteAddr.toString() })
    }
    // why each peer's last connection ended, when it did not end cleanly (a broken frame, a reset socket)
    const endings = new Map<string, TransportError | ProtocolError>()
    const onConnectionOpen = (event: CustomEvent<Connection>) => {
      const connection = event.detail
      pendingRelease.get(connection.remoteAddr)?.()
      if (connection.direction === "inbound") {
        const peer = connection.remotePeer.toString()
        for (const [reservation, of] of reserved) {
          if (of !== peer) continue
          reserved.delete(reservation)
          break
        }
      }
      // a connection this node dialled is never refused, but it makes room: a stranger's goes
      if (connection.direction === "outbound") {
        const now = held()
        if (now.length > limits.maxConnections) {
          const chosen = Slots.victim(now.filter((h) => h.id !== connection.id))
          if (chosen !== undefined) evict(chosen.id, `this node connected to ${connection.remotePeer.toString()} while all slots were taken`)
        }
      }
      connection.addEventListener("close", (closed) => {
        const peer = connection.remotePeer.toString()
        if (closed.error === undefined) endings.delete(peer)
        else endings.set(peer, connectionEnding(closed.error, peer))
      }, { once: true })
    }
    const onDisconnect = (event: CustomEvent<Libp2pPeerId>) => {
      const peer = toPeerId(event.detail)
      // libp2p announces the disconnect from inside the connection's close event, before the listener
      // above has seen it: the rest of that dispatch runs first
      queueMicrotask(() => {
        const error = endings.get(peer)
        endings.delete(peer)
        publish(error === undefined ? { _tag: "Disconnected", peer } : { _tag: "Disconnected", peer, error })
      })
    }
    const onDiscovery = (event: CustomEvent<PeerInfo>) => {
      if (event.detail.id.equals(node.peerId)) return
      publish({
        _tag: "Discovered",
        peer: toPeerId(event.detail.id),
        addresses: event.detail.multiaddrs.map((address) => address.toString()),
        source: "discovery"
      })
    }
    // a connected peer's identify says where it listens: reported like a discovery, so a peer that dialled
    // this one can be dialled back later. Loopback addresses only from a peer on this machine.
    const onIdentify = (event: CustomEvent<IdentifyResult>) => {
      const local = isLoopback(event.detail.connection.remoteAddr.toString())
      const addresses = event.detail.listenAddrs.map((address) => address.toString()).filter((address) => local || !isLoopback(address))
      if (addresses.length === 0) return
      publish({ _tag: "Discovered", peer: toPeerId(event.detail.peerId), addresses, source: "identify" })
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        node.addEventListener("peer:identify", onIdentify)
        node.addEventListener("peer:connect", onConnect)
        node.addEventListener("connection:open", onConnectionOpen)
        node.addEventListener("peer:disconnect", onDisconnect)
        node.addEventListener("peer:discovery", onDiscovery)
      }),
      () =>
        Effect.sync(() => {
          node.removeEventListener("peer:identify", onIdentify)
          node.removeEventListener("peer:connect", onConnect)
          node.removeEventListener("connection:open", onConnectionOpen)
          node.removeEventListener("peer:disconnect", onDisconnect)
          node.removeEventListener("peer:discovery", onDiscovery)
        })
    )

    const parsePeer = (peer: string, protocol?: string) =>
      Effect.try({
        try: () => peerIdFromString(peer),
        catch: (cause) =>
          fromLibp2p(cause, { operation: "open", peer, ...(protocol === undefined ? {} : { protocol }) })
      })

    const runHandler = (handler: Handler, duplex: Libp2pDuplex.Libp2pDuplex): Effect.Effect<void> =>
      Effect.scoped(Effect.zipRight(
        // a handler that ended its stream and returned leaves the opener time to read it all
        Effect.addFinalizer((exit) => Exit.isSuccess(exit) ? duplex.linger(lingerMillis) : duplex.release),
        handler(duplex)
      )).pipe(
        Effect.catchAllCause((cause) =>
          isQuietEnd(cause) ? Effect.void : Effect.logWarning("a protocol handler failed", cause)
        ),
        Effect.annotateLogs({ peer: duplex.remote, protocol: duplex.protocol })
      )

    const handle = (
      protocol: string,
      handler: Handler,
      handleOptions?: HandleOptions
    ): Effect.Effect<void, TransportError, Scope.Scope> =>
      Effect.gen(function*() {
        // declared first, so on release the protocol is unregistered before its handlers are interrupted
        const run = yield* FiberSet.makeRuntime<never, void, never>()
        // false from the start of unregistering: a stream libp2p hands over after that is refused
        let registered = true
        const maxInboundStreams = handleOptions?.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS
        // libp2p counts inbound streams per connection, and a peer may open several connections: the
        // bound is per peer, so it is counted here too (handlers running, by peer)
        const running = new Map<string, number>()
        const onStream = (stream: Libp2pStream, connection: Connection) => {
          if (!registered || connection.status !== "open") {
            stream.abort(new Error(registered ? "the connection is closing" : "the protocol is no longer handled"))
            return
          }
          const peer = toPeerId(connection.remotePeer)
          const count = running.get(peer) ?? 0
          if (count >= maxInboundStreams) {
            stream.abort(new Error(`${peer} already has ${count} inbound stream(s) of ${protocol}, the most allowed`))
            return
          }
          running.set(peer, count + 1)
          const duplex = { ...Libp2pDuplex.make(stream, peer, settings), remoteAddress: connection.remoteAddr.toString() }
          const fiber = run(runHandler(handler, duplex))
          fiber.addObserver(() => {
            const left = (running.get(peer) ?? 1) - 1
            if (left > 0) running.set(peer, left)
            else running.delete(peer)
          })
          track(connection, fiber)
        }
        yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () =>
              node.handle(protocol, onStream, { maxInboundStreams }),
            catch: (cause) => fromLibp2p(cause, { operation: "handle", protocol })
          }),
          () =>
            Effect.tryPromise({
              try: () => {
                registered = false
                return node.unhandle(protocol)
              },
              catch: (cause) => fromLibp2p(cause, { operation: "handle", protocol })
            }).pipe(Effect.catchAll((error) => Effect.logWarning("unregistering a protocol failed", error)))
        )
      })

    const connect = (address: string): Effect.Effect<PeerId, TransportError> =>
      Effect.gen(function*() {
        const target = yield* Effect.try({
          try: () => multiaddr(address),
          catch: (cause) => fromLibp2p(cause, { operation: "dial" })
        })
        const connection = yield* Effect.tryPromise({
          try: (signal) => node.dial(target, { signal }),
          catch: (cause) => fromLibp2p(cause, { operation: "dial" })
        }).pipe(timeLimit(`connecting to ${address}`, {}))
        return toPeerId(connection.remotePeer)
      })

    const open = (peer: PeerId, protocol: string): Effect.Effect<Duplex, TransportError, Scope.Scope> =>
      Effect.gen(function*() {
        const id = yield* parsePeer(peer, protocol)
        return yield* Effect.uninterruptibleMask((restore) =>
          restore(Effect.tryPromise({
            try: (signal) => node.dialProtocol(id, protocol, { signal }),
            catch: (cause) => fromLibp2p(cause, { operation: "open", peer, protocol })
          }).pipe(timeLimit("opening a stream", { peer, protocol }))).pipe(
            Effect.map((stream) => Libp2pDuplex.make(stream, peer, settings)),
            Effect.tap((duplex) => Effect.addFinalizer(() => duplex.release)),
            Effect.map(({ release: _, ...duplex }) => duplex)
          )
        )
      })

    const disconnect = (peer: PeerId): Effect.Effect<void> =>
      Effect.gen(function*() {
        const id = yield* Effect.option(parsePeer(peer))
        if (id._tag === "None") return
        const connections = node.getConnections(id.value)
        yield* Effect.forEach(
          connections,
          (connection) =>
            closeConnection(connection, "disconnected by this peer").pipe(Effect.zipRight(interruptHandlers(connection.id))),
          { concurrency: "unbounded", discard: true }
        )
      })

    return {
      peerId: self,
      addresses: Effect.sync(() => node.getMultiaddrs().map((address) => address.toString())),
      handle,
      connect,
      open,
      disconnect,
      connections: Effect.sync(() => [...new Set(node.getPeers().map(toPeerId))]),
      events: Stream.fromPubSub(events),
      subscribe: Effect.map(PubSub.subscribe(events), (queue) => Stream.fromQueue(queue))
    } satisfies Service
  })
