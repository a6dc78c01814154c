import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Engine from "../../engine/Engine.js"
import * as Model from "../../engine/Model.js"
import * as Engines from "../../engine/testing/Engines.js"
import * as Framing from "../../transport/Framing.js"
import type { PeerId } from "../../transport/Transport.js"
import * as Libraries from "../../library/Libraries.js"
import * as Sync from "../sync/Sync.js"
import * as SyncProtocol from "../sync/Protocol.js"
import * as Consent from "../Consent.js"
import * as Hosts from "../testing/Hosts.js"
import * as Pair from "./Pair.js"
import * as Protocol from "./Protocol.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, body: Model.RichText, done: Schema.Boolean }))
const LIBRARY = "family-photos"
const peerId = (name: string) => name as PeerId

/** Waits (in real time) until `check` holds. */
const eventually = (what: string, check: Effect.Effect<boolean, unknown>, timeout = Duration.seconds(10)) =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep(Duration.millis(10))
  }).pipe(Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`${what}: not reached in time`) }))

/** How the responder's user answers: with `approve`, given the request (from the question's details). */
interface Answering extends Pair.Options {
  readonly approve: (request: { readonly peer: PeerId; readonly library: { readonly id: string; readonly name: string } }) => Effect.Effect<boolean>
  readonly consent?: Consent.Options
}
const requestOf = (question: Consent.Pending) => ({ peer: question.peer, library: { id: question.details.library!, name: question.details.libraryName! } })

/** A peer on the memory network: libraries, host, an engine for LIBRARY synced by the sync plugin, and the pair plugin. */
const peer = (
  network: Hosts.Network,
  name: string,
  initial: ReadonlyArray<Libraries.Library>,
  options: Answering,
  adapt: (libraries: Libraries.Libraries["Type"]) => Libraries.Libraries["Type"] = (libraries) => libraries
) =>
  Effect.gen(function*() {
    const { approve, consent, ...pairOptions } = options
    const host = yield* network.host(name, {
      libraries: initial,
      wrapLibraries: adapt,
      answer: (question) => approve(requestOf(question)),
      ...(consent === undefined ? {} : { consent })
    })
    const engine = yield* Engines.open({ models: [notes], node: name })
    const sync = yield* host.provide(Sync.make({
      libraries: [{ id: LIBRARY, engine }],
      retry: Schedule.spaced(Duration.millis(20))
    }))
    const pair = yield* host.provide(Pair.make(pairOptions))
    return { id: host.id, transport: host.transport, libraries: host.libraries, host: host.host, engine, sync, pair }
  })

const library = (...members: ReadonlyArray<string>): Libraries.Library => ({ id: LIBRARY, name: "Family photos", members: members.map(peerId) })

const membersOf = (libraries: Libraries.Libraries["Type"]) =>
  Effect.map(libraries.get(LIBRARY), Option.match({ onNone: () => undefined, onSome: (l) => [...l.members].sort() }))

const has = (engine: Engine.Service, id: string) => Effect.map(engine.get(notes, id), Option.isSome)

const pairError = <A>(outcome: Either.Either<A, unknown>): Pair.PairError => {
  expect(Either.isLeft(outcome), "expected the pairing to fail").toBe(true)
  const error = Either.isLeft(outcome) ? outcome.left : undefined
  expect(error).toBeInstanceOf(Pair.PairError)
  return error as Pair.PairError
}

