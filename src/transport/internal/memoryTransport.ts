import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Random from "effect/Random"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as STM from "effect/STM"
import * as Stream from "effect/Stream"
import * as TQueue from "effect/TQueue"
import * as TRef from "effect/TRef"
import type * as MemoryTransport from "../MemoryTransport.js"
import * as Transport from "../Transport.js"
import * as ParseError from "../../internal/parseError.js"

/** @internal */
export const DEFAULT_WINDOW_BYTES = 64 * 1024

/** @internal */
export const DEFAULT_MAX_INBOUND_STREAMS = 32

const ADDRESS_PREFIX = "memory://"

const decodePeerId = Schema.decodeUnknownEither(Transport.PeerId)

// ---------------------------------------------------------------------------
// State

type LaneStatus =
  | { readonly _tag: "Open" }
  | { readonly _tag: "Ended" }
  | { readonly _tag: "Aborted"; readonly detail: string }

/** A chunk (or the end) on its way; its fate was drawn when it was written. */
type Parcel =
  | { readonly _tag: "Data"; readonly bytes: Uint8Array; readonly dueAt: number; readonly fault: boolean }
  | { readonly _tag: "End"; readonly dueAt: number }

/** One direction of a stream. */
interface Lane {
  readonly from: Transport.PeerId
  readonly to: Transport.PeerId
  readonly status: TRef.TRef<LaneStatus>
  /** Bytes accepted from the writer and not yet read: the window in use. */
  readonly unread: TRef.TRef<number>
  /** Written, waiting out their latency. */
  readonly transit: TQueue.TQueue<Parcel>
  /** Arrived, readable. */
  readonly inbox: TQueue.TQueue<Parcel>
  /** Keeps each write's bytes contiguous when several fibers write. */
  readonly writeLock: Effect.Semaphore
  readonly random: Random.Random
  /** The reader has taken the end. */
  drained: boolean
}

type Side = "opener" | "handler"

interface StreamState {
  readonly id: number
  readonly protocol: string
  readonly connection: Connection
  /** opener → handler */
  readonly forward: Lane
  /** handler → opener */
  readonly backward: Lane
  /** Counts the stream against the handler's `maxInboundStreams`. */
  readonly inboundKey: string
  readonly closed: Set<Side>
}

interface Connection {
  readonly ends: readonly [Node, Node]
  readonly scope: Scope.CloseableScope
  /** Lane deliveries and handlers; interrupted when the connection drops. */
  readonly fibers: FiberSet.FiberSet<void, never>
  readonly streams: Set<StreamState>
  readonly inbound: Map<string, number>
  closed: boolean
}

interface Registration {
  readonly handler: Transport.Handler
  readonly maxInboundStreams: number
  /** Handlers run with the context they were registered in, not the opener's. */
  readonly runtime: Runtime.Runtime<never>
}

interface Node {
  readonly id: Transport.PeerId
  readonly events: PubSub.PubSub<Transport.TransportEvent>
  readonly handlers: Map<string, Registration>
  readonly connections: Map<string, Connection>
  alive: boolean
}

interface Network {
  readonly options: MemoryTransport.Options
  readonly windowBytes: number
  readonly scope: Scope.Scope
  /** Runs lane deliveries, so the network's clock drives latency. */
  readonly runtime: Runtime.Runtime<never>
  readonly trace: PubSub.PubSub<MemoryTransport.NetworkEvent>
  readonly peers: Map<string, Node>
  readonly connections: Set<Connection>
  partitions: Array<readonly [ReadonlySet<string>, ReadonlySet<string>]>
  nextStream: number
  open: boolean
}

const failure = (
  reason: Transport.TransportError["reason"],
  detail: string,
  context: { readonly peer?: string; readonly protocol?: string } = {}
) => new Transport.TransportError({ reason, detail, ...context })

const record = (network: Network, event: (at: number) => MemoryTransport.NetworkEvent) =>
  Effect.flatMap(Clock.currentTimeMillis, (at) => PubSub.publish(network.trace, event(at)))

const other = (connection: Connection, node: Node): Node =>
  connection.ends[0] === node ? connection.ends[1] : connection.ends[0]

// ---------------------------------------------------------------------------
// Lanes

