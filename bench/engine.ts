/**
 * The engine's storage and write path, each figure beside its floor measured
 * in the same run (records `{name, size, tags}`, random UUID or sequential ids):
 *
 * - writes, 1000 per batch and 1 per batch: `mutate` (op append + projection,
 *   one transaction per batch) beside raw better-sqlite3 writing an op-log row
 *   and a projection row per write (prepared insert + prepared upsert, one
 *   transaction per batch): the physical floor, no CRDT;
 * - catch-up: a fresh engine ingesting a peer's whole log (`opsSince` pages
 *   into `ingest`, engine side, no network) beside copying the same log rows
 *   between two SQLite files (prepared select and insert, a transaction per page);
 * - disk per record: the engine's database file after it closed (the WAL
 *   checkpointed into it, no VACUUM): `page_count × page_size` over the
 *   records, beside Automerge's saved document holding the same records.
 */
import * as Automerge from "@automerge/automerge"
import SqliteDatabase from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import * as Binary from "../src/crdt/Binary.js"
import * as Timestamp from "../src/crdt/Timestamp.js"
import * as Engine from "../src/engine/Engine.js"
import * as Model from "../src/engine/Model.js"
import * as OperationLog from "../src/engine/OperationLog.js"
import * as Projection from "../src/engine/Projection.js"
import { median, type Figure } from "./report.js"

export const files = Model.make("files", Schema.Struct({
  name: Schema.String,
  size: Schema.Number,
  tags: Schema.Array(Schema.String)
}))

const ROUNDS = 3
const PAGE = 10_000

/**
 * Record ids: random UUIDs, as a local-first app without central id allocation
 * makes them; or sequential ones (`f000001`, …), the kindest case for SQLite's B-trees.
 */
const recordIds = (total: number, kind: "random" | "sequential"): ReadonlyArray<string> =>
  Array.from({ length: total }, (_, i) => kind === "random" ? randomUUID() : `f${String(i).padStart(7, "0")}`)

const valuesOf = (i: number) => ({ name: `file-${i}.txt`, size: i, tags: ["a", "b"] })

const load = () => loadavg().map((n) => n.toFixed(2)).join(" ")

/** Raw better-sqlite3: the same op rows and projection rows, written as directly as SQLite allows. */
const rawWrites = (dir: string, ids: ReadonlyArray<string>, batch: number): number => {
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
  const origins = OperationLog.emptyOrigins()
  const write = db.transaction((from: number) => {
    for (let i = from; i < from + batch; i++) {
      const ts = Timestamp.make(1_700_000_000_000 + i, 0)
      const fields = valuesOf(i)
      insertOp.run("bench-node", i + 1, ts, 0, "files", ids[i], Binary.encode(fields))
      // the same state bytes the engine stores: one create's registers
      const stamp = Timestamp.stamp(ts, "bench-node" as Timestamp.NodeId)
      const state = { created: stamp, deleted: null, fields: { name: { stamp, value: fields.name }, size: { stamp, value: fields.size }, tags: { stamp, value: fields.tags } } }
      upsert.run(ids[i], Projection.encodeState(state, origins), fields.name, fields.size, JSON.stringify(fields.tags))
    }
  })
  const start = performance.now()
  for (let from = 0; from < total; from += batch) write(from)
  const seconds = (performance.now() - start) / 1000
  db.close()
  return total / seconds
}

const engineWrites = (dir: string, ids: ReadonlyArray<string>, batch: number) =>
  Effect.scoped(Effect.gen(function*() {
    const engine = yield* Engine.makeSqlite({ models: [files], node: "bench-node", filename: join(dir, `engine-${Math.random()}.db`) })
    const total = ids.length
    const start = performance.now()
    for (let from = 0; from < total; from += batch) {
      const changes = []
      for (let i = from; i < from + batch; i++) changes.push(files.create(ids[i]!, valuesOf(i)))
      yield* engine.mutate(changes)
    }
    return total / ((performance.now() - start) / 1000)
  }))

/** Writes, batched and single, random and sequential ids. */
const writes = (dir: string, batched: number, single: number) =>
  Effect.gen(function*() {
    const figures: Array<Figure> = []
    for (const [batch, total] of [[1_000, batched], [1, single]] as const) {
      for (const kind of ["random", "sequential"] as const) {
        const raw: Array<number> = []
        const engine: Array<number> = []
        for (let round = 0; round < ROUNDS; round++) {
          const ids = recordIds(total, kind)
          raw.push(rawWrites(dir, ids, batch))
          engine.push(yield* engineWrites(dir, ids, batch))
        }
        figures.push({
          name: `writes, ${batch} per batch (${kind} ids)`,
          unit: "ops/s",
          value: median(engine),
          baseline: median(raw),
          baselineName: `raw better-sqlite3: op-log row + projection upsert per write, ${batch} per transaction`,
          goal: 0.7,
          extra: { ops: total, load: load() }
        })
      }
    }
    return figures
  })

