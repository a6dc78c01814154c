/**
 * Ill-formed strings (a lone UTF-16 surrogate) have no UTF-8 form: written,
 * they reached peers as U+FFFD, so the writer's record differed from every
 * copy and its id no longer found it. `mutate` refuses them.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Model from "./Model.js"
import type * as Engine from "./Engine.js"
import * as Engines from "./testing/Engines.js"
import * as Snapshot from "./testing/Snapshot.js"

const notes = Model.make("notes", Schema.Struct({
  title: Schema.String,
  meta: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  body: Model.RichText
}))

const LONE_HIGH = "\ud800"
const LONE_LOW = "\udfff"

const refused = (engine: Engine.Service, changes: Parameters<Engine.Service["mutate"]>[0]) =>
  Effect.gen(function*() {
    const before = JSON.stringify(yield* Snapshot.snapshot(engine))
    const error = yield* Effect.flip(engine.mutate(changes))
    expect(JSON.stringify(yield* Snapshot.snapshot(engine))).toBe(before)
    return error
  })

describe("Engine: lone surrogates", () => {
  it.scoped("are refused with a ValidationError in an id, a value, an object key, a rich text and a splice; nothing is written; the writer goes on", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      yield* engine.mutate([notes.create("n1", { title: "first", body: "text" })])

      const cases: ReadonlyArray<readonly [string, Parameters<Engine.Service["mutate"]>[0], string]> = [
        ["id", [notes.create(`n${LONE_HIGH}`, { title: "x", body: "" })], "id"],
        ["id of an update", [notes.update(`n1${LONE_LOW}`, { title: "x" })], "id"],
        ["value", [notes.create("n2", { title: `a${LONE_LOW}b`, body: "" })], "title"],
        ["value of an update", [notes.update("n1", { title: `${LONE_HIGH}` })], "title"],
        ["object key in a value", [notes.update("n1", { meta: { [`k${LONE_HIGH}`]: "v" } })], "meta"],
        ["object value in a value", [notes.update("n1", { meta: { k: `v${LONE_LOW}` } })], "meta"],
        ["rich text", [notes.update("n1", { body: `more ${LONE_HIGH}` })], "body"],
        ["rich text splice", [notes.splice("n1", "body", { index: 0, deleteCount: 0, insert: LONE_LOW })], "body"],
        // with a good change before it in the same batch: the batch is refused whole
        ["in a batch", [notes.create("n3", { title: "ok", body: "" }), notes.update("n3", { title: LONE_HIGH })], "title"]
      ]
      for (const [name, changes, field] of cases) {
        const error = yield* refused(engine, changes)
        expect(error, name).toMatchObject({ _tag: "ValidationError", field })
      }

      // a surrogate pair is a character like any other
      yield* engine.mutate([notes.update("n1", { title: "😀", meta: { "😀": "😀" } })])
      yield* engine.mutate([notes.splice("n1", "body", { index: 0, deleteCount: 0, insert: "😀 " })])
      const row = Option.getOrThrow(yield* engine.get(notes, "n1"))
      expect(row).toMatchObject({ title: "😀", meta: { "😀": "😀" }, body: "😀 text" })
      yield* engine.mutate([notes.update("n1", { title: "last" })])
      expect(Option.getOrThrow(yield* engine.get(notes, "n1")).title).toBe("last")
    }))
})
