/**
 * Rich text under load and under attack: an edit that expands past the
 * limits is refused before any work (and is the sender's violation), a big
 * legal ingest leaves the node answering other peers, and memory stays flat
 * however long a document's history grows.
 *
 * The full soak (100 000 splices across 1 000 records) runs with
 * `WEFT_SOAK=1`; the normal run does a twentieth of it.
 */
import * as Automerge from "@automerge/automerge"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Operation from "../crdt/Operation.js"
import { expanding } from "../crdt/testing/Expanding.js"
import * as Timestamp from "../crdt/Timestamp.js"
import * as Ping from "../plugins/ping/Ping.js"
import * as Hosts from "../plugins/testing/Hosts.js"
import * as SyncProtocol from "../sync/SyncProtocol.js"
import * as SyncSession from "../sync/SyncSession.js"
import * as ChannelPair from "../sync/testing/ChannelPair.js"
import * as Model from "./Model.js"
import * as Engines from "./testing/Engines.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, body: Model.RichText }))
const stranger = "peer-z" as Timestamp.NodeId

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  expect(Option.isSome(failure), `expected a typed failure, got ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "success"}`).toBe(true)
  return Option.getOrUndefined(failure) as E
}

const expandingEdit = (n: number, seq = 1): Operation.Operation =>
  ({
    _tag: "Edit",
    origin: stranger,
    seq,
    ts: Timestamp.make(seq, 0),
    model: "notes",
    record: "z1",
    field: "body",
    changes: [expanding(n)]
  }) as unknown as Operation.Operation

