import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import * as Binary from "../crdt/Binary.js"
import * as VersionVector from "../crdt/VersionVector.js"
import type { NodeId } from "../crdt/Timestamp.js"
import type * as Engine from "../engine/Engine.js"
import * as Model from "../engine/Model.js"
import * as SyncProtocol from "./SyncProtocol.js"
import * as SyncSession from "./SyncSession.js"
import * as ChannelPair from "./testing/ChannelPair.js"
import * as Engines from "../engine/testing/Engines.js"
import * as Snapshot from "../engine/testing/Snapshot.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, rank: Schema.Number, body: Model.RichText }))
const models = [notes]
const open = (node: string) => Engines.open({ models, node })
const options: SyncSession.Options = { library: "lib-1", batchSize: 50, window: 2 }

const write = (engine: Engine.Service, prefix: string, count: number) =>
  Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) =>
    engine.mutate([notes.create(`${prefix}${i}`, { title: `${prefix} ${i}`, rank: i, body: `text ${i}` })]), { discard: true })

/** Runs a session between two engines; returns the fibers and the pair. */
const connect = (a: Engine.Service, b: Engine.Service, opts: SyncSession.Options = options) =>
  Effect.gen(function*() {
    const pair = yield* ChannelPair.make()
    const left = yield* Effect.fork(SyncSession.run(a, pair.left, { ...opts, remote: b.node }))
    const right = yield* Effect.fork(SyncSession.run(b, pair.right, { ...opts, remote: a.node }))
    return { pair, left, right }
  })

const sameState = (engines: ReadonlyArray<Engine.Service>) =>
  Effect.gen(function*() {
    const snapshots = yield* Effect.forEach(engines, Snapshot.snapshot)
    return snapshots.every((s) => JSON.stringify(s) === JSON.stringify(snapshots[0]))
  })

/** Waits (in real time) until `check` holds. */
// the pause between checks grows: a check that snapshots both engines holds their writers, and
// polled every 5 ms on a loaded machine it left the ingest it waits for little room to run
const eventually = (check: Effect.Effect<boolean, unknown>, timeout = Duration.seconds(10)) =>
  Effect.gen(function*() {
    let pause = 5
    while (!(yield* check)) {
      yield* Effect.sleep(Duration.millis(pause))
      pause = Math.min(100, pause * 2)
    }
  }).pipe(Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error("condition not reached in time") }))

