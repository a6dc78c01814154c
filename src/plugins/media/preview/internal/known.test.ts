import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Engine from "../../../../engine/Engine.js"
import * as MediaModels from "../../Models.js"
import { sha256 } from "../../testing/Files.js"
import * as Models from "../Models.js"
import * as Known from "./known.js"

const hashOf = (i: number) => sha256(new TextEncoder().encode(`thumbnail ${i}`))
const sourceOf = (i: number) => sha256(new TextEncoder().encode(`original ${i}`))
const ready = (i: number) =>
  Models.thumbnails.create(Models.thumbnailId(sourceOf(i), "r1"), { source: sourceOf(i), recipe: "r1", state: "ready", hash: hashOf(i), bytes: 10, width: 1, height: 1, mime: "image/webp" })

/** An engine whose queries are counted. */
const counted = Effect.gen(function*() {
  const engine = yield* Effect.orDie(Engine.makeSqlite({ models: [...MediaModels.models, ...Models.models], node: "n1", filename: ":memory:" }))
  const counts = { queries: 0 }
  const query: Engine.Service["query"] = (model, build) => Effect.suspend(() => (counts.queries++, engine.query(model, build)))
  return { engine: { ...engine, query } satisfies Engine.Service, counts }
})

describe("preview's index of thumbnail hashes", () => {
  it.scoped("answers many Gets from one read of the records; a commit's records are read again before the next answer, and only they", () =>
    Effect.gen(function*() {
      const { counts, engine } = yield* counted
      yield* Effect.orDie(engine.mutate([ready(1), ready(2), ready(3)]))
      const known = yield* Known.make(engine)
      const asked = [hashOf(1), hashOf(2), hashOf(4)]
      for (let i = 0; i < 5; i++) expect(yield* Effect.orDie(known.of(asked))).toEqual(new Set([hashOf(1), hashOf(2)]))
      expect(counts.queries).toBe(1)

      // a new thumbnail and a deleted one, then a failure recorded (no hash)
      yield* Effect.orDie(engine.mutate([ready(4), Models.thumbnails.delete(Models.thumbnailId(sourceOf(2), "r1"))]))
      yield* Effect.orDie(engine.mutate([
        Models.thumbnails.create(Models.thumbnailId(sourceOf(5), "r1"), { source: sourceOf(5), recipe: "r1", state: "failed", reason: "Undecodable", detail: "" })
      ]))
      expect(yield* Effect.orDie(known.of([...asked, hashOf(3), hashOf(5)]))).toEqual(new Set([hashOf(1), hashOf(3), hashOf(4)]))
      expect(counts.queries).toBe(2)
      // a record's hash changed: the old one is no longer known
      yield* Effect.orDie(engine.mutate([Models.thumbnails.update(Models.thumbnailId(sourceOf(1), "r1"), { hash: hashOf(6) })]))
      expect(yield* Effect.orDie(known.of([hashOf(1), hashOf(6)]))).toEqual(new Set([hashOf(6)]))
      expect(yield* Effect.orDie(known.of([hashOf(1), hashOf(6)]))).toEqual(new Set([hashOf(6)]))
      expect(counts.queries).toBe(3)
    }))

  it.scoped("answers asked at once, before the first read of the records is done, all wait for it", () =>
    Effect.gen(function*() {
      const { counts, engine } = yield* counted
      yield* Effect.orDie(engine.mutate([ready(1), ready(2)]))
      const known = yield* Known.make(engine)
      const answers = yield* Effect.orDie(Effect.all(Array.from({ length: 4 }, () => known.of([hashOf(1), hashOf(2), hashOf(3)])), { concurrency: "unbounded" }))
      for (const answer of answers) expect(answer).toEqual(new Set([hashOf(1), hashOf(2)]))
      expect(counts.queries).toBe(1)
    }))

  it.scoped("a hash two records name stays known until neither does; past MAX_DIRTY touched records, all are read again", () =>
    Effect.gen(function*() {
      const { counts, engine } = yield* counted
      // the same thumbnail bytes for two originals
      const twin = Models.thumbnails.create(Models.thumbnailId(sourceOf(7), "r1"), { source: sourceOf(7), recipe: "r1", state: "ready", hash: hashOf(1), bytes: 10 })
      yield* Effect.orDie(engine.mutate([ready(1), twin]))
      const known = yield* Known.make(engine)
      expect(yield* Effect.orDie(known.of([hashOf(1)]))).toEqual(new Set([hashOf(1)]))
      yield* Effect.orDie(engine.mutate([Models.thumbnails.delete(Models.thumbnailId(sourceOf(1), "r1"))]))
      expect(yield* Effect.orDie(known.of([hashOf(1)]))).toEqual(new Set([hashOf(1)]))
      yield* Effect.orDie(engine.mutate([Models.thumbnails.delete(Models.thumbnailId(sourceOf(7), "r1"))]))
      expect(yield* Effect.orDie(known.of([hashOf(1)]))).toEqual(new Set())

      const many = Array.from({ length: Known.MAX_DIRTY + 1 }, (_, i) => ready(100 + i))
      for (let i = 0; i < many.length; i += 2000) yield* Effect.orDie(engine.mutate(many.slice(i, i + 2000)))
      const before = counts.queries
      expect((yield* Effect.orDie(known.of([hashOf(100), hashOf(100 + Known.MAX_DIRTY), hashOf(1)]))).size).toBe(2)
      // one read of all, not one per ID batch of the touched records
      expect(counts.queries).toBe(before + 1)
    }))
})
