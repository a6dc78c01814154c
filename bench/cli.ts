/**
 * The start of a client command: `weft status` against a running node, as
 * the built executable runs it (`bin/weft.cjs`, with its code cache warm),
 * beside bare Node starting and exiting (`node -e 0`) in the same run.
 * Goals: under 0.3 s, and under 4× bare Node.
 *
 * It builds the CLI first (`npm run build`), then runs a node on a fresh
 * data directory on 127.0.0.1 for the measurements.
 */
import * as Effect from "effect/Effect"
import { execFileSync, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { type Figure, median } from "./report.js"

const root = resolve(fileURLToPath(new URL(".", import.meta.url)), "..", "..")
const weft = join(root, "bin", "weft.cjs")

/** Seconds one run of `args` takes, start to exit. */
const time = (args: ReadonlyArray<string>): number => {
  const started = process.hrtime.bigint()
  const done = spawnSync(process.execPath, args, { stdio: "ignore" })
  if (done.status !== 0) throw new Error(`${args.join(" ")} exited ${done.status}`)
  return Number(process.hrtime.bigint() - started) / 1e9
}

/** Measures `weft status` and `node -e 0`, interleaved, `rounds` times each. */
export const run = (rounds = 30) =>
  Effect.sync((): Figure => {
    execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" })
    const dir = mkdtempSync(join(tmpdir(), "weft-bench-cli-"))
    execFileSync(process.execPath, [weft, "init", "--dir", dir], { stdio: "ignore" })
    const node = spawn(process.execPath, [weft, "serve", "--dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--yes"], { stdio: "ignore" })
    try {
      // the node is up once status answers; that run also warms the code cache
      const until = Date.now() + 30_000
      while (spawnSync(process.execPath, [weft, "status", "--dir", dir], { stdio: "ignore" }).status !== 0) {
        if (Date.now() > until) throw new Error("the node did not start")
      }
      const status: Array<number> = []
      const bare: Array<number> = []
      for (let i = 0; i < rounds; i++) {
        status.push(time([weft, "status", "--dir", dir]))
        bare.push(time(["-e", "0"]))
      }
      const value = median(status)
      const baseline = median(bare)
      return {
        name: "client command start (weft status, against a running node)",
        unit: "s",
        value,
        baseline,
        baselineName: "bare Node starting and exiting (node -e 0)",
        lowerIsBetter: true,
        // baseline / value, lower is better: under 4× bare Node is a ratio of at least 0.25
        goal: 0.25,
        extra: { rounds, goalSeconds: 0.3, underGoalSeconds: value < 0.3 ? "met" : "NOT met", minSeconds: Math.min(...status) }
      }
    } finally {
      node.kill("SIGTERM")
      rmSync(dir, { recursive: true, force: true })
    }
  })
