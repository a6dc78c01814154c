/**
 * The workload of the side-by-side bench (`anchors.ts`), shared by every
 * system it runs: records `{ name, size, tags }` under random UUID-shaped ids,
 * and what each system's phases report.
 *
 * A phase runs in its own process (`anchors-worker.ts`), given a directory of
 * its own: `write` fills a fresh store there, `catchup` opens that store as
 * peer A, catches an empty peer B up from it and then sends live updates
 * A → B one at a time.
 */
import { randomUUID } from "node:crypto"
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"

/** One record of the workload (mutable: automerge changes write into it). */
export interface FileRecord {
  name: string
  size: number
  tags: Array<string>
}

/** Record `i`: a short name, an integer size, a short list of tags. */
export const record = (i: number): FileRecord => ({
  name: `file-${i}.txt`,
  size: i,
  tags: i % 3 === 0 ? ["a"] : ["a", "b"]
})

/** `count` random UUID-shaped ids, as a local-first app without central id allocation makes them. */
export const recordIds = (count: number): Array<string> => Array.from({ length: count }, () => randomUUID())

/** The ids a `write` phase wrote, kept beside the store so that `catchup` can update those records. */
export const saveIds = (dir: string, ids: ReadonlyArray<string>) => writeFileSync(join(dir, "ids.json"), JSON.stringify(ids))

export const loadIds = (dir: string): Array<string> => JSON.parse(readFileSync(join(dir, "ids.json"), "utf8"))

/** Bytes of every file under `path` (a file or a directory, recursively). */
export const diskBytes = (path: string): number => {
  const stat = statSync(path)
  if (!stat.isDirectory()) return stat.size
  return readdirSync(path).reduce((n, name) => n + diskBytes(join(path, name)), 0)
}

/** Bytes of the files whose names start with `prefix` in `dir` (an SQLite database with its -wal and -shm). */
export const filesBytes = (dir: string, prefix: string): number =>
  readdirSync(dir).filter((name) => name.startsWith(prefix)).reduce((n, name) => n + diskBytes(join(dir, name)), 0)

/** CPU time (user + system, all threads) of this process, in ms. */
export const cpuMs = (): number => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

/** How live updates are sent. */
export interface Live {
  /** Updates measured (after `WARMUP` that are not). */
  readonly updates: number
  /**
   * Quiet time between one update arriving and the next being written: longer than
   * automerge-repo's 100 ms sync throttle, so that every system is measured on an
   * isolated edit, not on how it batches a burst.
   */
  readonly gapMs: number
}

/** Updates sent before the measured ones (connections, JIT, caches). */
export const WARMUP = 10

/** What a `write` phase reports. */
export interface WriteResult {
  readonly records: number
  readonly recordsPerSec: number
  /** Bytes of the store on disk once closed. */
  readonly diskBytes: number
  /** Bytes of the same records saved as one Automerge document (automerge-repo's one-document variant only). */
  readonly savedDocBytes?: number
}

/** What a `catchup` phase reports. */
export interface CatchUpResult {
  readonly records: number
  readonly recordsPerSec: number
  /** Each measured live update, write on A until B's subscription saw it, in ms (empty when no live updates ran). */
  readonly liveMs: ReadonlyArray<number>
  /** CPU time of the process (both peers) over the live updates, per update, in ms. */
  readonly cpuMsPerUpdate?: number
  /** Heap in use after a full GC, both peers holding every record, in MB. */
  readonly heapMb: number
  /** RSS after that GC, in MB. */
  readonly rssMb: number
}

/** The phases every system implements. */
export interface System {
  /** Writes `count` records into a fresh store in `dir`, `batch` records per transaction (or change), each batch durable before the next. */
  readonly write: (dir: string, count: number, batch: number) => Promise<WriteResult>
  /** Catches an empty peer up from the store `write` left in `dir`, then sends `live` updates A → B. */
  readonly catchUp: (dir: string, count: number, live: Live) => Promise<CatchUpResult>
}

/** Runs the live updates: `send(i)` writes update `i` on A and resolves once B has seen it. */
export const liveLoop = async (live: Live, send: (i: number) => Promise<void>) => {
  const pause = () => new Promise((resolve) => setTimeout(resolve, live.gapMs))
  for (let i = 0; i < WARMUP; i++) {
    await send(i)
    await pause()
  }
  ;(globalThis as { gc?: () => void }).gc?.()
  const liveMs: Array<number> = []
  const cpuStart = cpuMs()
  for (let i = WARMUP; i < WARMUP + live.updates; i++) {
    const start = performance.now()
    await send(i)
    liveMs.push(performance.now() - start)
    await pause()
  }
  const cpuMsPerUpdate = live.updates === 0 ? undefined : (cpuMs() - cpuStart) / live.updates
  return cpuMsPerUpdate === undefined ? { liveMs } : { liveMs, cpuMsPerUpdate }
}

/** Heap and RSS after a full GC (the worker runs with --expose-gc). */
export const memory = () => {
  ;(globalThis as { gc?: () => void }).gc?.()
  const usage = process.memoryUsage()
  return { heapMb: usage.heapUsed / 1024 / 1024, rssMb: usage.rss / 1024 / 1024 }
}
