import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Binary from "../crdt/Binary.js"
import type { NodeId } from "../crdt/Timestamp.js"
import * as Timestamp from "../crdt/Timestamp.js"
import * as VersionVector from "../crdt/VersionVector.js"
import type * as Engine from "../engine/Engine.js"
import * as Model from "../engine/Model.js"
import * as Engines from "../engine/testing/Engines.js"
import * as Snapshot from "../engine/testing/Snapshot.js"
import * as SyncProtocol from "./SyncProtocol.js"
import * as SyncSession from "./SyncSession.js"
import * as ChannelPair from "./testing/ChannelPair.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, body: Model.RichText }))
const options: SyncSession.Options = { library: "lib-1", batchSize: 50, window: 2 }

const connect = (a: Engine.Service, b: Engine.Service) =>
  Effect.gen(function*() {
    const pair = yield* ChannelPair.make()
    yield* Effect.fork(SyncSession.run(a, pair.left, { ...options, remote: b.node }))
    yield* Effect.fork(SyncSession.run(b, pair.right, { ...options, remote: a.node }))
  })

const eventually = (check: Effect.Effect<boolean, unknown>, timeout = Duration.seconds(10)) =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep(Duration.millis(5))
  }).pipe(Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error("condition not reached in time") }))

const sameState = (engines: ReadonlyArray<Engine.Service>) =>
  Effect.gen(function*() {
    const snapshots = yield* Effect.forEach(engines, Snapshot.snapshot)
    return snapshots.every((s) => JSON.stringify(s) === JSON.stringify(snapshots[0]))
  })

/** Reads the frames a raw remote gets, acknowledging every batch; returns the operations received. */
const rawRemote = (side: ChannelPair.End, received: Array<number>) =>
  Stream.runForEach(side.frames, (frame) =>
    Either.match(SyncProtocol.decode(frame), {
      onLeft: () => Effect.void,
      onRight: (message) => {
        if (message._tag !== "Ops") return Effect.void
        received.push(message.ops.length)
        return side.send(SyncProtocol.encode({ _tag: "Ack", entries: VersionVector.advance(VersionVector.empty, message.ops) }))
      }
    }))