/** A source engine's database file holding `total` created records (random ids), closed. */
const source = (dir: string, total: number) =>
  Effect.gen(function*() {
    const filename = join(dir, `source-${total}-${Math.random()}.db`)
    const ids = recordIds(total, "random")
    yield* Effect.scoped(Effect.gen(function*() {
      const engine = yield* Engine.makeSqlite({ models: [files], filename })
      for (let from = 0; from < total; from += 1_000) {
        const changes = []
        for (let i = from; i < Math.min(total, from + 1_000); i++) changes.push(files.create(ids[i]!, valuesOf(i)))
        yield* engine.mutate(changes)
      }
    }))
    return { filename, ids }
  })

/** Copies the log rows of `from` into a new file with the same log table, a transaction per page. */
const copyRows = (dir: string, from: string): number => {
  const start = performance.now()
  const src = new SqliteDatabase(from, { readonly: true })
  const dst = new SqliteDatabase(join(dir, `copy-${Math.random()}.db`))
  dst.pragma("journal_mode = WAL")
  dst.pragma("synchronous = NORMAL")
  const table = src.prepare("select sql from sqlite_schema where name = 'weft_log'").pluck().get() as string
  dst.exec(table)
  const read = src.prepare("select * from weft_log where origin > ? or (origin = ? and seq > ?) order by origin, seq limit ?").raw()
  const insert = dst.prepare("insert into weft_log values (?, ?, ?, ?, ?, ?, ?)")
  const write = dst.transaction((rows: Array<Array<unknown>>) => {
    for (const row of rows) insert.run(row)
  })
  let cursor: [unknown, unknown] = [0, 0]
  let copied = 0
  while (true) {
    const rows = read.all(cursor[0], cursor[0], cursor[1], PAGE) as Array<Array<unknown>>
    if (rows.length === 0) break
    write(rows)
    copied += rows.length
    const last = rows[rows.length - 1]!
    cursor = [last[0], last[1]]
  }
  src.close()
  dst.close()
  return copied / ((performance.now() - start) / 1000)
}

/** A fresh engine taking the whole log of the engine on `from`, page by page. */
const catchUp = (dir: string, from: string) =>
  Effect.scoped(Effect.gen(function*() {
    const start = performance.now()
    const a = yield* Engine.makeSqlite({ models: [files], filename: from })
    const b = yield* Engine.makeSqlite({ models: [files], filename: join(dir, `catch-up-${Math.random()}.db`) })
    let applied = 0
    while (true) {
      const page = yield* a.opsSince(yield* b.versionVector, PAGE)
      if (page.ops.length > 0) applied += (yield* b.ingest(page.ops)).applied
      if (!page.hasMore) break
    }
    return applied / ((performance.now() - start) / 1000)
  }))

const bytesOf = (filename: string): number => {
  const db = new SqliteDatabase(filename, { readonly: true })
  const bytes = (db.pragma("page_count", { simple: true }) as number) * (db.pragma("page_size", { simple: true }) as number)
  db.close()
  return bytes
}

/** Automerge's saved document holding the same records, keyed by id. */
const automergeBytes = (ids: ReadonlyArray<string>): number => {
  const records: Record<string, ReturnType<typeof valuesOf>> = {}
  for (const [i, id] of ids.entries()) records[id] = valuesOf(i)
  return Automerge.save(Automerge.from({ records })).length
}

/** Catch-up and disk at `total` records. */
const catchUpAndDisk = (dir: string, total: number) =>
  Effect.gen(function*() {
    const engine: Array<number> = []
    const floor: Array<number> = []
    let disk = 0
    let ids: ReadonlyArray<string> = []
    for (let round = 0; round < ROUNDS; round++) {
      const made = yield* source(dir, total)
      disk = bytesOf(made.filename)
      ids = made.ids
      floor.push(copyRows(dir, made.filename))
      engine.push(yield* catchUp(dir, made.filename))
    }
    const automerge = automergeBytes(ids)
    return [
      {
        name: `catch-up of ${total} records to an empty engine`,
        unit: "ops/s",
        value: median(engine),
        baseline: median(floor),
        baselineName: "copying the same log rows between two SQLite files, 10 000 per transaction",
        goal: 0.5,
        extra: { ops: total, load: load() }
      },
      {
        name: `disk per record (${total} records)`,
        unit: "B",
        value: disk / total,
        baseline: automerge / total,
        baselineName: "Automerge.save of one document holding the same records",
        lowerIsBetter: true,
        extra: { goal: "< 200 B", met: disk / total < 200 ? "yes" : "no", load: load() }
      }
    ] satisfies Array<Figure>
  })

/** Runs the engine's benchmarks; returns their figures. */
export const run = (batched = 100_000, single = 2_000) =>
  Effect.gen(function*() {
    const dir = mkdtempSync(join(tmpdir(), "weft-bench-engine-"))
    try {
      return [
        ...(yield* writes(dir, batched, single)),
        ...(yield* catchUpAndDisk(dir, 10_000)),
        ...(yield* catchUpAndDisk(dir, 100_000))
      ]
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
