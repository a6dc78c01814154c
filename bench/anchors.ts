/**
 * `npm run bench -- anchors`: issue 14's table, side by side. One workload
 * (`anchors-workload.ts`: records `{ name, size, tags }` under random UUID
 * ids) run against Weft, automerge-repo (one document holding every record;
 * one document per record) and the physical floor, plain better-sqlite3
 * writing an op-log row plus a projection row per write (`anchors-floor.ts`).
 *
 * Every figure is shown with its ratio to the floor measured in the same run
 * (1 = the floor; for figures where lower is better, floor / value, so below 1
 * is always behind it). Each phase runs in its own process
 * (`anchors-worker.ts`), so that its memory is its own. It is slow (minutes):
 * not part of a bare `npm run bench`.
 *
 * Settings, from the environment:
 *   WEFT_ANCHORS_RECORDS   record counts, comma-separated (default 10000,100000)
 *   WEFT_ANCHORS_DOCS      most records of automerge-repo's document-per-record variant (default 1000: past a
 *                          few thousand documents its catch-up takes many minutes, and finds start failing)
 *   WEFT_ANCHORS_SINGLE    records written one per batch (default 2000)
 *   WEFT_ANCHORS_LIVE      live updates measured (default 200), at the first record count
 *   WEFT_ANCHORS_GAP_MS    quiet time between live updates (default 120, past automerge-repo's 100 ms throttle)
 *   WEFT_ANCHORS_SYSTEMS   systems to run (default weft,weft-libp2p,automerge-doc,automerge-docs,floor; the floor
 *                          always runs)
 *   WEFT_ANCHORS_TIMEOUT_S longest a phase may run before it is reported as timed out (default 1200)
 */
import * as Effect from "effect/Effect"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type * as Workload from "./anchors-workload.js"
import { type Figure, loadAverage, median } from "./report.js"

const worker = fileURLToPath(new URL("./anchors-worker.js", import.meta.url))

/** The systems, in the table's column order. */
const SYSTEMS = ["weft", "weft-libp2p", "automerge-doc", "automerge-docs", "floor"] as const
type System = (typeof SYSTEMS)[number]

const TITLES: Record<System, string> = {
  weft: "Weft",
  "weft-libp2p": "Weft over libp2p (TCP)",
  "automerge-doc": "automerge-repo, one doc",
  "automerge-docs": "automerge-repo, doc per record",
  floor: "raw SQLite floor"
}

const FLOOR_NAME = "plain better-sqlite3: an op-log row + a projection row per write, no CRDT (catch-up: the log rows copied " +
  "between two SQLite files, each with its projection row; live: A → loopback TCP → B)"

/** The floor, as the figures' lines name their baseline (the table says the rest). */
const FLOOR_SHORT = "raw SQLite floor, same workload, same run"

export interface Settings {
  readonly records: ReadonlyArray<number>
  readonly docs: number
  readonly single: number
  readonly live: number
  readonly gapMs: number
  readonly systems: ReadonlyArray<System>
  readonly timeoutMs: number
}

const numbers = (value: string | undefined, fallback: ReadonlyArray<number>) =>
  value === undefined || value.trim() === "" ? fallback : value.split(",").map((v) => Number(v.trim())).filter((n) => Number.isInteger(n) && n > 0)

const number = (value: string | undefined, fallback: number) => numbers(value, [fallback])[0] ?? fallback

/** Settings from the environment (see the module comment). */
export const settings = (env: NodeJS.ProcessEnv = process.env): Settings => {
  const wanted = env.WEFT_ANCHORS_SYSTEMS?.split(",").map((s) => s.trim())
  return {
    records: numbers(env.WEFT_ANCHORS_RECORDS, [10_000, 100_000]),
    docs: number(env.WEFT_ANCHORS_DOCS, 1_000),
    single: number(env.WEFT_ANCHORS_SINGLE, 2_000),
    live: number(env.WEFT_ANCHORS_LIVE, 200),
    gapMs: number(env.WEFT_ANCHORS_GAP_MS, 120),
    systems: SYSTEMS.filter((s) => s === "floor" || wanted === undefined || wanted.includes(s)),
    timeoutMs: number(env.WEFT_ANCHORS_TIMEOUT_S, 1_200) * 1000
  }
}