describe("SyncSession: vectors", () => {
  it.scopedLive("peers named like Object.prototype members write and converge through a chain (a–b, b–c)", () =>
    Effect.gen(function*() {
      const a = yield* Engines.open({ models: [notes], node: "__proto__" })
      const b = yield* Engines.open({ models: [notes], node: "constructor" })
      const c = yield* Engines.open({ models: [notes], node: "hasOwnProperty" })
      yield* connect(a, b)
      yield* connect(b, c)
      for (const [i, engine] of [a, b, c].entries()) {
        yield* engine.mutate([notes.create(`n${i}`, { title: engine.node, body: "" })])
        yield* engine.mutate([notes.update(`n${i}`, { title: `${engine.node} again` })])
      }
      yield* eventually(Effect.map(Effect.forEach([a, b, c], (e) => e.query(notes)), (all) => all.every((rows) => rows.length === 3)))
      yield* eventually(sameState([a, b, c]))
      for (const engine of [a, b, c]) {
        const vector = yield* engine.versionVector
        expect([...vector.keys()].sort()).toEqual(["__proto__", "constructor", "hasOwnProperty"])
        expect([...vector.values()].map((e) => e.seq)).toEqual([2, 2, 2])
      }
    }))

  it.scopedLive("a remote that keeps announcing an empty vector gets the log again at most once per replay interval", () =>
    Effect.gen(function*() {
      const a = yield* Engines.open({ models: [notes], node: "peer-a" })
      for (let i = 0; i < 20; i++) yield* a.mutate([notes.create(`n${i}`, { title: "t", body: "" })])
      const pair = yield* ChannelPair.make(64)
      yield* Effect.fork(SyncSession.run(a, pair.left, { ...options, batchSize: 5, antiEntropyInterval: Duration.seconds(60) }))
      const received: Array<number> = []
      yield* Effect.fork(rawRemote(pair.right, received))
      yield* pair.right.send(SyncProtocol.encode({ _tag: "Hello", node: "peer-x" as NodeId, library: "lib-1", entries: VersionVector.empty, more: false }))
      yield* eventually(Effect.sync(() => received.reduce((n, k) => n + k, 0) === 20))
      for (let i = 0; i < 10; i++) {
        yield* pair.right.send(SyncProtocol.encode({ _tag: "Vector", entries: VersionVector.empty, more: false }))
        yield* Effect.sleep(Duration.millis(20))
      }
      yield* Effect.sleep(Duration.millis(200))
      expect(received.reduce((n, k) => n + k, 0)).toBe(20)
    }))

  it.scopedLive("past the replay interval, a remote restored from an older copy is served again, once", () =>
    Effect.gen(function*() {
      const a = yield* Engines.open({ models: [notes], node: "peer-a" })
      for (let i = 0; i < 20; i++) yield* a.mutate([notes.create(`n${i}`, { title: "t", body: "" })])
      const pair = yield* ChannelPair.make(64)
      yield* Effect.fork(SyncSession.run(a, pair.left, { ...options, batchSize: 5, replayInterval: Duration.millis(300), antiEntropyInterval: Duration.seconds(60) }))
      const received: Array<number> = []
      yield* Effect.fork(rawRemote(pair.right, received))
      yield* pair.right.send(SyncProtocol.encode({ _tag: "Hello", node: "peer-x" as NodeId, library: "lib-1", entries: VersionVector.empty, more: false }))
      yield* eventually(Effect.sync(() => received.reduce((n, k) => n + k, 0) === 20))
      yield* Effect.sleep(Duration.millis(400))
      for (let i = 0; i < 5; i++) yield* pair.right.send(SyncProtocol.encode({ _tag: "Vector", entries: VersionVector.empty, more: false }))
      yield* eventually(Effect.sync(() => received.reduce((n, k) => n + k, 0) === 40))
      yield* Effect.sleep(Duration.millis(200))
      expect(received.reduce((n, k) => n + k, 0)).toBe(40)
    }))

  const helloFrom = (origins: number, pageEntries: number) => {
    const ts = Timestamp.make(Date.now(), 0)
    const vector = VersionVector.fromEntries(Array.from({ length: origins }, (_, i) => [`o${i}`, { seq: 1, ts }] as const))
    return SyncProtocol.vectorFrames(vector, (entries, more) => ({ _tag: "Hello", node: "peer-x" as NodeId, library: "lib-1", entries, more }), pageEntries)
  }

  const ending = (frames: ReadonlyArray<Uint8Array>, opts: Partial<SyncSession.Options> = {}) =>
    Effect.gen(function*() {
      const a = yield* Engines.open({ models: [notes], node: "peer-a" })
      const pair = yield* ChannelPair.make(64)
      const session = yield* Effect.fork(SyncSession.run(a, pair.left, { ...options, ...opts }))
      yield* Effect.fork(Stream.runDrain(pair.right.frames))
      for (const frame of frames) yield* pair.right.send(frame)
      return yield* Fiber.await(session).pipe(Effect.timeout(Duration.seconds(5)))
    })

  it.scopedLive("a vector over several pages is read whole before anything is sent; more origins than maxOrigins end the session with TooManyOrigins", () =>
    Effect.gen(function*() {
      const pages = helloFrom(25, 10)
      expect(pages.length).toBe(3)
      const exit = yield* ending(pages, { maxOrigins: 20 })
      expect(exit).toStrictEqual(Exit.fail(expect.objectContaining({ _tag: "SyncError", reason: "TooManyOrigins" })))
    }))

  it.scopedLive("a page out of place is a violation: More with no vector before it, or anything else inside one", () =>
    Effect.gen(function*() {
      const pages = helloFrom(25, 10)
      const more = SyncProtocol.encode({ _tag: "More", entries: VersionVector.empty, more: false })
      const ops = Binary.encode([SyncProtocol.VERSION, 1, [], false])
      for (const frames of [[pages[0]!, ops], [pages[0]!, pages[1]!, pages[0]!], [helloFrom(1, 10)[0]!, more]]) {
        const exit = yield* ending(frames)
        expect(exit).toStrictEqual(Exit.fail(expect.objectContaining({ _tag: "ProtocolError", reason: expect.stringMatching(/Unexpected|Malformed/) })))
      }
    }))

  it.scopedLive("a vector page naming one origin twice, an origin that is no node id, a seq of 0, cut short, or not bytes at all is Malformed", () =>
    Effect.gen(function*() {
      const ts = Timestamp.make(Date.now(), 0)
      const page = (entries: ReadonlyArray<readonly [string, number]>) => VersionVector.encodePage(entries.map(([origin, seq]) => [origin, { seq, ts }] as const))
      const good = page([["o1", 1], ["o2", 1]])
      expect(Either.isRight(VersionVector.decodePage(good, 10))).toBe(true)
      for (const entries of [page([["o1", 1], ["o1", 2]]), page([["not an id", 1]]), page([["o1", 0]]), good.subarray(0, good.length - 1), "o1", [{ toString: 1 }, 1, ts]]) {
        const exit = yield* ending([Binary.encode([SyncProtocol.VERSION, 0, "peer-x", "lib-1", entries, false])])
        expect(exit).toStrictEqual(Exit.fail(expect.objectContaining({ _tag: "ProtocolError", reason: "Malformed" })))
      }
    }))
})
