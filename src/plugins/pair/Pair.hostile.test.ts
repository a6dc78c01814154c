import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Model from "../../engine/Model.js"
import * as Engines from "../../engine/testing/Engines.js"
import * as Framing from "../../transport/Framing.js"
import type { PeerId } from "../../transport/Transport.js"
import * as Libraries from "../../library/Libraries.js"
import * as Plugin from "../Plugin.js"
import * as PluginHost from "../PluginHost.js"
import * as Sync from "../sync/Sync.js"
import * as Consent from "../Consent.js"
import * as Hosts from "../testing/Hosts.js"
import * as Pair from "./Pair.js"
import * as Protocol from "./Protocol.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, body: Model.RichText, done: Schema.Boolean }))
const LIBRARY = "family-photos"
const peerId = (name: string) => name as PeerId
const library = (...members: ReadonlyArray<string>): Libraries.Library => ({ id: LIBRARY, name: "Family photos", members: members.map(peerId) })
const membersOf = (libraries: Libraries.Libraries["Type"]) =>
  Effect.map(libraries.get(LIBRARY), Option.match({ onNone: () => undefined, onSome: (l) => [...l.members].sort() }))
const frame = (value: unknown) => Framing.encode(new TextEncoder().encode(JSON.stringify(value)))
/** How the responder's user answers: with `approve`, given the request (from the question's details). */
interface Answering extends Pair.Options {
  readonly approve: (request: { readonly peer: PeerId; readonly library: { readonly id: string; readonly name: string } }) => Effect.Effect<boolean>
  readonly consent?: Consent.Options
}
const requestOf = (question: Consent.Pending) => ({ peer: question.peer, library: { id: question.details.library!, name: question.details.libraryName! } })

/** A peer with libraries, host, sync, and (unless `withPair` is false) the pair plugin. */
const peer = (
  network: Hosts.Network,
  name: string,
  initial: ReadonlyArray<Libraries.Library>,
  options: Answering,
  withPair = true
) =>
  Effect.gen(function*() {
    const { approve, consent, ...pairOptions } = options
    const host = yield* network.host(name, { libraries: initial, answer: (question) => approve(requestOf(question)), ...(consent === undefined ? {} : { consent }) })
    const engine = yield* Engines.open({ models: [notes], node: name })
    yield* host.provide(Sync.make({ libraries: [{ id: LIBRARY, engine }], retry: Schedule.spaced(Duration.millis(20)) }))
    if (withPair) yield* host.provide(Pair.make(pairOptions))
    // the requester side, usable without the plugin registered
    const pairWith = (other: PeerId) => host.provide(Pair.pair(other, LIBRARY))
    return { id: host.id, transport: host.transport, libraries: host.libraries, host: host.host, withHost: host.provide, pairWith }
  })

/**
 * Registers on `peer` a pair responder that reads the Request, waits for
 * `answerNow`, answers Accepted, reads the Confirmed and then breaks the
 * exchange (a second Accepted, out of turn).
 */
const breaksAfterAccepting = (host: PluginHost.Service) =>
  Effect.gen(function*() {
    const requestSeen = yield* Deferred.make<void>()
    const answerNow = yield* Deferred.make<void>()
    const accepted = new TextEncoder().encode(JSON.stringify({ version: 1, type: "Accepted" }))
    yield* host.register(Plugin.make({
      name: "scripted-pair",
      ...Protocol.protocol,
      handle: (stream) =>
        Effect.gen(function*() {
          const framed = Framing.make(stream, Protocol.MAX_FRAME_BYTES)
          const pull = yield* Stream.toPull(framed.frames)
          yield* pull // the Request
          yield* Deferred.succeed(requestSeen, undefined)
          yield* Deferred.await(answerNow)
          yield* framed.send(accepted)
          yield* pull // the Confirmed
          yield* framed.send(accepted)
          yield* Effect.never
        }).pipe(Effect.ignore)
    }))
    return { requestSeen, answerNow }
  })

