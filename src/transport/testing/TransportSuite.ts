/**
 * The conformance suite of `Transport`: what every implementation must do,
 * checked through the service contract alone.
 *
 * ```ts
 * // MemoryTransport.test.ts
 * TransportSuite.suite("MemoryTransport", Effect.gen(function*() {
 *   const network = yield* MemoryTransport.make({ seed: 1 })
 *   const a = yield* network.transport("alice")
 *   const bScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
 *   const b = yield* Scope.extend(network.transport("bob"), bScope)
 *   return { a, b, crashB: Scope.close(bScope, Exit.void) }
 * }))
 * ```
 *
 * Each case makes a fresh pair in its own scope and runs on the live clock
 * (real transports time out on real time). Nothing here depends on an
 * implementation: peers meet through `b.addresses`, and chunk boundaries are
 * never assumed to survive the trip.
 *
 * @since 0.1.0
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { concat } from "uint8arrays"
import * as PeerAddress from "../PeerAddress.js"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Transport from "../Transport.js"

/** Two transports that can reach each other, made in the test's scope. */
export interface Pair {
  readonly a: Transport.Service
  readonly b: Transport.Service
  /**
   * Stops `b` abruptly, as a crash would: typically, closes the scope its
   * transport was made in (make `b` in a child scope of the pair's).
   */
  readonly crashB: Effect.Effect<void>
}

/** Sizes and bounds of the suite. */
export interface Options {
  /** Bytes of the large echo round trip (default 8 MiB, written in 64 KiB chunks). */
  readonly largePayloadBytes?: number
  /**
   * Bytes a writer offers to a peer that does not read (default 16 MiB). It
   * must exceed everything the implementation may buffer on the way.
   */
  readonly backpressureBytes?: number
  /** How long one awaited step may take before the case fails (default 5 s). */
  readonly stepTimeout?: Duration.DurationInput
  /** Vitest's timeout of one case, in milliseconds (default 30 000). */
  readonly testTimeout?: number
}

/** Protocol ids the suite registers. */
export const protocols = {
  echo: "/weft-test/echo/1.0.0",
  sink: "/weft-test/sink/1.0.0",
  hold: "/weft-test/hold/1.0.0",
  count: "/weft-test/count/1.0.0",
  missing: "/weft-test/missing/1.0.0"
} as const

const CHUNK_BYTES = 64 * 1024

/** Writes back what it reads, then ends. */
export const echo: Transport.Handler = (stream) =>
  stream.source.pipe(Stream.runForEach(stream.write), Effect.zipRight(stream.end))

const encoder = new TextEncoder()
const decoder = new TextDecoder()


/** A handler that signals it started (with its stream), records how it ended, and then waits forever. */
export const holding = Effect.gen(function*() {
  const started = yield* Deferred.make<Transport.Duplex>()
  const finalized = yield* Deferred.make<Exit.Exit<unknown, unknown>>()
  const handler: Transport.Handler = (stream) =>
    Effect.gen(function*() {
      yield* Effect.addFinalizer((exit) => Deferred.succeed(finalized, exit))
      yield* Deferred.succeed(started, stream)
      return yield* Effect.never
    })
  return { handler, started, finalized }
})

