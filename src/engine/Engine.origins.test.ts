import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type * as Operation from "../crdt/Operation.js"
import * as Timestamp from "../crdt/Timestamp.js"
import * as Model from "./Model.js"
import * as Engines from "./testing/Engines.js"
import * as Snapshot from "./testing/Snapshot.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String }))

/** A create of record `record` as operation `seq` of `origin`. */
const create = (origin: string, seq: number, record: string, ts = Timestamp.make(Date.now(), seq)): Operation.Operation => ({
  _tag: "Create",
  origin: origin as Timestamp.NodeId,
  seq,
  ts,
  model: "notes" as Operation.ModelName,
  record,
  fields: { title: `${origin}/${seq}` }
})

describe("Engine: origins are data", () => {
  it.scopedLive("origins named like Object.prototype members are counted, deduplicated and continued like any other", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "here" })
      const now = Date.now()
      for (const origin of ["__proto__", "constructor", "hasOwnProperty", "toString"]) {
        const first = create(origin, 1, `${origin}-1`, Timestamp.make(now, 1))
        expect(yield* engine.ingest([first])).toEqual({ applied: 1, duplicates: 0 })
        expect((yield* engine.versionVector).get(origin)?.seq).toBe(1)
        // sent again: a duplicate, not a storage error
        expect(yield* engine.ingest([first])).toEqual({ applied: 0, duplicates: 1 })
        // the next one is no gap
        expect(yield* engine.ingest([create(origin, 2, `${origin}-2`, Timestamp.make(now, 2))])).toEqual({ applied: 1, duplicates: 0 })
        // and what it lacks is offered to a peer that holds nothing
        const page = yield* engine.opsSince(new Map(), 100)
        expect(page.ops.filter((op) => op.origin === origin).map((op) => op.seq)).toEqual([1, 2])
      }
      expect([...(yield* engine.versionVector).keys()].sort()).toEqual(["__proto__", "constructor", "hasOwnProperty", "toString"])
    }))

  it.scopedLive("weft_origins holds numbers only: no copy of the vector there to go stale; the vector read back on reopen is the log's", () =>
    Effect.gen(function*() {
      const filename = join(mkdtempSync(join(tmpdir(), "weft-origins-")), "peer.db")
      const now = Date.now()
      yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* Engines.open({ models: [notes], node: "here", filename })
        yield* engine.ingest([create("far", 1, "f1", Timestamp.make(now, 1))])
        yield* engine.ingest([create("far", 2, "f2", Timestamp.make(now, 2)), create("far", 3, "f3", Timestamp.make(now, 3))])
        const rows = yield* Effect.promise(() => engine.kysely.selectFrom("weft_origins").selectAll().execute())
        // before 0005 a row also said seq 1 (its first commit's) while the log held 3
        expect(rows).toEqual([{ n: 1, origin: "far" }])
      }))
      const engine = yield* Engines.open({ models: [notes], node: "here", filename })
      expect((yield* engine.versionVector).get("far")).toEqual({ seq: 3, ts: Timestamp.make(now, 3) })
    }))

  it.scopedLive("10 000 operations from 10 000 new origins are ingested in batches without copying the vector per operation", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "here" })
      const ts = Timestamp.make(Date.now(), 0)
      const ops = Array.from({ length: 10_000 }, (_, i) => create(`origin-${i}`, 1, `r${i}`, ts))
      for (let i = 0; i < ops.length; i += 1000) {
        expect((yield* engine.ingest(ops.slice(i, i + 1000))).applied).toBe(1000)
      }
      const vector = yield* engine.versionVector
      expect(vector.size).toBe(10_000)
      expect((yield* engine.query(notes)).length).toBe(10_000)
    }), { timeout: 30_000 })

  it.scopedLive("past maxOrigins an ingest is refused whole, with TooManyOrigins, and nothing is written", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "here", maxOrigins: 5 })
      const ts = Timestamp.make(Date.now(), 0)
      yield* engine.ingest([0, 1, 2, 3].map((i) => create(`o${i}`, 1, `r${i}`, ts)))
      const before = yield* Snapshot.snapshot(engine)
      const exit = yield* Effect.exit(engine.ingest([4, 5].map((i) => create(`o${i}`, 1, `r${i}`, ts))))
      expect(exit).toStrictEqual(Exit.fail(expect.objectContaining({ _tag: "IngestError", reason: "TooManyOrigins" })))
      expect(yield* Snapshot.snapshot(engine)).toEqual(before)
      // more from origins it holds is still fine, and so is one more origin up to the bound
      yield* engine.ingest([create("o0", 2, "r0", Timestamp.make(Date.now(), 1)), create("o4", 1, "r4", ts)])
      expect((yield* engine.versionVector).size).toBe(5)
    }))

  it.live("the vector a reader got does not move under it; the engine's own does, and is read back on reopen", () =>
    Effect.gen(function*() {
      const filename = join(mkdtempSync(join(tmpdir(), "weft-origins-")), "engine.db")
      const held = yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* Engines.open({ models: [notes], node: "here", filename })
        yield* engine.mutate([notes.create("a", { title: "a" })])
        const held = yield* engine.versionVector
        yield* engine.mutate([notes.create("b", { title: "b" })])
        yield* engine.ingest([create("__proto__", 1, "p")])
        expect(held.get("here")?.seq).toBe(1)
        expect((yield* engine.versionVector).get("here")?.seq).toBe(2)
        return yield* engine.versionVector
      }))
      const reopened = yield* Effect.scoped(Effect.flatMap(Engines.open({ models: [notes], node: "here", filename }), (e) => e.versionVector))
      expect([...reopened].sort()).toEqual([...held].sort())
      expect(reopened.get("__proto__")?.seq).toBe(1)
    }))

  it.scopedLive("an origin numbered by an ingest that rolled back leaves a gap in the numbers; reopened, the next origin gets a number of its own", () =>
    Effect.gen(function*() {
      const filename = join(mkdtempSync(join(tmpdir(), "weft-origins-")), "gap.db")
      const big = { ...create("y-origin", 1, "y1"), fields: { title: "x".repeat(2048) } } as Operation.Operation
      yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* Engines.open({ models: [notes], node: "here", filename, maxOperationBytes: 1024 })
        // x-origin is numbered while the batch is appended, then y-origin's operation is too large: all of it rolls back
        const refused = yield* Effect.exit(engine.ingest([create("x-origin", 1, "x1"), big]))
        expect(Exit.isFailure(refused)).toBe(true)
        yield* engine.mutate([notes.create("h1", { title: "here" })])
      }))
      const view = yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* Engines.open({ models: [notes], node: "here", filename })
        yield* engine.ingest([create("z-origin", 1, "z1"), create("x-origin", 1, "x1")])
        return yield* Snapshot.view(engine)
      }))
      const reopened = yield* Engines.open({ models: [notes], node: "here", filename })
      expect(yield* Snapshot.view(reopened)).toEqual(view)
      expect(Object.keys(view.notes!).sort()).toEqual(["h1", "x1", "z1"])
      expect((yield* reopened.opsSince(new Map(), 10)).ops.map((op) => `${op.origin}/${op.seq}`).sort()).toEqual(["here/1", "x-origin/1", "z-origin/1"])
    }))
})
