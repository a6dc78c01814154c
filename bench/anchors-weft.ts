/**
 * Weft in the side-by-side bench, through its public services: `mutate` on
 * an engine over its own SQLite file; catch-up and live updates through a sync
 * session per side over the in-memory `ChannelPair`, as `sync-worker.ts` runs
 * them, with the session's default options (what a node uses); B's
 * `subscribe` stream says when an update has arrived.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { join } from "node:path"
import type * as Engine from "../src/engine/Engine.js"
import * as Engines from "../src/engine/testing/Engines.js"
import * as SyncSession from "../src/sync/SyncSession.js"
import * as ChannelPair from "../src/sync/testing/ChannelPair.js"
import * as Workload from "./anchors-workload.js"
import { files } from "./engine.js"

const open = (dir: string, node: string) => Engines.open({ models: [files], node, filename: join(dir, `${node}.db`) })

/** Operations an engine holds. */
const held = (engine: Engine.Service) => Effect.map(engine.versionVector, (v) => [...v.values()].reduce((n, e) => n + e.seq, 0))

const runPromise = <A>(effect: Effect.Effect<A, unknown, import("effect/Scope").Scope>) => Effect.runPromise(Effect.scoped(effect))

export const system: Workload.System = {
  write: (dir, count, batch) =>
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
    })),

  catchUp: (dir, count, live) =>
    runPromise(Effect.gen(function*() {
      const a = yield* open(dir, "a")
      const b = yield* open(dir, `b-${process.pid}`)
      const total = yield* held(a)
      const pair = yield* ChannelPair.make(16)
      const options = { library: "anchors" }
      const sessions = yield* Effect.scope
      const seconds = yield* Effect.scoped(Effect.gen(function*() {
        // B's commits say when it is done (no polling to wake this process while it works); the
        // subscription ends with the catch-up, so that it holds no commit afterwards
        const commits = yield* b.commits
        const start = performance.now()
        yield* Effect.forkIn(SyncSession.run(a, pair.left, options), sessions)
        yield* Effect.forkIn(SyncSession.run(b, pair.right, options), sessions)
        while ((yield* held(b)) < total) {
          yield* Queue.take(commits)
          yield* Queue.takeAll(commits)
        }
        return (performance.now() - start) / 1000
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
}
