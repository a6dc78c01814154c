import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as MemoryTransport from "../../transport/MemoryTransport.js"
import * as Transport from "../../transport/Transport.js"
import * as Libraries from "../../library/Libraries.js"
import * as Plugin from "../Plugin.js"
import * as PluginHost from "../PluginHost.js"
import * as Ping from "./Ping.js"
import * as Protocol from "./Protocol.js"
import { concat } from "uint8arrays"

/** A peer on `network`: its transport and plugin host, and the ping plugin with its client unless `withPing` is false. */
const peer = (network: MemoryTransport.MemoryNetwork, name: string, withPing = true) =>
  Effect.gen(function*() {
    const transport = yield* network.transport(name)
    const base = Layer.merge(Layer.succeed(Transport.Transport, transport), Libraries.layerMemory())
    const host = Layer.provide(PluginHost.layer(), base)
    if (!withPing) return { host: Context.get(yield* Layer.build(host), PluginHost.PluginHost), client: undefined }
    const context = yield* Layer.build(Layer.provideMerge(Ping.layer, host))
    return { host: Context.get(context, PluginHost.PluginHost), client: Context.get(context, Ping.Ping) }
  })

/** Two peers, `alice` pinging and `bob` answering (with the ping plugin unless told otherwise). */
const pair = (options: Partial<MemoryTransport.Options> & { readonly bobPings?: boolean } = {}) =>
  Effect.gen(function*() {
    const { bobPings, ...networkOptions } = options
    const network = yield* MemoryTransport.make({ seed: 1, ...networkOptions })
    const alice = yield* peer(network, "alice")
    const bob = yield* peer(network, "bob", bobPings ?? true)
    return { network, alice, bob, client: alice.client! }
  })

/** Runs `effect` while moving the TestClock (each sleep due on the way completes at its own time), until it is done. */
const driven = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    while (Option.isNone(yield* Fiber.poll(fiber))) yield* TestClock.adjust("50 millis")
    return yield* Fiber.join(fiber)
  })

const failure = <A, E>(outcome: Either.Either<A, E>): E => {
  expect(Either.isLeft(outcome), "expected a failure").toBe(true)
  return (outcome as Either.Left<E, A>).left
}

const payload = (seed: number): Uint8Array => Uint8Array.from({ length: Protocol.PAYLOAD_BYTES }, (_, i) => (seed * 31 + i * 7) & 0xff)


/** Reads exactly `n` bytes from a pull (failing if the stream ends first). */
const readExactly = (pull: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<Transport.TransportError>>, n: number) =>
  Effect.gen(function*() {
    const pieces: Array<Uint8Array> = []
    let got = 0
    while (got < n) {
      for (const piece of yield* pull) {
        pieces.push(piece)
        got += piece.length
      }
    }
    expect(got).toBe(n)
    return concat(pieces)
  })

/** A bad listener on the ping protocol, registered on `host` for the test's scope. */
const listener = (host: PluginHost.Service, handle: Plugin.Plugin<Transport.TransportError>["handle"]) =>
  host.register(Plugin.make({ name: "bad-ping", ...Protocol.protocol, handle }))