describe("SyncSession", () => {
  it.scopedLive("two peers with different histories converge, in both directions", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      const b = yield* open("peer-b")
      yield* write(a, "a", 120)
      yield* write(b, "b", 70)
      yield* a.mutate([notes.update("a1", { rank: 1000 })])
      yield* connect(a, b)
      yield* eventually(sameState([a, b]))
      expect((yield* a.query(notes)).length).toBe(190)
    }))

  it.scopedLive("pushes new local writes to a connected peer, then ends cleanly when the channel ends", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      const b = yield* open("peer-b")
      const { left, pair, right } = yield* connect(a, b)
      yield* a.mutate([notes.create("n1", { title: "live", rank: 1, body: "" })])
      yield* eventually(Effect.map(b.get(notes, "n1"), Option.isSome))
      yield* b.mutate([notes.splice("n1", "body", { index: 0, deleteCount: 0, insert: "from b" })])
      yield* eventually(Effect.map(a.get(notes, "n1"), (row) => Option.isSome(row) && row.value.body === "from b"))
      yield* pair.left.end
      yield* pair.right.end
      expect(Exit.isSuccess(yield* Fiber.await(left))).toBe(true)
      expect(Exit.isSuccess(yield* Fiber.await(right))).toBe(true)
    }))

  it.scopedLive("gathers quick local writes into few batches with no debounce (gathered while the window is full, not one round per write)", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      const b = yield* open("peer-b")
      const pair = yield* ChannelPair.make()
      let batches = 0
      const counting = { ...options, onEvent: (e: SyncSession.Event) => Effect.sync(() => { if (e._tag === "Received" && e.ops > 0) batches++ }) }
      yield* Effect.fork(SyncSession.run(a, pair.left, options))
      yield* Effect.fork(SyncSession.run(b, pair.right, counting))
      yield* Effect.sleep(Duration.millis(50))
      yield* write(a, "q", 40) // 40 commits of 2 operations each, back to back
      yield* eventually(Effect.map(b.query(notes), (rows) => rows.length === 40))
      expect(batches).toBeLessThanOrEqual(4)
    }))

  it.scopedLive("relays: A syncs with B, B with C; C gets A's operations through B", () =>
    Effect.gen(function*() {
      const [a, b, c] = yield* Effect.all([open("peer-a"), open("peer-b"), open("peer-c")])
      yield* connect(a, b)
      yield* connect(b, c)
      yield* write(a, "a", 30)
      yield* write(c, "c", 10)
      yield* eventually(sameState([a, b, c]))
      expect((yield* c.query(notes)).length).toBe(40)
    }))

  it.scopedLive("a dropped connection mid-catch-up resumes on reconnect with no gap and nothing applied twice", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      const b = yield* open("peer-b")
      yield* write(a, "a", 400)
      let received = 0
      const pair = yield* ChannelPair.make()
      // the connection drops right after the receiver applied its second batch
      const cutting = {
        ...options,
        onEvent: (e: SyncSession.Event) =>
          e._tag === "Received" && (received += e.applied) >= 100 ? pair.cut : Effect.void
      }
      const left = yield* Effect.fork(SyncSession.run(a, pair.left, options))
      const right = yield* Effect.fork(SyncSession.run(b, pair.right, cutting))
      const failure = yield* Fiber.await(right)
      expect(Exit.isFailure(failure)).toBe(true)
      yield* Fiber.await(left)
      const partial = (yield* Snapshot.snapshot(b)).log.length
      expect(partial).toBeGreaterThan(0)
      // what was already in the pipe may still land; the rest must wait for the next session
      expect(partial).toBeGreaterThanOrEqual(100)
      expect(partial).toBeLessThan(800)
      // per origin, b holds a prefix: 1..n without holes
      const seqs = (yield* Snapshot.snapshot(b)).log.map(([id]) => Number(id.split("/")[1]))
      expect(seqs).toEqual(seqs.map((_, i) => i + 1))
      yield* connect(a, b)
      yield* eventually(sameState([a, b]))
      expect((yield* Snapshot.snapshot(b)).log.length).toBe(800)
    }))

  it.scopedLive("keeps at most `window` batches unacknowledged (a slow receiver bounds the sender)", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      yield* write(a, "a", 200)
      const pair = yield* ChannelPair.make(64)
      yield* Effect.fork(SyncSession.run(a, pair.left, { ...options, batchSize: 10, window: 3 }))
      // a remote that says Hello and reads everything, but never acknowledges
      yield* pair.right.send(SyncProtocol.encode({ _tag: "Hello", node: "peer-x" as any, library: "lib-1", entries: VersionVector.empty, more: false }))
      const seen = yield* pair.right.frames.pipe(
        Stream.map((frame) => Either.match(SyncProtocol.decode(frame), { onLeft: () => "?", onRight: (m) => m._tag })),
        Stream.interruptAfter(Duration.millis(300)),
        Stream.runCollect
      )
      expect([...seen]).toEqual(["Hello", "Ops", "Ops", "Ops"])
    }))
})

