/**
 * One catch-up run in its own process, so its peak RSS is its own:
 * `tsx bench/sync-worker.ts <ops>` prints one JSON line.
 *
 * A full peer holds <ops> operations (creates and updates of files with
 * random ids, from two origins); an empty peer catches up over a sync
 * session. Beside it, the same operations ingested locally (no session).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type * as Operation from "../src/crdt/Operation.js"
import type * as Engine from "../src/engine/Engine.js"
import * as SyncSession from "../src/engine/SyncSession.js"
import * as ChannelPair from "../src/engine/testing/ChannelPair.js"
import * as Engines from "../src/engine/testing/Engines.js"
import { files } from "./engine.js"

const total = Number(process.argv[2] ?? 100_000)
const dir = mkdtempSync(join(tmpdir(), "weft-bench-sync-"))

/** Fills an engine with `count` operations: creates, then updates of what was created. */
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

const program = Effect.gen(function*() {
  const full = yield* Engines.open({ models: [files], node: "full", filename: join(dir, "full.db") })
  const other = yield* Engines.open({ models: [files], node: "other", filename: join(dir, "other.db") })
  yield* fill(other, Math.floor(total / 10))
  yield* fill(full, total - Math.floor(total / 10))
  // the full peer also holds the other origin's operations
  for (let page = yield* other.opsSince({}, 1_000); page.ops.length > 0; page = yield* other.opsSince(yield* full.versionVector, 1_000)) {
    yield* full.ingest(page.ops)
    if (!page.hasMore) break
  }

  // catch-up over a session
  const empty = yield* Engines.open({ models: [files], node: "empty", filename: join(dir, "empty.db") })
  const pair = yield* ChannelPair.make(16)
  const options = { library: "bench", debounce: Duration.millis(1), batchSize: 1_000, window: 4 }
  const start = performance.now()
  yield* Effect.fork(SyncSession.run(full, pair.left, options))
  yield* Effect.fork(SyncSession.run(empty, pair.right, options))
  while (Object.values(yield* empty.versionVector).reduce((n, e) => n + e.seq, 0) < total) yield* Effect.sleep(Duration.millis(2))
  const catchUp = total / ((performance.now() - start) / 1000)
  const rssAfterCatchUp = process.resourceUsage().maxRSS / 1024

  // local ingest of the same operations (read out first, not timed)
  const batches: Array<ReadonlyArray<Operation.Operation>> = []
  let vector = {}
  while (true) {
    const page = yield* full.opsSince(vector, 1_000)
    if (page.ops.length === 0) break
    batches.push(page.ops)
    vector = (yield* Effect.succeed(page.ops)).reduce((v: Record<string, { seq: number; ts: string }>, op) => ({ ...v, [op.origin]: { seq: op.seq, ts: op.ts } }), vector)
    if (!page.hasMore) break
  }
  const local = yield* Engines.open({ models: [files], node: "local", filename: join(dir, "local.db") })
  const ingestStart = performance.now()
  for (const batch of batches) yield* local.ingest(batch)
  const ingest = total / ((performance.now() - ingestStart) / 1000)
  console.log(JSON.stringify({ ops: total, catchUpOpsPerSec: catchUp, ingestOpsPerSec: ingest, peakRssMbDuringCatchUp: rssAfterCatchUp }))
})

Effect.runPromise(Effect.scoped(program)).then(
  () => rmSync(dir, { recursive: true, force: true }),
  (error) => {
    rmSync(dir, { recursive: true, force: true })
    console.error(error)
    process.exitCode = 1
  }
)
