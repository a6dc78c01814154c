import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Binary from "../crdt/Binary.js"
import * as Operation from "../crdt/Operation.js"
import * as RichText from "../crdt/RichText.js"
import * as Timestamp from "../crdt/Timestamp.js"
import * as Engine from "./Engine.js"
import * as Model from "./Model.js"
import * as Projection from "./Projection.js"
import * as Snapshot from "./testing/Snapshot.js"

const files = Model.make("files", Schema.Struct({
  name: Schema.String,
  size: Schema.Number,
  tags: Schema.Array(Schema.String),
  hidden: Schema.optional(Schema.Boolean),
  notes: Model.RichText
}))
const models = [files]

const open = (node: string, filename = ":memory:") => Engine.makeSqlite({ models, node, filename })

const snapshotOf = (engine: Engine.Service) => Snapshot.snapshot(engine)
const countOps = (engine: Engine.Service) => Effect.map(snapshotOf(engine), (s) => s.log.length)

describe("Engine", () => {
  it.scoped("mutates, queries with Kysely and decodes rows to the model's types", () =>
    Effect.gen(function*() {
      const engine = yield* open("peer-a")
      yield* engine.mutate([
        files.create("f1", { name: "a.txt", size: 10, tags: ["x"], hidden: true, notes: "hello" }),
        files.create("f2", { name: "b.txt", size: 20, tags: [], notes: "" })
      ])
      yield* engine.mutate([files.update("f1", { size: 11 }), files.delete("f2")])
      const rows = yield* engine.query(files, (q) => q.where("size", ">", 5).orderBy("name"))
      expect(rows).toEqual([{ id: "f1", name: "a.txt", size: 11, tags: ["x"], hidden: true, notes: "hello" }])
      expect(yield* engine.get(files, "f2")).toEqual(Option.none())
      // the table is real SQL an app can query itself
      const raw = yield* Effect.promise(() => engine.kysely.selectFrom("files").select(["id", "tags", "hidden"]).execute())
      expect(raw).toEqual([{ id: "f1", tags: "[\"x\"]", hidden: 1 }])
    }))

  it.scoped("merges concurrent rich-text edits from two engines, keeping both", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      const b = yield* open("peer-b")
      const created = yield* a.mutate([files.create("f1", { name: "n", size: 1, tags: [], notes: "The fox" })])
      yield* b.ingest(created.ops)
      const fromA = yield* a.mutate([files.splice("f1", "notes", { index: 4, deleteCount: 0, insert: "quick " })])
      const fromB = yield* b.mutate([files.update("f1", { notes: "The fox jumps" })])
      yield* a.ingest(fromB.ops)
      yield* b.ingest(fromA.ops)
      const textA = Option.getOrThrow(yield* a.get(files, "f1")).notes
      const textB = Option.getOrThrow(yield* b.get(files, "f1")).notes
      expect(textA).toBe("The quick fox jumps")
      expect(textB).toBe(textA)
    }))

  it.scoped("two engines fed the same ops in different orders, with duplicates, end identical", () =>
    Effect.gen(function*() {
      // three writers make concurrent histories
      const writers = yield* Effect.all([open("peer-a"), open("peer-b"), open("peer-c")])
      const all: Array<Operation.Operation> = []
      for (let round = 0; round < 6; round++) {
        for (const [i, w] of writers.entries()) {
          const id = `f${round % 3}`
          const exists = Option.isSome(yield* w.get(files, id))
          const commit = yield* w.mutate([
            exists
              ? (round + i) % 4 === 0 ? files.delete(id) : files.update(id, { size: round * 10 + i, notes: `v${round}${i}` })
              : files.create(id, { name: `n${i}`, size: i, tags: [`t${i}`], notes: "start" })
          ])
          all.push(...commit.ops)
          // writers learn each other's ops as they go (in per-origin order)
          for (const other of writers) if (other !== w) yield* other.ingest(commit.ops)
        }
      }
      const x = yield* open("peer-x")
      const y = yield* open("peer-y")
      // x: everything at once, shuffled, each op twice
      const shuffled = [...all, ...all].sort((p, q) => (Operation.id(p) < Operation.id(q) ? 1 : -1))
      yield* x.ingest(shuffled)
      // y: origin by origin in batches of 2, reversed origin order, each batch re-sent
      for (const origin of ["peer-c", "peer-b", "peer-a"]) {
        const mine = all.filter((op) => op.origin === origin)
        for (let i = 0; i < mine.length; i += 2) {
          yield* y.ingest(mine.slice(i, i + 2).reverse())
          yield* y.ingest(mine.slice(0, i + 2))
        }
      }
      const sx = yield* snapshotOf(x)
      const sy = yield* snapshotOf(y)
      expect(sx.log).toHaveLength(all.length)
      expect(sy).toEqual(sx)
      for (const w of writers) expect(yield* snapshotOf(w)).toEqual(sx)
    }))

  it.scoped("rebuild replays the log into an identical projection", () =>
    Effect.gen(function*() {
      const engine = yield* open("peer-a")
      yield* engine.mutate([files.create("f1", { name: "a", size: 1, tags: [], notes: "x" }), files.create("f2", { name: "b", size: 2, tags: [], notes: "" })])
      yield* engine.mutate([files.delete("f1"), files.splice("f2", "notes", { index: 0, deleteCount: 0, insert: "hi" })])
      const before = yield* snapshotOf(engine)
      yield* Effect.promise(() => engine.kysely.deleteFrom("files").execute())
      yield* engine.rebuild
      expect(yield* snapshotOf(engine)).toEqual(before)
    }))

  // local writes are folded once, as the operations are made, and written as folded: the
  // projection must equal the fold of the log whatever the writes were. Two models share record
  // ids, one of them with two rich-text fields; documents are compared by history (heads) too
  it("whatever local writes are made, in whatever batches, the projection equals a rebuild from the log", async () => {
    const pages = Model.make("pages", Schema.Struct({ order: Schema.Number, title: Model.RichText, body: Model.RichText }))
    const id = fc.constantFrom("r1", "r2", "r3")
    const text = fc.constantFrom("", "hello", "hello world", "world", "héllo ✓")
    const which = fc.constantFrom("files", "pages")
    const pageField = fc.constantFrom("title" as const, "body" as const)
    const change = fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant("create" as const), model: which, id, a: text, b: text }), weight: 2 },
      { arbitrary: fc.record({ kind: fc.constant("update" as const), model: which, id, field: pageField, text: fc.option(text, { nil: undefined }), n: fc.nat(9) }), weight: 3 },
      { arbitrary: fc.record({ kind: fc.constant("delete" as const), model: which, id }), weight: 2 },
      { arbitrary: fc.record({ kind: fc.constant("splice" as const), model: which, id, field: pageField, index: fc.nat(6), deleteCount: fc.nat(3), insert: fc.constantFrom("", "x", "yz") }), weight: 3 }
    )
    type Generated = typeof change extends fc.Arbitrary<infer T> ? T : never
    const toChange = (c: Generated): Model.Change => {
      switch (c.kind) {
        case "create":
          return c.model === "files"
            ? files.create(c.id, { name: c.a, size: 1, tags: [], notes: c.b })
            : pages.create(c.id, { order: 0, title: c.a, body: c.b })
        case "update":
          return c.model === "files"
            ? files.update(c.id, { size: c.n, ...(c.text === undefined ? {} : { notes: c.text }) })
            : pages.update(c.id, { order: c.n, ...(c.text === undefined ? {} : { [c.field]: c.text }) })
        case "delete":
          return c.model === "files" ? files.delete(c.id) : pages.delete(c.id)
        case "splice": {
          const splice = { index: c.index, deleteCount: c.deleteCount, insert: c.insert }
          return c.model === "files" ? files.splice(c.id, "notes", splice) : pages.splice(c.id, c.field, splice)
        }
      }
    }
    // every document's text and history
    const histories = (engine: Engine.Service) =>
      Effect.map(
        Effect.orDie(Projection.readDocuments(engine.kysely, engine.node)),
        (rows) => rows.map((row) => [row.model, row.id, row.field, Either.map(row.doc, (d) => [RichText.text(d), RichText.heads(d)])])
      )
    let written = 0
    let refused = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(change, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 16 }), (batches) =>
        Effect.runPromise(Effect.scoped(Effect.gen(function*() {
          const engine = yield* Engine.makeSqlite({ models: [files, pages], node: "peer-a", filename: ":memory:" })
          // the records exist to start with, so most changes meet one; deletes and creates come and go
          yield* engine.mutate(["r1", "r2", "r3"].flatMap((id) => [
            files.create(id, { name: id, size: 0, tags: [], notes: "hello" }),
            pages.create(id, { order: 0, title: "hello", body: "world" })
          ]))
          for (const batch of batches) {
            // a batch that meets a missing or existing record, or splices out of range, is refused whole
            const outcome = yield* Effect.either(engine.mutate(batch.map(toChange)))
            if (Either.isRight(outcome)) written++
            else refused++
          }
          const before = [yield* snapshotOf(engine), yield* histories(engine)] as const
          yield* engine.rebuild
          expect([yield* snapshotOf(engine), yield* histories(engine)]).toEqual(before)
        })))
      ),
      {
        numRuns: 80,
        // a record revived with one rich field edited and the other as it was (its text from the stored document)
        examples: [[[
          [{ kind: "delete", model: "pages", id: "r1" }],
          [{ kind: "create", model: "pages", id: "r1", a: "hello world", b: "world" }]
        ]]]
      }
    )
    // the runs wrote, and were refused, often enough to mean something
    expect(written).toBeGreaterThan(100)
    expect(refused).toBeGreaterThan(10)
  })

  it.scoped("subscribe streams committed changes of a model or a record", () =>
    Effect.gen(function*() {
      const engine = yield* open("peer-a")
      const forF1 = yield* engine.subscribe({ record: "f1" }).pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      const forModel = yield* engine.subscribe({ model: "files" }).pipe(Stream.take(3), Stream.runCollect, Effect.fork)
      yield* Effect.yieldNow()
      yield* engine.mutate([files.create("f1", { name: "a", size: 1, tags: [], notes: "" })])
      yield* engine.mutate([files.create("f2", { name: "b", size: 1, tags: [], notes: "" })])
      yield* engine.mutate([files.delete("f1")])
      const f1 = Chunk.toReadonlyArray(yield* Fiber.join(forF1))
      expect(f1).toEqual([
        { model: "files", record: "f1", alive: true, source: "local" },
        { model: "files", record: "f1", alive: false, source: "local" }
      ])
      expect(Chunk.size(yield* Fiber.join(forModel))).toBe(3)
    }))

  it.scoped("a subscriber that stops reading is cut off with LaggedError; the others and the writes go on", () =>
    Effect.gen(function*() {
      const engine = yield* Engine.makeSqlite({ models, node: "peer-a", filename: ":memory:", subscriberBuffer: 3 })
      const gate = yield* Deferred.make<void>()
      const slowSeen: Array<string> = []
      // the slow reader holds its first change until the gate opens; the rest pile up in its buffer
      const slow = yield* engine.subscribe({ model: "files" }).pipe(
        Stream.mapEffect((change) => Effect.as(Deferred.await(gate), change)),
        Stream.runForEach((change) => Effect.sync(() => slowSeen.push(change.record))),
        Effect.either,
        Effect.fork
      )
      const fast = yield* engine.subscribe({ model: "files" }).pipe(Stream.take(8), Stream.runCollect, Effect.fork)
      yield* Effect.yieldNow()
      for (let i = 0; i < 8; i++) yield* engine.mutate([files.create(`f${i}`, { name: "a", size: i, tags: [], notes: "" })])
      expect(Chunk.toReadonlyArray(yield* Fiber.join(fast)).map((c) => c.record)).toEqual(["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"])
      yield* Deferred.succeed(gate, undefined)
      const outcome = yield* Fiber.join(slow)
      expect(Either.isLeft(outcome) && outcome.left).toMatchObject({ _tag: "LaggedError", reason: "Lagged", buffered: 3 })
      // what it read is what was committed, in order, up to where it fell behind
      expect(slowSeen.length).toBeLessThan(8)
      expect(slowSeen).toEqual(["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"].slice(0, slowSeen.length))
      // subscribing again works
      const again = yield* engine.subscribe({ record: "f8" }).pipe(Stream.runHead, Effect.fork)
      yield* Effect.yieldNow()
      yield* engine.mutate([files.create("f8", { name: "a", size: 8, tags: [], notes: "" })])
      expect(Option.map(yield* Fiber.join(again), (c) => c.record)).toEqual(Option.some("f8"))
    }))

  it.scoped("opsSince pages what the other side lacks, per origin in order, with hasMore", () =>
    Effect.gen(function*() {
      const a = yield* open("peer-a")
      const b = yield* open("peer-b")
      for (let i = 0; i < 5; i++) yield* a.mutate([files.create(`a${i}`, { name: "a", size: i, tags: [], notes: "" })])
      for (let i = 0; i < 3; i++) yield* b.mutate([files.create(`b${i}`, { name: "b", size: i, tags: [], notes: "" })])
      const first = yield* a.opsSince(yield* b.versionVector, 4)
      expect(first.ops.map(Operation.id)).toEqual(["peer-a/1", "peer-a/2", "peer-a/3", "peer-a/4"])
      expect(first.hasMore).toBe(true)
      yield* b.ingest(first.ops)
      const second = yield* a.opsSince(yield* b.versionVector, 4)
      expect(second.ops.map(Operation.id)).toEqual(["peer-a/5"])
      expect(second.hasMore).toBe(false)
      yield* b.ingest(second.ops)
      const back = yield* b.opsSince(yield* a.versionVector, 100)
      expect(back.ops.map(Operation.id)).toEqual(["peer-b/1", "peer-b/2", "peer-b/3"])
    }))

  it.scoped("create of an existing record and update of a missing one are refused", () =>
    Effect.gen(function*() {
      const engine = yield* open("peer-a")
      yield* engine.mutate([files.create("f1", { name: "a", size: 1, tags: [], notes: "" })])
      const exists = yield* Effect.flip(engine.mutate([files.create("f1", { name: "b", size: 1, tags: [], notes: "" })]))
      expect(exists._tag === "MutationError" && exists.reason).toBe("RecordExists")
      const missing = yield* Effect.flip(engine.mutate([files.update("nope", { size: 2 })]))
      expect(missing._tag === "MutationError" && missing.reason).toBe("RecordNotFound")
      // a failed batch writes nothing, not even its valid first change
      const partial = yield* Effect.flip(engine.mutate([files.create("f9", { name: "x", size: 1, tags: [], notes: "" }), files.delete("nope")]))
      expect(partial._tag).toBe("MutationError")
      expect(yield* engine.get(files, "f9")).toEqual(Option.none())
      expect(yield* countOps(engine)).toBe(1)
    }))
})

