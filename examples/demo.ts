/**
 * Demo: two peers, each with its own SQLite file and its own Ed25519
 * identity, sync over real encrypted connections (libp2p: TCP, Noise, Yamux)
 * on 127.0.0.1. They edit the same records while disconnected, reconnect,
 * and converge.
 *
 *   npm run demo
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Snapshot from "../src/engine/testing/Snapshot.js"
import { Engine, Libraries, Model, PingPlugin, PluginHost, SyncPlugin, VersionVector } from "../src/index.js"
import * as Identity from "../src/transport/Identity.js"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import { Transport } from "../src/transport/Transport.js"

const files = Model.make("files", Schema.Struct({
  name: Schema.String,
  size: Schema.Number,
  tags: Schema.Array(Schema.String),
  notes: Model.RichText
}))

const LIBRARY = "demo-library"

/** A peer: identity, transport, plugin host, engine, sync and ping. */
const startPeer = (name: string, dir: string, members: () => ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const identity = yield* Identity.load(join(dir, `${name}.identity.json`))
    const transport = yield* Libp2pTransport.make({ identity, listen: ["/ip4/127.0.0.1/tcp/0"], mdns: false })
    const engine = yield* Engine.makeSqlite({ models: [files], node: identity.peerId, filename: join(dir, `${name}.db`) })
    // as after pairing: both peers are members of the library
    const libraries = Libraries.layerMemory([{ id: LIBRARY, name: "demo", members: members() as Array<never> }])
    const host = yield* PluginHost.make({ connectDiscovered: false }).pipe(Effect.provideService(Transport, transport), Effect.provide(libraries))
    const withHost = <A, E, R>(effect: Effect.Effect<A, E, R>) => effect.pipe(Effect.provideService(PluginHost.PluginHost, host), Effect.provide(libraries))
    const sync = yield* withHost(SyncPlugin.Sync.make({ libraries: [{ id: LIBRARY, engine }] }))
    yield* host.register(PingPlugin.Ping.plugin)
    const ping = { ping: (peer: typeof identity.peerId, options: PingPlugin.Ping.Options) => withHost(PingPlugin.Ping.ping(peer, options)) }
    const addresses = yield* transport.addresses
    console.log(`${name}: peer ${identity.peerId} listening on ${addresses[0]}`)
    return { name, identity, transport, engine, host, sync, ping, address: addresses[0]! }
  })

const vectorOf = (engine: Engine.Service) =>
  Effect.map(engine.versionVector, (v) => [...v.values()].map((e) => e.seq).join("/"))

/** Waits until both engines hold the same operations. */
const converged = (a: Engine.Service, b: Engine.Service) =>
  Effect.gen(function*() {
    const start = performance.now()
    while (true) {
      const [va, vb] = [yield* a.versionVector, yield* b.versionVector]
      if (VersionVector.equals(va, vb)) break
      yield* Effect.sleep(Duration.millis(10))
    }
    return performance.now() - start
  }).pipe(Effect.timeoutFail({ duration: Duration.seconds(30), onTimeout: () => new Error("the peers did not converge within 30 s") }))

const program = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "weft-demo-"))
  console.log(`data in ${dir}`)
  // identities first, so each library lists both members
  const ids = { alice: (yield* Identity.load(join(dir, "alice.identity.json"))).peerId, bob: (yield* Identity.load(join(dir, "bob.identity.json"))).peerId }
  const alice = yield* startPeer("alice", dir, () => [ids.alice, ids.bob])
  const bob = yield* startPeer("bob", dir, () => [ids.alice, ids.bob])

  yield* alice.engine.mutate([
    files.create("report", { name: "report.pdf", size: 120_000, tags: ["work"], notes: "Quarterly numbers" }),
    files.create("photo", { name: "beach.jpg", size: 2_400_000, tags: ["holiday"], notes: "" })
  ])
  yield* bob.engine.mutate([files.create("todo", { name: "todo.txt", size: 12, tags: [], notes: "buy milk" })])
  console.log("alice created 2 files, bob 1; bob connects to alice")
  yield* bob.transport.connect(alice.address)
  console.log(`converged in ${(yield* converged(alice.engine, bob.engine)).toFixed(0)} ms (vectors ${yield* vectorOf(alice.engine)})`)

  const there = yield* alice.ping.ping(bob.identity.peerId, { count: 20 })
  const back = yield* bob.ping.ping(alice.identity.peerId, { count: 20 })
  console.log(`ping alice → bob: median ${there.median.toFixed(2)} ms; bob → alice: median ${back.median.toFixed(2)} ms (20 pings each, encrypted)`)

  yield* bob.transport.disconnect(alice.identity.peerId)
  yield* Effect.sleep(Duration.millis(50))
  yield* alice.engine.mutate([
    files.update("report", { tags: ["work", "q3"] }),
    files.splice("report", "notes", { index: 0, deleteCount: 0, insert: "Final: " })
  ])
  yield* bob.engine.mutate([
    files.update("report", { size: 125_000, notes: "Quarterly numbers, reviewed" }),
    files.delete("photo")
  ])
  console.log("disconnected; alice tags the report and prefixes its notes, bob resizes it, appends to its notes, deletes the photo")
  yield* bob.transport.connect(alice.address)
  console.log(`reconnected; converged in ${(yield* converged(alice.engine, bob.engine)).toFixed(0)} ms`)

  for (const peer of [alice, bob]) {
    const rows = yield* peer.engine.query(files, (q) => q.orderBy("name"))
    console.log(`${peer.name}'s files:`)
    for (const row of rows) console.log(`  ${row.id}: ${row.name} ${row.size} B [${row.tags.join(", ")}] notes: ${JSON.stringify(row.notes)}`)
  }
  const [snapA, snapB] = [yield* Snapshot.snapshot(alice.engine), yield* Snapshot.snapshot(bob.engine)]
  const same = JSON.stringify(snapA) === JSON.stringify(snapB)
  console.log(same
    ? `converged: both peers hold the same ${snapA.log.length} operations and identical projections`
    : "NOT converged")
  if (!same) return yield* Effect.fail(new Error("peers did not converge"))
})

Effect.runPromise(Effect.scoped(program)).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
