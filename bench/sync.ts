/**
 * Catch-up sync from a full peer to an empty one (100k and 1M operations),
 * beside the engine's own local ingest of the same operations, each phase in
 * its own process so that its peak RSS is its own.
 */
import * as Effect from "effect/Effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Figure } from "./report.js"

const worker = fileURLToPath(new URL("./sync-worker.js", import.meta.url))

const phase = (args: ReadonlyArray<string>): { ops: number; opsPerSec: number; peakRssMb: number } =>
  JSON.parse(execFileSync(process.execPath, [worker, ...args], { encoding: "utf8", maxBuffer: 1 << 20 }).trim().split("\n").pop()!)

/** Runs catch-up and local ingest at each size; returns their figures. */
export const run = (sizes: ReadonlyArray<number> = [100_000, 1_000_000]) =>
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