describe("Engine: bad input gets a typed error and writes nothing", () => {
  const seed = Effect.gen(function*() {
    const engine = yield* open("peer-a")
    yield* engine.mutate([files.create("f1", { name: "a", size: 1, tags: [], notes: "" })])
    return { engine, before: yield* snapshotOf(engine) }
  })
  const remote = (fields: Record<string, unknown>, extra: Partial<Operation.Operation> = {}): Operation.Operation => ({
    _tag: "Update",
    origin: "peer-z" as Timestamp.NodeId,
    seq: 1,
    ts: Timestamp.make(0, 1),
    model: "files" as Operation.ModelName,
    record: "f1",
    fields: fields as Operation.Fields,
    ...extra
  } as Operation.Operation)

  it.scoped("unknown model", () =>
    Effect.gen(function*() {
      const { engine, before } = yield* seed
      const local = yield* Effect.flip(engine.mutate([{ _tag: "Create", model: "folders", id: "d1", values: {} }]))
      expect(local).toMatchObject({ _tag: "ValidationError", reason: "UnknownModel", model: "folders" })
      const fromPeer = yield* Effect.flip(engine.ingest([remote({ size: 1 }, { model: "folders" as Operation.ModelName })]))
      expect(fromPeer).toMatchObject({ _tag: "ValidationError", reason: "UnknownModel" })
      expect(yield* snapshotOf(engine)).toEqual(before)
    }))

  it.scoped("unknown field and wrong type", () =>
    Effect.gen(function*() {
      const { engine, before } = yield* seed
      const unknownField = yield* Effect.flip(engine.mutate([files.update("f1", { colour: "red" } as any)]))
      expect(unknownField).toMatchObject({ _tag: "ValidationError", reason: "UnknownField", field: "colour" })
      const wrongType = yield* Effect.flip(engine.mutate([files.update("f1", { size: "big" } as any)]))
      expect(wrongType).toMatchObject({ _tag: "ValidationError", reason: "InvalidValue", field: "size" })
      const missing = yield* Effect.flip(engine.mutate([files.create("f2", { name: "x" } as any)]))
      expect(missing).toMatchObject({ _tag: "ValidationError", reason: "MissingField" })
      const remoteWrong = yield* Effect.flip(engine.ingest([remote({ size: 1 }, { seq: 1 }), remote({ tags: "not-an-array" }, { seq: 2, ts: Timestamp.make(0, 2) })]))
      expect(remoteWrong).toMatchObject({ _tag: "ValidationError", reason: "InvalidValue", field: "tags" })
      expect(yield* snapshotOf(engine)).toEqual(before)
    }))

  it.effect("future timestamp beyond the drift limit", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const { engine, before } = yield* seed
      const ok = remote({ size: 2 }, { ts: Timestamp.make(1_000_000 + 30_000, 0) })
      const future = remote({ size: 3 }, { seq: 2, ts: Timestamp.make(1_000_000 + 61_000, 0) })
      const error = yield* Effect.flip(engine.ingest([ok, future]))
      expect(error).toMatchObject({ _tag: "ClockDriftError", reason: "AheadOfWallClock" })
      expect(yield* snapshotOf(engine)).toEqual(before)
      // the refused timestamp was not adopted: the next local op is stamped near the wall clock
      const next = yield* engine.mutate([files.update("f1", { size: 4 })])
      expect(Timestamp.millis(next.ops[0]!.ts)).toBe(1_000_000)
    }).pipe(Effect.scoped))

  it.effect("the drift bound is exact: a timestamp at it passes whatever its counter, one millisecond past is refused, in any order", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000_000)
      const { engine, before } = yield* seed
      const past = remote({ size: 3 }, { seq: 2, ts: Timestamp.make(1_000_000 + 60_001, 0) })
      const at = remote({ size: 2 }, { ts: Timestamp.make(1_000_000 + 60_000, Timestamp.MAX_COUNTER) })
      // out of order: the refused one comes first
      const error = yield* Effect.flip(engine.ingest([past, at]))
      expect(error).toMatchObject({ _tag: "ClockDriftError", reason: "AheadOfWallClock", remote: past.ts, driftMillis: 60_001 })
      expect(yield* snapshotOf(engine)).toEqual(before)
      expect(yield* engine.ingest([at])).toEqual({ applied: 1, duplicates: 0 })
    }).pipe(Effect.scoped))

  it.scoped("garbage bytes", () =>
    Effect.gen(function*() {
      const { engine, before } = yield* seed
      const garbage = [new Uint8Array([0xc1, 0xff, 0x00]), Binary.encode({ hello: "world" }), new Uint8Array(0)]
      for (const bytes of garbage) {
        const decoded = Operation.decodeBatch(bytes)
        expect(Either.isLeft(decoded) && decoded.left._tag).toBe("OperationDecodeError")
      }
      // bytes that decode as an Edit but are not an Automerge change
      const edit = Either.getOrThrow(Operation.decode(Binary.encode([3, "peer-z", 1, Timestamp.make(0, 1), "files", "f1", ["notes", [new Uint8Array([1, 2, 3])]]])))
      const error = yield* Effect.flip(engine.ingest([edit]))
      expect(error).toMatchObject({ _tag: "ValidationError", reason: "MalformedChange", field: "notes" })
      expect(yield* snapshotOf(engine)).toEqual(before)
    }))

  it.scoped("a gap in an origin's operations", () =>
    Effect.gen(function*() {
      const { engine, before } = yield* seed
      const error = yield* Effect.flip(engine.ingest([remote({ size: 1 }, { seq: 2 })]))
      expect(error).toMatchObject({ _tag: "IngestError", reason: "Gap", origin: "peer-z", seq: 2 })
      expect(yield* snapshotOf(engine)).toEqual(before)
    }))
})

