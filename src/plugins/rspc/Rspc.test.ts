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
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Framing from "../../transport/Framing.js"
import type { PeerId } from "../../transport/Transport.js"
import * as RpcPlugin from "../RpcPlugin.js"
import * as Hosts from "../testing/Hosts.js"
import * as Grants from "./Grants.js"
import { capability, Guard } from "./Protocol.js"
import * as Protocol from "./Protocol.js"
import * as Rspc from "./Rspc.js"

class Probe extends RpcGroup.make(
  Rpc.make("Read", { success: Schema.Number }).pipe(capability("probe.read")),
  Rpc.make("WhoAmI", { payload: { claim: Schema.optional(Schema.String), peer: Schema.optional(Schema.String) }, success: Schema.String }).pipe(capability("probe.read")),
  Rpc.make("Count", { payload: { to: Schema.Number }, success: Schema.Number, stream: true }).pipe(capability("probe.read")),
  Rpc.make("Watch", { success: Schema.Number, stream: true }).pipe(capability("probe.read")),
  Rpc.make("Hold", {}).pipe(capability("probe.read")),
  Rpc.make("Write", { payload: { n: Schema.Number }, success: Schema.Number }).pipe(capability("probe.write")),
  // no capability: nobody may call it
  Rpc.make("Secret", { success: Schema.String })
).middleware(Guard).middleware(RpcPlugin.CallerMiddleware) {}

const L = "lib-l"
const M = "lib-m"

const eventually = <A>(effect: Effect.Effect<A>, done: (a: A) => boolean) =>
  Effect.repeat(effect, { until: done, schedule: Schedule.spaced("5 millis") }).pipe(Effect.timeout("10 seconds"))

/**
 * bob serves Probe. alice is a member of L and M; dave of M only; eve of
 * nothing. The handlers count what enters and what still runs.
 */
const setup = (limits: Partial<Protocol.Limits> = {}) =>
  Effect.gen(function*() {
    const network = yield* Hosts.network({ seed: 7 })
    const libraries = [
      { id: L, name: "l", members: ["alice", "bob"] as Array<PeerId> },
      { id: M, name: "m", members: ["alice", "bob", "dave"] as Array<PeerId> }
    ]
    const alice = yield* network.host("alice", { libraries })
    const bob = yield* network.host("bob", { libraries })
    const dave = yield* network.host("dave", { libraries })
    const eve = yield* network.host("eve")
    const entered = yield* Ref.make(0)
    const running = yield* Ref.make(0)
    // the most handlers that ever ran at once
    const peak = yield* Ref.make(0)
    const holding = yield* Deferred.make<void>()
    const enter = Effect.flatMap(Ref.updateAndGet(running, (n) => n + 1), (n) => Ref.update(peak, (p) => Math.max(p, n)))
    const counted = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.zipRight(Ref.update(entered, (n) => n + 1), Effect.acquireUseRelease(enter, () => effect, () => Ref.update(running, (n) => n - 1)))
    const countedStream = <A>(stream: Stream.Stream<A>) =>
      Stream.unwrapScoped(Effect.as(
        Effect.zipRight(Ref.update(entered, (n) => n + 1), Effect.acquireRelease(enter, () => Ref.update(running, (n) => n - 1))),
        stream
      ))
    const handlers = Probe.toLayer({
      Read: () => counted(Effect.succeed(42)),
      WhoAmI: () => counted(Effect.map(RpcPlugin.Caller, (caller) => caller.peer)),
      Count: ({ to }) => countedStream(Stream.range(1, to)),
      Watch: () => countedStream(Stream.iterate(0, (n) => n + 1).pipe(Stream.schedule(Schedule.spaced("2 millis")))),
      Hold: () => counted(Effect.zipRight(Deferred.succeed(holding, undefined), Effect.never)),
      Write: ({ n }) => counted(Effect.succeed(n)),
      Secret: () => counted(Effect.succeed("the secret"))
    })
    const grants = yield* Effect.provide(Grants.Grants, Grants.layerMemory())
    const server = yield* bob.provide(Rspc.serve({ group: Probe, limits })).pipe(Effect.provide(handlers), Effect.provideService(Grants.Grants, grants))
    for (const peer of [alice, dave, eve]) {
      yield* peer.connect(bob)
      yield* eventually(peer.host.available, (peers) => peers.includes(bob.id))
    }
    const client = (from: Hosts.Host, library: string) => from.provide(Rspc.client(Probe, { peer: bob.id, library }))
    return { network, alice, bob, dave, eve, grants, server, entered, running, peak, holding, client }
  })

