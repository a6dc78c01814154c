/**
 * Rich-text edits: the engine's `mutate` of splices into Automerge-backed
 * fields beside raw Automerge + better-sqlite3 doing the least an
 * event-sourced store must do per edit: load the document, splice, save it,
 * and write the change as a log row and the text as a column, one
 * transaction per batch.
 */
import * as Automerge from "@automerge/automerge"
import SqliteDatabase from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Engine from "../src/engine/Engine.js"
import * as Model from "../src/engine/Model.js"
import { median, type Figure } from "./report.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, body: Model.RichText }))

const RECORDS = 200
const ROUNDS = 10
const INITIAL = "The quick brown fox jumps over the lazy dog. ".repeat(10)

/** Where each round's splice goes in each record: the same for both sides. */
const position = (round: number, record: number) => (round * 37 + record * 11) % INITIAL.length

const rawBaseline = (dir: string): number => {
  const db = new SqliteDatabase(join(dir, `raw-${Math.random()}.db`))
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  db.exec(`create table ops (seq integer primary key, record text not null, change blob not null);
           create table notes (id text primary key, body text not null);
           create table docs (id text primary key, doc blob not null)`)
  const insertOp = db.prepare("insert into ops (record, change) values (?, ?)")
  const upsertNote = db.prepare("insert into notes values (?, ?) on conflict (id) do update set body = excluded.body")
  const upsertDoc = db.prepare("insert into docs values (?, ?) on conflict (id) do update set doc = excluded.doc")
  const selectDoc = db.prepare("select doc from docs where id = ?")
  // one actor, as the engine has one node id
  const actor = "be0c4a11"
  const create = db.transaction(() => {
    for (let r = 0; r < RECORDS; r++) {
      const doc = Automerge.change(Automerge.init<{ text: string }>({ actor }), (d) => {
        d.text = INITIAL
      })
      insertOp.run(`n${r}`, Automerge.getLastLocalChange(doc)!)
      upsertNote.run(`n${r}`, doc.text)
      upsertDoc.run(`n${r}`, Automerge.save(doc))
    }
  })
  const edit = db.transaction((round: number) => {
    for (let r = 0; r < RECORDS; r++) {
      const row = selectDoc.get(`n${r}`) as { doc: Uint8Array }
      const doc = Automerge.change(Automerge.load<{ text: string }>(row.doc, { actor }), (d) => {
        Automerge.splice(d, ["text"], position(round, r), 1, "xy")
      })
      insertOp.run(`n${r}`, Automerge.getLastLocalChange(doc)!)
      upsertNote.run(`n${r}`, doc.text)
      upsertDoc.run(`n${r}`, Automerge.save(doc))
    }
  })
  create()
  const start = performance.now()
  for (let round = 0; round < ROUNDS; round++) edit(round)
  const seconds = (performance.now() - start) / 1000
  db.close()
  return (RECORDS * ROUNDS) / seconds
}

const engineRun = (dir: string) =>
  Effect.scoped(Effect.gen(function*() {
    const engine = yield* Engine.makeSqlite({ models: [notes], node: "bench-node", filename: join(dir, `engine-${Math.random()}.db`) })
    yield* engine.mutate(Array.from({ length: RECORDS }, (_, r) => notes.create(`n${r}`, { title: "", body: INITIAL })))
    const start = performance.now()
    for (let round = 0; round < ROUNDS; round++) {
      yield* engine.mutate(Array.from({ length: RECORDS }, (_, r) =>
        notes.splice(`n${r}`, "body", { index: position(round, r), deleteCount: 1, insert: "xy" })))
    }
    return (RECORDS * ROUNDS) / ((performance.now() - start) / 1000)
  }))

/** Runs the rich-text edit benchmark; returns its figure. */
export const run = () =>
  Effect.acquireUseRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "weft-bench-richtext-"))),
    (dir) => Effect.gen(function*() {
      const raw: Array<number> = []
      const engine: Array<number> = []
      for (let round = 0; round < 3; round++) {
        raw.push(rawBaseline(dir))
        engine.push(yield* engineRun(dir))
      }
      return {
        name: "rich-text edits (splices)",
        unit: "edits/s",
        value: median(engine),
        baseline: median(raw),
        baselineName: `raw Automerge + better-sqlite3: load, splice, save, log row and text column, ${RECORDS} per transaction`,
        extra: { records: RECORDS, rounds: ROUNDS }
      } satisfies Figure
    }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