describe("Engine on a file", () => {
  it.effect("closes and reopens: log, projection and clock carry on; the clock never goes backwards", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "weft-engine-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const filename = join(dir, "peer.db")
      yield* TestClock.setTime(5_000_000)
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* open("peer-a", filename)
        yield* engine.mutate([files.create("f1", { name: "a", size: 1, tags: [], notes: "draft" })])
        const last = yield* engine.mutate([files.update("f1", { size: 2 })])
        return { snapshot: yield* snapshotOf(engine), last: last.ops[0]! }
      }))
      // the wall clock jumps back an hour before the reopen
      yield* TestClock.setTime(5_000_000 - 3_600_000)
      yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* open("peer-a", filename)
        expect(yield* snapshotOf(engine)).toEqual(first.snapshot)
        const next = yield* engine.mutate([files.update("f1", { size: 3 })])
        const op = next.ops[0]!
        expect(op.seq).toBe(first.last.seq + 1)
        expect(op.ts > first.last.ts).toBe(true)
        expect(Option.getOrThrow(yield* engine.get(files, "f1"))).toMatchObject({ size: 3, notes: "draft" })
      }))
      // a database refuses to open as another node
      const exit = yield* Effect.exit(Effect.scoped(open("peer-b", filename)))
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("NodeMismatch")
    }).pipe(Effect.scoped))
})