const makeLane = (network: Network, stream: number, from: Transport.PeerId, to: Transport.PeerId) =>
  Effect.gen(function*() {
    const lane: Lane = {
      from,
      to,
      status: yield* TRef.make<LaneStatus>({ _tag: "Open" }),
      unread: yield* TRef.make(0),
      transit: yield* TQueue.unbounded<Parcel>(),
      inbox: yield* TQueue.unbounded<Parcel>(),
      writeLock: yield* Effect.makeSemaphore(1),
      // a string seed hashes by value: the lane's draws depend on nothing else
      random: Random.make(`${network.options.seed}/${stream}/${from}>${to}`),
      drained: false
    }
    return lane
  })

/** Aborts a lane, dropping what it holds; `true` if it was not aborted yet. */
const abortLane = (lane: Lane, detail: string): STM.STM<boolean> =>
  STM.flatMap(TRef.get(lane.status), (status) =>
    status._tag === "Aborted"
      ? STM.succeed(false)
      : STM.all([
        TRef.set(lane.status, { _tag: "Aborted", detail }),
        TQueue.takeAll(lane.transit),
        TQueue.takeAll(lane.inbox),
        TRef.set(lane.unread, 0)
      ]).pipe(STM.as(true)))

const resetStream = (network: Network, stream: StreamState, detail: string): Effect.Effect<void> =>
  STM.commit(STM.zipWith(abortLane(stream.forward, detail), abortLane(stream.backward, detail), (a, b) => a || b)).pipe(
    Effect.flatMap((changed) =>
      changed
        ? record(network, (at) => ({ _tag: "Reset", stream: stream.id, protocol: stream.protocol, detail, at }))
        : Effect.void
    )
  )

/** When a parcel written now is due, and whether it is to reset its stream. */
const draw = (network: Network, lane: Lane) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const { latency, resetProbability = 0 } = network.options
    const delay = latency === undefined ? 0 : yield* lane.random.nextIntBetween(latency.minMillis, latency.maxMillis + 1)
    const fault = resetProbability > 0 && (yield* lane.random.next) < resetProbability
    return { dueAt: now + delay, fault }
  })

const write = (network: Network, stream: StreamState, lane: Lane) => (chunk: Uint8Array) => {
  const context = { peer: lane.to, protocol: stream.protocol }
  const writable: STM.STM<void, Transport.TransportError> = STM.flatMap(TRef.get(lane.status), (status) => {
    switch (status._tag) {
      case "Open":
        return STM.void
      case "Ended":
        return STM.fail(failure("Closed", "the stream's write side is already ended", context))
      case "Aborted":
        return STM.fail(failure("Reset", status.detail, context))
    }
  })
  const reserve = (bytes: number) =>
    STM.zipRight(
      writable,
      STM.flatMap(TRef.get(lane.unread), (unread) =>
        // a full window waits for the reader; the status is re-read on every retry
        unread > 0 && unread + bytes > network.windowBytes ? STM.retry : TRef.set(lane.unread, unread + bytes))
    )
  return lane.writeLock.withPermits(1)(Effect.gen(function*() {
    if (chunk.length === 0) return yield* STM.commit(writable)
    for (let offset = 0; offset < chunk.length; offset += network.windowBytes) {
      // a copy, as a socket would make: the caller may reuse its buffer
      const bytes = chunk.slice(offset, offset + network.windowBytes)
      yield* STM.commit(reserve(bytes.length))
      const { dueAt, fault } = yield* draw(network, lane)
      yield* STM.commit(STM.zipRight(writable, TQueue.offer(lane.transit, { _tag: "Data", bytes, dueAt, fault })))
    }
  }))
}

const end = (network: Network, lane: Lane): Effect.Effect<void> =>
  lane.writeLock.withPermits(1)(Effect.gen(function*() {
    const { dueAt } = yield* draw(network, lane)
    yield* STM.commit(STM.flatMap(TRef.get(lane.status), (status) =>
      status._tag === "Open"
        ? STM.zipRight(TRef.set(lane.status, { _tag: "Ended" }), TQueue.offer(lane.transit, { _tag: "End", dueAt }))
        : STM.void))
  }))

const read = (stream: StreamState, lane: Lane): Stream.Stream<Uint8Array, Transport.TransportError> => {
  const context = { peer: lane.from, protocol: stream.protocol }
  const take = STM.gen(function*() {
    const status = yield* TRef.get(lane.status)
    if (status._tag === "Aborted") return yield* STM.fail(Option.some(failure("Reset", status.detail, context)))
    const parcel = yield* TQueue.take(lane.inbox)
    if (parcel._tag === "End") return yield* STM.fail(Option.none())
    yield* TRef.update(lane.unread, (unread) => unread - parcel.bytes.length)
    return parcel.bytes
  })
  const pull: Effect.Effect<Uint8Array, Option.Option<Transport.TransportError>> = Effect.suspend(() =>
    lane.drained
      ? Effect.fail(Option.none())
      : STM.commit(take).pipe(Effect.tapError((error) =>
        Effect.sync(() => {
          // after the end, a pull ends again instead of waiting for a parcel that will not come
          if (Option.isNone(error)) lane.drained = true
        })
      ))
  )
  return Stream.repeatEffectOption(pull)
}

