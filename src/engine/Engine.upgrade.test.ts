/**
 * A database written by an older layout opens, is migrated, and reads back
 * exactly what it held: each fixture was written by the engine at its
 * migration (0002, 0003: see `testing/fixtures/layout*.generate.ts`), and its
 * JSON is what that engine read from it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type * as Engine from "./Engine.js"
import * as Engines from "./testing/Engines.js"
import { expected, files, models } from "./testing/fixtures/layout0002.js"
import * as Snapshot from "./testing/Snapshot.js"

const copyOf = (fixture: URL) => Effect.acquireRelease(
  Effect.sync(() => {
    const dir = mkdtempSync(join(tmpdir(), "weft-upgrade-"))
    copyFileSync(fixture, join(dir, "weft.db"))
    return { dir, filename: join(dir, "weft.db") }
  }),
  ({ dir }) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const pull = (to: Engine.Service, from: Engine.Service) =>
  Effect.gen(function*() {
    while (true) {
      const page = yield* from.opsSince(yield* to.versionVector, 100)
      if (page.ops.length > 0) yield* to.ingest(page.ops)
      if (!page.hasMore) return
    }
  })

for (const layout of ["0002", "0003"]) {
const fixture = new URL(`./testing/fixtures/layout${layout}.db`, import.meta.url)
const before = JSON.parse(readFileSync(new URL(`./testing/fixtures/layout${layout}.json`, import.meta.url), "utf8"))
const copyOfFixture = copyOf(fixture)

describe(`Engine upgrade from the ${layout} layout`, () => {
  it.scopedLive("keeps every record, the log, the vector, the clock, rich texts and tombstones", () =>
    Effect.gen(function*() {
      const { filename } = yield* copyOfFixture
      const engine = yield* Engines.open({ models, filename })
      expect(engine.node).toBe(before.node)
      const after = yield* expected(engine)
      expect(after.vector).toEqual(before.vector)
      expect(after.clock).toEqual(before.clock)
      expect(after.log).toEqual(before.log)
      expect(after.projection).toEqual(before.projection)
      expect(after.tombstones).toEqual(before.tombstones)
      expect(after.documents).toEqual(before.documents)
      expect(after.view).toEqual(before.view)
      // the old tables are gone: nothing reads them any more
      const tables = (yield* Effect.promise(() => engine.kysely.introspection.getTables())).map((t) => t.name)
      expect(tables).not.toContain("weft_operations")
      expect(tables).not.toContain("weft_vector")
      // names are numbered (0004), and rows written from now on use the numbers
      expect(tables).toContain("weft_names")
    }))

  it.scopedLive("after the upgrade a new write, a rebuild, a reopen and a sync with a new peer still work", () =>
    Effect.gen(function*() {
      const { filename } = yield* copyOfFixture
      const view = yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* Engines.open({ models, filename })
        const commit = yield* engine.mutate([
          files.update("a-0", { name: "after upgrade", notes: "new text" }),
          files.splice("a-5", "notes", { index: 0, deleteCount: 8, insert: "Spliced" }),
          files.delete("b-0"),
          files.create("a-2", { name: "recreated", size: 2, tags: [], notes: "" })
        ])
        // the writer continues its own sequence and clock
        expect(commit.ops[0]!.seq).toBe(before.vector.find((v: [string]) => v[0] === before.node)[1] + 1)
        expect(commit.ops[0]!.ts > before.clock).toBe(true)
        const written = yield* Snapshot.view(engine)
        yield* engine.rebuild
        expect(yield* Snapshot.view(engine)).toEqual(written)
        return written
      }))
      expect(view.files!["a-0"]).toMatchObject({ name: "after upgrade", notes: "new text" })
      expect(view.files!["a-5"]!.notes).toBe("Spliced text, 𝄞 and all")
      expect(view.files!["b-0"]).toBeUndefined()
      expect(view.files!["a-2"]).toMatchObject({ name: "recreated" })

      const reopened = yield* Engines.open({ models, filename })
      expect(yield* Snapshot.view(reopened)).toEqual(view)
      const peer = yield* Engines.open({ models, node: "fresh-peer" })
      yield* pull(peer, reopened)
      expect(yield* Snapshot.view(peer)).toEqual(view)
      expect((yield* Snapshot.snapshot(peer)).log).toEqual((yield* Snapshot.snapshot(reopened)).log)
      // and back: the upgraded engine takes the peer's writes, an update and a delete
      yield* peer.mutate([files.update("a-3", { name: "from the peer" }), files.delete("a-4"), files.create("p-1", { name: "p", size: 1, tags: [], notes: "p" })])
      yield* pull(reopened, peer)
      expect(yield* Snapshot.view(reopened)).toEqual(yield* Snapshot.view(peer))
      expect((yield* Snapshot.snapshot(reopened)).tombstones).toEqual((yield* Snapshot.snapshot(peer)).tombstones)
      // a write after the upgrade stores the compact row: the model in the kind, a UUID as 16 bytes
      const uuid = "5e0c2b7a-1d3f-4a6b-8c9d-0e1f2a3b4c5d"
            yield* reopened.mutate([files.create(uuid, { name: "compact", size: 3, tags: [], notes: "" })])
      const row = (yield* Effect.promise(() => reopened.kysely.selectFrom("weft_log").selectAll().orderBy("seq", "desc").limit(1).execute()))[0]!
      expect(row.record).toHaveLength(16)
      expect(row.kind).toBeGreaterThan(3)
      expect((yield* reopened.get(files, uuid))._tag).toBe("Some")
    }))
})
}
