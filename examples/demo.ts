/**
 * Demo: two peers on the embedded SQLite default edit the same records
 * while apart, exchange operations, and converge.
 *
 *   npm run demo
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Database, Engine, Model } from "../src/index.js"
import * as Snapshot from "../src/engine/testing/Snapshot.js"

const files = Model.make("files", Schema.Struct({
  name: Schema.String,
  size: Schema.Number,
  tags: Schema.Array(Schema.String),
  notes: Model.RichText
}))

const openPeer = (node: string, filename: string) =>
  Effect.gen(function*() {
    const database = yield* Database.makeSqlite({ filename })
    return yield* Engine.make({ models: [files], node }).pipe(Effect.provideService(Database.Database, database))
  })

/** Sends what `to` lacks from `from`, page by page, as sync does. */
const exchange = (from: Engine.Service, to: Engine.Service) =>
  Effect.gen(function*() {
    let sent = 0
    while (true) {
      const page = yield* from.opsSince(yield* to.versionVector, 1_000)
      yield* to.ingest(page.ops)
      sent += page.ops.length
      if (!page.hasMore) return sent
    }
  })

const program = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "weft-demo-"))
  const alice = yield* openPeer("alice", join(dir, "alice.db"))
  const bob = yield* openPeer("bob", join(dir, "bob.db"))
  console.log(`peers: alice and bob, SQLite files in ${dir}`)

  yield* alice.mutate([
    files.create("report", { name: "report.pdf", size: 120_000, tags: ["work"], notes: "Quarterly numbers" }),
    files.create("photo", { name: "beach.jpg", size: 2_400_000, tags: ["holiday"], notes: "" })
  ])
  console.log(`alice created 2 files; bob receives ${yield* exchange(alice, bob)} operations`)

  // apart: both edit the same records
  yield* alice.mutate([
    files.update("report", { tags: ["work", "q3"] }),
    files.splice("report", "notes", { index: 0, deleteCount: 0, insert: "Final: " })
  ])
  yield* bob.mutate([
    files.update("report", { size: 125_000, notes: "Quarterly numbers, reviewed" }),
    files.delete("photo"),
    files.create("todo", { name: "todo.txt", size: 12, tags: [], notes: "buy milk" })
  ])
  console.log("offline edits: alice tags the report and prefixes its notes; bob resizes it, appends to its notes, deletes the photo, adds a todo")

  const toBob = yield* exchange(alice, bob)
  const toAlice = yield* exchange(bob, alice)
  console.log(`reconnected: ${toBob} operations to bob, ${toAlice} to alice`)

  const rowsA = yield* alice.query(files, (q) => q.orderBy("name"))
  const rowsB = yield* bob.query(files, (q) => q.orderBy("name"))
  for (const row of rowsA) console.log(`  ${row.id}: ${row.name} ${row.size} B [${row.tags.join(", ")}] notes: ${JSON.stringify(row.notes)}`)
  const [snapA, snapB] = [yield* Snapshot.snapshot(alice), yield* Snapshot.snapshot(bob)]
  const converged = JSON.stringify(rowsA) === JSON.stringify(rowsB) &&
    JSON.stringify(snapA) === JSON.stringify(snapB)
  console.log(`alice: ${snapA.log.length} ops in log, vector ${JSON.stringify(Object.fromEntries(Object.entries(yield* alice.versionVector).map(([k, v]) => [k, v.seq])))}`)
  console.log(`bob:   ${snapB.log.length} ops in log, vector ${JSON.stringify(Object.fromEntries(Object.entries(yield* bob.versionVector).map(([k, v]) => [k, v.seq])))}`)
  console.log(converged ? "converged: both peers hold identical logs and projections" : "NOT converged")
  if (!converged) return yield* Effect.fail("peers did not converge")
})

Effect.runPromise(Effect.scoped(program)).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