/** Moves a lane's parcels to its inbox as they fall due, in order; runs until the end or an abort. */
const deliver = (network: Network, stream: StreamState, lane: Lane): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (true) {
      const next = yield* STM.commit(STM.flatMap(TRef.get(lane.status), (status) =>
        status._tag === "Aborted" ? STM.succeed(undefined) : TQueue.take(lane.transit)))
      if (next === undefined) return
      const now = yield* Clock.currentTimeMillis
      if (next.dueAt > now) yield* Effect.sleep(Duration.millis(next.dueAt - now))
      if (next._tag === "Data" && next.fault) {
        return yield* resetStream(
          network,
          stream,
          `the network reset the stream (injected fault, seed ${network.options.seed}) on a chunk from ${lane.from} to ${lane.to}`
        )
      }
      const delivered = yield* STM.commit(STM.flatMap(TRef.get(lane.status), (status) =>
        status._tag === "Aborted" ? STM.succeed(false) : STM.as(TQueue.offer(lane.inbox, next), true)))
      if (!delivered) return
      yield* record(network, (at) => ({
        _tag: "Delivered",
        stream: stream.id,
        protocol: stream.protocol,
        from: lane.from,
        to: lane.to,
        bytes: next._tag === "Data" ? next.bytes.length : 0,
        end: next._tag === "End",
        at
      }))
      if (next._tag === "End") return
    }
  })

const lanesOf = (stream: StreamState, side: Side) =>
  side === "opener"
    ? { outbound: stream.forward, inbound: stream.backward }
    : { outbound: stream.backward, inbound: stream.forward }

/** One side's scope closed: a graceful close if it ended its writes and did not fail, else a reset. */
const closeSide = (network: Network, stream: StreamState, side: Side, exit: Exit.Exit<unknown, unknown>) =>
  Effect.suspend(() => {
    if (stream.closed.has(side)) return Effect.void
    stream.closed.add(side)
    const { connection } = stream
    if (side === "handler") {
      connection.inbound.set(stream.inboundKey, (connection.inbound.get(stream.inboundKey) ?? 1) - 1)
    }
    if (stream.closed.size === 2) connection.streams.delete(stream)
    const { inbound, outbound } = lanesOf(stream, side)
    return Effect.flatMap(STM.commit(TRef.get(outbound.status)), (status) =>
      Exit.isSuccess(exit) && status._tag !== "Open"
        ? STM.commit(abortLane(inbound, `${outbound.from} closed the stream`))
        : resetStream(
          network,
          stream,
          Exit.isSuccess(exit)
            ? `${outbound.from} closed the stream without ending it`
            : `${outbound.from} closed the stream after ${Exit.isInterrupted(exit) ? "an interruption" : "a failure"}`
        ))
  })

const duplex = (network: Network, stream: StreamState, side: Side): Transport.Duplex => {
  const { inbound, outbound } = lanesOf(stream, side)
  return {
    protocol: stream.protocol,
    remote: outbound.to,
    remoteAddress: `${ADDRESS_PREFIX}${outbound.to}`,
    source: read(stream, inbound),
    write: write(network, stream, outbound),
    end: end(network, outbound),
    reset: resetStream(network, stream, `${outbound.from} reset the stream`)
  }
}

// ---------------------------------------------------------------------------
// Connections

const unreachable = (network: Network, node: Node, target: string): Option.Option<Transport.TransportError> => {
  const context = { peer: target }
  if (!network.open) return Option.some(failure("Closed", "the memory network is closed", context))
  if (!node.alive) return Option.some(failure("Closed", `the transport of ${node.id} is stopped`, context))
  if (target === node.id) return Option.some(failure("Refused", `${node.id} cannot connect to itself`, context))
  const remote = network.peers.get(target)
  if (remote === undefined || !remote.alive) {
    return Option.some(failure("Unreachable", `no peer ${target} is registered on the memory network`, context))
  }
  const split = network.partitions.some(([a, b]) => (a.has(node.id) && b.has(target)) || (b.has(node.id) && a.has(target)))
  return split
    ? Option.some(failure("Unreachable", `${node.id} and ${target} are partitioned from each other`, context))
    : Option.none()
}