describe("Rich text: edits that expand", () => {
  it("the hand-made change is what it says: Automerge reads n inserts into the text", () => {
    const decoded = Automerge.decodeChange(expanding(5))
    expect(decoded.ops).toHaveLength(5)
    expect(decoded.ops.every((op) => op.obj === "1@00" && (op as { insert?: boolean }).insert === true && op.action === "set")).toBe(true)
    expect(expanding(1_000_000).length).toBeLessThan(120)
  })

  it.scoped("an Edit of ~150 bytes standing for 1 000 000 inserts is refused before it is applied, and nothing is stored", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      const refused = failureOf(yield* Effect.exit(engine.ingest([expandingEdit(1_000_000)])))
      expect(refused).toMatchObject({ _tag: "IngestError", reason: "TooLarge", origin: stranger, seq: 1 })
      expect((yield* engine.versionVector).get(stranger)).toBeUndefined()
      const logged = yield* Effect.promise(() => engine.kysely.selectFrom("weft_log").selectAll().execute())
      expect(logged).toEqual([])
      // the same record still takes an edit within the limits
      const small = yield* engine.ingest([{ ...expandingEdit(100), seq: 1 } as Operation.Operation])
      expect(small.applied).toBe(1)
    }), { timeout: 15_000 }) // the code before this took 27 s and more: it times out

  it.scopedLive("a sync session that receives it ends with a violation (the sender is disconnected), and writes nothing", () =>
    Effect.gen(function*() {
      const b = yield* Engines.open({ models: [notes], node: "peer-b" })
      const pair = yield* ChannelPair.make(64)
      const session = yield* Effect.fork(SyncSession.run(b, pair.right, { library: "lib-1" }))
      yield* pair.left.send(SyncProtocol.encode({ _tag: "Hello", node: stranger, library: "lib-1", entries: new Map(), more: false }))
      yield* pair.left.send(SyncProtocol.encode({ _tag: "Ops", ops: [expandingEdit(1_000_000)], hasMore: false }))
      const exit = yield* Fiber.await(session)
      expect(failureOf(exit)).toMatchObject({ _tag: "ProtocolError", reason: "Oversize" })
      expect((yield* engine(b)).length).toBe(0)
    }), { timeout: 15_000 })

  it.scopedLive("honest edits that fit one by one are synced in batches that fit: three pastes of 90 000 characters reach a peer", () =>
    Effect.gen(function*() {
      const a = yield* Engines.open({ models: [notes], node: "peer-a" })
      const b = yield* Engines.open({ models: [notes], node: "peer-b" })
      for (const id of ["n1", "n2", "n3"]) yield* a.mutate([notes.create(id, { title: "", body: id.repeat(45_000) })])
      const pair = yield* ChannelPair.make(64)
      yield* Effect.fork(SyncSession.run(a, pair.left, { library: "lib-1", remote: b.node }))
      const receiving = yield* Effect.fork(SyncSession.run(b, pair.right, { library: "lib-1", remote: a.node }))
      while (Option.isNone(yield* b.get(notes, "n3"))) {
        expect(Option.isNone(yield* Fiber.poll(receiving)), "the receiving session ended").toBe(true)
        yield* Effect.sleep("20 millis")
      }
      for (const id of ["n1", "n2", "n3"]) expect(Option.map(yield* b.get(notes, id), (n) => n.body.length)).toEqual(Option.some(90_000))
    }), { timeout: 60_000 })

  it.scoped("batch and per-edit limits count every change of the batch; the limits are options", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a", richText: { maxOpsPerChange: 100, maxOpsPerEdit: 250, maxOpsPerBatch: 400 } })
      const edit = (seq: number, sizes: ReadonlyArray<number>) =>
        ({ ...expandingEdit(1, seq), record: `z${seq}`, changes: sizes.map((n) => expanding(n)) }) as Operation.Operation
      expect(failureOf(yield* Effect.exit(engine.ingest([edit(1, [101])])))).toMatchObject({ reason: "TooLarge" })
      expect(failureOf(yield* Effect.exit(engine.ingest([edit(1, [100, 100, 100])])))).toMatchObject({ reason: "TooLarge" })
      expect(failureOf(yield* Effect.exit(engine.ingest([edit(1, [100, 100]), edit(2, [100, 100]), edit(3, [100])])))).toMatchObject({ reason: "TooLarge", seq: 3 })
      expect((yield* engine.ingest([edit(1, [100, 100]), edit(2, [100, 100])])).applied).toBe(2)
    }))

  it.scoped("a large local splice is split into changes a peer accepts; one past the edit limit is refused with a clear error", () =>
    Effect.gen(function*() {
      const options = { models: [notes], richText: { maxOpsPerChange: 1_000, maxOpsPerEdit: 5_000 } }
      const a = yield* Engines.open({ ...options, node: "peer-a" })
      const b = yield* Engines.open({ ...options, node: "peer-b" })
      // a paste of 4 500 characters, with a surrogate pair across every slice boundary the split might pick
      const paste = "x".repeat(999) + "😀".repeat(1_500) + "y".repeat(501)
      const commit = yield* a.mutate([notes.create("n1", { title: "", body: paste })])
      const edits = commit.ops.filter((op) => op._tag === "Edit")
      expect(edits).toHaveLength(1)
      const changes = (edits[0] as Operation.Edit).changes
      expect(changes.length).toBeGreaterThan(4)
      for (const change of changes) expect(Automerge.decodeChange(change).ops.length).toBeLessThanOrEqual(1_000)
      yield* b.ingest(commit.ops)
      expect(Option.map(yield* b.get(notes, "n1"), (n) => n.body)).toEqual(Option.some(paste))
      const refused = failureOf(yield* Effect.exit(a.mutate([notes.splice("n1", "body", { index: 0, deleteCount: 0, insert: "z".repeat(5_001) })])))
      expect(refused).toMatchObject({ _tag: "ValidationError", reason: "TooLarge", field: "body" })
      expect((refused as { detail: string }).detail).toContain("split it")
    }))
})

const engine = (e: { readonly kysely: any }) => Effect.promise(() => e.kysely.selectFrom("weft_log").selectAll().execute() as Promise<Array<unknown>>)

