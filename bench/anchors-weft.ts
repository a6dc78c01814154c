/**
 * Weft in the side-by-side bench, through its public services: `mutate` on
 * an engine over its own SQLite file; catch-up and live updates through a sync
 * session per side, with the session's default options (what a node uses),
 * over the in-memory `ChannelPair` as `sync-worker.ts` runs them, or over the
 * libp2p transport on loopback TCP (Noise, Yamux) as `network-worker.ts`
 * does; B's `subscribe` stream says when an update has arrived.
 */
import "../src/transport/internal/promiseWithResolvers.js"
import * as Deferred from "effect/Deferred"
import * as Scope from "effect/Scope"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { join } from "node:path"
import type * as Engine from "../src/engine/Engine.js"
import * as Engines from "../src/engine/testing/Engines.js"
import * as SyncSession from "../src/sync/SyncSession.js"
import * as ChannelPair from "../src/sync/testing/ChannelPair.js"
import * as SyncProtocol from "../src/plugins/sync/Protocol.js"
import * as Framing from "../src/transport/Framing.js"
import * as Identity from "../src/transport/Identity.js"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import * as Workload from "./anchors-workload.js"
import { files } from "./engine.js"

const open = (dir: string, node: string) => Engines.open({ models: [files], node, filename: join(dir, `${node}.db`) })

/** Operations an engine holds. */
const held = (engine: Engine.Service) => Effect.map(engine.versionVector, (v) => [...v.values()].reduce((n, e) => n + e.seq, 0))

const runPromise = <A>(effect: Effect.Effect<A, unknown, Scope.Scope>) => Effect.runPromise(Effect.scoped(effect))

const SESSION = { library: "anchors" }

/**
 * Prepares a link between `a` and `b` (outside the timing: transports, dialling) and
 * returns what starts a session over it; everything it starts lives in `scope`.
 */
type Connect = (a: Engine.Service, b: Engine.Service, scope: Scope.Scope) => Effect.Effect<Effect.Effect<void, unknown>, unknown>

/** The in-memory channel pair. */
const inMemory: Connect = (a, b, scope) =>
  Effect.map(ChannelPair.make(16), (pair) =>
    Effect.gen(function*() {
      yield* Effect.forkIn(SyncSession.run(a, pair.left, SESSION), scope)
      yield* Effect.forkIn(SyncSession.run(b, pair.right, SESSION), scope)
    }))

const PROTOCOL = "/weft-bench/anchors/1.0.0"

/** A libp2p transport on loopback per side, B dialling A; its connection and stream close with `scope`. */
const overLibp2p: Connect = (a, b, scope) =>
  Effect.gen(function*() {
    // a fresh identity each (generate() draws its seed when called, not when run)
    const node = () => Effect.flatMap(Identity.generate(), (identity) => Libp2pTransport.make({ identity, listen: ["/ip4/127.0.0.1/tcp/0"] }))
    const [left, right] = yield* Scope.extend(Effect.all([node(), node()]), scope)
    // the engines' node ids are not peer ids here, so the Hello is not checked against the connection
    yield* Scope.extend(left.handle(PROTOCOL, (stream) => SyncSession.run(a, Framing.make(stream, SyncProtocol.MAX_FRAME_BYTES), SESSION)), scope)
    const [address] = yield* left.addresses
    const peer = yield* right.connect(address!)
    return Effect.gen(function*() {
      const stream = yield* Scope.extend(right.open(peer, PROTOCOL), scope)
      yield* Effect.forkIn(SyncSession.run(b, Framing.make(stream, SyncProtocol.MAX_FRAME_BYTES), SESSION), scope)
    })
  })

const write: Workload.System["write"] = (dir, count, batch) =>
  runPromise(Effect.gen(function*() {
    const ids = Workload.recordIds(count)
    const seconds = yield* Effect.scoped(Effect.gen(function*() {
      const a = yield* open(dir, "a")
      const start = performance.now()
      for (let from = 0; from < count; from += batch) {
        const changes = []
        for (let i = from; i < Math.min(from + batch, count); i++) changes.push(files.create(ids[i]!, Workload.record(i)))
        yield* a.mutate(changes)
      }
      return (performance.now() - start) / 1000
    }))
    // measured once the engine is closed: its WAL is checkpointed into the database file
    Workload.saveIds(dir, ids)
    return { records: count, recordsPerSec: count / seconds, diskBytes: Workload.filesBytes(dir, "a.db") }
  }))

const catchUp = (connect: Connect): Workload.System["catchUp"] => (dir, count, live) =>
  runPromise(Effect.gen(function*() {
    const a = yield* open(dir, "a")
    const b = yield* open(dir, `b-${process.pid}`)
    const total = yield* held(a)
    const sessions = yield* Effect.scope
    const start = yield* connect(a, b, sessions)
    const seconds = yield* Effect.scoped(Effect.gen(function*() {
      // B's commits say when it is done (no polling to wake this process while it works); the
      // subscription ends with the catch-up, so that it holds no commit afterwards
      const commits = yield* b.commits
      const started = performance.now()
      yield* start
      while ((yield* held(b)) < total) {
        yield* Queue.take(commits)
        yield* Queue.takeAll(commits)
      }
      return (performance.now() - started) / 1000
    }))
    const recordsPerSec = count / seconds

    const ids = Workload.loadIds(dir)
    let expected: { readonly id: string; readonly seen: Deferred.Deferred<void> } | undefined
    yield* b.subscribe({ model: files.name }).pipe(
      Stream.runForEach((change) =>
        expected !== undefined && change.source === "remote" && change.record === expected.id
          ? Deferred.succeed(expected.seen, undefined)
          : Effect.void
      ),
      Effect.forkScoped
    )
    // the stream subscribes once its fiber runs
    yield* Effect.sleep(Duration.millis(20))
    const { liveMs, cpuMsPerUpdate } = yield* Effect.promise(() =>
      Workload.liveLoop(live, (i) =>
        Effect.runPromise(Effect.gen(function*() {
          const id = ids[(i * 7919) % ids.length]!
          const seen = yield* Deferred.make<void>()
          expected = { id, seen }
          yield* a.mutate([files.update(id, { size: count + i })])
          yield* Deferred.await(seen)
        })))
    )
    const memory = Workload.memory()
    return { records: count, recordsPerSec, liveMs, ...(cpuMsPerUpdate === undefined ? {} : { cpuMsPerUpdate }), ...memory }
  }))

/** Weft, its two peers over the in-memory channel. */
export const system: Workload.System = { write, catchUp: catchUp(inMemory) }

/** Weft, its two peers over the libp2p transport on loopback TCP. */
export const overTcp: Workload.System = { write, catchUp: catchUp(overLibp2p) }