describe("Ping over the memory transport", () => {
  it.scoped("N pings on one stream give N round trips, each the simulated latency there and back", () =>
    Effect.gen(function*() {
      const { client, network, bob } = yield* pair({ latency: { minMillis: 1, maxMillis: 40 } })
      const trace = yield* network.subscribe
      const result = yield* driven(client.ping(bob.host.peerId, { count: 25 }))
      expect(result.peer).toBe(bob.host.peerId)
      expect(result.rtts).toHaveLength(25)
      // measured on the TestClock: each round trip is two drawn latencies (1..40 ms each)
      for (const rtt of result.rtts) {
        expect(rtt).toBeGreaterThanOrEqual(2)
        expect(rtt).toBeLessThanOrEqual(80)
      }
      expect(new Set(result.rtts).size, "random latency gives different round trips").toBeGreaterThan(1)
      const sorted = [...result.rtts].sort((a, b) => a - b)
      expect(result.min).toBe(sorted[0])
      expect(result.max).toBe(sorted[24])
      expect(result.median).toBe(sorted[12])
      expect(result.min).toBeLessThanOrEqual(result.median)
      expect(result.median).toBeLessThanOrEqual(result.max)
      // one stream carried all of them: 25 pings and their echoes, 32 bytes each; then alice ended it
      yield* TestClock.adjust("100 millis")
      const delivered = Chunk.toReadonlyArray(yield* Queue.takeAll(trace)).flatMap((e) => e._tag === "Delivered" ? [e] : [])
      expect(new Set(delivered.map((e) => e.stream)).size).toBe(1)
      expect(delivered.every((e) => e.protocol === Protocol.PROTOCOL_ID)).toBe(true)
      const lane = (from: string) => delivered.filter((e) => e.from === from)
      expect(lane("alice").reduce((n, e) => n + e.bytes, 0)).toBe(25 * Protocol.PAYLOAD_BYTES)
      expect(lane("bob").reduce((n, e) => n + e.bytes, 0)).toBe(25 * Protocol.PAYLOAD_BYTES)
      expect(lane("alice").at(-1)?.end).toBe(true)
    }))

  it.scoped("a fixed latency is measured exactly", () =>
    Effect.gen(function*() {
      const { client, bob } = yield* pair({ latency: { minMillis: 7, maxMillis: 7 } })
      const result = yield* driven(client.ping(bob.host.peerId, { count: 4 }))
      expect(result.rtts).toEqual([14, 14, 14, 14])
      expect([result.min, result.median, result.max]).toEqual([14, 14, 14])
    }))

  it.scoped("a peer without the ping plugin refuses the stream: UnsupportedProtocol", () =>
    Effect.gen(function*() {
      const { client, bob } = yield* pair({ bobPings: false })
      const error = failure(yield* Effect.either(client.ping(bob.host.peerId)))
      expect(error).toBeInstanceOf(Transport.TransportError)
      expect(error).toMatchObject({ reason: "UnsupportedProtocol", protocol: Protocol.PROTOCOL_ID })
    }))

  it.scoped("an echo that differs from the ping: WrongEcho", () =>
    Effect.gen(function*() {
      const { client, bob } = yield* pair({ bobPings: false })
      // right the first time, one bit off the second
      let answered = 0
      yield* listener(bob.host, (stream) =>
        Stream.runForEach(stream.source, (bytes) => {
          answered++
          return stream.write(answered === 1 ? bytes : bytes.map((b, i) => (i === 5 ? b ^ 1 : b)))
        }))
      expect((yield* client.ping(bob.host.peerId)).rtts).toHaveLength(1)
      const error = failure(yield* Effect.either(client.ping(bob.host.peerId)))
      expect(error).toBeInstanceOf(Ping.PingError)
      expect(error).toMatchObject({ reason: "WrongEcho", peer: bob.host.peerId })
    }))

  it.scoped("a peer that ends the stream without echoing: Closed", () =>
    Effect.gen(function*() {
      const { client, bob } = yield* pair({ bobPings: false })
      yield* listener(bob.host, (stream) => Effect.zipRight(Stream.runHead(stream.source), stream.end))
      const error = failure(yield* Effect.either(client.ping(bob.host.peerId)))
      expect(error).toMatchObject({ _tag: "PingError", reason: "Closed" })
    }))

  it.scoped("a peer that never answers: Timeout, after exactly the timeout", () =>
    Effect.gen(function*() {
      const { client, bob } = yield* pair({ bobPings: false })
      const received = yield* Deferred.make<void>()
      yield* listener(bob.host, (stream) =>
        Stream.runForEach(stream.source, () => Deferred.succeed(received, undefined)).pipe(Effect.zipRight(Effect.never)))
      const fiber = yield* Effect.fork(Effect.either(client.ping(bob.host.peerId, { timeout: "5 seconds" })))
      // the ping's timer started before its write, and so before bob saw it
      yield* Deferred.await(received)
      yield* TestClock.adjust("4999 millis")
      expect(Option.isNone(yield* Fiber.poll(fiber)), "still waiting just before the timeout").toBe(true)
      yield* TestClock.adjust("1 millis")
      const error = failure(yield* Fiber.join(fiber))
      expect(error).toMatchObject({ _tag: "PingError", reason: "Timeout", peer: bob.host.peerId })
    }))

  it.scoped("the handler accepts any chunking: one byte at a time, pings split across writes, several in one write", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* pair()
      const stream = yield* alice.host.open(bob.host.peerId, Protocol.protocol)
      const pull = yield* Stream.toPull(stream.source)
      // one ping, a byte per write
      const first = payload(1)
      for (const byte of first) yield* stream.write(Uint8Array.of(byte))
      expect(yield* readExactly(pull, 32)).toEqual(first)
      // four pings cut at odd places: 1 | 1 | 30+5 | 27+32+3 | 29
      const four = concat([payload(2), payload(3), payload(4), payload(5)])
      for (const [from, to] of [[0, 1], [1, 2], [2, 37], [37, 99], [99, 128]] as const) yield* stream.write(four.slice(from, to))
      expect(yield* readExactly(pull, 128)).toEqual(four)
      // the handler ends its side once we end ours
      yield* stream.end
      expect(Option.isNone(yield* Effect.option(pull))).toBe(true)
    }))
})