const failure = <A, E>(outcome: Either.Either<A, E>): E => {
  expect(Either.isLeft(outcome), "expected a failure").toBe(true)
  return (outcome as Either.Left<E, A>).left
}

/** Writes raw frames on a fresh rspc stream from `from` and reads one answer frame. */
const raw = (from: Hosts.Host, to: PeerId, library: string, messages: ReadonlyArray<unknown>) =>
  Effect.gen(function*() {
    const stream = yield* from.host.open(to, Protocol.protocol, library)
    const reader = yield* Framing.reader(stream.source)
    for (const message of messages) yield* stream.write(Framing.encode(new TextEncoder().encode(JSON.stringify(message))))
    const answers: Array<unknown> = []
    for (let i = 0; i < messages.length; i++) {
      answers.push(JSON.parse(new TextDecoder().decode(Option.getOrThrow(yield* reader.frame))))
    }
    return answers
  })

describe("rspc", () => {
  it.scopedLive("deny by default: a member with no grant may call nothing, and no handler runs", () =>
    Effect.gen(function*() {
      const { client, alice, entered } = yield* setup()
      const notes = yield* client(alice, L)
      for (const call of [notes.Read(), notes.Write({ n: 1 }), notes.Secret(), notes.Hold()] as const) {
        expect(failure(yield* Effect.either(call as Effect.Effect<unknown, unknown>))).toMatchObject({ _tag: "Forbidden", reason: "NotGranted" })
      }
      expect(failure(yield* Effect.either(Stream.runCollect(notes.Count({ to: 3 }))))).toMatchObject({ _tag: "Forbidden", reason: "NotGranted" })
      expect(yield* Ref.get(entered)).toBe(0)
    }))

  it.scopedLive("grant then call: what is granted runs, the rest stays forbidden; grants are per library", () =>
    Effect.gen(function*() {
      const { client, alice, grants, entered } = yield* setup()
      yield* grants.grant(alice.id, L, ["probe.read"])
      const notes = yield* client(alice, L)
      expect(yield* notes.Read()).toBe(42)
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(notes.Count({ to: 5 })))).toEqual([1, 2, 3, 4, 5])
      expect(failure(yield* Effect.either(notes.Write({ n: 1 })))).toMatchObject({ _tag: "Forbidden", reason: "NotGranted", procedure: "Write" })
      expect(failure(yield* Effect.either(notes.Secret()))).toMatchObject({ _tag: "Forbidden", reason: "NotGranted" })
      // alice is a member of M too, but holds nothing there
      const inM = yield* client(alice, M)
      expect(failure(yield* Effect.either(inM.Read()))).toMatchObject({ _tag: "Forbidden", reason: "NotGranted" })
      expect(yield* Ref.get(entered)).toBe(2)
      expect(yield* grants.list(L)).toEqual([{ peer: alice.id, library: L, capabilities: ["probe.read"] }])
    }))

  it.scopedLive("a revoke during a streaming call ends it at once with Forbidden Revoked; the handler stops", () =>
    Effect.gen(function*() {
      const { client, alice, grants, running, server } = yield* setup()
      yield* grants.grant(alice.id, L, ["probe.read", "probe.write"])
      const notes = yield* client(alice, L)
      const seen = yield* Ref.make(0)
      const watching = yield* Effect.fork(Stream.runForEach(notes.Watch(), () => Ref.update(seen, (n) => n + 1)))
      yield* eventually(Ref.get(seen), (n) => n >= 3)
      // taking another capability leaves it running
      yield* grants.revoke(alice.id, L, ["probe.write"])
      yield* grants.revoke(alice.id, L, ["probe.read"])
      const outcome = yield* Fiber.join(Fiber.map(watching, Either.right)).pipe(Effect.catchAll((e) => Effect.succeed(Either.left(e))))
      expect(failure(outcome)).toMatchObject({ _tag: "Forbidden", reason: "Revoked", procedure: "Watch" })
      yield* eventually(Ref.get(running), (n) => n === 0)
      expect(yield* server.active).toEqual({ calls: 0, streams: 1 })
      expect(failure(yield* Effect.either(notes.Read()))).toMatchObject({ _tag: "Forbidden", reason: "NotGranted" })
    }))

  it.scopedLive("a removal from the library ends the peer's calls in flight and its streams", () =>
    Effect.gen(function*() {
      const { client, alice, bob, grants, running, holding, server } = yield* setup()
      yield* grants.grant(alice.id, L, ["probe.read"])
      const notes = yield* client(alice, L)
      const held = yield* Effect.fork(Effect.either(notes.Hold()))
      yield* Deferred.await(holding)
      yield* bob.libraries.removeMember(L, alice.id)
      const outcome = yield* Fiber.join(held)
      expect(Either.isLeft(outcome)).toBe(true)
      yield* eventually(Ref.get(running), (n) => n === 0)
      yield* eventually(server.active, (a) => a.calls === 0 && a.streams === 0)
      // the grant remains, but membership is required: a new stream is refused
      expect(failure(yield* Effect.either(client(alice, L)))).toMatchObject({ _tag: "Unavailable", reason: "Refused" })
    }))

  it.scopedLive("a member of another library, an unpaired peer and a peer naming another library are refused before any handler runs", () =>
    Effect.gen(function*() {
      const { client, alice, dave, eve, grants, entered } = yield* setup()
      // grants that membership does not back count for nothing
      yield* grants.grant(dave.id, L, ["probe.read"])
      yield* grants.grant(eve.id, L, ["probe.read"])
      yield* grants.grant(alice.id, M, ["probe.read"])
      expect(failure(yield* Effect.either(client(dave, L)))).toMatchObject({ _tag: "Unavailable", reason: "Refused" })
      expect(failure(yield* Effect.either(client(eve, L)))).toMatchObject({ _tag: "Unavailable", reason: "Refused" })
      expect(failure(yield* Effect.either(client(alice, "lib-nowhere")))).toMatchObject({ _tag: "Unavailable", reason: "Refused" })
      // dave is a member of M, granted nothing there
      const daveInM = yield* client(dave, M)
      expect(failure(yield* Effect.either(daveInM.Read()))).toMatchObject({ _tag: "Forbidden", reason: "NotGranted" })
      expect(yield* Ref.get(entered)).toBe(0)
    }))

  it.scopedLive("a client is for one named peer: not connected, or this node itself, is Unavailable, never a local call", () =>
    Effect.gen(function*() {
      const { alice, bob, network, grants, entered } = yield* setup()
      yield* grants.grant(bob.id, L, ["probe.read"])
      expect(failure(yield* Effect.either(bob.provide(Rspc.client(Probe, { peer: bob.id, library: L }))))).toMatchObject({ _tag: "Unavailable", reason: "Local" })
      yield* network.network.disconnect("alice", "bob")
      yield* eventually(alice.host.available, (peers) => !peers.includes(bob.id))
      expect(failure(yield* Effect.either(alice.provide(Rspc.client(Probe, { peer: bob.id, library: L }))))).toMatchObject({ _tag: "Unavailable", reason: "NotConnected" })
      expect(yield* Ref.get(entered)).toBe(0)
    }))

  it.scopedLive("the caller is the connection's peer: an id placed in the payload or in the message changes nothing", () =>
    Effect.gen(function*() {
      const { client, alice, bob, dave, grants } = yield* setup()
      yield* grants.grant(alice.id, L, ["probe.read"])
      const notes = yield* client(alice, L)
      expect(yield* notes.WhoAmI({ claim: "dave", peer: "dave" })).toBe("alice")
      // dave claims to be alice in every field he can write; he is granted nothing in M
      const answers = yield* raw(dave, bob.id, M, [
        { _tag: "Request", id: "1", tag: "WhoAmI", payload: { claim: "alice", peer: "alice" }, headers: [["x-peer", "alice"]], peer: "alice", caller: "alice" }
      ])
      expect(answers).toEqual([{ _tag: "Exit", requestId: "1", exit: { _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "Forbidden", reason: "NotGranted", procedure: "WhoAmI", detail: "WhoAmI is not granted to you here" } } } }])
      yield* grants.grant(dave.id, M, ["probe.read"])
      const again = yield* raw(dave, bob.id, M, [{ _tag: "Request", id: "1", tag: "WhoAmI", payload: { claim: "alice" }, peer: "alice" }])
      expect(again).toEqual([{ _tag: "Exit", requestId: "1", exit: { _tag: "Success", value: "dave" } }])
    }))

  it.scopedLive("interrupting a call on the client interrupts the handler's fiber on the server", () =>
    Effect.gen(function*() {
      const { client, alice, grants, running, holding, server } = yield* setup()
      yield* grants.grant(alice.id, L, ["probe.read"])
      const notes = yield* client(alice, L)
      const call = yield* Effect.fork(notes.Hold())
      yield* Deferred.await(holding)
      expect(yield* Ref.get(running)).toBe(1)
      yield* Fiber.interrupt(call)
      yield* eventually(Ref.get(running), (n) => n === 0)
      yield* eventually(server.active, (a) => a.calls === 0)
    }))

  it.scopedLive("a plain call past callTimeout fails with CallTimeout and its handler is interrupted", () =>
    Effect.gen(function*() {
      const { client, alice, grants, running } = yield* setup({ callTimeout: Duration.millis(200) })
      yield* grants.grant(alice.id, L, ["probe.read"])
      const notes = yield* client(alice, L)
      expect(failure(yield* Effect.either(notes.Hold()))).toMatchObject({ _tag: "CallTimeout", procedure: "Hold" })
      yield* eventually(Ref.get(running), (n) => n === 0)
    }))

  it.scopedLive("maxCallsPerPeer bounds the handlers of one peer over all its streams; a call beyond waits and runs when one ends", () =>
    Effect.gen(function*() {
      const { client, alice, grants, running, peak, entered } = yield* setup({ maxCallsPerPeer: 3 })
      yield* grants.grant(alice.id, L, ["probe.read"])
      const [first, second] = [yield* client(alice, L), yield* client(alice, L)]
      // three endless streams on one stream of the peer, then a plain call on another
      const watches = yield* Effect.forEach([first, first, second], (c) => Effect.forkScoped(Stream.runDrain(c.Watch())))
      yield* eventually(Ref.get(running), (n) => n === 3)
      const read = yield* Effect.fork(second.Read())
      yield* Fiber.interrupt(watches[0]!)
      expect(yield* Fiber.join(read)).toBe(42)
      yield* Effect.forEach(watches, Fiber.interrupt, { discard: true })
      yield* eventually(Ref.get(running), (n) => n === 0)
      expect(yield* Ref.get(peak)).toBe(3)
      expect(yield* Ref.get(entered)).toBe(4)
    }))

  it.scopedLive("nothing leaks: 1000 calls and 100 streams, then a disconnect, leave no handler, stream or call running", () =>
    Effect.gen(function*() {
      const { client, alice, bob, network, grants, running, entered, server } = yield* setup()
      yield* grants.grant(alice.id, L, ["probe.read"])
      // as many clients (streams) as a peer may hold; each runs 32 calls at once
      const clients = yield* Effect.forEach(Array.from({ length: Protocol.DEFAULT_LIMITS.maxStreams }, (_, i) => i), () => client(alice, L))
      yield* Effect.forEach(Array.from({ length: 1000 }, (_, i) => i), (i) => clients[i % clients.length]!.Read(), { concurrency: 64, discard: true })
      // 100 endless streams, left open
      const streams = yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i), (i) =>
        Effect.forkScoped(Stream.runDrain(clients[i % clients.length]!.Watch())), { concurrency: "unbounded" })
      yield* eventually(Ref.get(running), (n) => n === 100)
      expect(yield* Ref.get(entered)).toBe(1100)
      expect((yield* server.active).calls).toBe(100)
      yield* network.network.disconnect("alice", "bob")
      yield* Effect.forEach(streams, Fiber.await, { discard: true })
      yield* eventually(Ref.get(running), (n) => n === 0)
      yield* eventually(server.active, (a) => a.calls === 0 && a.streams === 0)
      yield* eventually(bob.host.streams, (s) => s.length === 0)
    }))

  it.scopedLive("an unknown procedure and an ungranted one get the same Forbidden, whatever their payload; the peer stays connected", () =>
    Effect.gen(function*() {
      const { alice, bob, grants, entered } = yield* setup()
      yield* grants.grant(alice.id, L, ["probe.read"])
      const answers = yield* raw(alice, bob.id, L, [
        { _tag: "Request", id: "1", tag: "Shutdown", payload: {} },
        { _tag: "Request", id: "2", tag: "Write", payload: { n: "not a number" } },
        { _tag: "Request", id: "3", tag: "Secret", payload: {} }
      ])
      const forbidden = (id: string, tag: string) => ({ _tag: "Exit", requestId: id, exit: { _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "Forbidden", reason: "NotGranted", procedure: tag, detail: `${tag} is not granted to you here` } } } })
      expect(answers).toEqual([forbidden("1", "Shutdown"), forbidden("2", "Write"), forbidden("3", "Secret")])
      expect(yield* bob.transport.connections).toContain(alice.id)
      expect(yield* Ref.get(entered)).toBe(0)
    }))

  const violations: ReadonlyArray<readonly [string, () => Uint8Array]> = [
    ["bytes that are not JSON", () => Framing.encode(Uint8Array.of(0xff, 0, 1))],
    ["a message of no known kind", () => Framing.encode(new TextEncoder().encode(JSON.stringify({ _tag: "Shutdown" })))],
    ["a granted call whose payload does not decode", () => Framing.encode(new TextEncoder().encode(JSON.stringify({ _tag: "Request", id: "1", tag: "WhoAmI", payload: { claim: 7 } })))],
    ["a frame over the bound", () => Uint8Array.of(0, 0x10, 0, 0)]
  ]
  for (const [name, frame] of violations) {
    it.scopedLive(`a peer that sends ${name} is disconnected as a protocol violation, and no handler runs`, () =>
      Effect.gen(function*() {
        const { alice, bob, grants, entered, server } = yield* setup()
        yield* grants.grant(alice.id, L, ["probe.read"])
        const events = yield* bob.host.events
        yield* Effect.scoped(Effect.gen(function*() {
          const stream = yield* alice.host.open(bob.id, Protocol.protocol, L)
          yield* stream.write(frame())
          yield* Effect.either(Stream.runDrain(stream.source))
        }))
        const violation = yield* events.pipe(Stream.filter((e) => e._tag === "Violation"), Stream.runHead, Effect.timeout(Duration.seconds(10)))
        expect(Option.isSome(violation)).toBe(true)
        yield* eventually(bob.transport.connections, (peers) => !peers.includes(alice.id))
        yield* eventually(server.active, (a) => a.calls === 0 && a.streams === 0)
        expect(yield* Ref.get(entered)).toBe(0)
      }))
  }

  it.scopedLive("a call over the frame bound is refused on the client, typed, before it is sent", () =>
    Effect.gen(function*() {
      const { client, alice, grants, entered } = yield* setup()
      yield* grants.grant(alice.id, L, ["probe.read"])
      const notes = yield* client(alice, L)
      expect(failure(yield* Effect.either(notes.WhoAmI({ claim: "x".repeat(Protocol.DEFAULT_LIMITS.maxFrameBytes) })))).toMatchObject({ _tag: "RpcError", reason: "TooLarge" })
      expect(yield* notes.WhoAmI({})).toBe("alice")
      expect(yield* Ref.get(entered)).toBe(1)
    }))

  it.scopedLive("a group whose procedures lack Guard, or name no valid capability, is refused at registration", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 3 })
      const bob = yield* network.host("bob")
      const grants = Grants.layerMemory()
      class Bare extends RpcGroup.make(Rpc.make("Read", { success: Schema.Number }).pipe(capability("probe.read"))) {}
      const bare = yield* Effect.exit(bob.provide(Rspc.serve({ group: Bare })).pipe(Effect.provide(Bare.toLayer({ Read: () => Effect.succeed(1) })), Effect.provide(grants)))
      expect(bare._tag).toBe("Failure")
      class Badly extends RpcGroup.make(Rpc.make("Read", { success: Schema.Number }).pipe(capability("Not A Capability"))).middleware(Guard) {}
      const badly = yield* Effect.exit(bob.provide(Rspc.serve({ group: Badly })).pipe(Effect.provide(Badly.toLayer({ Read: () => Effect.succeed(1) })), Effect.provide(grants)))
      expect(badly._tag).toBe("Failure")
    }))
})