describe("Rich text: a big ingest does not stall the node", () => {
  it.scopedLive("two peers' pings are answered all through a third peer's big batch, not only before or after it", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 7 })
      const node = yield* network.host("node")
      const a = yield* network.host("peer-a")
      const b = yield* network.host("peer-b")
      yield* node.provide(node.host.register(Ping.plugin))
      yield* a.connect(node)
      yield* b.connect(node)
      const engine = yield* Engines.open({ models: [notes], node: "node" })
      // a third peer's batch within every limit: 20 documents of 10 000 inserts each
      const batch = Array.from({ length: 20 }, (_, i) => ({ ...expandingEdit(10_000), origin: `peer-c${i}`, record: `c${i}` }) as Operation.Operation)
      const answered: Array<{ readonly peer: string; readonly at: number }> = []
      let done = false
      const pinger = (peer: Hosts.Host) =>
        Effect.gen(function*() {
          while (!done) {
            yield* peer.provide(Ping.ping(node.id, { timeout: "20 seconds" }))
            answered.push({ peer: peer.id, at: performance.now() })
            // a peer pings now and then, not in a loop of microtasks (which would starve the timers)
            yield* Effect.sleep("2 millis")
          }
        })
      // both pingers are answering before the batch starts
      const pingers = yield* Effect.fork(Effect.all([pinger(a), pinger(b)], { concurrency: 2 }))
      while (answered.length < 4) yield* Effect.sleep("10 millis")
      const start = performance.now()
      yield* engine.ingest(batch)
      const end = performance.now()
      done = true
      yield* Fiber.join(pingers)
      const during = answered.filter((p) => p.at > start && p.at < end)
      for (const peer of [a.id, b.id]) expect(during.filter((p) => p.peer === peer).length).toBeGreaterThanOrEqual(3)
      // no stretch of the batch went unanswered for long: the longest gap between answers is a small part of it
      const times = [start, ...during.map((p) => p.at), end]
      const gap = Math.max(...times.slice(1).map((t, i) => t - times[i]!))
      expect(gap).toBeLessThan((end - start) / 4)
    }), { timeout: 60_000 })
})

describe("Rich text: memory and cost do not grow with history", () => {
  const rssMb = () => process.memoryUsage().rss / 2 ** 20

  it.scoped("20 000 splices on one record: RSS stays flat (within 50 MB after the first 2 000)", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      yield* engine.mutate([notes.create("n1", { title: "", body: "The quick brown fox jumps over the lazy dog. ".repeat(10) })])
      let before = 0
      // fifty splices a write (each its own Automerge change), to keep the test's time down
      for (let i = 0; i < 20_000; i += 50) {
        if (i === 2_000) before = rssMb()
        yield* engine.mutate(Array.from({ length: 50 }, (_, k) => notes.splice("n1", "body", { index: ((i + k) * 37) % 400, deleteCount: 1, insert: "xy" })))
      }
      const grown = rssMb() - before
      expect(grown, `RSS grew ${grown.toFixed(0)} MB`).toBeLessThan(50)
    }), { timeout: 120_000 })

  const soak = process.env.WEFT_SOAK === "1"
  const SPLICES = soak ? 100_000 : 5_000
  it.scoped(`${SPLICES} splices across 1 000 records: RSS stays flat (within 50 MB after the first tenth)`, () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      const ids = Array.from({ length: 1_000 }, (_, r) => `n${r}`)
      yield* engine.mutate(ids.map((id) => notes.create(id, { title: "", body: "hello world" })))
      let before = 0
      for (let i = 0; i < SPLICES; i += 10) {
        if (i === SPLICES / 10) before = rssMb()
        yield* engine.mutate(Array.from({ length: 10 }, (_, k) => notes.splice(ids[(i + k * 101) % 1_000]!, "body", { index: 0, deleteCount: 0, insert: "x" })))
      }
      const grown = rssMb() - before
      expect(grown, `RSS grew ${grown.toFixed(0)} MB`).toBeLessThan(50)
    }), { timeout: soak ? 1_200_000 : 120_000 })
})
