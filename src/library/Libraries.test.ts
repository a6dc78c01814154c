import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { PeerId } from "../transport/Transport.js"
import * as Libraries from "./Libraries.js"

const alice = "12D3KooWAlice" as PeerId
const bob = "12D3KooWBob" as PeerId

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "weft-libraries-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const openLibraries = (path: string) => Effect.provide(Libraries.Libraries, Libraries.layerFile(path))

describe("Libraries (file)", () => {
  it.scoped("persists libraries and members across reopening; a corrupt file is a typed error", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "libraries.json")
      const first = yield* openLibraries(path)
      const library = yield* first.create("Photos", alice)
      yield* first.addMember(library.id, bob)
      const second = yield* openLibraries(path)
      expect(yield* second.list).toEqual([{ id: library.id, name: "Photos", members: [alice, bob] }])
      expect(statSync(path).mode & 0o777).toBe(0o600)
      writeFileSync(path, JSON.stringify({ version: 1, libraries: [{ id: "has a space", name: "x", members: [] }] }))
      const corrupt = yield* Effect.either(openLibraries(path))
      expect(Either.isLeft(corrupt) && corrupt.left).toMatchObject({ _tag: "LibraryError", reason: "Corrupt" })
    }))

  it.scopedLive("an update interrupted while it writes leaves the file and memory agreeing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "libraries.json")
      const libraries = yield* openLibraries(path)
      const library = yield* libraries.create("Photos", alice)
      for (let round = 0; round < 10; round++) {
        const peer = `12D3KooWPeer${round}` as PeerId
        const adding = yield* Effect.fork(libraries.addMember(library.id, peer))
        // interrupted mid-write (the file write has started by now)
        yield* Effect.yieldNow()
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(adding)
        // what a write left running in the background would have done by now
        yield* Effect.sleep("20 millis")
        const onDisk = (yield* Libraries.load(path)).libraries.find((l) => l.id === library.id)?.members
        const inMemory = Option.map(yield* libraries.get(library.id), (l) => l.members)
        expect(Option.some(onDisk)).toEqual(inMemory)
      }
    }))

  it.scopedLive("overlapping writes (one of them interrupted) never garble the file or leave temporary files", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      for (let round = 0; round < 20; round++) {
        const path = join(dir, `libraries-${round}.json`)
        const libraries = yield* openLibraries(path)
        const library = yield* libraries.create("Photos", alice)
        for (let i = 0; i < 20; i++) yield* libraries.addMember(library.id, `12D3KooWMemberWithALongName${i}` as PeerId)
        const adding = yield* Effect.fork(libraries.addMember(library.id, `12D3KooW${"x".repeat(100)}` as PeerId))
        yield* Effect.yieldNow()
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(adding)
        yield* libraries.removeMember(library.id, "12D3KooWMemberWithALongName19" as PeerId)
        yield* Effect.sleep("20 millis")
        const onDisk = (yield* Libraries.load(path)).libraries
        expect(onDisk).toEqual(yield* libraries.list)
      }
      expect(readdirSync(dir).filter((name) => name.endsWith(".tmp"))).toEqual([])
    }), 60_000)

  it.scoped("a name, id or member a saved file could not hold is refused, and nothing is written", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "libraries.json")
      const libraries = yield* openLibraries(path)
      const library = yield* libraries.create("Photos", alice)
      for (const attempt of [
        libraries.create("n".repeat(257), alice),
        libraries.create("ok", alice, "not a library id!"),
        libraries.addMember(library.id, "not a peer id!" as PeerId)
      ]) {
        const refused = yield* Effect.either(attempt)
        expect(Either.isLeft(refused) && refused.left).toMatchObject({ _tag: "LibraryError", reason: "Invalid" })
      }
      // the file still loads, with what was accepted only
      const reopened = yield* openLibraries(path)
      expect(yield* reopened.list).toEqual([{ id: library.id, name: "Photos", members: [alice] }])
    }))
})

describe("the default library", () => {
  it.scoped("is the first until one is made default; that is kept across reopening; a default that is gone falls back to the first", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const path = join(dir, "libraries.json")
      const first = yield* openLibraries(path)
      expect(yield* first.defaultLibrary).toEqual(Option.none())
      const own = yield* first.create("Own", alice)
      const joined = yield* first.create("Joined", alice, "joined-library")
      expect(Option.map(yield* first.defaultLibrary, (l) => l.id)).toEqual(Option.some(own.id))
      yield* first.setDefault(joined.id)
      expect(Option.map(yield* first.defaultLibrary, (l) => l.id)).toEqual(Option.some(joined.id))
      const reopened = yield* openLibraries(path)
      expect(Option.map(yield* reopened.defaultLibrary, (l) => l.id)).toEqual(Option.some(joined.id))
      expect(yield* Effect.flip(reopened.setDefault("no-such-library"))).toMatchObject({ _tag: "LibraryError", reason: "NotFound" })
      // a file whose default names no library it holds: the first is the default
      writeFileSync(path, JSON.stringify({ version: 1, libraries: [own], default: "gone" }))
      expect(Option.map(yield* (yield* openLibraries(path)).defaultLibrary, (l) => l.id)).toEqual(Option.some(own.id))
    }))
})
