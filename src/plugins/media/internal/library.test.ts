import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Engine from "../../../engine/Engine.js"
import * as Models from "../Models.js"
import * as Library from "./library.js"

const record = { location: "loc1", path: "a.bin", size: 3, mtime: 1, mime: "application/octet-stream", hash: "0".repeat(64) }
const id = Models.fileId("loc1", "a.bin")

describe("media library", () => {
  it.scoped("holds a record looked up, in place, until a commit touches a file or the library's scope closes", () =>
    Effect.gen(function*() {
      const engine = yield* Engine.makeSqlite({ models: Models.models, node: "alice", filename: ":memory:" })
      yield* engine.mutate([Models.files.create(id, record)])
      const scope = yield* Scope.make()
      const library = yield* Scope.extend(Library.make(engine), scope)
      expect(library.held({ id })).toBeUndefined()
      expect((yield* library.records({ id })).map((file) => file.id)).toEqual([id])
      expect(library.held({ id })?.map((file) => file.id)).toEqual([id])
      yield* engine.mutate([Models.files.update(id, { size: 4 })])
      expect(library.held({ id })).toBeUndefined()
      expect((yield* library.records({ id })).map((file) => file.size)).toEqual([4])
      // a library let go (its engine may be closed) holds nothing: a read looks it up again
      yield* Scope.close(scope, Exit.void)
      expect(library.held({ id })).toBeUndefined()
      expect((yield* library.records({ id })).map((file) => file.size)).toEqual([4])
      expect(library.held({ id })).toBeUndefined()
    }))
})