const connectTo = (network: Network, node: Node, target: string): Effect.Effect<Connection, Transport.TransportError> =>
  Effect.gen(function*() {
    const existing = node.connections.get(target)
    if (existing !== undefined) return existing
    const refusal = unreachable(network, node, target)
    if (Option.isSome(refusal)) return yield* refusal.value
    const scope = yield* Scope.fork(network.scope, ExecutionStrategy.sequential)
    const fibers = yield* Scope.extend(FiberSet.make<void, never>(), scope)
    // the state may have changed while the scope was made: check again, then register at once
    return yield* Effect.suspend(() => {
      const raced = node.connections.get(target)
      if (raced !== undefined) return Effect.as(Scope.close(scope, Exit.void), raced)
      const refused = unreachable(network, node, target)
      if (Option.isSome(refused)) return Effect.zipRight(Scope.close(scope, Exit.void), Effect.fail(refused.value))
      const remote = network.peers.get(target)!
      const connection: Connection = {
        ends: [node, remote],
        scope,
        fibers,
        streams: new Set(),
        inbound: new Map(),
        closed: false
      }
      node.connections.set(remote.id, connection)
      remote.connections.set(node.id, connection)
      network.connections.add(connection)
      return Effect.all([
        PubSub.publish(node.events, { _tag: "Connected", peer: remote.id, address: `${ADDRESS_PREFIX}${remote.id}` }),
        PubSub.publish(remote.events, { _tag: "Connected", peer: node.id }),
        record(network, (at) => ({ _tag: "Connected", peers: [node.id, remote.id], at }))
      ]).pipe(Effect.as(connection))
    })
  })

/** Drops a connection: resets its streams, interrupts its handlers (waiting for their finalizers), then tells both ends. */
const drop = (network: Network, connection: Connection, detail: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (connection.closed) return Effect.void
    connection.closed = true
    network.connections.delete(connection)
    const [x, y] = connection.ends
    if (x.connections.get(y.id) === connection) x.connections.delete(y.id)
    if (y.connections.get(x.id) === connection) y.connections.delete(x.id)
    return Effect.forEach(connection.streams, (stream) => resetStream(network, stream, detail), { discard: true }).pipe(
      Effect.zipRight(Scope.close(connection.scope, Exit.void)),
      Effect.zipRight(Effect.all([
        x.alive ? PubSub.publish(x.events, { _tag: "Disconnected", peer: y.id }) : Effect.void,
        y.alive ? PubSub.publish(y.events, { _tag: "Disconnected", peer: x.id }) : Effect.void,
        record(network, (at) => ({ _tag: "Disconnected", peers: [x.id, y.id], detail, at }))
      ])),
      Effect.asVoid,
      Effect.uninterruptible
    )
  })

/**
 * Drops a connection from a fiber of the network's, so that a handler of
 * that very connection can drop it without waiting on its own interruption.
 */
const dropDetached = (network: Network, connection: Connection, detail: string): Effect.Effect<void> =>
  Effect.suspend(() =>
    network.open && !connection.closed
      ? Effect.flatMap(Effect.forkIn(drop(network, connection, detail), network.scope), Fiber.join)
      : Effect.void
  )

/** Forks into the connection's fibers; interruptible even if `runtime` was captured in an uninterruptible region. */
const runIn = (connection: Connection, runtime: Runtime.Runtime<never>, effect: Effect.Effect<void>) =>
  Effect.sync(() => FiberSet.unsafeAdd(connection.fibers, Runtime.runFork(runtime)(Effect.interruptible(effect))))

const runHandler = (network: Network, stream: StreamState, registration: Registration): Effect.Effect<void> =>
  Effect.scoped(Effect.gen(function*() {
    yield* Effect.addFinalizer((exit) => closeSide(network, stream, "handler", exit))
    yield* registration.handler(duplex(network, stream, "handler"))
  })).pipe(
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning("a stream handler failed", cause)
    ),
    Effect.annotateLogs({ protocol: stream.protocol, peer: stream.forward.from })
  )

