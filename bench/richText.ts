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
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type * as Operation from "../src/crdt/Operation.js"
import { expanding } from "../src/crdt/testing/Expanding.js"
import * as Timestamp from "../src/crdt/Timestamp.js"
import * as Engine from "../src/engine/Engine.js"
import * as Model from "../src/engine/Model.js"
import * as Ping from "../src/plugins/ping/Ping.js"
import * as Hosts from "../src/plugins/testing/Hosts.js"
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

const rssMb = () => process.memoryUsage().rss / 2 ** 20

/**
 * One record edited `history` times (a hundred splices a write), then the
 * latency of single-splice writes on it, and the RSS growth over the whole.
 */
const historyRun = (dir: string, history: number) =>
  Effect.scoped(Effect.gen(function*() {
    const before = rssMb()
    const engine = yield* Engine.makeSqlite({ models: [notes], node: "bench-node", filename: join(dir, `history-${Math.random()}.db`) })
    yield* engine.mutate([notes.create("n", { title: "", body: INITIAL })])
    for (let done = 0; done < history; done += 100) {
      yield* engine.mutate(Array.from({ length: Math.min(100, history - done) }, (_, k) =>
        notes.splice("n", "body", { index: position(done + k, 0), deleteCount: 1, insert: "xy" })))
    }
    const latencies: Array<number> = []
    for (let i = 0; i < 200; i++) {
      const start = performance.now()
      yield* engine.mutate([notes.splice("n", "body", { index: position(i, 1), deleteCount: 1, insert: "xy" })])
      latencies.push(performance.now() - start)
    }
    return { latency: median(latencies), rss: rssMb() - before }
  }))

/** Splice latency and RSS on documents with long histories, beside a fresh document. */
const histories = (dir: string) =>
  Effect.gen(function*() {
    const fresh = yield* historyRun(dir, 0)
    const figures: Array<Figure> = []
    for (const history of [1_000, 100_000]) {
      const run = yield* historyRun(dir, history)
      figures.push({
        name: `splice latency at ${history} history`,
        unit: "ms",
        value: run.latency,
        baseline: fresh.latency,
        baselineName: "the same splice on a fresh document",
        lowerIsBetter: true,
        extra: { rssGrowthMb: run.rss, freshRssGrowthMb: fresh.rss }
      })
    }
    return figures
  })

/** A peer's ping round trips while this node ingests `batch` (none: idle), on the memory network. */
const pingsDuring = (batch: ReadonlyArray<Operation.Operation> | undefined) =>
  Effect.scoped(Effect.gen(function*() {
    const network = yield* Hosts.network({ seed: 3 })
    const node = yield* network.host("node")
    const peer = yield* network.host("peer-a")
    yield* node.provide(node.host.register(Ping.plugin))
    yield* peer.connect(node)
    const engine = yield* Engine.makeSqlite({ models: [notes], node: "node", filename: ":memory:" })
    const rtts: Array<number> = []
    let done = false
    const pinger = yield* Effect.fork(Effect.gen(function*() {
      while (!done) {
        const start = performance.now()
        yield* peer.provide(Ping.ping(node.id, { timeout: "60 seconds" }))
        rtts.push(performance.now() - start)
        yield* Effect.sleep("2 millis")
      }
    }))
    if (batch === undefined) yield* Effect.sleep("2 seconds")
    else yield* Effect.exit(engine.ingest(batch))
    done = true
    yield* Fiber.join(pinger)
    return { median: median(rtts), max: Math.max(...rtts), count: rtts.length }
  }))

/** Ping latency while a batch of 200 000 inserts (every limit reached) is ingested, and while an expanding one is refused. */
const pings = () =>
  Effect.gen(function*() {
    const big = Array.from({ length: 20 }, (_, i) => ({
      _tag: "Edit", origin: `peer-c${i}`, seq: 1, ts: Timestamp.make(1, 0), model: "notes", record: `c${i}`, field: "body", changes: [expanding(10_000)]
    }) as unknown as Operation.Operation)
    const edits = (n: number) => Array.from({ length: 1_000 }, (_, i) => ({
      _tag: "Edit", origin: `peer-h${i}`, seq: 1, ts: Timestamp.make(1, 0), model: "notes", record: `h${i}`, field: "body", changes: [expanding(n)]
    }) as unknown as Operation.Operation)
    const timed = (batch: ReadonlyArray<Operation.Operation>) =>
      Effect.scoped(Effect.gen(function*() {
        const engine = yield* Engine.makeSqlite({ models: [notes], node: "node", filename: ":memory:" })
        const start = performance.now()
        const exit = yield* Effect.exit(engine.ingest(batch))
        return { ms: performance.now() - start, refused: exit._tag === "Failure" }
      }))
    const refusal = yield* timed(edits(1_000_000))
    const small = yield* timed(edits(10))
    const idle = yield* pingsDuring(undefined)
    const during = yield* pingsDuring(big)
    return [{
      name: "ping during a big rich-text ingest (max round trip)",
      unit: "ms",
      value: during.max,
      baseline: idle.max,
      baselineName: "idle node, memory network",
      lowerIsBetter: true,
      extra: { medianDuring: during.median, medianIdle: idle.median, pingsDuring: during.count, bound: 50 }
    }, {
      name: "refusing a batch of 1 000 Edits of 1 000 000 inserts each",
      unit: "ms",
      value: refusal.ms,
      baseline: small.ms,
      baselineName: "ingesting 1 000 Edits of 10 inserts each",
      lowerIsBetter: true,
      extra: { refused: String(refusal.refused) }
    }] satisfies Array<Figure>
  })

/** Runs the rich-text edit benchmark; returns its figure. *//** Runs the rich-text edit benchmark; returns its figure. */
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
      const splices = {
        name: "rich-text edits (splices)",
        unit: "edits/s",
        value: median(engine),
        baseline: median(raw),
        baselineName: `raw Automerge + better-sqlite3: load, splice, save, log row and text column, ${RECORDS} per transaction`,
        extra: { records: RECORDS, rounds: ROUNDS }
      } satisfies Figure
      return [splices, ...(yield* histories(dir)), ...(yield* pings())]
    }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