/** A duplex whose source is `pieces` one per pull (counted), and whose writes wait for `gate`. */
const scripted = (source: Stream.Stream<Uint8Array, Transport.TransportError>) =>
  Effect.gen(function*() {
    let pulled = 0
    const writes = yield* Queue.unbounded<{ readonly bytes: Uint8Array; readonly pulledBefore: number }>()
    const gate = yield* Queue.unbounded<void>()
    const reset = yield* Deferred.make<void>()
    const ended = yield* Deferred.make<void>()
    const duplex: Transport.Duplex = {
      protocol: Protocol.PROTOCOL_ID,
      remote: Transport.PeerId.make("dialer"),
      source: source.pipe(Stream.rechunk(1), Stream.tap((piece) => Effect.sync(() => (pulled += piece.length)))),
      write: (bytes) => Effect.zipRight(Queue.offer(writes, { bytes: bytes.slice(), pulledBefore: pulled }), Queue.take(gate)),
      end: Deferred.succeed(ended, undefined),
      reset: Deferred.succeed(reset, undefined)
    }
    return { duplex, writes, gate, reset, ended, pulled: () => pulled }
  })

const runHandler = (duplex: Transport.Duplex): Effect.Effect<Fiber.RuntimeFiber<void, Transport.TransportError>, never, Scope.Scope> =>
  Effect.forkScoped(Effect.scoped(Ping.handle(duplex)))

describe("the ping handler", () => {
  it.scoped("holds at most one ping: it reads no further until that ping's echo is written", () =>
    Effect.gen(function*() {
      const bytes = concat([payload(1), payload(2), payload(3)])
      const { duplex, writes, gate, ended, pulled } = yield* scripted(Stream.fromIterable([...bytes].map((b) => Uint8Array.of(b))))
      const fiber = yield* runHandler(duplex)
      for (let i = 0; i < 3; i++) {
        const write = yield* Queue.take(writes)
        expect(write.bytes).toEqual(payload(i + 1))
        // its echo is being written (and waits): exactly this ping was read, nothing of the next
        expect(write.pulledBefore).toBe(32 * (i + 1))
        yield* TestClock.adjust(0)
        expect(pulled()).toBe(32 * (i + 1))
        yield* Queue.offer(gate, undefined)
      }
      yield* Fiber.join(fiber)
      expect(yield* Deferred.isDone(ended)).toBe(true)
      expect(yield* Queue.size(writes)).toBe(0)
    }))

  it.scoped("echoes whole pings straight from a chunk and carries only a split ping's bytes", () =>
    Effect.gen(function*() {
      const bytes = concat([payload(1), payload(2), payload(3)])
      // 40 = one ping and 8 bytes; 24 completes the second; 32 is the third
      const { duplex, writes, gate } = yield* scripted(Stream.make(bytes.slice(0, 40), bytes.slice(40, 64), bytes.slice(64)))
      yield* Queue.offerAll(gate, [undefined, undefined, undefined])
      yield* Fiber.join(yield* runHandler(duplex))
      const echoed = Chunk.toReadonlyArray(yield* Queue.takeAll(writes))
      expect(echoed.map((w) => w.bytes)).toEqual([payload(1), payload(2), payload(3)])
      expect(echoed.map((w) => w.pulledBefore)).toEqual([40, 64, 96])
    }))

  it.scoped("re-arms the idle timer on every read: the reset comes IDLE_TIMEOUT after the last ping", () =>
    Effect.gen(function*() {
      const input = yield* Queue.unbounded<Uint8Array>()
      const { duplex, writes, gate, reset } = yield* scripted(Stream.fromQueue(input))
      yield* Queue.offerAll(gate, [undefined, undefined])
      const fiber = yield* runHandler(duplex)
      yield* Queue.offer(input, payload(1))
      expect((yield* Queue.take(writes)).bytes).toEqual(payload(1))
      yield* TestClock.adjust("8 seconds")
      yield* Queue.offer(input, payload(2))
      // echoed at 8 s: read then
      expect((yield* Queue.take(writes)).bytes).toEqual(payload(2))
      yield* TestClock.adjust("9999 millis")
      expect(yield* Deferred.isDone(reset), "not idle yet: 9.999 s since the last ping").toBe(false)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(fiber)
      expect(yield* Deferred.isDone(reset)).toBe(true)
    }))

  it.scoped("resets a stream whose dialer stays silent for IDLE_TIMEOUT", () =>
    Effect.gen(function*() {
      const { duplex, reset, ended } = yield* scripted(Stream.concat(Stream.make(payload(1).slice(0, 10)), Stream.never))
      const fiber = yield* runHandler(duplex)
      yield* TestClock.adjust("9999 millis")
      expect(yield* Deferred.isDone(reset)).toBe(false)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(fiber)
      expect(yield* Deferred.isDone(reset)).toBe(true)
      expect(yield* Deferred.isDone(ended)).toBe(false)
    }))
})