describe("Engine: the clock after an ingest", () => {
  it.effect("an ingest stores no clock row: the clock restarts after the newest timestamp it took, from the log", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "weft-engine-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const filename = join(dir, "peer.db")
      yield* TestClock.setTime(5_000_000)
      const plain = Model.make("plain", Schema.Struct({ name: Schema.String }))
      const clockRow = (engine: Engine.Service) =>
        Effect.promise(() => engine.kysely.selectFrom("weft_meta").select("value").where("key", "=", "clock").executeTakeFirst())
      // a remote operation 30 s ahead of our wall clock (within the drift bound)
      const remote = yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* Engine.makeSqlite({ models: [plain], node: "peer-a", filename: ":memory:" })
        yield* TestClock.setTime(5_030_000)
        const made = yield* a.mutate([plain.create("r1", { name: "remote" })])
        yield* TestClock.setTime(5_000_000)
        return made.ops
      }))
      const before = yield* Effect.scoped(Effect.gen(function*() {
        const b = yield* Engine.makeSqlite({ models: [plain], node: "peer-b", filename })
        yield* b.mutate([plain.create("l1", { name: "local" })])
        const before = yield* clockRow(b)
        expect((yield* b.ingest(remote)).applied).toBe(1)
        // the ingest wrote no clock: its newest timestamp is the vector entry it stored
        expect(yield* clockRow(b)).toEqual(before)
        const next = yield* b.mutate([plain.update("l1", { name: "after" })])
        expect(next.ops[0]!.ts > remote[0]!.ts).toBe(true)
        return next.ops[0]!.ts
      }))
      // reopened: the clock still restarts after everything it issued or took
      yield* Effect.scoped(Effect.gen(function*() {
        const b = yield* Engine.makeSqlite({ models: [plain], node: "peer-b", filename })
        const next = yield* b.mutate([plain.update("r1", { name: "reopened" })])
        expect(next.ops[0]!.ts > before).toBe(true)
      }))
    }).pipe(Effect.scoped))
})

