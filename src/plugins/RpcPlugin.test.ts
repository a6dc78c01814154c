import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"
import * as Stream from "effect/Stream"
import * as Framing from "../transport/Framing.js"
import type { PeerId } from "../transport/Transport.js"
import * as Plugin from "./Plugin.js"
import * as RpcPlugin from "./RpcPlugin.js"
import * as Hosts from "./testing/Hosts.js"

class Oops extends Schema.TaggedError<Oops>()("Oops", { detail: Schema.String }) {}

class Probe extends RpcGroup.make(
  Rpc.make("Add", { payload: { a: Schema.Number, b: Schema.Number }, success: Schema.Number }),
  Rpc.make("WhoAmI", { payload: { claim: Schema.optional(Schema.String) }, success: Schema.Struct({ peer: Schema.String, library: Schema.optional(Schema.String) }) }),
  Rpc.make("Count", { payload: { to: Schema.Number }, success: Schema.Number, stream: true }),
  Rpc.make("Fail", { error: Oops }),
  Rpc.make("Hold", {}),
  Rpc.make("Big", { payload: { bytes: Schema.Number }, success: Schema.String })
).middleware(RpcPlugin.CallerMiddleware) {}

const protocol = { protocol: "/weft-test/probe/1.0.0", permission: "authenticated", group: Probe, maxFrameBytes: 64 * 1024 } as const
const LIBRARY = "lib"

const eventually = <A>(effect: Effect.Effect<A>, done: (a: A) => boolean) =>
  Effect.repeat(effect, { until: done, schedule: Schedule.spaced("5 millis") }).pipe(Effect.timeout("5 seconds"))

/** Two hosts: bob serves Probe (its handlers count what runs), alice calls it. */
const setup = (options: { readonly permission?: "authenticated" | "library" } = {}) =>
  Effect.gen(function*() {
    const network = yield* Hosts.network({ seed: 1 })
    const members = [{ id: LIBRARY, name: "lib", members: ["alice", "bob"] as Array<PeerId> }]
    const alice = yield* network.host("alice", { libraries: members })
    const bob = yield* network.host("bob", { libraries: members })
    const running = yield* Ref.make(0)
    const holding = yield* Deferred.make<void>()
    const released = yield* Ref.make(0)
    const handlers = Probe.toLayer({
      Add: ({ a, b }) => Effect.succeed(a + b),
      WhoAmI: () => Effect.map(RpcPlugin.Caller, (caller) => ({ peer: caller.peer, ...(caller.library === undefined ? {} : { library: caller.library }) })),
      Count: ({ to }) => Stream.range(1, to),
      Fail: () => Effect.fail(new Oops({ detail: "as asked" })),
      Hold: () =>
        Effect.acquireRelease(Ref.update(running, (n) => n + 1), () => Ref.update(released, (n) => n + 1)).pipe(
          Effect.zipRight(Deferred.succeed(holding, undefined)),
          Effect.zipRight(Effect.never),
          Effect.scoped
        ),
      Big: ({ bytes }) => Effect.succeed("x".repeat(bytes))
    })
    const served = { ...protocol, permission: options.permission ?? protocol.permission }
    yield* bob.provide(RpcPlugin.serve({ name: "probe", ...served })).pipe(Effect.provide(handlers))
    yield* alice.connect(bob)
    const client = yield* alice.provide(RpcPlugin.client(served, bob.id, served.permission === "library" ? LIBRARY : undefined))
    return { network, alice, bob, client, running, holding, released, served }
  })