describe("SyncSession: bad input ends the session with a typed error and writes nothing", () => {
  const against = (frames: ReadonlyArray<Uint8Array>, opts: Partial<SyncSession.Options> = {}) =>
    Effect.gen(function*() {
      const b = yield* open("peer-b")
      yield* write(b, "b", 3)
      const before = yield* Snapshot.snapshot(b)
      const pair = yield* ChannelPair.make(64)
      const session = yield* Effect.fork(SyncSession.run(b, pair.right, { ...options, ...opts }))
      for (const frame of frames) yield* pair.left.send(frame)
      const exit = yield* Fiber.await(session)
      const after = yield* Snapshot.snapshot(b)
      const sent = yield* pair.left.frames.pipe(Stream.interruptAfter(Duration.millis(100)), Stream.runCollect, Effect.option)
      return { exit, unchanged: JSON.stringify(after) === JSON.stringify(before), sent }
    })
  const hello = (over: Partial<{ node: string; library: string }> = {}) =>
    SyncProtocol.encode({ _tag: "Hello", node: (over.node ?? "peer-a") as any, library: over.library ?? "lib-1", entries: VersionVector.empty, more: false })
  const errorOf = (exit: Exit.Exit<void, unknown>) =>
    Exit.isFailure(exit) ? (exit.cause._tag === "Fail" ? exit.cause.error as { _tag: string; reason?: string } : undefined) : undefined

  it.scopedLive("garbage bytes", () =>
    Effect.gen(function*() {
      const { exit, unchanged } = yield* against([new Uint8Array([0xc1, 0x00, 0xff])])
      expect(errorOf(exit)).toMatchObject({ _tag: "ProtocolError", reason: "Malformed" })
      expect(unchanged).toBe(true)
    }))

  it.scopedLive("a small frame nested thousands deep, or one with a huge wrong value: a Malformed ProtocolError with a short detail, not a defect", () =>
    Effect.gen(function*() {
      // [VERSION, Vector, [[[[…1]]]], false]: 10 KB, deeper than the error formatter's stack reaches
      const nested = new Uint8Array(3 + 10_000 + 1)
      nested.set([0x94, SyncProtocol.VERSION, 0x03])
      nested.fill(0x91, 3, 3 + 10_000)
      nested[3 + 10_000] = 0x01
      const nestedFrame = new Uint8Array([...nested, 0xc2])
      const wide = Array.from({ length: 50_000 }, (_, i) => `not a vector ${i}`)
      for (const frame of [nestedFrame, Binary.encode([SyncProtocol.VERSION, 3, wide, false])]) {
        const { exit, unchanged } = yield* against([hello(), frame])
        const error = errorOf(exit) as { _tag: string; reason: string; detail: string } | undefined
        expect(error).toMatchObject({ _tag: "ProtocolError", reason: "Malformed" })
        expect(error!.detail.length).toBeLessThanOrEqual(2048)
        expect(unchanged).toBe(true)
      }
    }))

  it.scopedLive("another protocol version", () =>
    Effect.gen(function*() {
      const { exit } = yield* against([Binary.encode([1, 0, "peer-a", "lib-1", {}])])
      expect(errorOf(exit)).toMatchObject({ _tag: "SyncError", reason: "VersionMismatch" })
    }))

  it.scopedLive("another library, or a Hello naming someone else than the authenticated peer", () =>
    Effect.gen(function*() {
      expect(errorOf((yield* against([hello({ library: "other" })])).exit)).toMatchObject({ reason: "LibraryMismatch" })
      expect(errorOf((yield* against([hello({ node: "mallory" })], { remote: "peer-a" })).exit)).toMatchObject({ reason: "PeerMismatch" })
    }))

  it.scopedLive("out-of-protocol messages", () =>
    Effect.gen(function*() {
      expect(errorOf((yield* against([SyncProtocol.encode({ _tag: "Ack", entries: VersionVector.empty })])).exit)).toMatchObject({ _tag: "ProtocolError", reason: "Unexpected" })
      // after the Hello, the session may have sent its one batch (3 operations) before it reads the
      // first Ack, which then acknowledges it: a second Ack has none in flight either way
      const ack = SyncProtocol.encode({ _tag: "Ack", entries: VersionVector.empty })
      expect(errorOf((yield* against([hello(), ack, ack])).exit)).toMatchObject({ _tag: "ProtocolError", reason: "Unexpected" })
      expect(errorOf((yield* against([hello(), hello()])).exit)).toMatchObject({ _tag: "ProtocolError", reason: "Unexpected" })
    }))

  it.scopedLive("a batch that fails to apply: the error is the session's, nothing is written, the remote is told", () =>
    Effect.gen(function*() {
      const bad = SyncProtocol.encode({
        _tag: "Ops",
        hasMore: false,
        ops: [
          { _tag: "Create", origin: "peer-a" as any, seq: 1, ts: "018bcfe568000000" as any, model: "notes" as any, record: "x", fields: { title: "ok", rank: 1 } },
          { _tag: "Update", origin: "peer-a" as any, seq: 2, ts: "018bcfe568000001" as any, model: "notes" as any, record: "x", fields: { rank: "not a number" } }
        ]
      })
      const { exit, sent, unchanged } = yield* against([hello(), bad])
      expect(errorOf(exit)).toMatchObject({ _tag: "ValidationError", reason: "InvalidValue", field: "rank" })
      expect(unchanged).toBe(true)
      const tags = Option.getOrElse(Option.map(sent, (c) => [...c].map((f) => { const m = SyncProtocol.decode(f); return m._tag === "Right" ? m.right._tag : "?" })), () => [] as Array<string>)
      expect(tags).toContain("Abort")
    }))
})

