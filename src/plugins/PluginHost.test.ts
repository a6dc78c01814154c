import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as MemoryTransport from "../transport/MemoryTransport.js"
import * as Transport from "../transport/Transport.js"
import * as Libraries from "../library/Libraries.js"
import * as Plugin from "./Plugin.js"
import * as PluginHost from "./PluginHost.js"

const peer = (network: MemoryTransport.MemoryNetwork, name: string) =>
  Effect.gen(function*() {
    const transport = yield* network.transport(name)
    const base = Layer.merge(Layer.succeed(Transport.Transport, transport), Libraries.layerMemory())
    return Context.get(yield* Layer.build(Layer.provide(PluginHost.layer(), base)), PluginHost.PluginHost)
  })

const probe = { protocol: "/weft-test/probe/1.0.0", permission: "authenticated" } as const

const until = <A>(effect: Effect.Effect<A>, done: (a: A) => boolean) =>
  Effect.repeat(effect, { until: done, schedule: Schedule.spaced("5 millis") }).pipe(Effect.timeout("5 seconds"))

describe("a plugin handler's scope", () => {
  it.scopedLive("is its stream's own: what a handler acquires is released when it returns, not at unregistration", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      const alice = yield* peer(network, "alice")
      const bob = yield* peer(network, "bob")
      const acquired = yield* Ref.make(0)
      const released = yield* Ref.make(0)
      // registered for as long as the app runs
      const registration = yield* Scope.make()
      yield* bob.register(Plugin.make({
        name: "probe",
        ...probe,
        handle: () => Effect.acquireRelease(Ref.update(acquired, (n) => n + 1), () => Ref.update(released, (n) => n + 1))
      })).pipe(Scope.extend(registration))
      for (let i = 0; i < 20; i++) yield* Effect.scoped(Effect.flatMap(alice.open(bob.peerId, probe), (stream) => stream.end))
      yield* until(Ref.get(acquired), (n) => n === 20)
      yield* until(Ref.get(released), (n) => n === 20)
      expect(yield* Ref.get(released)).toBe(20)
      yield* Scope.close(registration, Exit.void)
    }))

  it.scopedLive("a connection that drops releases what its running handlers acquired", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      const alice = yield* peer(network, "alice")
      const bob = yield* peer(network, "bob")
      const started = yield* Ref.make(0)
      const released = yield* Ref.make(0)
      yield* bob.register(Plugin.make({
        name: "probe",
        ...probe,
        handle: () =>
          Effect.acquireRelease(Ref.update(started, (n) => n + 1), () => Ref.update(released, (n) => n + 1)).pipe(
            Effect.zipRight(Effect.never)
          )
      }))
      yield* Effect.forkScoped(Effect.scoped(Effect.zipRight(alice.open(bob.peerId, probe), Effect.never)))
      yield* until(Ref.get(started), (n) => n === 1)
      yield* network.disconnect("alice", "bob")
      yield* until(bob.streams, (streams) => streams.length === 0)
      yield* until(Ref.get(released), (n) => n === 1)
      expect(yield* Ref.get(released)).toBe(1)
    }))
})

describe("the host's view of connections", () => {
  it.scopedLive("a connection made as soon as the host is built is available, however late the transport's event stream would subscribe", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      const transport = yield* network.transport("alice")
      // a transport whose `events` stream takes a while to subscribe once read: the host must not rely on it
      const slow: Transport.Service = { ...transport, events: Stream.unwrap(Effect.as(Effect.sleep("20 millis"), transport.events)) }
      const base = Layer.merge(Layer.succeed(Transport.Transport, slow), Libraries.layerMemory())
      const alice = Context.get(yield* Layer.build(Layer.provide(PluginHost.layer(), base)), PluginHost.PluginHost)
      const events = yield* alice.events
      yield* network.transport("bob")
      yield* transport.connect("memory://bob")
      yield* until(alice.available, (peers) => peers.includes("bob" as Transport.PeerId))
      const first = yield* Stream.runHead(Stream.filter(events, (event) => event._tag === "Available")).pipe(Effect.timeout("5 seconds"))
      expect(first).toEqual(Option.some({ _tag: "Available", peer: "bob", address: "memory://bob" }))
    }))
})