describe("RpcPlugin", () => {
  it.scopedLive("plain calls, typed errors and streams, many at once on one stream", () =>
    Effect.gen(function*() {
      const { client } = yield* setup()
      expect(yield* client.Add({ a: 2, b: 3 })).toBe(5)
      const sums = yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i), (i) => client.Add({ a: i, b: 1 }), { concurrency: "unbounded" })
      expect(sums).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
      expect(yield* Effect.flip(client.Fail())).toEqual(new Oops({ detail: "as asked" }))
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(client.Count({ to: 1000 })))).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1))
    }))

  it.scopedLive("the handler knows its caller from the connection; nothing the caller sends can claim another identity", () =>
    Effect.gen(function*() {
      const { client, alice, bob, served } = yield* setup({ permission: "library" })
      expect(yield* client.WhoAmI({ claim: "bob" })).toEqual({ peer: "alice", library: LIBRARY })
      // a raw call with made-up headers and identity fields
      const stream = yield* alice.host.open(bob.id, served, LIBRARY)
      const reader = yield* Framing.reader(stream.source)
      const call = { _tag: "Request", id: "1", tag: "WhoAmI", payload: { claim: "bob" }, headers: [["x-peer", "bob"]], peer: "bob", caller: "bob" }
      yield* stream.write(Framing.encode(new TextEncoder().encode(JSON.stringify(call))))
      const answer = JSON.parse(new TextDecoder().decode(Option.getOrThrow(yield* reader.frame)))
      expect(answer).toEqual({ _tag: "Exit", requestId: "1", exit: { _tag: "Success", value: { peer: "alice", library: LIBRARY } } })
    }))

  it.scopedLive("interrupting a call interrupts its handler on the server", () =>
    Effect.gen(function*() {
      const { client, running, holding, released } = yield* setup()
      const call = yield* Effect.fork(client.Hold())
      yield* Deferred.await(holding)
      expect(yield* Ref.get(running)).toBe(1)
      yield* Fiber.interrupt(call)
      yield* eventually(Ref.get(released), (n) => n === 1)
    }))

  it.scopedLive("an answer over the frame bound fails that call with RpcError TooLarge; the stream serves on", () =>
    Effect.gen(function*() {
      const { client } = yield* setup()
      const refused = yield* Effect.flip(client.Big({ bytes: 100 * 1024 }))
      expect(refused).toMatchObject({ _tag: "RpcError", reason: "TooLarge" })
      expect(yield* client.Big({ bytes: 10 })).toBe("x".repeat(10))
      // a call over the bound is refused before it is sent
      expect(yield* Effect.flip(client.WhoAmI({ claim: "y".repeat(100 * 1024) }))).toMatchObject({ _tag: "RpcError", reason: "TooLarge" })
    }))

  const hostile: ReadonlyArray<readonly [string, () => Uint8Array]> = [
    ["bytes that are not JSON", () => Framing.encode(Uint8Array.of(0xff, 0, 1))],
    ["a message of no known kind", () => Framing.encode(new TextEncoder().encode(JSON.stringify({ _tag: "Shutdown" })))],
    ["a call whose payload does not decode", () => Framing.encode(new TextEncoder().encode(JSON.stringify({ _tag: "Request", id: "1", tag: "Add", payload: { a: "1" } })))],
    ["a call of an unknown procedure", () => Framing.encode(new TextEncoder().encode(JSON.stringify({ _tag: "Request", id: "1", tag: "Shutdown", payload: {} })))],
    ["a frame over the bound", () => Uint8Array.of(0, 1, 0, 1)],
    ["a deeply nested payload", () => Framing.encode(new TextEncoder().encode(`{"_tag":"Request","id":"1","tag":"Add","payload":${"[".repeat(20_000)}${"]".repeat(20_000)}}`))]
  ]
  for (const [name, frame] of hostile) {
    it.scopedLive(`a client that sends ${name} is disconnected as a violation, and the server holds nothing of it`, () =>
      Effect.gen(function*() {
        const { alice, bob } = yield* setup()
        const events = yield* bob.host.events
        yield* Effect.scoped(Effect.gen(function*() {
          const stream = yield* alice.host.open(bob.id, protocol)
          yield* stream.write(frame())
          yield* Effect.either(Stream.runDrain(stream.source))
        }))
        const violation = yield* events.pipe(Stream.filter((e) => e._tag === "Violation"), Stream.runHead, Effect.timeout(Duration.seconds(5)))
        expect(Option.isSome(violation)).toBe(true)
        yield* eventually(bob.transport.connections, (peers) => !peers.includes(alice.id))
        yield* eventually(bob.host.streams, (streams) => streams.length === 0)
      }))
  }

  it.scopedLive("a server whose answer does not decode breaks the protocol: the call fails with RpcError Malformed and the client's host disconnects it", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 2 })
      const alice = yield* network.host("alice")
      const bob = yield* network.host("bob")
      // a liar on the probe protocol: answers every call with a string where a number is due
      yield* bob.host.register(Plugin.make({
        name: "liar",
        ...protocol,
        handle: (stream) =>
          Effect.gen(function*() {
            const reader = yield* Framing.reader(stream.source)
            const call = JSON.parse(new TextDecoder().decode(Option.getOrThrow(yield* reader.frame)))
            const lie = { _tag: "Exit", requestId: call.id, exit: { _tag: "Success", value: "not a number" } }
            yield* stream.write(Framing.encode(new TextEncoder().encode(JSON.stringify(lie))))
            yield* Effect.never
          })
      }))
      yield* alice.connect(bob)
      const events = yield* alice.host.events
      const client = yield* alice.provide(RpcPlugin.client(protocol, bob.id))
      expect(yield* Effect.flip(client.Add({ a: 1, b: 2 }))).toMatchObject({ _tag: "RpcError", reason: "Malformed" })
      const violation = yield* events.pipe(Stream.filter((e) => e._tag === "Violation"), Stream.runHead, Effect.timeout(Duration.seconds(5)))
      expect(violation).toEqual(Option.some(expect.objectContaining({ _tag: "Violation", peer: bob.id, protocol: protocol.protocol })))
      yield* eventually(alice.transport.connections, (peers) => !peers.includes(bob.id))
    }))

  it.scopedLive("a disconnect ends every call in flight with RpcError Closed, and every handler; later calls fail at once", () =>
    Effect.gen(function*() {
      const { client, network, bob, running, released } = yield* setup()
      const calls = yield* Effect.forEach(Array.from({ length: 10 }, () => 0), () => Effect.fork(Effect.either(client.Hold())))
      yield* eventually(Ref.get(running), (n) => n === 10)
      yield* network.network.disconnect("alice", "bob")
      for (const call of calls) {
        const outcome = yield* Fiber.join(call)
        expect(Either.isLeft(outcome) && outcome.left).toMatchObject({ _tag: "RpcError", reason: "Closed" })
      }
      yield* eventually(Ref.get(released), (n) => n === 10)
      yield* eventually(bob.host.streams, (streams) => streams.length === 0)
      expect(yield* Effect.flip(client.Add({ a: 1, b: 1 }))).toMatchObject({ _tag: "RpcError", reason: "Closed" })
    }))

  it.scopedLive("calls interrupted at any moment, waiting for a slot or in flight, give their slot back: the client still makes maxInFlight calls at once", () =>
    Effect.gen(function*() {
      const { alice, bob, served, running, released } = yield* setup()
      const client = yield* alice.provide(RpcPlugin.client({ ...served, maxInFlight: 2 }, bob.id))
      // calls that are never answered, so only their interruption can free their slots; three
      // for two slots, interrupted at moments that vary: before a slot, in flight, as a slot passes
      for (let round = 0; round < 100; round++) {
        const calls = yield* Effect.forEach([0, 1, 2], () => Effect.fork(client.Hold()))
        yield* Effect.sleep(Duration.micros(BigInt((round % 5) * 100)))
        yield* Effect.forEach(round % 2 === 0 ? calls : [...calls].reverse(), Fiber.interrupt, { discard: true })
      }
      yield* eventually(Effect.zip(Ref.get(running), Ref.get(released)), ([r, d]) => r === d)
      // both slots still there: two held calls run at once
      const before = yield* Ref.get(running)
      const held = yield* Effect.forEach([0, 1], () => Effect.fork(client.Hold()))
      yield* eventually(Ref.get(running), (n) => n === before + 2)
      yield* Effect.forEach(held, Fiber.interrupt, { discard: true })
    }))

  it.scopedLive("nothing leaks: 1000 calls and 100 streamed calls, then the client's scope closes, and both sides hold what they held before", () =>
    Effect.gen(function*() {
      const { alice, bob, served } = yield* setup()
      // the setup's own client holds one stream
      const before = [yield* bob.host.streams, yield* alice.host.streams] as const
      expect(before[0]).toEqual([{ peer: alice.id, protocol: served.protocol, handlers: 1, outbound: 0 }])
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* alice.provide(RpcPlugin.client(served, bob.id))
        yield* Effect.forEach(Array.from({ length: 1000 }, (_, i) => i), (i) => client.Add({ a: i, b: i }), { concurrency: 50, discard: true })
        yield* Effect.forEach(Array.from({ length: 100 }, () => 0), () => Stream.runDrain(Stream.take(client.Count({ to: 1_000_000 }), 3)), { concurrency: 20, discard: true })
      }))
      yield* eventually(bob.host.streams, (streams) => JSON.stringify(streams) === JSON.stringify(before[0]))
      yield* eventually(alice.host.streams, (streams) => JSON.stringify(streams) === JSON.stringify(before[1]))
    }))
  it.scopedLive("schemas that need an effect to run (an async check) still encode and decode calls and answers, and refuse what they refuse", () =>
    Effect.gen(function*() {
      // an even number, checked only after a promise settles: a schema the synchronous codecs cannot run
      const check = (n: number, ast: SchemaAST.AST) =>
        Effect.zipRight(Effect.promise(() => Promise.resolve()), n % 2 === 0 ? ParseResult.succeed(n) : ParseResult.fail(new ParseResult.Type(ast, n, "odd")))
      const Even = Schema.transformOrFail(Schema.Number, Schema.Number, {
        strict: true,
        decode: (n, _, ast) => check(n, ast),
        encode: (n, _, ast) => check(n, ast)
      })
      class Evens extends RpcGroup.make(
        Rpc.make("Double", { payload: { n: Even }, success: Even })
      ).middleware(RpcPlugin.CallerMiddleware) {}
      const network = yield* Hosts.network({ seed: 5 })
      const alice = yield* network.host("alice")
      const bob = yield* network.host("bob")
      const evens = { protocol: "/weft-test/evens/1.0.0", permission: "authenticated", group: Evens } as const
      const entered = yield* Ref.make(0)
      yield* bob.provide(RpcPlugin.serve({ name: "evens", ...evens })).pipe(
        Effect.provide(Evens.toLayer({ Double: ({ n }) => Effect.as(Ref.update(entered, (k) => k + 1), n * 2) }))
      )
      yield* alice.connect(bob)
      const client = yield* alice.provide(RpcPlugin.client(evens, bob.id))
      expect(yield* client.Double({ n: 4 })).toBe(8)
      expect(yield* client.Double({ n: 10 })).toBe(20)
      const refused = yield* Effect.flip(client.Double({ n: 3 }))
      expect(refused).toBeInstanceOf(RpcPlugin.RpcError)
      expect((refused as RpcPlugin.RpcError).reason).toBe("Malformed")
      expect(yield* Ref.get(entered)).toBe(2)
    }))

  it.scopedLive("a plain call's payload is made by its schema's constructor (defaults filled in, a class built) when it does not encode as given; a discarded call is sent and not awaited", () =>
    Effect.gen(function*() {
      class Name extends Schema.Class<Name>("Name")({ first: Schema.String }) {}
      class Greetings extends RpcGroup.make(
        Rpc.make("Greet", { payload: Schema.Struct({ name: Schema.String, greeting: Schema.optionalWith(Schema.String, { default: () => "hello" }) }), success: Schema.String }),
        Rpc.make("Named", { payload: Name, success: Schema.String }),
        Rpc.make("Note", { payload: { text: Schema.String } })
      ).middleware(RpcPlugin.CallerMiddleware) {}
      const network = yield* Hosts.network({ seed: 6 })
      const alice = yield* network.host("alice")
      const bob = yield* network.host("bob")
      const greetings = { protocol: "/weft-test/greetings/1.0.0", permission: "authenticated", group: Greetings } as const
      const noted = yield* Deferred.make<string>()
      yield* bob.provide(RpcPlugin.serve({ name: "greetings", ...greetings })).pipe(
        Effect.provide(Greetings.toLayer({
          Greet: ({ greeting, name }) => Effect.succeed(`${greeting} ${name}`),
          Named: (name) => Effect.succeed(name instanceof Name ? `a Name: ${name.first}` : "not a Name"),
          Note: ({ text }) => Deferred.succeed(noted, text)
        }))
      )
      yield* alice.connect(bob)
      const client = yield* alice.provide(RpcPlugin.client(greetings, bob.id))
      expect(yield* client.Greet({ name: "bob" })).toBe("hello bob")
      expect(yield* client.Greet({ name: "bob", greeting: "hi" })).toBe("hi bob")
      expect(yield* client.Named({ first: "bob" })).toBe("a Name: bob")
      const refused = yield* Effect.flip(client.Greet({ name: 7 } as never))
      expect(refused).toBeInstanceOf(RpcPlugin.RpcError)
      expect((refused as RpcPlugin.RpcError).reason).toBe("Malformed")
      yield* client.Note({ text: "sent" }, { discard: true })
      expect(yield* Deferred.await(noted)).toBe("sent")
    }))
})
