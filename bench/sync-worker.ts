/**
 * Sync benchmarks, one phase per process so that each phase's peak RSS is
 * its own:
 *
 *   node sync-worker.js fill <dir> <ops>    a full peer with <ops> operations (two origins)
 *   node sync-worker.js catchup <dir>       an empty peer catches up from it over a session
 *   node sync-worker.js ingest <dir>        the same operations ingested locally, no session
 *   node sync-worker.js live <dir> <n>      live propagation: two nodes over libp2p on loopback (the
 *                                           sync plugin on the plugin host, as an app runs it), a
 *                                           subscription on B; <n> times, one record written on A,
 *                                           timed until B's subscription yields it
 *   node sync-worker.js floor <dir> <n>     the same with no engine: better-sqlite3 writes an op-log row
 *                                           and a projection row on A, the op goes over a loopback TCP
 *                                           socket, B writes both rows and is notified
 *
 * Both live phases hold both peers in one process, so `process.cpuUsage` is the
 * CPU of both peers; each write waits for the one before it to arrive (the
 * system is quiet when a write starts). Each phase prints one JSON line.
 */
import SqliteDatabase from "better-sqlite3"
import { pack, unpack } from "msgpackr"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import { connect, createServer, type Socket } from "node:net"
import { join } from "node:path"
import type * as Operation from "../src/crdt/Operation.js"
import * as VersionVector from "../src/crdt/VersionVector.js"
import type * as Engine from "../src/engine/Engine.js"
import * as SyncSession from "../src/sync/SyncSession.js"
import * as ChannelPair from "../src/sync/testing/ChannelPair.js"
import * as Engines from "../src/engine/testing/Engines.js"
import type * as Identity from "../src/transport/Identity.js"
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

/** Writes before the timed ones: connections, statements and JIT warmed up. */
const WARMUP = 50

/** CPU time (user + system, every thread) of this process, in ms. */
const cpuMs = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

/** Latency percentiles of samples (ms), and CPU per sample. */
const summary = (samples: Array<number>, cpu: number) => {
  samples.sort((x, y) => x - y)
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!
  return { samples: samples.length, p50Ms: at(0.5), p99Ms: at(0.99), cpuMsPerUpdate: cpu / samples.length }
}

/**
 * The live phase's stack, loaded by that phase only: libp2p and the plugin host add ~22 MB of RSS
 * (and ~12 MB of live heap, which V8's heap limit grows with) to a process that imports them, and
 * the other phases' peak RSS is to be their own.
 */
const liveStack = Effect.promise(async () => ({
  Libraries: await import("../src/library/Libraries.js"),
  PluginHost: await import("../src/plugins/PluginHost.js"),
  Sync: await import("../src/plugins/sync/Sync.js"),
  Identity: await import("../src/transport/Identity.js"),
  Libp2pTransport: await import("../src/transport/Libp2pTransport.js"),
  Transport: (await import("../src/transport/Transport.js")).Transport
}))

/** One node of the live phase: libp2p on loopback, the plugin host and the sync plugin with its defaults. */
const node = (stack: Effect.Effect.Success<typeof liveStack>, identity: Identity.Service, members: ReadonlyArray<string>, name: string) =>
  Effect.gen(function*() {
    const { Libraries, Libp2pTransport, PluginHost, Sync, Transport } = stack
    const transport = yield* Libp2pTransport.make({ identity, listen: ["/ip4/127.0.0.1/tcp/0"] })
    const libraries = yield* Effect.provide(Libraries.Libraries, Libraries.layerMemory([{ id: "bench", name: "bench", members: members as any }]))
    const host = yield* PluginHost.make({ connectDiscovered: false }).pipe(
      Effect.provideService(Transport, transport),
      Effect.provideService(Libraries.Libraries, libraries)
    )
    const engine = yield* Engines.open({ models: [files], node: identity.peerId, filename: join(dir, `${name}.db`) })
    yield* Sync.make({ libraries: [{ id: "bench", engine }] }).pipe(
      Effect.provideService(PluginHost.PluginHost, host),
      Effect.provideService(Libraries.Libraries, libraries)
    )
    return { transport, host, engine }
  })

