import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as MemoryTransport from "./MemoryTransport.js"
import * as TransportSuite from "./testing/TransportSuite.js"
import type * as Transport from "./Transport.js"

const pairOn = (options: MemoryTransport.Options) =>
  Effect.gen(function*() {
    const network = yield* MemoryTransport.make(options)
    const a = yield* network.transport("alice")
    const bScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const b = yield* Scope.extend(network.transport("bob"), bScope)
    return { a, b, crashB: Scope.close(bScope, Exit.void) }
  })

TransportSuite.suite("MemoryTransport", pairOn({ seed: 1 }))
TransportSuite.suite("MemoryTransport with latency", pairOn({ seed: 2, latency: { minMillis: 0, maxMillis: 3 } }))

const ECHO = "/weft-test/echo/1.0.0"
const HOLD = "/weft-test/hold/1.0.0"
const SINK = "/weft-test/sink/1.0.0"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const text = (chunks: Iterable<Uint8Array>) => decoder.decode(Buffer.concat([...chunks]))

const readText = (stream: Transport.Duplex) => Effect.map(Stream.runCollect(stream.source), text)

/** The transport's events from now on, collected. */
const listen = (transport: Transport.Service) =>
  Effect.gen(function*() {
    const seen = yield* Ref.make<ReadonlyArray<Transport.TransportEvent>>([])
    const fiber = yield* transport.events.pipe(
      Stream.runForEach((event) => Ref.update(seen, (events) => [...events, event])),
      Effect.forkScoped
    )
    while ((yield* Fiber.status(fiber))._tag === "Running") yield* Effect.yieldNow()
    return seen
  })

/** Lets every fiber run until it waits (the TestClock waits for them), without moving time. */
const quiesce = TestClock.adjust(0)

const expectFailure = (outcome: Either.Either<unknown, Transport.TransportError>, reason: Transport.TransportError["reason"]) => {
  expect(Either.isLeft(outcome), "expected a failure").toBe(true)
  if (Either.isLeft(outcome)) expect(outcome.left.reason).toBe(reason)
  return Either.isLeft(outcome) ? outcome.left : undefined
}

/**
 * Every peer opens an echo stream to every other, sends ten chunks and reads
 * the echo, under latency and injected resets; returns what each stream saw
 * and the network's trace (times relative to the start).
 */
const simulate = (seed: number) =>
  Effect.scoped(Effect.gen(function*() {
    const network = yield* MemoryTransport.make({ seed, latency: { minMillis: 1, maxMillis: 40 }, resetProbability: 0.04 })
    const trace = yield* network.subscribe
    const names = ["p0", "p1", "p2"]
    const peers = yield* Effect.forEach(names, (name) => network.transport(name))
    yield* Effect.forEach(peers, (peer) => peer.handle(ECHO, TransportSuite.echo))
    const start = yield* Clock.currentTimeMillis
    const exchange = (from: Transport.Service, to: Transport.Service) =>
      Effect.scoped(Effect.gen(function*() {
        const stream = yield* from.open(to.peerId, ECHO)
        for (let i = 0; i < 10; i++) yield* stream.write(encoder.encode(`${from.peerId}>${to.peerId}#${i};`))
        yield* stream.end
        return yield* readText(stream)
      })).pipe(Effect.either, Effect.map(Either.mapLeft((error) => error.detail)))
    const pairs = peers.flatMap((from) => peers.filter((to) => to !== from).map((to) => [from, to] as const))
    const work = yield* Effect.fork(Effect.forEach(pairs, ([from, to]) => exchange(from, to), { concurrency: "unbounded" }))
    while (Option.isNone(yield* Fiber.poll(work))) yield* TestClock.adjust("20 millis")
    const outcomes = yield* Fiber.join(work)
    const events = Chunk.toReadonlyArray(yield* Queue.takeAll(trace)).map((event) => ({ ...event, at: event.at - start }))
    return { outcomes, events }
  }))