describe("Pair: races and hostile requesters", () => {
  it.scopedLive("responder: a failed exchange does not remove a membership that another pairing recorded while the user was being asked", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 11 })
      // while bob's user is asked about alice's request, bob's user also pairs alice from bob's side (it succeeds)
      const bobPairsAlice = yield* Deferred.make<Effect.Effect<unknown, unknown>>()
      const bob = yield* peer(network, "bob", [library("bob")], {
        approve: () => Effect.as(Effect.flatMap(Deferred.await(bobPairsAlice), (go) => Effect.orDie(go)), true)
      })
      const alice = yield* peer(network, "alice", [], { approve: () => Effect.succeed(true) })
      yield* Deferred.succeed(bobPairsAlice, bob.pairWith(alice.id))
      yield* alice.transport.connect("memory://bob")

      // alice's own request, sent raw, whose exchange then breaks after bob accepted
      const stream = yield* alice.transport.open(bob.id, Protocol.PROTOCOL_ID)
      yield* stream.write(frame({ version: 1, type: "Request", library: { id: LIBRARY, name: "Family photos" } }))
      const answer = yield* Stream.runHead(Framing.decode(Protocol.MAX_FRAME_BYTES)(stream.source))
      expect(Option.map(answer, (f) => JSON.parse(new TextDecoder().decode(f)))).toEqual(Option.some({ version: 1, type: "Accepted" }))
      // the pairing bob made succeeded on both sides
      expect(yield* membersOf(alice.libraries)).toEqual(["alice", "bob"])
      expect(yield* membersOf(bob.libraries)).toEqual(["alice", "bob"])
      // alice's second exchange breaks (a reset before Confirmed)
      yield* stream.reset
      yield* Effect.sleep(Duration.millis(500))
      // bob's completed pairing must stand: alice is a member on both sides
      expect(yield* membersOf(alice.libraries)).toEqual(["alice", "bob"])
      expect(yield* membersOf(bob.libraries)).toEqual(["alice", "bob"])
    }))

  it.scopedLive("requester: a failed exchange does not remove a membership that another pairing recorded while waiting for the answer", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 12 })
      const alice = yield* peer(network, "alice", [library("alice")], { approve: () => Effect.succeed(true) })
      // bob: no pair plugin; a scripted responder instead
      const bob = yield* peer(network, "bob", [library("bob")], { approve: () => Effect.succeed(true) }, false)
      const { requestSeen, answerNow } = yield* breaksAfterAccepting(bob.host)
      yield* alice.transport.connect("memory://bob")
      const request = yield* Effect.fork(Effect.either(alice.pairWith(bob.id)))
      yield* Deferred.await(requestSeen)
      // meanwhile bob pairs alice itself (bob's own request, approved by alice): bob is a member at alice
      yield* bob.pairWith(alice.id)
      expect(yield* membersOf(alice.libraries)).toEqual(["alice", "bob"])
      yield* Deferred.succeed(answerNow, undefined)
      const outcome = yield* request.await.pipe(Effect.flatten)
      expect(Either.isLeft(outcome)).toBe(true)
      // alice's failed exchange added nothing, so it must remove nothing
      expect(yield* membersOf(alice.libraries)).toEqual(["alice", "bob"])
    }))

  it.scopedLive("a consent front end that crashes: the requester gets a typed error promptly", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 13 })
      yield* peer(network, "bob", [library("bob")], { approve: () => Effect.die(new Error("approval UI crashed")) })
      const alice = yield* peer(network, "alice", [library("alice")], { approve: () => Effect.succeed(true) })
      yield* alice.transport.connect("memory://bob")
      const start = Date.now()
      const outcome = yield* Effect.either(alice.pairWith(peerId("bob")))
      const took = Date.now() - start
      expect(Either.isLeft(outcome)).toBe(true)
      expect(took).toBeLessThan(5000)
    }))

  it.scopedLive("a declined requester is not asked about again for a while: 50 back-to-back requests prompt the user once", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 14 })
      const asked = yield* Ref.make(0)
      yield* peer(network, "bob", [library("bob")], { approve: () => Effect.as(Ref.update(asked, (n) => n + 1), false) })
      const mallory = yield* network.network.transport("mallory")
      yield* mallory.connect("memory://bob")
      const once = Effect.scoped(Effect.gen(function*() {
        const stream = yield* mallory.open(peerId("bob"), Protocol.PROTOCOL_ID)
        yield* stream.write(frame({ version: 1, type: "Request", library: { id: LIBRARY, name: "x" } }))
        yield* Stream.runHead(Framing.decode(Protocol.MAX_FRAME_BYTES)(stream.source))
      }))
      for (let i = 0; i < 50; i++) yield* Effect.ignore(once)
      // asked once; the 49 requests that followed were declined without asking
      expect(yield* Ref.get(asked)).toBe(1)
    }))

  it.scopedLive("requests from many fresh identities: at most `maxPendingApprovals` are put to the user, the rest are refused Busy at once", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 15 })
      const pending = yield* Ref.make(0)
      const most = yield* Ref.make(0)
      yield* peer(network, "bob", [library("bob")], {
        approve: () =>
          Effect.acquireUseRelease(
            Effect.flatMap(Ref.updateAndGet(pending, (n) => n + 1), (n) => Ref.update(most, (m) => Math.max(m, n))),
            () => Effect.never,
            () => Ref.update(pending, (n) => n - 1)
          ),
        approvalTimeout: Duration.seconds(3)
      })
      const N = 100
      yield* Effect.forEach(Array.from({ length: N }, (_, i) => i), (i) =>
        Effect.gen(function*() {
          const sybil = yield* network.network.transport(`sybil${i}`)
          yield* sybil.connect("memory://bob")
          const stream = yield* sybil.open(peerId("bob"), Protocol.PROTOCOL_ID)
          yield* stream.write(frame({ version: 1, type: "Request", library: { id: `lib-${i}`, name: "Family photos" } }))
        }), { concurrency: "unbounded", discard: true })
      yield* Effect.sleep(Duration.millis(1000))
      expect(yield* Ref.get(most)).toBe(Consent.MAX_PENDING)
      // a further request is told at once, with a reason of its own
      const carol = yield* peer(network, "carol", [library("carol")], { approve: () => Effect.succeed(true) })
      yield* carol.transport.connect("memory://bob")
      expect(yield* Effect.flip(carol.pairWith(peerId("bob")))).toMatchObject({ _tag: "PairError", reason: "Busy" })
    }))

  it.scopedLive("a requester that sends an oversize or malformed frame breaks the protocol: the host sees a Violation and disconnects it", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 16 })
      const bob = yield* peer(network, "bob", [library("bob")], { approve: () => Effect.succeed(false) })
      const events = yield* bob.host.events
      const mallory = yield* network.network.transport("mallory")
      yield* mallory.connect("memory://bob")
      const oversize = new Uint8Array(8)
      new DataView(oversize.buffer).setUint32(0, Protocol.MAX_FRAME_BYTES + 1)
      yield* Effect.scoped(Effect.gen(function*() {
        const stream = yield* mallory.open(bob.id, Protocol.PROTOCOL_ID)
        yield* stream.write(oversize)
        yield* Effect.either(Stream.runDrain(stream.source))
      }))
      const violation = yield* events.pipe(Stream.filter((e) => e._tag === "Violation"), Stream.runHead, Effect.timeout(Duration.seconds(2)), Effect.option)
      expect(Option.isSome(violation)).toBe(true)
      yield* Effect.repeat(bob.transport.connections, { until: (peers) => !peers.includes(peerId("mallory")), schedule: Schedule.spaced(Duration.millis(10)) }).pipe(
        Effect.timeout(Duration.seconds(2))
      )
    }))

  it.scopedLive("requester: a member removed while its pairing waits is not re-added by an exchange that then fails", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 17 })
      const alice = yield* peer(network, "alice", [library("alice", "bob")], { approve: () => Effect.succeed(true) })
      const bob = yield* peer(network, "bob", [library("bob", "alice")], { approve: () => Effect.succeed(true) }, false)
      const { requestSeen, answerNow } = yield* breaksAfterAccepting(bob.host)
      yield* alice.transport.connect("memory://bob")
      const request = yield* Effect.fork(Effect.either(alice.pairWith(bob.id)))
      yield* Deferred.await(requestSeen)
      // alice's user removes bob meanwhile
      yield* alice.libraries.removeMember(LIBRARY, bob.id)
      yield* Deferred.succeed(answerNow, undefined)
      const outcome = yield* request.await.pipe(Effect.flatten)
      expect(Either.isLeft(outcome)).toBe(true)
      // the pairing failed: bob must not be a member again
      expect(yield* membersOf(alice.libraries)).toEqual(["alice"])
    }))
})