type Written = Workload.WriteResult & { readonly peakRssMb: number }
type CaughtUp = Workload.CatchUpResult & { readonly peakRssMb: number }

/** A phase's result, or why there is none. */
type Outcome<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: string }

/** Runs one phase in its own process. A failure or a timeout is an outcome, so the table still prints. */
const phase = <A>(args: ReadonlyArray<string | number>, timeoutMs: number) =>
  Effect.async<Outcome<A>>((resume) => {
    const child = execFile(
      process.execPath,
      ["--expose-gc", worker, ...args.map(String)],
      { encoding: "utf8", maxBuffer: 64 << 20, timeout: timeoutMs },
      (error, stdout, stderr) => {
        if (error !== null) {
          const why = error.killed ? `timed out after ${timeoutMs / 1000} s`
            : stderr.split("\n").find((line) => /Error/.test(line))?.trim() ?? error.message
          console.error(`anchors: ${args.slice(0, 2).join(" ")} @${args[3]}: ${why}`)
          return resume(Effect.succeed({ ok: false, error: why }))
        }
        resume(Effect.succeed({ ok: true, value: JSON.parse(stdout.trim().split("\n").pop()!) as A }))
      }
    )
    return Effect.sync(() => child.kill())
  })

/** Runs `f` with a fresh directory, removed afterwards. */
const inDir = <A, E, R>(f: (dir: string) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "weft-bench-anchors-"))),
    f,
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** Everything one system measured at one record count. */
interface Run {
  readonly system: System
  readonly records: number
  readonly batched: Outcome<Written>
  readonly catchUp: Outcome<CaughtUp>
  /** The 1-minute load average when the run started. */
  readonly load: number
}

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

const label = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1_000 ? `${n / 1_000}k` : String(n))

const fmt = (n: number) => (n >= 100 ? String(Math.round(n)) : n >= 10 ? n.toFixed(1) : n >= 1 ? n.toFixed(2) : n.toFixed(3))

/** The counts a system runs at: automerge-repo's document-per-record variant only up to its cap. */
const countsOf = (system: System, s: Settings): ReadonlyArray<number> => {
  if (system !== "automerge-docs") return s.records
  const within = s.records.filter((n) => n <= s.docs)
  return within.length > 0 ? within : [s.docs]
}

/** Runs the side-by-side workload; prints issue 14's table; returns its figures (each beside the floor). */
export const run = (s: Settings = settings()) =>
  Effect.gen(function*() {
    const started = loadAverage()
    // the floor also runs at the document-per-record variant's own count, for its ratios
    const floorCounts = [...new Set([...s.records, ...(s.systems.includes("automerge-docs") ? countsOf("automerge-docs", s) : [])])]
    const liveAt = Math.min(...s.records)
    const runs: Array<Run> = []
    for (const records of [...new Set([...s.records, ...floorCounts])].sort((a, b) => a - b)) {
      for (const system of s.systems) {
        const counts = system === "floor" ? floorCounts : countsOf(system, s)
        if (!counts.includes(records)) continue
        // live updates at the smallest count (and wherever the document-per-record variant runs)
        const live = records <= liveAt ? s.live : 0
        console.log(`anchors: ${system} @${label(records)} (load ${loadAverage()})`)
        const load = loadavg()[0]!
        runs.push(yield* inDir((dir) =>
          Effect.gen(function*() {
            const batched = yield* phase<Written>(["write", system, dir, records, 1_000], s.timeoutMs)
            const catchUp: Outcome<CaughtUp> = batched.ok
              ? yield* phase<CaughtUp>(["catchup", system, dir, records, live, s.gapMs], s.timeoutMs)
              : { ok: false, error: "no store to catch up from" }
            return { system, records, batched, catchUp, load }
          })
        ))
      }
    }
    const singles: Array<Single> = []
    const docsSingle = Math.min(s.single, s.docs)
    for (const system of s.systems) {
      // the floor also at the document-per-record variant's own count, for its ratio
      const counts = system === "automerge-docs" ? [docsSingle]
        : system === "floor" && s.systems.includes("automerge-docs") ? [...new Set([s.single, docsSingle])]
        : [s.single]
      for (const records of counts) {
        console.log(`anchors: ${system}, one per batch @${label(records)} (load ${loadAverage()})`)
        const load = loadavg()[0]!
        singles.push({ system, records, load, outcome: yield* inDir((dir) => phase<Written>(["write", system, dir, records, 1], s.timeoutMs)) })
      }
    }
    return report(s, runs, singles, started, loadAverage(), liveAt)
  })

