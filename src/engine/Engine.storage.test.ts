/**
 * What the engine stores per record: names by number, a UUID id as 16 bytes,
 * and each value once (a live row's columns, not its state as well), with
 * everything reading back the same after a reopen, an update and a rebuild.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Model from "./Model.js"
import * as Engines from "./testing/Engines.js"
import * as Snapshot from "./testing/Snapshot.js"

const files = Model.make("files", Schema.Struct({
  name: Schema.String,
  size: Schema.Number,
  done: Schema.optional(Schema.Boolean),
  tags: Schema.Array(Schema.String)
}))

const tempFile = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "weft-storage-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => join(dir, "weft.db")))

const contains = (bytes: Uint8Array, text: string) => Buffer.from(bytes).includes(Buffer.from(text))

describe("Engine storage", () => {
  it.scopedLive("stores each value once and names by number; reads back after reopen, update and rebuild", () =>
    Effect.gen(function*() {
      const filename = yield* tempFile
      const id = "7d0c7a4e-2b1f-4c3d-9e8f-a1b2c3d4e5f6"
      yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* Engines.open({ models: [files], node: "storage-a", filename })
        yield* engine.mutate([files.create(id, { name: "a-distinctive-name", size: 41.5, done: true, tags: ["x"] })])
        const row = (yield* Effect.promise(() => engine.kysely.selectFrom("files").selectAll().execute()))[0]!
        // the column holds the name; the state only its stamp
        expect(row.name).toBe("a-distinctive-name")
        expect(contains(row.weft_state, "a-distinctive-name")).toBe(false)
        expect(contains(row.weft_state, "size")).toBe(false)
        const log = (yield* Effect.promise(() => engine.kysely.selectFrom("weft_log").selectAll().execute()))[0]!
        expect(log.record).toHaveLength(16)
        expect(contains(log.payload, "size")).toBe(false)
      }))
      const engine = yield* Engines.open({ models: [files], node: "storage-a", filename })
      yield* engine.mutate([files.update(id, { size: 7, done: false })])
      const expected = { id, name: "a-distinctive-name", size: 7, done: false, tags: ["x"] }
      expect(Option.getOrThrow(yield* engine.get(files, id))).toEqual(expected)
      const view = yield* Snapshot.view(engine)
      expect(view.files![id]).toEqual({ name: "a-distinctive-name", size: 7, done: false, tags: ["x"] })
      yield* engine.rebuild
      expect(yield* Snapshot.view(engine)).toEqual(view)
      // a peer given the log holds the same records
      const peer = yield* Engines.open({ models: [files], node: "storage-b" })
      yield* peer.ingest((yield* engine.opsSince(new Map(), 100)).ops)
      expect(yield* Snapshot.view(peer)).toEqual(view)
    }))
})
