import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NotesControl from "./NotesControl.js"

const note = (id: string, title: string): NotesControl.Note => ({ library: "lib", id, title, body: "", done: false })

describe("NotesControl.allNotes", () => {
  it.effect("follows the pages to the last and lists a note that came again on a later page once, as last seen", () =>
    Effect.gen(function*() {
      const pages: ReadonlyArray<NotesControl.NotesPage> = [
        { notes: [note("a", "alpha"), note("b", "beta")], next: { title: "beta", id: "b" } },
        // `a` renamed between the two pages comes again at its new place
        { notes: [note("c", "gamma"), note("a", "zeta")], next: { title: "zeta", id: "a" } },
        { notes: [note("d", "zz")] }
      ]
      const asked: Array<NotesControl.NoteCursor | undefined> = []
      const all = yield* NotesControl.allNotes(
        (after) => Effect.sync(() => pages[asked.push(after) - 1]!),
        () => "empty" as const
      )
      expect(asked).toEqual([undefined, { title: "beta", id: "b" }, { title: "zeta", id: "a" }])
      expect(all.map((n) => [n.id, n.title])).toEqual([["b", "beta"], ["c", "gamma"], ["a", "zeta"], ["d", "zz"]])
    }))

  it.effect("fails with the caller's error on a page that promises more but holds no notes, instead of asking forever", () =>
    Effect.gen(function*() {
      let asked = 0
      const error = yield* NotesControl.allNotes(
        () => Effect.sync(() => (asked++, { notes: [], next: { title: "x", id: "x" } })),
        () => "empty" as const
      ).pipe(Effect.flip)
      expect(error).toBe("empty")
      expect(asked).toBe(1)
    }))

  it.effect("passes the page's own failure through", () =>
    Effect.gen(function*() {
      const error = yield* NotesControl.allNotes(() => Effect.fail("gone" as const), () => "empty" as const).pipe(Effect.flip)
      expect(error).toBe("gone")
    }))
})
