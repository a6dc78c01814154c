/**
 * Sync benchmarks, each phase in its own process (`sync-worker.ts`):
 *
 * - live propagation: a record written on A until B's subscription yields it,
 *   two nodes on the libp2p transport over loopback with the sync plugin's
 *   defaults (p50 and p99), and the CPU of both peers per propagated update,
 *   each beside the floor measured in the same run: better-sqlite3 writing an
 *   op-log row and a projection row on A, the op sent over a loopback TCP
 *   socket, B writing both rows and being notified. Rounds alternate between
 *   the two; each figure is the median over rounds;
 * - catch-up sync from a full peer to an empty one (100k and 1M operations),
 *   beside the engine's own local ingest of the same operations, so that each
 *   phase's peak RSS is its own.
 */
import * as Effect from "effect/Effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { type Figure, median } from "./report.js"

const worker = fileURLToPath(new URL("./sync-worker.js", import.meta.url))

const phase = <A = { ops: number; opsPerSec: number; peakRssMb: number }>(args: ReadonlyArray<string>): A =>
  JSON.parse(execFileSync(process.execPath, [worker, ...args], { encoding: "utf8", maxBuffer: 1 << 20 }).trim().split("\n").pop()!)

interface Live {
  readonly p50Ms: number
  readonly p99Ms: number
  readonly cpuMsPerUpdate: number
}

const load = () => loadavg().map((l) => l.toFixed(2)).join(" ")

/** Live propagation and its floor, `rounds` of each alternating, `samples` writes per round. */
export const live = (rounds = 3, samples = 500) =>
  Effect.sync(() => {
    const weft: Array<Live> = []
    const floor: Array<Live> = []
    const loadBefore = load()
    for (let round = 0; round < rounds; round++) {
      const dir = mkdtempSync(join(tmpdir(), "weft-bench-live-"))
      try {
        weft.push(phase<Live>(["live", dir, String(samples)]))
        floor.push(phase<Live>(["floor", dir, String(samples)]))
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
    const of = (runs: ReadonlyArray<Live>, key: keyof Live) => median(runs.map((r) => r[key]))
    const extra = (key: keyof Live, goal?: number) => ({
      rounds: weft.map((r) => r[key].toFixed(3)).join(" "),
      floorRounds: floor.map((r) => r[key].toFixed(3)).join(" "),
      ...(goal === undefined ? {} : { goalMs: goal, goalMet: of(weft, key) < goal ? "yes" : "NO" }),
      samplesPerRound: samples,
      loadavg: `${loadBefore} → ${load()}`
    })
    const baselineName = "floor: better-sqlite3 op-log + projection row, loopback TCP, same on B, notified"
    const figures: Array<Figure> = [
      { name: "live propagation p50", unit: "ms", value: of(weft, "p50Ms"), baseline: of(floor, "p50Ms"), baselineName, lowerIsBetter: true, extra: extra("p50Ms", 2) },
      { name: "live propagation p99", unit: "ms", value: of(weft, "p99Ms"), baseline: of(floor, "p99Ms"), baselineName, lowerIsBetter: true, extra: extra("p99Ms", 10) },
      { name: "live CPU per propagated update (both peers)", unit: "ms", value: of(weft, "cpuMsPerUpdate"), baseline: of(floor, "cpuMsPerUpdate"), baselineName, lowerIsBetter: true, extra: extra("cpuMsPerUpdate", 1) }
    ]
    return figures
  })

/** Runs catch-up and local ingest at each size; returns their figures. */
export const catchUp = (sizes: ReadonlyArray<number> = [100_000, 1_000_000]) =>
  Effect.sync(() => {
    const figures: Array<Figure> = []
    for (const size of sizes) {
      const dir = mkdtempSync(join(tmpdir(), "weft-bench-sync-"))
      try {
        phase(["fill", dir, String(size)])
        const catchUp = phase(["catchup", dir])
        const ingest = phase(["ingest", dir])
        const label = size >= 1_000_000 ? `${size / 1_000_000}M` : `${size / 1_000}k`
        figures.push({
          name: `catch-up sync ${label} ops`,
          unit: "ops/s",
          value: catchUp.opsPerSec,
          baseline: ingest.opsPerSec,
          baselineName: "local ingest of the same operations (no session)",
          goal: 0.5,
          extra: { ops: catchUp.ops, peakRssMb: catchUp.peakRssMb, peakRssGoalMb: 300 }
        })
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
    return figures
  })

/** Live propagation, then catch-up at each size. */
export const run = (sizes?: ReadonlyArray<number>) =>
  Effect.map(Effect.zip(live(), catchUp(sizes)), ([a, b]) => [...a, ...b])