describe("Engine: observe", () => {
  it.scoped("calls the observer with each commit before the write returns, local and remote, until its scope closes", () =>
    Effect.gen(function*() {
      const plain = Model.make("plain", Schema.Struct({ name: Schema.String }))
      const a = yield* Engine.makeSqlite({ models: [plain], node: "peer-a", filename: ":memory:" })
      const b = yield* Engine.makeSqlite({ models: [plain], node: "peer-b", filename: ":memory:" })
      const seen: Array<Engine.Commit> = []
      const scope = yield* Scope.make()
      yield* Scope.extend(b.observe((commit) => seen.push(commit)), scope)
      const local = yield* b.mutate([plain.create("l1", { name: "local" })])
      // no yield between the commit and the observer
      expect(seen).toEqual([local])
      const remote = yield* a.mutate([plain.create("r1", { name: "remote" })])
      yield* b.ingest(remote.ops)
      expect(seen.map((c) => [c.source, c.ops.length])).toEqual([["local", 1], ["remote", 1]])
      // nothing new: no commit observed
      yield* b.ingest(remote.ops)
      expect(seen.length).toBe(2)
      yield* Scope.close(scope, Exit.void)
      yield* b.mutate([plain.update("l1", { name: "after" })])
      expect(seen.length).toBe(2)
    }))
})

