/**
 * Sync benchmarks, one phase per process so that each phase's peak RSS is
 * its own:
 *
 *   node sync-worker.js fill <dir> <ops>    a full peer with <ops> operations (two origins)
 *   node sync-worker.js catchup <dir>       an empty peer catches up from it over a session
 *   node sync-worker.js ingest <dir>        the same operations ingested locally, no session
 *
 * Each phase prints one JSON line.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { join } from "node:path"
import type * as Operation from "../src/crdt/Operation.js"
import * as VersionVector from "../src/crdt/VersionVector.js"
import type * as Engine from "../src/engine/Engine.js"
import * as SyncSession from "../src/sync/SyncSession.js"
import * as ChannelPair from "../src/sync/testing/ChannelPair.js"
import * as Engines from "../src/engine/testing/Engines.js"
import { files } from "./engine.js"

const [phase, dir, count] = process.argv.slice(2) as [string, string, string | undefined]
const open = (node: string) => Engines.open({ models: [files], node, filename: join(dir, `${node}.db`) })
const held = (engine: Engine.Service) => Effect.map(engine.versionVector, (v) => [...v.values()].reduce((n, e) => n + e.seq, 0))

/** Fills an engine with `count` operations: mostly creates of random ids, a third updates. */
const fill = (engine: Engine.Service, count: number) =>
  Effect.gen(function*() {
    const ids: Array<string> = []
    for (let made = 0; made < count;) {
      const n = Math.min(1_000, count - made)
      const changes = []
      for (let i = 0; i < n; i++) {
        if (ids.length < 10 || (made + i) % 3 !== 0) {
          const id = randomUUID()
          ids.push(id)
          changes.push(files.create(id, { name: `file-${made + i}.txt`, size: made + i, tags: ["a"] }))
        } else {
          changes.push(files.update(ids[(made * 7 + i) % ids.length]!, { size: made + i }))
        }
      }
      yield* engine.mutate(changes)
      made += n
    }
  })

/** Everything `from` holds that `to` lacks, page by page. */
const copy = (from: Engine.Service, to: (ops: ReadonlyArray<Operation.Operation>) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    let vector = VersionVector.empty
    while (true) {
      const page = yield* from.opsSince(vector, 1_000)
      if (page.ops.length > 0) yield* to(page.ops)
      vector = VersionVector.advance(vector, page.ops)
      if (!page.hasMore) return
    }
  })

const phases: Record<string, Effect.Effect<Record<string, number>, unknown, import("effect/Scope").Scope>> = {
  fill: Effect.gen(function*() {
    const total = Number(count)
    const full = yield* open("full")
    const other = yield* open("other")
    yield* fill(other, Math.floor(total / 10))
    yield* fill(full, total - Math.floor(total / 10))
    yield* copy(other, full.ingest)
    return { ops: yield* held(full) }
  }),
  catchup: Effect.gen(function*() {
    const full = yield* open("full")
    const empty = yield* open(`empty-${process.pid}`)
    const total = yield* held(full)
    const pair = yield* ChannelPair.make(16)
    const options = { library: "bench", debounce: Duration.millis(1), batchSize: 1_000, window: 4 }
    const start = performance.now()
    yield* Effect.fork(SyncSession.run(full, pair.left, options))
    yield* Effect.fork(SyncSession.run(empty, pair.right, options))
    while ((yield* held(empty)) < total) yield* Effect.sleep(Duration.millis(2))
    return { ops: total, opsPerSec: total / ((performance.now() - start) / 1000) }
  }),
  ingest: Effect.gen(function*() {
    const full = yield* open("full")
    const batches: Array<ReadonlyArray<Operation.Operation>> = []
    yield* copy(full, (ops) => Effect.sync(() => batches.push(ops)))
    const local = yield* open(`local-${process.pid}`)
    const start = performance.now()
    for (const batch of batches) yield* local.ingest(batch)
    const total = batches.reduce((n, b) => n + b.length, 0)
    return { ops: total, opsPerSec: total / ((performance.now() - start) / 1000) }
  })
}

Effect.runPromise(Effect.scoped(phases[phase]!)).then(
  (figures) => console.log(JSON.stringify({ phase, ...figures, peakRssMb: process.resourceUsage().maxRSS / 1024 })),
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