const open = (network: Network, node: Node, peer: Transport.PeerId, protocol: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const connection = yield* connectTo(network, node, peer)
      const remote = other(connection, node)
      const id = network.nextStream++
      const stream: StreamState = {
        id,
        protocol,
        connection,
        forward: yield* makeLane(network, id, node.id, remote.id),
        backward: yield* makeLane(network, id, remote.id, node.id),
        inboundKey: `${remote.id} ${protocol}`,
        closed: new Set()
      }
      const context = { peer, protocol }
      const registration = yield* Effect.suspend(() => {
        if (connection.closed) return Effect.fail(failure("Reset", `the connection to ${peer} dropped while opening`, context))
        const registration = remote.handlers.get(protocol)
        if (registration === undefined) {
          return Effect.fail(failure("UnsupportedProtocol", `${peer} has no handler for ${protocol}`, context))
        }
        const inbound = connection.inbound.get(stream.inboundKey) ?? 0
        if (inbound >= registration.maxInboundStreams) {
          return Effect.fail(failure("Refused", `${peer} already handles ${inbound} streams of ${protocol} from ${node.id}, its limit`, context))
        }
        connection.inbound.set(stream.inboundKey, inbound + 1)
        connection.streams.add(stream)
        return Effect.succeed(registration)
      })
      yield* runIn(connection, network.runtime, deliver(network, stream, stream.forward))
      yield* runIn(connection, network.runtime, deliver(network, stream, stream.backward))
      yield* runIn(connection, registration.runtime, runHandler(network, stream, registration))
      return stream
    }),
    (stream, exit) => closeSide(network, stream, "opener", exit)
  ).pipe(Effect.map((stream) => duplex(network, stream, "opener")))

// ---------------------------------------------------------------------------
// Peers

const crash = (network: Network, node: Node, detail: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (!node.alive) return Effect.void
    node.alive = false
    if (network.peers.get(node.id) === node) network.peers.delete(node.id)
    node.handlers.clear()
    return Effect.forEach([...node.connections.values()], (connection) => drop(network, connection, detail), { discard: true }).pipe(
      Effect.zipRight(PubSub.shutdown(node.events))
    )
  })

const closed = (node: Node) => failure("Closed", `the transport of ${node.id} is stopped`)

const service = (network: Network, node: Node): Transport.Service => ({
  peerId: node.id,
  addresses: Effect.sync(() => node.alive ? [`${ADDRESS_PREFIX}${node.id}`] : []),
  handle: (protocol, handler, options) =>
    Effect.acquireRelease(
      Effect.flatMap(Effect.runtime<never>(), (runtime) => {
        const context = { protocol }
        if (!node.alive) return Effect.fail(closed(node))
        const maxInboundStreams = options?.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS
        if (!Number.isInteger(maxInboundStreams) || maxInboundStreams < 1) {
          return Effect.fail(failure("Refused", `maxInboundStreams must be a positive integer, not ${maxInboundStreams}`, context))
        }
        if (node.handlers.has(protocol)) {
          return Effect.fail(failure("Refused", `${node.id} already has a handler for ${protocol}`, context))
        }
        const registration: Registration = { handler, maxInboundStreams, runtime }
        node.handlers.set(protocol, registration)
        return Effect.succeed(registration)
      }),
      (registration) =>
        Effect.sync(() => {
          if (node.handlers.get(protocol) === registration) node.handlers.delete(protocol)
        })
    ).pipe(Effect.asVoid),
  connect: (address) =>
    Effect.suspend(() => {
      if (!node.alive) return Effect.fail(closed(node))
      if (!address.startsWith(ADDRESS_PREFIX)) {
        return Effect.fail(failure("Unreachable", `${address} is not a memory address (memory://<peerId>)`))
      }
      return connectTo(network, node, address.slice(ADDRESS_PREFIX.length)).pipe(Effect.map((connection) => other(connection, node).id))
    }),
  open: (peer, protocol) => open(network, node, peer, protocol),
  disconnect: (peer) =>
    Effect.suspend(() => {
      const connection = node.connections.get(peer)
      return connection === undefined ? Effect.void : dropDetached(network, connection, `${node.id} closed the connection`)
    }),
  connections: Effect.sync(() => [...node.connections.values()].map((connection) => other(connection, node).id)),
  events: Stream.fromPubSub(node.events),
  subscribe: Effect.map(PubSub.subscribe(node.events), (queue) => Stream.fromQueue(queue))
})