describe("Engine: writes and readCommitted", () => {
  it.scopedLive("a synchronous write waits for a readCommitted read to end, and commits after it", () =>
    Effect.gen(function*() {
      const plain = Model.make("plain", Schema.Struct({ name: Schema.String }))
      const engine = yield* Engine.makeSqlite({ models: [plain], node: "peer-a", filename: ":memory:" })
      const inside = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const reading = yield* Effect.fork(engine.readCommitted(Effect.zipRight(Deferred.succeed(inside, undefined), Deferred.await(release))))
      yield* Deferred.await(inside)
      const writing = yield* Effect.fork(engine.mutate([plain.create("p1", { name: "x" })]))
      // the write cannot commit while the read holds the writer
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      expect(yield* engine.versionVector).toEqual(new Map())
      expect(Option.isNone(yield* Fiber.poll(writing))).toBe(true)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(reading)
      const done = yield* Fiber.join(writing)
      expect(done.ops.length).toBe(1)
      expect((yield* engine.versionVector).get("peer-a")?.seq).toBe(1)
    }))
})

describe("Engine layer", () => {
  it.effect("layerSqlite provides the Engine tag", () =>
    Effect.gen(function*() {
      const engine = yield* Engine.Engine
      yield* engine.mutate([files.create("f1", { name: "a", size: 1, tags: [], notes: "" })])
      expect((yield* engine.query(files)).length).toBe(1)
    }).pipe(Effect.provide(Layer.fresh(Engine.layerSqlite({ filename: ":memory:", models, node: "peer-a" })))))
})