describe("Pair", () => {
  it.scopedLive("approved: both sides list each other as members, and sync starts and carries changes both ways", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 1 })
      const asked = yield* Ref.make<ReadonlyArray<ReturnType<typeof requestOf>>>([])
      const alice = yield* peer(network, "alice", [library("alice")], { approve: () => Effect.succeed(false) })
      const bob = yield* peer(network, "bob", [], { approve: (request) => Effect.as(Ref.update(asked, (all) => [...all, request]), true) })
      yield* alice.transport.connect("memory://bob")

      const paired = yield* alice.pair.pair(bob.id, LIBRARY)
      expect([...paired.members].sort()).toEqual(["alice", "bob"])
      expect(yield* Ref.get(asked)).toEqual([{ peer: "alice", library: { id: LIBRARY, name: "Family photos" } }])
      // bob did not have the library: it now does, under the same id and name
      expect(yield* membersOf(alice.libraries)).toEqual(["alice", "bob"])
      expect(yield* membersOf(bob.libraries)).toEqual(["alice", "bob"])
      expect(Option.map(yield* bob.libraries.get(LIBRARY), (l) => l.name)).toEqual(Option.some("Family photos"))

      // the peers were already connected: the sync plugin starts a session on the membership change
      yield* alice.engine.mutate([notes.create("n1", { title: "from alice", body: "hello", done: false })])
      yield* eventually("alice's note reaches bob", has(bob.engine, "n1"))
      yield* bob.engine.mutate([notes.create("n2", { title: "from bob", body: "hi", done: true })])
      yield* eventually("bob's note reaches alice", has(alice.engine, "n2"))
      const sessions = yield* alice.sync.status
      expect(sessions.map((s) => [s.peer, s.library, s.state])).toEqual([["bob", LIBRARY, "syncing"]])

      // pairing again is accepted without asking (already a member) and changes nothing
      yield* alice.pair.pair(bob.id, LIBRARY)
      expect((yield* Ref.get(asked)).length).toBe(1)
      expect(yield* membersOf(bob.libraries)).toEqual(["alice", "bob"])
    }))

  it.scopedLive("the responder opens sync as soon as it has recorded the membership: the requester, still recording, lets it in (no refusal, no failure)", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 6 })
      // amy (the smaller id) opens the sessions; zed asks, and records the membership 300 ms after amy has
      const slowly = (libraries: Libraries.Libraries["Type"]): Libraries.Libraries["Type"] => ({
        ...libraries,
        addMember: (id, member) => Effect.zipRight(Effect.sleep(Duration.millis(300)), libraries.addMember(id, member))
      })
      const zed = yield* peer(network, "zed", [library("zed")], { approve: () => Effect.succeed(false) }, slowly)
      const amy = yield* peer(network, "amy", [], { approve: () => Effect.succeed(true) })
      const failures = yield* Ref.make<ReadonlyArray<string>>([])
      const note = (what: string) => Ref.update(failures, (all) => [...all, what])
      yield* Effect.forkScoped(Stream.runForEach(yield* amy.sync.failures, (failure) => note(failure.error.message)))
      yield* Effect.forkScoped(Stream.runForEach(yield* zed.host.events, (event) => event._tag === "Refused" ? note(event.detail) : Effect.void))
      yield* zed.transport.connect("memory://amy")

      yield* zed.pair.pair(amy.id, LIBRARY)
      yield* zed.engine.mutate([notes.create("n1", { title: "from zed", body: "", done: false })])
      yield* eventually("zed's note reaches amy", has(amy.engine, "n1"))
      yield* amy.engine.mutate([notes.create("n2", { title: "from amy", body: "", done: false })])
      yield* eventually("amy's note reaches zed", has(zed.engine, "n2"))
      expect(yield* Ref.get(failures)).toEqual([])
    }))

  it.scopedLive("a peer being paired is let in only by the membership: a pairing that fails still refuses its stream", () =>
    Effect.gen(function*() {
      const libraries = yield* Effect.provide(Libraries.Libraries, Libraries.layerMemory([library("zed")]))
      // no pairing in progress: answered at once
      const start = Date.now()
      expect(yield* libraries.admits(LIBRARY, "amy", Duration.seconds(5))).toBe(false)
      expect(Date.now() - start).toBeLessThan(1000)
      // a pairing that records the membership: admitted once it does
      const admitted = yield* Effect.scoped(Effect.gen(function*() {
        yield* libraries.pairing(LIBRARY, peerId("amy"))
        const waiting = yield* Effect.fork(libraries.admits(LIBRARY, "amy", Duration.seconds(5)))
        yield* Effect.sleep(Duration.millis(50))
        yield* libraries.addMember(LIBRARY, peerId("amy"))
        return yield* Fiber.join(waiting)
      }))
      expect(admitted).toBe(true)
      // a pairing that ends without the membership: refused when it ends, long before the bound
      const ended = Date.now()
      const refused = yield* Effect.scoped(Effect.gen(function*() {
        yield* libraries.pairing(LIBRARY, peerId("bea"))
        return yield* Effect.fork(libraries.admits(LIBRARY, "bea", Duration.seconds(5)))
      }).pipe(Effect.tap(() => Effect.sleep(Duration.millis(50)))))
      expect(yield* Fiber.join(refused)).toBe(false)
      expect(Date.now() - ended).toBeLessThan(1000)
      // a pairing that never ends is bounded by `within`
      yield* libraries.pairing(LIBRARY, peerId("cal"))
      expect(yield* libraries.admits(LIBRARY, "cal", Duration.millis(100))).toBe(false)
    }))

  it.scopedLive("refused: the requester gets PairError Refused, and no membership changes on either side", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 2 })
      const alice = yield* peer(network, "alice", [library("alice")], { approve: () => Effect.succeed(false) })
      const bob = yield* peer(network, "bob", [], { approve: () => Effect.succeed(false) })
      yield* alice.transport.connect("memory://bob")

      const error = pairError(yield* Effect.either(alice.pair.pair(bob.id, LIBRARY)))
      expect(error.reason).toBe("Refused")
      expect(error.peer).toBe("bob")
      expect(yield* membersOf(alice.libraries)).toEqual(["alice"])
      expect(yield* bob.libraries.list).toEqual([])
      // and nothing syncs
      yield* alice.engine.mutate([notes.create("n1", { title: "private", body: "", done: false })])
      yield* Effect.sleep(Duration.millis(100))
      expect(yield* has(bob.engine, "n1")).toBe(false)
    }))

  it.scopedLive("no answer in time: PairError Timeout, the question is withdrawn, no membership changes", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 3 })
      const withdrawn = yield* Ref.make(false)
      const alice = yield* peer(network, "alice", [library("alice")], { approve: () => Effect.succeed(false) })
      const bob = yield* peer(network, "bob", [], {
        approve: () => Effect.never.pipe(Effect.onInterrupt(() => Ref.set(withdrawn, true)))
      })
      yield* alice.transport.connect("memory://bob")

      const error = pairError(yield* Effect.either(alice.pair.pair(bob.id, LIBRARY, { timeout: Duration.millis(200) })))
      expect(error.reason).toBe("Timeout")
      // the requester gave up: bob's question is interrupted
      yield* eventually("the question is withdrawn", Ref.get(withdrawn))
      expect(yield* membersOf(alice.libraries)).toEqual(["alice"])
      expect(yield* bob.libraries.list).toEqual([])
    }))

  it.scopedLive("the responder's user does not decide in time: PairError Timeout, no membership changes", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 4 })
      const alice = yield* peer(network, "alice", [library("alice")], { approve: () => Effect.succeed(false) })
      const bob = yield* peer(network, "bob", [], { approve: () => Effect.never, approvalTimeout: Duration.millis(100) })
      yield* alice.transport.connect("memory://bob")

      const error = pairError(yield* Effect.either(alice.pair.pair(bob.id, LIBRARY)))
      expect(error.reason).toBe("Timeout")
      expect(error.detail).toContain("the peer refused")
      expect(yield* membersOf(alice.libraries)).toEqual(["alice"])
      expect(yield* bob.libraries.list).toEqual([])
    }))

  it.scopedLive("an unpaired peer cannot open the sync protocol: the host refuses it (NotAMember) and nothing is written", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 5 })
      // ivan claims victor in its own list (so ivan's sync plugin tries to open sessions), but victor never paired with ivan
      const victor = yield* peer(network, "victor", [library("victor")], { approve: () => Effect.succeed(false) })
      const ivan = yield* peer(network, "ivan", [library("ivan", "victor")], { approve: () => Effect.succeed(false) })
      const refusals = yield* victor.host.events
      yield* ivan.engine.mutate([notes.create("x", { title: "intruder", body: "", done: false })])
      yield* ivan.transport.connect("memory://victor")

      // ivan's sync plugin opens a session and is refused
      const refused = yield* refusals.pipe(Stream.filter((e) => e._tag === "Refused"), Stream.runHead, Effect.timeout(Duration.seconds(5)))
      expect(Option.map(refused, (e) => e._tag === "Refused" && [e.peer, e.protocol])).toEqual(Option.some(["ivan", SyncProtocol.protocol.protocol]))

      // and so is a stream opened by hand
      const opened = yield* Effect.either(Effect.scoped(ivan.host.open(victor.id, SyncProtocol.protocol, LIBRARY)))
      expect(Either.isLeft(opened) && opened.left).toMatchObject({ _tag: "PermissionError", reason: "NotAMember", peer: "victor", library: LIBRARY })

      yield* Effect.sleep(Duration.millis(100))
      expect((yield* victor.engine.versionVector).size).toBe(0)
      expect(yield* victor.engine.query(notes)).toEqual([])
      expect(yield* victor.sync.status).toEqual([])
    }))

  it.scopedLive("malformed, oversize and other-version requests are answered or dropped without asking anyone", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 6 })
      const asked = yield* Ref.make(0)
      const bob = yield* peer(network, "bob", [], { approve: () => Effect.as(Ref.update(asked, (n) => n + 1), true) })
      const mallory = yield* network.network.transport("mallory")
      yield* mallory.connect("memory://bob")
      const exchange = (bytes: Uint8Array) =>
        Effect.scoped(Effect.gen(function*() {
          const stream = yield* mallory.open(bob.id, Protocol.PROTOCOL_ID)
          yield* stream.write(bytes)
          yield* stream.end
          const frames = yield* Stream.runCollect(Framing.decode(Protocol.MAX_FRAME_BYTES)(stream.source)).pipe(Effect.either)
          return Either.map(frames, (chunk) => Chunk.toArray(chunk).map((frame) => JSON.parse(new TextDecoder().decode(frame))))
        }))
      const frame = (value: unknown) => Framing.encode(new TextEncoder().encode(JSON.stringify(value)))

      // not a pairing message: dropped with no answer
      const garbage = yield* exchange(frame({ hello: "there" }))
      expect(Either.getOrElse(garbage, () => [])).toEqual([])
      // a request with a library id that is not an id
      const badId = yield* exchange(frame({ version: 1, type: "Request", library: { id: "../../etc", name: "x" } }))
      expect(Either.getOrElse(badId, () => [])).toEqual([])
      // a frame over the bound: the stream is dropped before it is read
      const oversize = new Uint8Array(8)
      new DataView(oversize.buffer).setUint32(0, Protocol.MAX_FRAME_BYTES + 1)
      const big = yield* exchange(oversize)
      expect(Either.getOrElse(big, () => [])).toEqual([])
      // another version: a clear refusal
      const future = yield* exchange(frame({ version: 2, type: "Request", library: { id: LIBRARY, name: "x" } }))
      expect(future).toEqual(Either.right([{ version: 1, type: "Refused", reason: "Unsupported", detail: "the peer speaks version 2, we speak 1" }]))

      expect(yield* Ref.get(asked)).toBe(0)
      expect(yield* bob.libraries.list).toEqual([])
    }))

  it.scopedLive("a requester whose connection drops after the responder accepted: the responder's membership is undone", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 7 })
      const bob = yield* peer(network, "bob", [library("bob")], { approve: () => Effect.succeed(true) })
      const mallory = yield* network.network.transport("mallory")
      yield* mallory.connect("memory://bob")
      const stream = yield* mallory.open(bob.id, Protocol.PROTOCOL_ID)
      yield* stream.write(Framing.encode(new TextEncoder().encode(JSON.stringify({ version: 1, type: "Request", library: { id: LIBRARY, name: "x" } }))))
      const answer = yield* Stream.runHead(Framing.decode(Protocol.MAX_FRAME_BYTES)(stream.source))
      expect(Option.map(answer, (frame) => JSON.parse(new TextDecoder().decode(frame)))).toEqual(Option.some({ version: 1, type: "Accepted" }))
      expect(yield* membersOf(bob.libraries)).toEqual(["bob", "mallory"])
      // gone before confirming
      yield* network.network.disconnect("mallory", "bob")
      yield* eventually("bob undoing the membership", Effect.map(membersOf(bob.libraries), (members) => members?.length === 1))
      expect(yield* membersOf(bob.libraries)).toEqual(["bob"])
    }))

  it.scopedLive("a request naming a library this peer has is asked about under this peer's name for it", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 8 })
      const asked = yield* Ref.make<ReadonlyArray<string>>([])
      const bob = yield* peer(network, "bob", [library("bob")], {
        approve: ({ library }) => Effect.as(Ref.update(asked, (all) => [...all, library.name]), false)
      })
      const mallory = yield* network.network.transport("mallory")
      yield* mallory.connect("memory://bob")
      yield* Effect.scoped(Effect.gen(function*() {
        const stream = yield* mallory.open(bob.id, Protocol.PROTOCOL_ID)
        yield* stream.write(Framing.encode(new TextEncoder().encode(JSON.stringify({ version: 1, type: "Request", library: { id: LIBRARY, name: "Holiday snaps" } }))))
        yield* Stream.runHead(Framing.decode(Protocol.MAX_FRAME_BYTES)(stream.source))
      }))
      expect(yield* Ref.get(asked)).toEqual(["Family photos"])
    }))

  it.scopedLive("pairing names a library this peer has", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 7 })
      const alice = yield* peer(network, "alice", [], { approve: () => Effect.succeed(true) })
      const bob = yield* peer(network, "bob", [], { approve: () => Effect.succeed(true) })
      yield* alice.transport.connect("memory://bob")
      const outcome = yield* Effect.either(alice.pair.pair(bob.id, "no-such-library"))
      expect(Either.isLeft(outcome) && outcome.left).toMatchObject({ _tag: "LibraryError", reason: "NotFound" })
      expect(yield* bob.libraries.list).toEqual([])
    }))
})