const register = (network: Network, peerId: string) =>
  Effect.gen(function*() {
    const id = yield* Either.mapLeft(
      decodePeerId(peerId),
      (error) => failure("Refused", `invalid peer id: ${ParseError.describe(error)}`, { peer: peerId })
    )
    const events = yield* PubSub.unbounded<Transport.TransportEvent>()
    return yield* Effect.suspend(() => {
      if (!network.open) return Effect.fail(failure("Closed", "the memory network is closed", { peer: id }))
      if (network.peers.get(id)?.alive === true) {
        return Effect.fail(failure("Refused", `a peer ${id} is already registered on the memory network`, { peer: id }))
      }
      const node: Node = { id, events, handlers: new Map(), connections: new Map(), alive: true }
      network.peers.set(id, node)
      const discovered = { _tag: "Discovered", peer: id, addresses: [`${ADDRESS_PREFIX}${id}`], source: "discovery" } as const
      return Effect.forEach(
        network.peers.values(),
        (peer) => peer === node || Option.isSome(unreachable(network, peer, id)) ? Effect.void : PubSub.publish(peer.events, discovered),
        { discard: true }
      ).pipe(Effect.as(node))
    })
  })

// ---------------------------------------------------------------------------
// The network

const check = (options: MemoryTransport.Options): Option.Option<string> => {
  const { latency, resetProbability = 0, seed, windowBytes = DEFAULT_WINDOW_BYTES } = options
  if (!Number.isFinite(seed)) return Option.some(`seed must be a finite number, not ${seed}`)
  if (latency !== undefined && !(Number.isInteger(latency.minMillis) && latency.minMillis >= 0 && Number.isInteger(latency.maxMillis) && latency.maxMillis >= latency.minMillis)) {
    return Option.some(`latency must be whole milliseconds with 0 <= minMillis <= maxMillis, not ${JSON.stringify(latency)}`)
  }
  if (!(resetProbability >= 0 && resetProbability <= 1)) return Option.some(`resetProbability must be in [0, 1], not ${resetProbability}`)
  if (!(Number.isInteger(windowBytes) && windowBytes >= 1)) return Option.some(`windowBytes must be a positive integer, not ${windowBytes}`)
  return Option.none()
}

/** @internal */
export const make = (options: MemoryTransport.Options): Effect.Effect<MemoryTransport.MemoryNetwork, never, Scope.Scope> =>
  Effect.gen(function*() {
    const invalid = check(options)
    if (Option.isSome(invalid)) return yield* Effect.die(new Cause.IllegalArgumentException(invalid.value))
    const network: Network = {
      options,
      windowBytes: options.windowBytes ?? DEFAULT_WINDOW_BYTES,
      // connections live in a child scope, closed only after the finalizer below has dropped them in order
      scope: yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential),
      runtime: yield* Effect.runtime<never>(),
      trace: yield* PubSub.unbounded<MemoryTransport.NetworkEvent>(),
      peers: new Map(),
      connections: new Set(),
      partitions: [],
      nextStream: 0,
      open: true
    }
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        network.open = false
        return Effect.forEach([...network.peers.values()], (node) => crash(network, node, "the memory network closed"), { discard: true }).pipe(
          Effect.zipRight(PubSub.shutdown(network.trace))
        )
      })
    )
    const memoryNetwork: MemoryTransport.MemoryNetwork = {
      seed: options.seed,
      transport: (peerId) =>
        Effect.acquireRelease(register(network, peerId), (node) => crash(network, node, `peer ${node.id} stopped`)).pipe(
          Effect.map((node) => service(network, node))
        ),
      partition: (a, b) =>
        Effect.suspend(() => {
          const groups = [new Set(a), new Set(b)] as const
          network.partitions.push(groups)
          const split = [...network.connections].filter(({ ends: [x, y] }) =>
            (groups[0].has(x.id) && groups[1].has(y.id)) || (groups[1].has(x.id) && groups[0].has(y.id))
          )
          const detail = `the network partitioned ${[...groups[0]].join(", ")} from ${[...groups[1]].join(", ")}`
          return Effect.forEach(split, (connection) => dropDetached(network, connection, detail), { discard: true })
        }),
      heal: Effect.sync(() => {
        network.partitions = []
      }),
      disconnect: (a, b) =>
        Effect.suspend(() => {
          const connection = network.peers.get(a)?.connections.get(b)
          return connection === undefined
            ? Effect.void
            : dropDetached(network, connection, `the network dropped the connection between ${a} and ${b}`)
        }),
      peers: Effect.sync(() => [...network.peers.values()].map((node) => node.id)),
      subscribe: PubSub.subscribe(network.trace)
    }
    return memoryNetwork
  })