const live = Effect.gen(function*() {
  const samples = Number(count)
  const stack = yield* liveStack
  const identities = [yield* stack.Identity.generate(), yield* stack.Identity.generate()] as const
  const members = identities.map((i) => i.peerId)
  const a = yield* node(stack, identities[0], members, `live-a-${process.pid}`)
  const b = yield* node(stack, identities[1], members, `live-b-${process.pid}`)
  let expected = ""
  let seen = yield* Deferred.make<number>()
  yield* Effect.forkScoped(Stream.runForEach(b.engine.subscribe({ model: files.name }), (change) =>
    change.record === expected ? Deferred.succeed(seen, performance.now()) : Effect.void))
  yield* a.host.connect((yield* b.transport.addresses)[0]!)
  const latencies: Array<number> = []
  let cpuStart = 0
  for (let i = 0; i < WARMUP + samples; i++) {
    if (i === WARMUP) cpuStart = cpuMs()
    expected = randomUUID()
    seen = yield* Deferred.make<number>()
    const start = performance.now()
    yield* a.engine.mutate([files.create(expected, { name: `file-${i}.txt`, size: i, tags: ["a"] })])
    const end = yield* Deferred.await(seen)
    if (i >= WARMUP) latencies.push(end - start)
  }
  return summary(latencies, cpuMs() - cpuStart)
})

/** The floor's peer: an op-log table and a projection table, in WAL as the engine keeps them. */
const floorDb = (name: string) => {
  const db = new SqliteDatabase(join(dir, `${name}.db`))
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  db.exec(`create table ops (origin text not null, seq integer not null, ts integer not null, model text not null,
             record text not null, payload blob, primary key (origin, seq));
           create table files (id text primary key, state blob not null, name text, size real, tags text)`)
  const insertOp = db.prepare("insert into ops values (?, ?, ?, ?, ?, ?)")
  const upsert = db.prepare(`insert into files values (?, ?, ?, ?, ?) on conflict (id) do update set
    state = excluded.state, name = excluded.name, size = excluded.size, tags = excluded.tags`)
  type Op = [origin: string, seq: number, ts: number, model: string, record: string, payload: Uint8Array]
  const write = db.transaction((op: Op) => {
    insertOp.run(...op)
    const fields = unpack(op[5]) as { name: string; size: number; tags: Array<string> }
    upsert.run(op[4], pack({ ts: op[2], origin: op[0], fields }), fields.name, fields.size, JSON.stringify(fields.tags))
  })
  return { db, write }
}

const floor = Effect.promise(async () => {
  const samples = Number(count)
  const a = floorDb(`floor-a-${process.pid}`)
  const b = floorDb(`floor-b-${process.pid}`)
  let notify: (at: number) => void = () => {}
  const server = createServer({ noDelay: true }, (socket) => {
    let pending: Buffer = Buffer.alloc(0)
    socket.on("data", (data: Buffer) => {
      pending = pending.length === 0 ? data : Buffer.concat([pending, data])
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
        const length = pending.readUInt32BE(0)
        const op = unpack(pending.subarray(4, 4 + length)) as Parameters<typeof b.write>[0]
        pending = pending.subarray(4 + length)
        b.write(op)
        notify(performance.now())
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as { port: number }).port
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ port, host: "127.0.0.1", noDelay: true }, () => resolve(s))
    s.once("error", reject)
  })
  const latencies: Array<number> = []
  let cpuStart = 0
  for (let i = 0; i < WARMUP + samples; i++) {
    if (i === WARMUP) cpuStart = cpuMs()
    const seen = new Promise<number>((resolve) => (notify = resolve))
    const start = performance.now()
    const op: Parameters<typeof a.write>[0] = ["floor-a", i + 1, Date.now(), files.name, randomUUID(), pack({ name: `file-${i}.txt`, size: i, tags: ["a"] })]
    a.write(op)
    const frame = pack(op)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(frame.length)
    socket.write(Buffer.concat([header, frame]))
    const end = await seen
    if (i >= WARMUP) latencies.push(end - start)
  }
  const result = summary(latencies, cpuMs() - cpuStart)
  socket.destroy()
  server.close()
  a.db.close()
  b.db.close()
  return result
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
    const options = { library: "bench", batchSize: 1_000, window: 4 }
    const start = performance.now()
    yield* Effect.fork(SyncSession.run(full, pair.left, options))
    yield* Effect.fork(SyncSession.run(empty, pair.right, options))
    while ((yield* held(empty)) < total) yield* Effect.sleep(Duration.millis(2))
    return { ops: total, opsPerSec: total / ((performance.now() - start) / 1000) }
  }),
  live,
  floor,
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
