/**
 * Local mutation throughput: the engine's `mutate` (op append + projection,
 * one transaction per batch) beside raw better-sqlite3 writing the same rows
 * (prepared op insert + prepared LWW upsert, one transaction per batch).
 */
import SqliteDatabase from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Binary from "../src/crdt/Binary.js"
import * as Timestamp from "../src/crdt/Timestamp.js"
import * as Engine from "../src/engine/Engine.js"
import * as Model from "../src/engine/Model.js"
import * as Projection from "../src/engine/Projection.js"
import { median, type Figure } from "./report.js"

export const files = Model.make("files", Schema.Struct({
  name: Schema.String,
  size: Schema.Number,
  tags: Schema.Array(Schema.String)
}))

const BATCH = 1_000

/**
 * Record ids: random UUIDs, as a local-first app without central id allocation
 * makes them; or sequential ones (`f000001`, …), the kindest case for SQLite's B-trees.
 */
const recordIds = (total: number, kind: "random" | "sequential"): ReadonlyArray<string> =>
  Array.from({ length: total }, (_, i) => kind === "random" ? randomUUID() : `f${String(i).padStart(7, "0")}`)

/** Raw better-sqlite3: the same op rows and projection rows, written as directly as SQLite allows. */
const rawBaseline = (dir: string, ids: ReadonlyArray<string>): number => {
  const total = ids.length
  const db = new SqliteDatabase(join(dir, `raw-${Math.random()}.db`))
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  db.exec(`create table ops (origin text not null, seq integer not null, ts text not null, kind integer not null,
             model text not null, record text not null, payload blob, primary key (origin, seq));
           create table files (id text primary key, weft_state blob not null, name text, size real, tags text)`)
  const insertOp = db.prepare("insert into ops values (?, ?, ?, ?, ?, ?, ?)")
  const upsert = db.prepare(`insert into files values (?, ?, ?, ?, ?) on conflict (id) do update set
    weft_state = excluded.weft_state, name = excluded.name, size = excluded.size, tags = excluded.tags`)
  const write = db.transaction((from: number) => {
    for (let i = from; i < from + BATCH; i++) {
      const ts = Timestamp.make(1_700_000_000_000 + i, 0)
      const fields = { name: `file-${i}.txt`, size: i, tags: ["a", "b"] }
      insertOp.run("bench-node", i + 1, ts, 0, "files", ids[i], Binary.encode(fields))
      // the same state bytes the engine stores: one create's registers
      const stamp = Timestamp.stamp(ts, "bench-node" as Timestamp.NodeId)
      const state = { created: stamp, deleted: null, fields: { name: { stamp, value: fields.name }, size: { stamp, value: fields.size }, tags: { stamp, value: fields.tags } } }
      upsert.run(ids[i], Projection.encodeState(state), fields.name, fields.size, JSON.stringify(fields.tags))
    }
  })
  const start = performance.now()
  for (let from = 0; from < total; from += BATCH) write(from)
  const seconds = (performance.now() - start) / 1000
  db.close()
  return total / seconds
}

const engineRun = (dir: string, ids: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const engine = yield* Engine.makeSqlite({ models: [files], node: "bench-node", filename: join(dir, `engine-${Math.random()}.db`) })
    const total = ids.length
    const start = performance.now()
    for (let from = 0; from < total; from += BATCH) {
      const changes = []
      for (let i = from; i < from + BATCH; i++) changes.push(files.create(ids[i]!, { name: `file-${i}.txt`, size: i, tags: ["a", "b"] }))
      yield* engine.mutate(changes)
    }
    return total / ((performance.now() - start) / 1000)
  }))

/** Runs the local mutation benchmark, random and sequential ids; returns its figures. */
export const run = (total = 100_000) =>
  Effect.gen(function*() {
    const dir = mkdtempSync(join(tmpdir(), "weft-bench-engine-"))
    try {
      const figures: Array<Figure> = []
      for (const kind of ["random", "sequential"] as const) {
        const raw: Array<number> = []
        const engine: Array<number> = []
        for (let round = 0; round < 3; round++) {
          const ids = recordIds(total, kind)
          raw.push(rawBaseline(dir, ids))
          engine.push(yield* engineRun(dir, ids))
        }
        figures.push({
          name: `local mutation (${kind} ids)`,
          unit: "ops/s",
          value: median(engine),
          baseline: median(raw),
          baselineName: "raw better-sqlite3, same rows: prepared op insert + upsert, 1000 per transaction",
          goal: 0.5,
          extra: { ops: total }
        })
      }
      return figures
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