describe("MemoryTransport faults", () => {
  it.scoped("the same seed replays the same deliveries and resets; another seed does not", () =>
    Effect.gen(function*() {
      const first = yield* simulate(7)
      const again = yield* simulate(7)
      const other = yield* simulate(8)
      // the run is worth comparing: data moved, and faults struck some streams but not all
      expect(first.events.filter((event) => event._tag === "Delivered").length).toBeGreaterThan(20)
      const resets = first.events.filter((event) => event._tag === "Reset")
      expect(resets.length).toBeGreaterThan(0)
      expect(resets.every((event) => event._tag === "Reset" && event.detail.includes("injected fault"))).toBe(true)
      expect(first.outcomes.some(Either.isLeft)).toBe(true)
      expect(first.outcomes.some(Either.isRight)).toBe(true)
      for (const outcome of first.outcomes) {
        if (Either.isRight(outcome)) expect(outcome.right).toMatch(/^(p\d>p\d#\d;){10}$/)
      }
      expect(again).toEqual(first)
      expect(other.events).not.toEqual(first.events)
    }))

  it.scoped("latency runs on the clock: a chunk arrives only once the TestClock reaches its due time", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 3, latency: { minMillis: 100, maxMillis: 100 } })
      const a = yield* network.transport("alice")
      const b = yield* network.transport("bob")
      const first = yield* Deferred.make<string>()
      yield* b.handle(SINK, (stream) =>
        stream.source.pipe(Stream.runHead, Effect.flatMap((head) => Deferred.succeed(first, decoder.decode(Option.getOrThrow(head))))))
      const stream = yield* a.open(b.peerId, SINK)
      yield* stream.write(encoder.encode("hello"))
      yield* TestClock.adjust("99 millis")
      expect(yield* Deferred.isDone(first)).toBe(false)
      yield* TestClock.adjust("1 millis")
      expect(yield* Deferred.await(first)).toBe("hello")
    }))

  it.scoped("random latency keeps each stream's bytes in order", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 11, latency: { minMillis: 1, maxMillis: 200 } })
      const trace = yield* network.subscribe
      const a = yield* network.transport("alice")
      const b = yield* network.transport("bob")
      const received = yield* Deferred.make<string>()
      yield* b.handle(SINK, (stream) => readText(stream).pipe(Effect.flatMap((all) => Deferred.succeed(received, all))))
      const stream = yield* a.open(b.peerId, SINK)
      const sent = Array.from({ length: 50 }, (_, i) => `${i};`)
      for (const chunk of sent) yield* stream.write(encoder.encode(chunk))
      yield* stream.end
      yield* TestClock.adjust("1 second")
      expect(yield* Deferred.await(received)).toBe(sent.join(""))
      // written at one instant with different latencies, yet delivered in order over time
      const times = Chunk.toReadonlyArray(yield* Queue.takeAll(trace)).flatMap((event) => event._tag === "Delivered" ? [event.at] : [])
      expect(times).toHaveLength(51)
      expect(new Set(times).size).toBeGreaterThan(1)
    }))

  it.scoped("a partition drops the connections across it and refuses connects until healed", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 4 })
      const a = yield* network.transport("alice")
      const b = yield* network.transport("bob")
      const c = yield* network.transport("carol")
      const hold = yield* TransportSuite.holding
      yield* b.handle(HOLD, hold.handler)
      yield* b.handle(ECHO, TransportSuite.echo)
      yield* c.handle(ECHO, TransportSuite.echo)
      const seenByB = yield* listen(b)
      const stream = yield* a.open(b.peerId, HOLD) // connects on demand
      yield* Deferred.await(hold.started)
      expect(yield* a.connect("memory://carol")).toBe("carol")
      const reading = yield* Effect.fork(Effect.either(Stream.runDrain(stream.source)))

      yield* network.partition(["alice"], ["bob"])
      const reset = expectFailure(yield* Fiber.join(reading), "Reset")
      expect(reset?.detail).toContain("partitioned")
      expect(Exit.isInterrupted(yield* Deferred.await(hold.finalized))).toBe(true)
      expect(yield* a.connections).toEqual(["carol"])
      yield* quiesce
      expect(yield* Ref.get(seenByB)).toContainEqual({ _tag: "Disconnected", peer: "alice" })
      expectFailure(yield* Effect.either(a.connect("memory://bob")), "Unreachable")
      expectFailure(yield* Effect.either(Effect.scoped(a.open(b.peerId, ECHO))), "Unreachable")
      expectFailure(yield* Effect.either(b.connect("memory://alice")), "Unreachable")
      // the rest of the network is untouched
      expect(yield* b.connect("memory://carol")).toBe("carol")
      const toCarol = yield* a.open(c.peerId, ECHO)
      yield* toCarol.write(encoder.encode("still up"))
      yield* toCarol.end
      expect(yield* readText(toCarol)).toBe("still up")

      yield* network.heal
      expect(yield* a.connect("memory://bob")).toBe("bob")
    }))

  it.scoped("the network can drop one connection mid-stream; the peers may reconnect", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 5 })
      const a = yield* network.transport("alice")
      const b = yield* network.transport("bob")
      const finalized = yield* Deferred.make<Exit.Exit<unknown, unknown>>()
      yield* b.handle(ECHO, (stream) =>
        Effect.zipRight(Effect.addFinalizer((exit) => Deferred.succeed(finalized, exit)), TransportSuite.echo(stream)))
      const seenByA = yield* listen(a)
      const stream = yield* a.open(b.peerId, ECHO)
      yield* stream.write(encoder.encode("one"))
      const pull = yield* Stream.toPull(stream.source)
      expect(text(yield* pull)).toBe("one")
      // connecting again reuses the connection: no second Connected
      expect(yield* a.connect("memory://bob")).toBe("bob")

      yield* network.disconnect("alice", "bob")
      const outcome = yield* Effect.either(pull)
      expect(Either.isLeft(outcome) && Option.getOrUndefined(outcome.left)?.reason).toBe("Reset")
      expectFailure(yield* Effect.either(stream.write(encoder.encode("two"))), "Reset")
      expect(Exit.isInterrupted(yield* Deferred.await(finalized))).toBe(true)
      yield* quiesce
      expect(yield* Ref.get(seenByA)).toEqual([{ _tag: "Connected", peer: "bob", address: "memory://bob" }, { _tag: "Disconnected", peer: "bob" }])

      expect(yield* a.connect("memory://bob")).toBe("bob")
    }))

  it.scoped("a crashed peer's streams reset and its handlers stop; it can restart under the same id", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 6 })
      const a = yield* network.transport("alice")
      const bScope = yield* Scope.make()
      const b = yield* Scope.extend(network.transport("bob"), bScope)
      const onB = yield* TransportSuite.holding
      const onA = yield* TransportSuite.holding
      yield* b.handle(HOLD, onB.handler)
      yield* a.handle(HOLD, onA.handler)
      const seenByA = yield* listen(a)
      const toB = yield* a.open(b.peerId, HOLD)
      yield* Scope.extend(b.open(a.peerId, HOLD), bScope)
      yield* Deferred.await(onB.started)
      yield* Deferred.await(onA.started)
      const reading = yield* Effect.fork(Effect.either(Stream.runDrain(toB.source)))

      yield* Scope.close(bScope, Exit.void)
      const reset = expectFailure(yield* Fiber.join(reading), "Reset")
      expect(reset?.detail).toBe("peer bob stopped")
      // bob's own handlers, and alice's handler serving bob, are interrupted
      expect(Exit.isInterrupted(yield* Deferred.await(onB.finalized))).toBe(true)
      expect(Exit.isInterrupted(yield* Deferred.await(onA.finalized))).toBe(true)
      yield* quiesce
      expect(yield* Ref.get(seenByA)).toContainEqual({ _tag: "Disconnected", peer: "bob" })
      expect(yield* a.connections).toEqual([])
      expect(yield* network.peers).toEqual(["alice"])
      expectFailure(yield* Effect.either(a.connect("memory://bob")), "Unreachable")
      expectFailure(yield* Effect.either(b.connect("memory://alice")), "Closed")
      expect(yield* b.addresses).toEqual([])

      const restarted = yield* network.transport("bob")
      yield* quiesce
      expect(yield* Ref.get(seenByA)).toContainEqual({ _tag: "Discovered", peer: "bob", addresses: ["memory://bob"], source: "discovery" })
      yield* restarted.handle(ECHO, TransportSuite.echo)
      const again = yield* a.open(restarted.peerId, ECHO)
      yield* again.write(encoder.encode("back"))
      yield* again.end
      expect(yield* readText(again)).toBe("back")
    }))

  it.scoped("a lane holds at most windowBytes unread; a larger write completes as the reader reads", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 9, windowBytes: 1000 })
      const a = yield* network.transport("alice")
      const b = yield* network.transport("bob")
      const release = yield* Deferred.make<void>()
      const total = yield* Deferred.make<number>()
      yield* b.handle(SINK, (stream) =>
        Deferred.await(release).pipe(
          Effect.zipRight(Stream.runFold(stream.source, 0, (n, chunk) => n + chunk.length)),
          Effect.flatMap((n) => Deferred.succeed(total, n))
        ))
      const stream = yield* a.open(b.peerId, SINK)
      const written = yield* Ref.make(0)
      const writer = yield* Effect.fork(Effect.gen(function*() {
        for (let i = 0; i < 10; i++) {
          yield* stream.write(new Uint8Array(300))
          yield* Ref.update(written, (n) => n + 300)
        }
        yield* stream.write(new Uint8Array(5000))
        yield* stream.end
      }))
      yield* quiesce
      expect(yield* Ref.get(written)).toBe(900)
      expect(Option.isNone(yield* Fiber.poll(writer))).toBe(true)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(writer)
      expect(yield* Deferred.await(total)).toBe(8000)
    }))

  it.scoped("closing the opener's scope after end still delivers everything; without end it resets", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 10 })
      const a = yield* network.transport("alice")
      const b = yield* network.transport("bob")
      const release = yield* Deferred.make<void>()
      const outcomes = yield* Queue.unbounded<Either.Either<string, Transport.TransportError>>()
      yield* b.handle(SINK, (stream) =>
        Deferred.await(release).pipe(Effect.zipRight(Effect.either(readText(stream))), Effect.flatMap((outcome) => Queue.offer(outcomes, outcome))))
      // the handler reads only after the opener's scope closed
      yield* Effect.scoped(Effect.gen(function*() {
        const stream = yield* a.open(b.peerId, SINK)
        yield* stream.write(encoder.encode("ended"))
        yield* stream.end
      }))
      yield* Deferred.succeed(release, undefined)
      expect(yield* Queue.take(outcomes)).toEqual(Either.right("ended"))
      yield* Effect.scoped(Effect.gen(function*() {
        const stream = yield* a.open(b.peerId, SINK)
        yield* stream.write(encoder.encode("abandoned"))
      }))
      const reset = expectFailure(yield* Queue.take(outcomes), "Reset")
      expect(reset?.detail).toBe("alice closed the stream without ending it")
    }))

  it.scoped("a failing handler resets its stream; a finished one frees its inbound slot", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 12 })
      const a = yield* network.transport("alice")
      const b = yield* network.transport("bob")
      yield* b.handle(SINK, () => Effect.fail("no"))
      yield* b.handle(ECHO, TransportSuite.echo, { maxInboundStreams: 1 })
      const failing = yield* a.open(b.peerId, SINK)
      expectFailure(yield* Effect.either(Stream.runDrain(failing.source)), "Reset")
      for (const word of ["first", "second", "third"]) {
        const stream = yield* Effect.scoped(Effect.gen(function*() {
          const stream = yield* a.open(b.peerId, ECHO)
          yield* stream.write(encoder.encode(word))
          yield* stream.end
          return yield* readText(stream)
        }))
        expect(stream).toBe(word)
      }
    }).pipe(Logger.withMinimumLogLevel(LogLevel.None)))

  it.scoped("refuses what it cannot do, with TransportError reasons", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 13 })
      const a = yield* network.transport("alice")
      yield* a.handle(ECHO, TransportSuite.echo)
      expectFailure(yield* Effect.either(a.connect("memory://alice")), "Refused")
      expectFailure(yield* Effect.either(a.connect("tcp://127.0.0.1:4001")), "Unreachable")
      expectFailure(yield* Effect.either(a.connect("memory://nobody")), "Unreachable")
      expectFailure(yield* Effect.either(Effect.scoped(a.open("nobody" as Transport.PeerId, ECHO))), "Unreachable")
      expectFailure(yield* Effect.either(network.transport("alice")), "Refused")
      expectFailure(yield* Effect.either(network.transport("not a peer id!")), "Refused")
      expectFailure(yield* Effect.either(a.handle(ECHO, TransportSuite.echo)), "Refused")
      expectFailure(yield* Effect.either(a.handle(SINK, TransportSuite.echo, { maxInboundStreams: 0 })), "Refused")
      expect(yield* a.addresses).toEqual(["memory://alice"])
    }))

  it.scoped("closing the network stops every peer on it", () =>
    Effect.gen(function*() {
      const networkScope = yield* Scope.make()
      const network = yield* Scope.extend(MemoryTransport.make({ seed: 14 }), networkScope)
      const a = yield* network.transport("alice")
      const b = yield* network.transport("bob")
      const hold = yield* TransportSuite.holding
      yield* b.handle(HOLD, hold.handler)
      const stream = yield* a.open(b.peerId, HOLD)
      yield* Deferred.await(hold.started)
      yield* Scope.close(networkScope, Exit.void)
      const reset = expectFailure(yield* Effect.either(Stream.runDrain(stream.source)), "Reset")
      expect(reset?.detail).toBe("the memory network closed")
      expect(Exit.isInterrupted(yield* Deferred.await(hold.finalized))).toBe(true)
      expectFailure(yield* Effect.either(a.connect("memory://bob")), "Closed")
    }))

  it.effect("invalid options are defects", () =>
    Effect.gen(function*() {
      for (const options of [
        { seed: 1, latency: { minMillis: 5, maxMillis: 1 } },
        { seed: 1, resetProbability: 1.5 },
        { seed: 1, windowBytes: 0 }
      ]) {
        const exit = yield* Effect.exit(Effect.scoped(MemoryTransport.make(options)))
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      }
    }))
})