describe("SyncSession: a remote that stops", () => {
  it.scopedLive("one that says Hello, then neither reads nor acknowledges, ends the session with Timeout", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      for (let i = 0; i < 50; i++) yield* engine.mutate([notes.create(`n${i}`, { title: "t", rank: i, body: "" })])
      const pair = yield* ChannelPair.make(2)
      const session = yield* Effect.fork(SyncSession.run(engine, pair.left, {
        library: "lib-1",
        batchSize: 5,
        window: 2,
        stallTimeout: Duration.millis(300)
      }))
      yield* pair.right.send(SyncProtocol.encode({ _tag: "Hello", node: "peer-x" as NodeId, library: "lib-1", entries: VersionVector.empty, more: false }))
      const ended = yield* Fiber.await(session).pipe(Effect.timeout(Duration.seconds(5)))
      expect(Exit.isFailure(ended) && Cause.failureOption(ended.cause)).toEqual(Option.some(expect.objectContaining({ _tag: "SyncError", reason: "Timeout" })))
    }))
})

describe("SyncSession: live updates", () => {
  /** The frames a hand-driven remote reads, one message at a time. */
  const reader = (channel: ChannelPair.End) =>
    Effect.gen(function*() {
      const pull = yield* Stream.toPull(channel.frames)
      const buffered: Array<Uint8Array> = []
      return Effect.gen(function*() {
        while (buffered.length === 0) buffered.push(...(yield* Effect.orDie(pull)))
        return Either.getOrThrow(SyncProtocol.decode(buffered.shift()!))
      })
    })
  const helloFromX = SyncProtocol.encode({ _tag: "Hello", node: "peer-x" as NodeId, library: "lib-1", entries: VersionVector.empty, more: false })

  // the test clock never moves here: a session that waited any time at all before sending would never deliver
  it.scoped("a write reaches a connected peer at once: no time passes between the commit and its delivery", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      const b = yield* open("peer-b")
      yield* connect(a, b, { library: "lib-1" })
      const arrived = yield* Effect.fork(Stream.runHead(b.subscribe({ model: "notes", record: "n1" })))
      yield* Effect.yieldNow()
      yield* a.mutate([notes.create("n1", { title: "now", rank: 1, body: "" })])
      const change = yield* Fiber.join(arrived).pipe(Effect.timeout(Duration.seconds(5)), TestServices.provideLive)
      expect(Option.map(change, (c) => [c.record, c.source])).toEqual(Option.some(["n1", "remote"]))
      expect(Option.map(yield* b.get(notes, "n1"), (row) => row.title)).toEqual(Option.some("now"))
    }))

  it.scopedLive("a full window stops sending until an Ack; what was committed meanwhile then goes as one batch", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      const pair = yield* ChannelPair.make(64)
      yield* Effect.fork(SyncSession.run(a, pair.left, { library: "lib-1", batchSize: 50, window: 1 }))
      const next = yield* reader(pair.right)
      yield* pair.right.send(helloFromX)
      expect((yield* next)._tag).toBe("Hello")
      // quiet: the first commit goes out by itself, at once
      const first = yield* a.mutate([notes.create("n0", { title: "t", rank: 0, body: "" })])
      const sent = yield* next
      expect(sent._tag === "Ops" && sent.ops.map((op) => op.seq)).toEqual(first.ops.map((op) => op.seq))
      // the window (1) is full: a commit is not sent while no Ack comes, and neither are those after it
      const more = [...(yield* a.mutate([notes.create("n1", { title: "t", rank: 1, body: "" })])).ops]
      const early = yield* Effect.either(Effect.timeout(next, Duration.millis(200)))
      expect(Either.isLeft(early)).toBe(true)
      for (let i = 2; i <= 10; i++) more.push(...(yield* a.mutate([notes.create(`n${i}`, { title: "t", rank: i, body: "" })])).ops)
      // one Ack: everything committed meanwhile comes in one batch
      yield* pair.right.send(SyncProtocol.encode({ _tag: "Ack", entries: VersionVector.empty }))
      const gathered = yield* next
      expect(gathered._tag === "Ops" && gathered.ops.map((op) => op.seq)).toEqual(more.map((op) => op.seq))
    }))

  it.scopedLive("once caught up, a commit goes out without reading the log back, and ops received wake no read on the receiver", () =>
    Effect.gen(function*() {
      const reads = { a: 0, b: 0 }
      const counted = (engine: Engine.Service, side: "a" | "b"): Engine.Service => ({
        ...engine,
        opsSince: (vector, limit) => Effect.suspend(() => {
          reads[side]++
          return engine.opsSince(vector, limit)
        })
      })
      const a = yield* open("peer-a")
      const b = yield* open("peer-b")
      yield* write(a, "old", 5)
      yield* connect(counted(a, "a"), counted(b, "b"), { library: "lib-1", batchSize: 50, window: 2 })
      yield* eventually(sameState([a, b]))
      const before = { ...reads }
      for (let i = 0; i < 20; i++) {
        yield* a.mutate([notes.create(`n${i}`, { title: "t", rank: i, body: "" })])
        yield* eventually(Effect.map(b.get(notes, `n${i}`), Option.isSome))
      }
      yield* eventually(sameState([a, b]))
      expect(reads).toEqual(before)
      // and the other way, over the same session
      yield* b.mutate([notes.update("n3", { title: "from b" })])
      yield* eventually(Effect.map(a.get(notes, "n3"), (row) => Option.isSome(row) && row.value.title === "from b"))
      expect(reads).toEqual(before)
    }))

  it.scoped("an opt-in debounce holds a write back for that long, and no longer", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      const b = yield* open("peer-b")
      yield* connect(a, b, { library: "lib-1", debounce: Duration.millis(50) })
      const arrived = yield* Effect.fork(Stream.runHead(b.subscribe({ model: "notes", record: "n1" })))
      yield* a.mutate([notes.create("n1", { title: "later", rank: 1, body: "" })])
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      yield* TestClock.adjust(Duration.millis(49))
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      expect(Option.isNone(yield* b.get(notes, "n1"))).toBe(true)
      yield* TestClock.adjust(Duration.millis(1))
      const change = yield* Fiber.join(arrived).pipe(Effect.timeout(Duration.seconds(5)), TestServices.provideLive)
      expect(Option.map(change, (c) => c.record)).toEqual(Option.some("n1"))
    }))
})
