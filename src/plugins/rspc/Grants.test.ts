import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { promises as fs } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Grants from "./Grants.js"

const directory = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(join(tmpdir(), "weft-grants-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

const open = (path: string) => Effect.provide(Grants.Grants, Grants.layerFile(path))

describe("Grants", () => {
  it.scoped("nothing is granted at first; grants and revokes survive a restart", () =>
    Effect.gen(function*() {
      const path = join(yield* directory, "grants.json")
      const first = yield* open(path)
      expect(yield* first.list()).toEqual([])
      expect(yield* first.allows("bob", "lib", "notes.read")).toBe(false)
      expect(first.unsafeAllows("bob", "lib", "notes.write")).toBe(false)
      yield* first.grant("bob", "lib", ["notes.read", "notes.write"])
      // read at once, from memory, as soon as the grant is made
      expect(first.unsafeAllows("bob", "lib", "notes.write")).toBe(true)
      yield* first.grant("carol", "other", ["notes.read"])
      yield* first.revoke("bob", "lib", ["notes.write"])
      expect(first.unsafeAllows("bob", "lib", "notes.write")).toBe(false)
      expect(first.unsafeAllows("bob", "lib", "notes.read")).toBe(true)
      const second = yield* open(path)
      expect(yield* second.list()).toEqual([
        { peer: "bob", library: "lib", capabilities: ["notes.read"] },
        { peer: "carol", library: "other", capabilities: ["notes.read"] }
      ])
      expect(yield* second.allows("bob", "lib", "notes.read")).toBe(true)
      expect(yield* second.allows("bob", "other", "notes.read")).toBe(false)
      expect(yield* second.allows("bob", "lib", "notes.write")).toBe(false)
      expect(second.unsafeAllows("carol", "other", "notes.read")).toBe(true)
      // revoking everything removes the grant
      yield* second.revoke("bob", "lib")
      expect(yield* (yield* open(path)).list("lib")).toEqual([])
    }))

  it.scoped("a capability or peer that is not one is refused Invalid, and nothing changes", () =>
    Effect.gen(function*() {
      const path = join(yield* directory, "grants.json")
      const grants = yield* open(path)
      for (const [peer, capability] of [["bob", "Notes Read"], ["bob", "../x"], ["", "notes.read"], ["bob", "a".repeat(200)]] as const) {
        const outcome = yield* Effect.either(grants.grant(peer, "lib", [capability]))
        expect(Either.isLeft(outcome) && outcome.left).toMatchObject({ _tag: "GrantsError", reason: "Invalid" })
      }
      expect(yield* grants.list()).toEqual([])
    }))

  it.scoped("a grants file that is not one is Corrupt, not an empty set of grants", () =>
    Effect.gen(function*() {
      const path = join(yield* directory, "grants.json")
      for (const text of ["{", JSON.stringify({ version: 1, grants: [{ peer: "bob", library: "lib", capabilities: ["BAD CAP"] }] }), JSON.stringify({ version: 2, grants: [] })]) {
        yield* Effect.promise(() => fs.writeFile(path, text))
        const outcome = yield* Effect.either(open(path))
        expect(Either.isLeft(outcome) && outcome.left).toMatchObject({ _tag: "GrantsError", reason: "Corrupt" })
      }
    }))
})
