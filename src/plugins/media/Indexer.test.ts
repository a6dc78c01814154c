import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import * as Engine from "../../engine/Engine.js"
import * as Indexer from "./Indexer.js"
import * as Models from "./Models.js"
import { pattern, sha256, tempDir, write } from "./testing/Files.js"

const openEngine = Engine.makeSqlite({ models: Models.models, node: "indexer", filename: ":memory:" })

const recorded = (engine: Engine.Service, location: string) =>
  Effect.map(
    engine.query(Models.files, (q) => q.where("location", "=", location).orderBy("path")),
    (rows) => Object.fromEntries(rows.map((row) => [row.path, `${row.size} ${row.mime} ${row.hash}`]))
  )

describe("Indexer", () => {
  it.scoped("indexes every regular file of a tree in batches, with size, MIME type and SHA-256; links are not followed", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const outside = yield* tempDir()
      yield* write(nodePath.join(outside, "secret.txt"), "not yours")
      yield* write(nodePath.join(root, "a.txt"), "hello")
      yield* write(nodePath.join(root, "photos/b.jpg"), pattern(70_000))
      yield* write(nodePath.join(root, "photos/deep/c.mp4"), pattern(5))
      yield* write(nodePath.join(root, "empty.bin"), new Uint8Array(0))
      yield* Effect.promise(() => fs.symlink(nodePath.join(outside, "secret.txt"), nodePath.join(root, "link.txt")))
      yield* Effect.promise(() => fs.symlink(outside, nodePath.join(root, "linked-dir")))
      const engine = yield* openEngine
      const progress = Chunk.toReadonlyArray(yield* Stream.runCollect(Indexer.index(engine, { id: "loc1", name: "Home" }, root, { batchSize: 2 })))
      // one element per batch of two, then the last
      expect(progress.length).toBe(3)
      const last = progress.at(-1)!
      expect(last).toMatchObject({ location: "loc1", seen: 4, added: 4, changed: 0, removed: 0, skipped: 2, done: true, hashedBytes: 70_010 })
      expect(progress.slice(0, -1).every((p) => !p.done)).toBe(true)
      expect(Option.getOrUndefined(yield* engine.get(Models.locations, "loc1"))).toEqual({ id: "loc1", name: "Home" })
      expect(yield* recorded(engine, "loc1")).toEqual({
        "a.txt": `5 text/plain ${sha256("hello")}`,
        "empty.bin": `0 application/octet-stream ${sha256("")}`,
        "photos/b.jpg": `70000 image/jpeg ${sha256(pattern(70_000))}`,
        "photos/deep/c.mp4": `5 video/mp4 ${sha256(pattern(5))}`
      })
    }))

  it.scoped("rescan records added, changed and removed files, and leaves unchanged ones alone", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      yield* write(nodePath.join(root, "keep.txt"), "same")
      yield* write(nodePath.join(root, "edit.txt"), "before")
      yield* write(nodePath.join(root, "gone/old.txt"), "old")
      const engine = yield* openEngine
      yield* Stream.runDrain(Indexer.index(engine, { id: "loc1", name: "Home" }, root))
      const keepId = Models.fileId("loc1", "keep.txt")
      const keepBefore = yield* engine.get(Models.files, keepId)

      yield* write(nodePath.join(root, "edit.txt"), "after, longer")
      yield* write(nodePath.join(root, "new/one.png"), "png")
      yield* Effect.promise(() => fs.rm(nodePath.join(root, "gone"), { recursive: true }))
      const last = yield* Stream.runLast(Indexer.rescan(engine, "loc1", root, { batchSize: 1 }))
      expect(last._tag === "Some" && last.value).toMatchObject({ seen: 3, added: 1, changed: 1, unchanged: 1, removed: 1, done: true })
      expect(yield* recorded(engine, "loc1")).toEqual({
        "edit.txt": `13 text/plain ${sha256("after, longer")}`,
        "keep.txt": `4 text/plain ${sha256("same")}`,
        "new/one.png": `3 image/png ${sha256("png")}`
      })
      expect(yield* engine.get(Models.files, keepId)).toEqual(keepBefore)
    }))

  it.scoped("a rescan of an unchanged tree writes nothing", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      yield* write(nodePath.join(root, "a.txt"), "a")
      const engine = yield* openEngine
      yield* Stream.runDrain(Indexer.index(engine, { id: "loc1", name: "Home" }, root))
      const before = yield* engine.versionVector
      const last = yield* Stream.runLast(Indexer.rescan(engine, "loc1", root))
      expect(last._tag === "Some" && last.value).toMatchObject({ seen: 1, unchanged: 1, added: 0, changed: 0, removed: 0 })
      expect(yield* engine.versionVector).toEqual(before)
    }))

  it.scoped("a root that is not a directory, and an unknown location, are typed errors", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      yield* write(nodePath.join(root, "file"), "x")
      const engine = yield* openEngine
      const notDir = yield* Effect.either(Stream.runDrain(Indexer.index(engine, { id: "loc1", name: "x" }, nodePath.join(root, "file"))))
      expect(Either.isLeft(notDir) && notDir.left.reason).toBe("NotADirectory")
      const unknown = yield* Effect.either(Stream.runDrain(Indexer.rescan(engine, "nope", root)))
      expect(Either.isLeft(unknown) && unknown.left.reason).toBe("NotFound")
    }))
})