/** One-per-batch writes of one system at one record count. */
interface Single {
  readonly system: System
  readonly records: number
  readonly outcome: Outcome<Written>
  readonly load: number
}

/** One measured value, or why there is none. */
type Value = { readonly value: number; readonly text: string; readonly load: number } | { readonly error: string }

/** A row of the table. */
interface Row {
  readonly name: string
  readonly unit: string
  /** The record count the row is about (the document-per-record variant reads its own). */
  readonly records: number
  readonly lowerIsBetter: boolean
  /** The issue's goal for Weft as a ratio to the floor. */
  readonly goal?: number
  /** The issue's goal for Weft as an absolute figure, in `unit`. */
  readonly absoluteGoal?: number
  /** The value of `system` measured at `records`. */
  readonly read: (system: System, records: number) => Value
}

const report = (
  s: Settings,
  runs: ReadonlyArray<Run>,
  singles: ReadonlyArray<Single>,
  started: string,
  ended: string,
  liveAt: number
): ReadonlyArray<Figure> => {
  const find = (system: System, records: number) => runs.find((r) => r.system === system && r.records === records)
  const fromCatchUp = (f: (c: CaughtUp) => number | undefined, text: (c: CaughtUp, value: number) => string = (_, v) => fmt(v)) =>
    (system: System, records: number): Value => {
      const r = find(system, records)
      if (r === undefined) return { error: "not run" }
      if (!r.catchUp.ok) return { error: r.catchUp.error }
      const value = f(r.catchUp.value)
      return value === undefined ? { error: "not run" } : { value, text: text(r.catchUp.value, value), load: r.load }
    }
  const fromWrite = (f: (w: Written) => number, text: (w: Written, value: number) => string = (_, v) => fmt(v)) =>
    (system: System, records: number): Value => {
      const r = find(system, records)
      if (r === undefined) return { error: "not run" }
      if (!r.batched.ok) return { error: r.batched.error }
      const value = f(r.batched.value)
      return { value, text: text(r.batched.value, value), load: r.load }
    }
  const liveOf = (c: CaughtUp) => (c.liveMs.length === 0 ? undefined : c.liveMs)
  const rows: Array<Row> = [
    {
      name: "live update, write on A until B's subscription sees it, p50 / p99",
      unit: "ms",
      records: liveAt,
      lowerIsBetter: true,
      absoluteGoal: 2,
      read: fromCatchUp((c) => (liveOf(c) === undefined ? undefined : median(c.liveMs)), (c, v) => `${fmt(v)} / ${fmt(percentile(c.liveMs, 99))}`)
    },
    {
      name: "live update p99",
      unit: "ms",
      records: liveAt,
      lowerIsBetter: true,
      absoluteGoal: 10,
      read: fromCatchUp((c) => (liveOf(c) === undefined ? undefined : percentile(c.liveMs, 99)))
    },
    {
      name: "CPU per propagated update, both peers",
      unit: "ms",
      records: liveAt,
      lowerIsBetter: true,
      absoluteGoal: 1,
      read: fromCatchUp((c) => c.cpuMsPerUpdate)
    },
    ...s.records.map((records): Row => ({
      name: "writes, 1000 per batch",
      unit: "records/s",
      records,
      lowerIsBetter: false,
      goal: 0.7,
      read: fromWrite((w) => w.recordsPerSec)
    })),
    {
      name: "writes, 1 per batch",
      unit: "records/s",
      records: s.single,
      lowerIsBetter: false,
      goal: 0.7,
      read: (system, records) => {
        const single = singles.find((x) => x.system === system && x.records === records)
        if (single === undefined) return { error: "not run" }
        return single.outcome.ok
          ? { value: single.outcome.value.recordsPerSec, text: fmt(single.outcome.value.recordsPerSec), load: single.load }
          : { error: single.outcome.error }
      }
    },
    ...s.records.map((records): Row => ({
      name: "catch-up to an empty peer",
      unit: "records/s",
      records,
      lowerIsBetter: false,
      goal: 0.5,
      read: fromCatchUp((c) => c.recordsPerSec)
    })),
    ...s.records.map((records): Row => ({
      name: "disk per record",
      unit: "B",
      records,
      lowerIsBetter: true,
      absoluteGoal: 200,
      read: fromWrite((w) => w.diskBytes / w.records, (w, v) =>
        `${fmt(v)}${w.savedDocBytes === undefined ? "" : ` (saved doc ${fmt(w.savedDocBytes / w.records)})`}`)
    })),
    ...s.records.map((records): Row => ({
      name: "memory, peak RSS of the catch-up process, both peers",
      unit: "MB",
      records,
      lowerIsBetter: true,
      read: fromCatchUp((c) => c.peakRssMb, (c, v) => `${fmt(v)} (heap ${fmt(c.heapMb)})`)
    }))
  ]

  /** The count `system` ran at for a row about `records`: the document-per-record variant may have run at its own. */
  const countFor = (system: System, row: Row) => {
    if (system !== "automerge-docs") return row.records
    const own = row.name.startsWith("writes, 1 per batch") ? [Math.min(s.single, s.docs)] : countsOf(system, s)
    return own.includes(row.records) ? row.records : own[own.length - 1]!
  }
  const ratioOf = (row: Row, value: number, floor: number) => (row.lowerIsBetter ? floor / value : value / floor)

  const figures: Array<Figure> = []
  const lines: Array<Array<string>> = []
  for (const row of rows) {
    // the p99 has its own figure but shares the p50's cell
    const shown = row.name !== "live update p99"
    const cells: Array<string> = []
    for (const system of s.systems) {
      const records = countFor(system, row)
      const value = row.read(system, records)
      const floor = row.read("floor", records)
      const at = records === row.records ? "" : ` @${label(records)}`
      if ("error" in value) {
        cells.push(`— (${value.error})${at}`)
        continue
      }
      if (system === "floor" || "error" in floor) {
        cells.push(`${value.text}${at}`)
        continue
      }
      const ratio = ratioOf(row, value.value, floor.value)
      cells.push(`${value.text} (${fmt(ratio)})${at}`)
      const name = `anchors: ${row.name.replace(", p50 / p99", " p50")}, ${label(records)} records (${TITLES[system]})`
      // the document-per-record variant's one run stands in for several rows: one figure
      if (figures.some((f) => f.name === name)) continue
      figures.push({
        name,
        unit: row.unit,
        value: value.value,
        baseline: floor.value,
        baselineName: FLOOR_SHORT,
        ...(row.lowerIsBetter ? { lowerIsBetter: true } : {}),
        ...(system === "weft" && row.goal !== undefined ? { goal: row.goal } : {}),
        extra: {
          ...(system === "weft" && row.absoluteGoal !== undefined ? { goal: `${row.lowerIsBetter ? "<" : ">"} ${row.absoluteGoal} ${row.unit}` } : {}),
          // the 1-minute load average when this system's run started, and when the floor's did
          loadAtRun: value.load,
          floorLoadAtRun: floor.load
        }
      })
    }
    if (shown) lines.push([`${row.name} (${row.unit}, ${label(row.records)} records)`, ...cells])
  }

  const header = ["figure (ratio to the floor: 1 = the floor, below 1 behind it)", ...s.systems.map((system) => TITLES[system])]
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => line[i]!.length)))
  const format = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  console.log("")
  console.log(`anchors: issue 14's workload side by side; load average ${started} at the start, ${ended} at the end`)
  console.log(format(header))
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`)
  for (const line of lines) console.log(format(line))
  console.log(`floor: ${FLOOR_NAME}`)
  console.log(`live: ${s.live} updates, one at a time, ${s.gapMs} ms apart, in the catch-up process at ${label(liveAt)} records ` +
    `(memory at that count includes them); automerge-repo, doc per record: at most ${s.docs} records`)
  console.log("")
  return figures
}
