import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import * as Timestamp from "../crdt/Timestamp.js"
import * as Model from "./Model.js"
import * as OperationLog from "./OperationLog.js"
import * as Engines from "./testing/Engines.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String }))

describe("OperationLog: timestamps as 8 bytes", () => {
  it("packs every timestamp into 8 bytes that sort as it does and unpack to it", () =>
    fc.assert(fc.property(
      fc.integer({ min: 0, max: Timestamp.MAX_MILLIS }), fc.integer({ min: 0, max: Timestamp.MAX_COUNTER }),
      fc.integer({ min: 0, max: Timestamp.MAX_MILLIS }), fc.integer({ min: 0, max: Timestamp.MAX_COUNTER }),
      (m1, c1, m2, c2) => {
        const a = Timestamp.make(m1, c1)
        const b = Timestamp.make(m2, c2)
        const pa = OperationLog.packTimestamp(a)!
        const pb = OperationLog.packTimestamp(b)!
        expect(pa).toHaveLength(8)
        expect(OperationLog.unpackTimestamp(pa)).toBe(a)
        expect(Math.sign(Buffer.compare(pa, pb))).toBe(a < b ? -1 : a > b ? 1 : 0)
      }
    )))

  it("refuses what is not a timestamp", () => {
    for (const bad of ["", "0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcd\u00e9f"]) {
      expect(OperationLog.packTimestamp(bad)).toBeUndefined()
    }
    expect(OperationLog.unpackTimestamp(new Uint8Array(7))).toBeUndefined()
  })

  it.scopedLive("a stored timestamp of the wrong length reads as a corrupt log (StorageError), not as an operation", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      yield* engine.mutate([notes.create("n1", { title: "x" })])
      yield* Effect.promise(() => engine.kysely.updateTable("weft_log").set({ ts: new Uint8Array(3) }).execute())
      const read = yield* Effect.either(engine.opsSince(new Map(), 10))
      expect(Either.isLeft(read) && read.left._tag === "StorageError" && read.left.reason === "Corrupt").toBe(true)
    }))
})

const pages = Model.make("pages", Schema.Struct({ title: Schema.String, body: Model.RichText }))

describe("OperationLog: reading what a peer lacks", () => {
  it.scopedLive("a read while a rich-text write holds the connection in its transaction returns committed operations only", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [pages], node: "peer-a" })
      yield* engine.mutate([pages.create("p0", { title: "t", body: "x" })])
      const committed = (yield* engine.opsSince(new Map(), 1000)).ops.length
      // a rich-text write runs its transaction across turns of the event loop: reads go on meanwhile
      const write = yield* Effect.fork(engine.mutate(Array.from({ length: 200 }, (_, i) => pages.create(`p${i + 1}`, { title: "t", body: "y".repeat(50) }))))
      const seen: Array<number> = []
      while (Option.isNone(yield* Fiber.poll(write))) {
        seen.push((yield* engine.opsSince(new Map(), 10_000)).ops.length)
        yield* Effect.yieldNow()
      }
      const after = (yield* Fiber.join(write)).ops.length
      expect(seen.length).toBeGreaterThan(1)
      for (const n of seen) expect(n === committed || n === committed + after).toBe(true)
      expect((yield* engine.opsSince(new Map(), 10_000)).ops.length).toBe(committed + after)
    }))

  it.scopedLive("a log shorter than the version vector says is a corrupt log (StorageError)", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      yield* engine.mutate([notes.create("n1", { title: "x" }), notes.create("n2", { title: "y" })])
      yield* Effect.promise(() => engine.kysely.deleteFrom("weft_log").where("seq", "=", 2).execute())
      const read = yield* Effect.either(engine.opsSince(new Map(), 10))
      expect(Either.isLeft(read) && read.left._tag === "StorageError" && read.left.reason === "Corrupt" && read.left.detail.includes("ends at 1")).toBe(true)
    }))
})