/** Bytes that differ from chunk to chunk, so that a lost, repeated or reordered chunk shows. */
export const pattern = (size: number, salt: number): Uint8Array => {
  const out = new Uint8Array(size)
  let x = (salt * 2654435761) >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** Everything a stream delivers until it ends, as one byte array. */
export const readAll = (stream: Transport.Duplex) => Effect.map(Stream.runCollect(stream.source), (chunks) => concat([...chunks]))

const sameBytes = (actual: Uint8Array, expected: Uint8Array) => {
  expect(actual.length, "length").toBe(expected.length)
  // a compact report on megabytes: where the first difference is
  let firstDifference = -1
  for (let i = 0; i < expected.length && firstDifference < 0; i++) {
    if (actual[i] !== expected[i]) firstDifference = i
  }
  expect(firstDifference, "offset of the first differing byte").toBe(-1)
}

const expectTransportError = (
  outcome: Either.Either<unknown, unknown>,
  reason?: Transport.TransportError["reason"]
) => {
  expect(Either.isLeft(outcome), "expected a failure").toBe(true)
  const error = Either.isLeft(outcome) ? outcome.left : undefined
  expect(error).toBeInstanceOf(Transport.TransportError)
  if (reason !== undefined) expect((error as Transport.TransportError).reason).toBe(reason)
}

/** Defines the conformance suite for the transports `makePair` makes. */
export const suite = (name: string, makePair: Effect.Effect<Pair, unknown, Scope.Scope>, options: Options = {}): void => {
  const largePayloadBytes = options.largePayloadBytes ?? 8 * 1024 * 1024
  const backpressureBytes = options.backpressureBytes ?? 16 * 1024 * 1024
  const stepTimeout = options.stepTimeout ?? Duration.seconds(5)
  const testTimeout = options.testTimeout ?? 30_000

  /** Fails the case with `what` if `effect` takes longer than a step may. */
  const step = (what: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.timeoutFail(effect, { duration: stepTimeout, onTimeout: () => new Error(`timed out: ${what}`) })

  /** Connects `a` to `b` through the first of `b`'s addresses that works. */
  const connect = (pair: Pair) =>
    Effect.gen(function*() {
      const addresses = yield* pair.b.addresses
      expect(addresses.length, "b has an address").toBeGreaterThan(0)
      return yield* Effect.firstSuccessOf(addresses.map((address) => pair.a.connect(address)))
    }).pipe(step("connecting a to b"))

  /** Records a transport's events from now on; the result waits for one that matches. */
  const listen = (transport: Transport.Service) =>
    Effect.gen(function*() {
      const seen = yield* SubscriptionRef.make<ReadonlyArray<Transport.TransportEvent>>([])
      const fiber = yield* transport.events.pipe(
        Stream.runForEach((event) => SubscriptionRef.update(seen, (events) => [...events, event])),
        Effect.forkScoped
      )
      // a fiber reported suspended has run up to its first wait: it has subscribed
      for (let i = 0; i < 1000 && (yield* Fiber.status(fiber))._tag === "Running"; i++) yield* Effect.yieldNow()
      return (what: string, predicate: (event: Transport.TransportEvent) => boolean) =>
        seen.changes.pipe(Stream.filter((events) => events.some(predicate)), Stream.runHead, Effect.asVoid, step(what))
    })

  /** Waits until `condition` holds, polling. */
  const eventually = (what: string, condition: Effect.Effect<boolean>) =>
    Effect.repeat(condition, { until: (ok) => ok, schedule: Schedule.spaced("10 millis") }).pipe(step(what))

  /** Waits until a counter stops moving; returns where it stopped. */
  const settle = (counter: Ref.Ref<number>) =>
    Effect.gen(function*() {
      let last = -1
      let still = 0
      for (let i = 0; i < 250 && still < 5; i++) {
        yield* Effect.sleep("20 millis")
        const now = yield* Ref.get(counter)
        still = now === last ? still + 1 : 0
        last = now
      }
      return last
    })

  /** Writes `total` bytes in 64 KiB chunks, counting what each completed write handed over. */
  const writeCounting = (stream: Transport.Duplex, total: number, written: Ref.Ref<number>) =>
    Effect.gen(function*() {
      for (let offset = 0; offset < total; offset += CHUNK_BYTES) {
        const size = Math.min(CHUNK_BYTES, total - offset)
        yield* stream.write(pattern(size, offset))
        yield* Ref.update(written, (n) => n + size)
      }
    })

  const roundTrip = (pair: Pair, text: string) =>
    Effect.scoped(Effect.gen(function*() {
      const stream = yield* pair.a.open(pair.b.peerId, protocols.echo)
      yield* stream.write(encoder.encode(text))
      yield* stream.end
      return decoder.decode(yield* readAll(stream))
    })).pipe(step(`an echo round trip of ${JSON.stringify(text)}`))

  const test = (title: string, body: (pair: Pair) => Effect.Effect<void, unknown, Scope.Scope>) =>
    it.scopedLive(title, () => Effect.flatMap(makePair, body), testTimeout)

  describe(name, () => {
    test("connect succeeds with the remote's authenticated id, and both sides see Connected (the dialler with the address it dialled)", (pair) =>
      Effect.gen(function*() {
        const { a, b } = pair
        const seenByA = yield* listen(a)
        const seenByB = yield* listen(b)
        expect(yield* connect(pair)).toBe(b.peerId)
        const listening = (yield* b.addresses).map(PeerAddress.withoutPeer)
        yield* seenByA("Connected on a, at one of b's addresses", (event) =>
          event._tag === "Connected" && event.peer === b.peerId && listening.includes(PeerAddress.withoutPeer(event.address ?? "")))
        // b was dialled: it has no address of a's to tell
        yield* seenByB("Connected on b", (event) => event._tag === "Connected" && event.peer === a.peerId && event.address === undefined)
        expect(yield* a.connections).toContain(b.peerId)
        expect(yield* b.connections).toContain(a.peerId)
      }))

    test("an echo round trip returns every byte, in order", (pair) =>
      Effect.gen(function*() {
        yield* pair.b.handle(protocols.echo, echo)
        yield* connect(pair)
        const stream = yield* pair.a.open(pair.b.peerId, protocols.echo)
        expect(stream.remote).toBe(pair.b.peerId)
        expect(stream.protocol).toBe(protocols.echo)
        const chunks = Array.from({ length: 100 }, (_, i) => pattern(1 + (i * 37) % 500, i))
        for (const chunk of chunks) yield* stream.write(chunk)
        yield* stream.end
        sameBytes(yield* readAll(stream).pipe(step("reading the echo")), concat(chunks))
      }))

    test(`a large payload (${largePayloadBytes} bytes in 64 KiB chunks) arrives intact`, (pair) =>
      Effect.gen(function*() {
        yield* pair.b.handle(protocols.echo, echo)
        yield* connect(pair)
        const stream = yield* pair.a.open(pair.b.peerId, protocols.echo)
        const sent = pattern(largePayloadBytes, 7)
        // the echo answers while we write: read concurrently, or both sides' windows fill
        const writer = yield* Effect.forkScoped(Effect.gen(function*() {
          for (let offset = 0; offset < sent.length; offset += CHUNK_BYTES) {
            yield* stream.write(sent.slice(offset, offset + CHUNK_BYTES))
          }
          yield* stream.end
        }))
        const received = yield* readAll(stream).pipe(
          Effect.timeoutFail({ duration: Duration.times(Duration.decode(stepTimeout), 4), onTimeout: () => new Error("timed out: the large echo") })
        )
        yield* Fiber.join(writer)
        sameBytes(received, sent)
      }))

    test("opening a protocol the remote does not handle fails fast with UnsupportedProtocol", (pair) =>
      Effect.gen(function*() {
        yield* pair.b.handle(protocols.echo, echo)
        yield* connect(pair)
        const outcome = yield* pair.a.open(pair.b.peerId, protocols.missing).pipe(
          Effect.either,
          Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => new Error("open of an unhandled protocol hung") })
        )
        expectTransportError(outcome, "UnsupportedProtocol")
        // the connection survives the refusal
        expect(yield* roundTrip(pair, "still here")).toBe("still here")
      }))

    test("a handler is unregistered when its scope closes", (pair) =>
      Effect.gen(function*() {
        const registration = yield* Scope.make()
        yield* pair.b.handle(protocols.echo, echo).pipe(Scope.extend(registration))
        yield* connect(pair)
        expect(yield* roundTrip(pair, "ping")).toBe("ping")
        yield* Scope.close(registration, Exit.void)
        const outcome = yield* pair.a.open(pair.b.peerId, protocols.echo).pipe(Effect.either, step("open after unregistering"))
        expectTransportError(outcome, "UnsupportedProtocol")
        // and the protocol can be registered again
        yield* pair.b.handle(protocols.echo, echo)
        expect(yield* roundTrip(pair, "pong")).toBe("pong")
      }))

    test("end half-closes: the remote reads up to the end and can still answer", (pair) =>
      Effect.gen(function*() {
        yield* pair.b.handle(protocols.count, (stream) =>
          stream.source.pipe(
            Stream.runFold(0, (n, chunk) => n + chunk.length),
            Effect.flatMap((n) => stream.write(encoder.encode(`received ${n}`))),
            Effect.zipRight(stream.end)
          ))
        yield* connect(pair)
        const stream = yield* pair.a.open(pair.b.peerId, protocols.count)
        yield* stream.write(pattern(1000, 1))
        yield* stream.write(pattern(234, 2))
        yield* stream.end
        expectTransportError(yield* Effect.either(stream.write(pattern(10, 3))))
        expect(decoder.decode(yield* readAll(stream).pipe(step("reading the answer after our end")))).toBe("received 1234")
      }))

    test("reset makes the remote's source fail with Reset, and later writes fail", (pair) =>
      Effect.gen(function*() {
        const received = yield* Deferred.make<void>()
        const outcome = yield* Deferred.make<Either.Either<void, unknown>>()
        yield* pair.b.handle(protocols.sink, (stream) =>
          stream.source.pipe(
            Stream.tap(() => Deferred.succeed(received, undefined)),
            Stream.runDrain,
            Effect.either,
            Effect.flatMap((result) => Deferred.succeed(outcome, result))
          ))
        yield* connect(pair)
        const stream = yield* pair.a.open(pair.b.peerId, protocols.sink)
        yield* stream.write(pattern(100, 1))
        yield* Deferred.await(received).pipe(step("the handler receiving the first chunk"))
        yield* stream.reset
        expectTransportError(yield* Deferred.await(outcome).pipe(step("the handler seeing the reset")), "Reset")
        expectTransportError(yield* Effect.either(stream.write(pattern(100, 2))))
      }))

    test("a reset by the handler makes the opener's source fail with Reset", (pair) =>
      Effect.gen(function*() {
        yield* pair.b.handle(protocols.sink, (stream) =>
          stream.source.pipe(Stream.take(1), Stream.runDrain, Effect.zipRight(stream.reset)))
        yield* connect(pair)
        const stream = yield* pair.a.open(pair.b.peerId, protocols.sink)
        yield* stream.write(pattern(100, 1))
        expectTransportError(yield* Stream.runDrain(stream.source).pipe(Effect.either, step("the opener seeing the reset")), "Reset")
      }))

    test("a writer to a peer that does not read waits (backpressure) until the peer reads", (pair) =>
      Effect.gen(function*() {
        const release = yield* Deferred.make<void>()
        const total = yield* Deferred.make<number>()
        yield* pair.b.handle(protocols.sink, (stream) =>
          Deferred.await(release).pipe(
            Effect.zipRight(Stream.runFold(stream.source, 0, (n, chunk) => n + chunk.length)),
            Effect.flatMap((n) => Deferred.succeed(total, n))
          ))
        yield* connect(pair)
        const stream = yield* pair.a.open(pair.b.peerId, protocols.sink)
        const written = yield* Ref.make(0)
        const writer = yield* Effect.forkScoped(
          writeCounting(stream, backpressureBytes, written).pipe(Effect.zipRight(stream.end))
        )
        const stalledAt = yield* settle(written)
        expect(stalledAt, "the writer stalls before handing over everything").toBeLessThan(backpressureBytes)
        expect(Option.isNone(yield* Fiber.poll(writer)), "the writer is still waiting").toBe(true)
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(writer).pipe(step("the writer finishing once the peer reads"))
        expect(yield* Deferred.await(total).pipe(step("the reader reaching the end"))).toBe(backpressureBytes)
      }))

    test("disconnect interrupts the remote handler, runs its finalizers and fails in-flight reads", (pair) =>
      Effect.gen(function*() {
        const { a, b } = pair
        const hold = yield* holding
        yield* b.handle(protocols.hold, hold.handler)
        const seenByA = yield* listen(a)
        const seenByB = yield* listen(b)
        yield* connect(pair)
        const stream = yield* a.open(b.peerId, protocols.hold)
        yield* stream.write(pattern(10, 1))
        yield* Deferred.await(hold.started).pipe(step("the handler starting"))
        const reading = yield* Effect.forkScoped(Effect.either(Stream.runDrain(stream.source)))
        yield* a.disconnect(b.peerId).pipe(step("disconnecting"))
        const exit = yield* Deferred.await(hold.finalized).pipe(step("the handler's finalizer"))
        expect(Exit.isInterrupted(exit), "the handler was interrupted").toBe(true)
        expectTransportError(yield* Fiber.join(reading).pipe(step("the in-flight read failing")), "Reset")
        expectTransportError(yield* Effect.either(stream.write(pattern(10, 2))))
        yield* seenByA("Disconnected on a", (event) => event._tag === "Disconnected" && event.peer === b.peerId)
        yield* seenByB("Disconnected on b", (event) => event._tag === "Disconnected" && event.peer === a.peerId)
        expect(yield* a.connections).not.toContain(b.peerId)
      }))

    test("open reconnects to a known peer after a disconnect", (pair) =>
      Effect.gen(function*() {
        const seenByA = yield* listen(pair.a)
        yield* pair.b.handle(protocols.echo, echo)
        yield* connect(pair)
        yield* pair.a.disconnect(pair.b.peerId).pipe(step("disconnecting"))
        yield* seenByA("Disconnected on a", (event) => event._tag === "Disconnected" && event.peer === pair.b.peerId)
        expect(yield* roundTrip(pair, "again")).toBe("again")
      }))

    test("concurrent streams on one connection each carry their own bytes", (pair) =>
      Effect.gen(function*() {
        yield* pair.b.handle(protocols.echo, echo)
        yield* connect(pair)
        const results = yield* Effect.forEach(
          Array.from({ length: 8 }, (_, i) => i),
          (i) =>
            Effect.scoped(Effect.gen(function*() {
              const stream = yield* pair.a.open(pair.b.peerId, protocols.echo)
              const sent = pattern(200_000 + i * 1000, 100 + i)
              const writer = yield* Effect.forkScoped(Effect.gen(function*() {
                for (let offset = 0; offset < sent.length; offset += 10_000) {
                  yield* stream.write(sent.slice(offset, offset + 10_000))
                }
                yield* stream.end
              }))
              const received = yield* readAll(stream)
              yield* Fiber.join(writer)
              return { sent, received }
            })),
          { concurrency: "unbounded" }
        ).pipe(step("eight concurrent echoes"))
        for (const { received, sent } of results) sameBytes(received, sent)
      }))

    test("a stalled stream does not block another stream on the same connection", (pair) =>
      Effect.gen(function*() {
        const hold = yield* holding
        yield* pair.b.handle(protocols.hold, hold.handler)
        yield* pair.b.handle(protocols.echo, echo)
        yield* connect(pair)
        const stalled = yield* pair.a.open(pair.b.peerId, protocols.hold)
        const written = yield* Ref.make(0)
        const writer = yield* Effect.forkScoped(writeCounting(stalled, backpressureBytes, written))
        const stalledAt = yield* settle(written)
        expect(stalledAt).toBeLessThan(backpressureBytes)
        expect(yield* roundTrip(pair, "not blocked")).toBe("not blocked")
        expect(Option.isNone(yield* Fiber.poll(writer)), "the stalled writer is still waiting").toBe(true)
      }))

    test("streams beyond maxInboundStreams are refused", (pair) =>
      Effect.gen(function*() {
        const started = yield* Ref.make(0)
        yield* pair.b.handle(
          protocols.hold,
          () => Effect.zipRight(Ref.update(started, (n) => n + 1), Effect.never),
          { maxInboundStreams: 1 }
        )
        yield* connect(pair)
        const first = yield* pair.a.open(pair.b.peerId, protocols.hold)
        yield* first.write(pattern(10, 1))
        yield* eventually("the first handler starting", Effect.map(Ref.get(started), (n) => n === 1))
        // refused at open, or reset right after: either way the stream fails
        const second = yield* Effect.scoped(Effect.gen(function*() {
          const stream = yield* pair.a.open(pair.b.peerId, protocols.hold)
          yield* stream.write(pattern(10, 2))
          yield* Stream.runDrain(stream.source)
        })).pipe(Effect.either, step("the second stream being refused"))
        expectTransportError(second)
        expect(yield* Ref.get(started)).toBe(1)
      }))

    test("a crash of the remote resets its streams, interrupts its handlers and disconnects", (pair) =>
      Effect.gen(function*() {
        const { a, b, crashB } = pair
        const hold = yield* holding
        yield* b.handle(protocols.hold, hold.handler)
        const seenByA = yield* listen(a)
        yield* connect(pair)
        const stream = yield* a.open(b.peerId, protocols.hold)
        yield* stream.write(pattern(10, 1))
        yield* Deferred.await(hold.started).pipe(step("the handler starting"))
        const reading = yield* Effect.forkScoped(Effect.either(Stream.runDrain(stream.source)))
        yield* crashB.pipe(step("crashing b"))
        expect(Exit.isInterrupted(yield* Deferred.await(hold.finalized).pipe(step("b's handler finalizer")))).toBe(true)
        expectTransportError(yield* Fiber.join(reading).pipe(step("the in-flight read failing")), "Reset")
        yield* seenByA("Disconnected on a", (event) => event._tag === "Disconnected" && event.peer === b.peerId)
        expectTransportError(yield* a.open(b.peerId, protocols.hold).pipe(Effect.either, step("open to a crashed peer")))
      }))
  })
}
