/**
 * `npm run bench -- spacedrop` (only when named: its 1 GiB transfers take
 * minutes): Spacedrop over the real encrypted transport (TCP, Noise, Yamux)
 * on loopback, sender and receiver each in its own process
 * (`spacedrop-worker.ts`), each figure beside a baseline measured in the
 * same rounds:
 *
 * - one large file (`WEFT_BENCH_SPACEDROP_BYTES`, default 1 GiB), beside the
 *   network bench's single encrypted stream carrying as many bytes
 *   (`network-worker.ts` weft-send → weft-sink: the same transport, no
 *   files, no hashing); goal ≥ 0.8;
 * - many small files (`WEFT_BENCH_SPACEDROP_FILES`, default 10 000, of 1–64
 *   KiB, 100 to a folder), beside `tar -c` piped over a plain TCP socket into
 *   `tar -x` for the same tree; goal ≥ 0.5;
 * - the peak RSS of the sender and of the receiver in each (goal < 200 MB).
 *
 * Spacedrop's time runs from the send (hashing the sources included) to the
 * receiver's confirmation that every file is verified, synced and in place.
 * `WEFT_BENCH_SPACEDROP_ROUNDS` (default 3) sets the rounds; medians are
 * reported, with every round.
 */
import * as Effect from "effect/Effect"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import { type Figure, median } from "./report.js"

const worker = fileURLToPath(new URL("./spacedrop-worker.js", import.meta.url))
const networkWorker = fileURLToPath(new URL("./network-worker.js", import.meta.url))

type Line = Record<string, number | string>

/** A phase that takes longer than this is stuck. */
const TIMEOUT_MS = 900_000

const fromEnv = (name: string, fallback: number) => {
  const set = Number(process.env[name])
  return Number.isSafeInteger(set) && set > 0 ? set : fallback
}

export interface Settings {
  /** Bytes of the large file (`WEFT_BENCH_SPACEDROP_BYTES`, default 1 GiB). */
  readonly bytes: number
  /** Small files (`WEFT_BENCH_SPACEDROP_FILES`, default 10 000). */
  readonly files: number
  /** Rounds of each (`WEFT_BENCH_SPACEDROP_ROUNDS`, default 3). */
  readonly rounds: number
}

export const defaults = (): Settings => ({
  bytes: fromEnv("WEFT_BENCH_SPACEDROP_BYTES", 1024 * 1024 * 1024),
  files: fromEnv("WEFT_BENCH_SPACEDROP_FILES", 10_000),
  rounds: fromEnv("WEFT_BENCH_SPACEDROP_ROUNDS", 3)
})

const load = () => loadavg().map((n) => n.toFixed(2)).join(" ")
const round3 = (n: number) => Math.round(n * 1000) / 1000

/** A client role, run to completion; its last line. */
const client = (script: string, args: ReadonlyArray<string>) =>
  Effect.async<Line, Error>((resume) => {
    const child = execFile(process.execPath, [script, ...args], { encoding: "utf8", maxBuffer: 1 << 20, timeout: TIMEOUT_MS }, (error, stdout, stderr) =>
      resume(error === null ? Effect.try({ try: () => JSON.parse(stdout.trim().split("\n").pop()!) as Line, catch: (cause) => new Error(`${args[0]}: ${String(cause)}`) })
        : Effect.fail(new Error(`${args[0]} failed: ${error.message}\n${stderr}`))))
    return Effect.sync(() => child.kill())
  })

/** A server role, killed with the scope: its ready line, and the next line it prints (one per transfer). */
const server = (script: string, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.async<{ readonly child: ChildProcess; readonly info: Line; readonly next: Effect.Effect<Line, Error> }, Error>((resume) => {
      const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "inherit"] })
      const lines: Array<Line> = []
      const waiters: Array<(line: Line) => void> = []
      let buffered = ""
      let ready = false
      child.stdout.setEncoding("utf8")
      child.stdout.on("data", (data: string) => {
        buffered += data
        let end: number
        while ((end = buffered.indexOf("\n")) >= 0) {
          const line = JSON.parse(buffered.slice(0, end)) as Line
          buffered = buffered.slice(end + 1)
          if (!ready) {
            ready = true
            resume(Effect.succeed({ child, info: line, next }))
          } else if (waiters.length > 0) waiters.shift()!(line)
          else lines.push(line)
        }
      })
      const next: Effect.Effect<Line, Error> = Effect.async<Line, Error>((resumeNext) => {
        const line = lines.shift()
        if (line !== undefined) return resumeNext(Effect.succeed(line))
        waiters.push((line) => resumeNext(Effect.succeed(line)))
      }).pipe(Effect.timeoutFail({ duration: TIMEOUT_MS, onTimeout: () => new Error(`${args[0]}: no report`) }))
      child.once("exit", (code) => {
        if (!ready) resume(Effect.fail(new Error(`${args[0]} exited (${code}) before it was ready`)))
      })
      return Effect.sync(() => child.kill())
    }),
    ({ child }) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill()
      })
  )

/** Each client once per round, interleaved, so that a noisy stretch hits both alike. */
const interleaved = (rounds: number, runs: ReadonlyArray<Effect.Effect<Line, Error>>) =>
  Effect.gen(function*() {
    const out: Array<Array<Line>> = runs.map(() => [])
    for (let round = 0; round < rounds; round++) {
      for (const [i, run] of runs.entries()) out[i]!.push(yield* run)
    }
    return out
  })

const medianOf = (lines: ReadonlyArray<Line>, key: string) => median(lines.map((line) => Number(line[key])))
const maxOf = (lines: ReadonlyArray<Line>, key: string) => Math.max(...lines.map((line) => Number(line[key])))
const runsOf = (lines: ReadonlyArray<Line>, key: string) => lines.map((line) => round3(Number(line[key]))).join(" ")

/** A Spacedrop send to the receiver, with the receiver's report of it. */
const spacedropRound = (receiver: { readonly info: Line; readonly next: Effect.Effect<Line, Error> }, path: string) =>
  Effect.gen(function*() {
    const sent = yield* client(worker, ["sd-send", String(receiver.info.address), path])
    const got = yield* receiver.next
    if (got.error !== undefined) return yield* Effect.fail(new Error(`the receiver failed: ${got.error}`))
    return { ...sent, receiverPeakRssMb: Number(got.peakRssMb), receiverCpuMs: Number(got.receiverCpuMs) }
  })

const largeFile = (settings: Settings, scratch: string) =>
  Effect.scoped(Effect.gen(function*() {
    const file = join(scratch, "large.bin")
    yield* client(worker, ["make-file", file, String(settings.bytes)])
    const inbox = join(scratch, "inbox-large")
    mkdirSync(inbox)
    const receiver = yield* server(worker, ["sd-receive", inbox])
    const window = String(Libp2pTransport.DEFAULT_STREAM_WINDOW_BYTES)
    const sink = yield* server(networkWorker, ["weft-sink", window])
    const loadBefore = load()
    const [streamRuns, spacedropRuns] = yield* interleaved(settings.rounds, [
      client(networkWorker, ["weft-send", String(sink.info.address), String(settings.bytes), String(512 * 1024), window, "0"]),
      spacedropRound(receiver, file)
    ])
    rmSync(file, { force: true })
    const mib = Math.round(settings.bytes / 2 ** 20)
    // the stream's CPU per side, from its shares of the wall time (`network-worker.ts` reports those)
    const streamCpuMs = (line: Line, side: "senderCpu" | "receiverCpu") => Number(line[side]) * (Number(line.bytes) / 1e6 / Number(line.mbPerSec)) * 1000
    const perGiB = (ms: number) => round3(ms / 1000 / (settings.bytes / 2 ** 30))
    return {
      name: `spacedrop: one ${mib} MiB file vs one encrypted stream`,
      unit: "MB/s",
      value: medianOf(spacedropRuns!, "mbPerSec"),
      baseline: medianOf(streamRuns!, "mbPerSec"),
      baselineName: "the network bench's single libp2p stream (Noise + Yamux) carrying as many bytes, no files, receiver in another process",
      goal: 0.8,
      extra: {
        bytes: settings.bytes,
        rounds: settings.rounds,
        senderPeakRssMb: Math.round(maxOf(spacedropRuns!, "peakRssMb")),
        receiverPeakRssMb: Math.round(maxOf(spacedropRuns!, "receiverPeakRssMb")),
        // CPU per side (process.cpuUsage over the transfer): steadier than the rate on a loaded machine
        senderCpuMs: Math.round(medianOf(spacedropRuns!, "senderCpuMs")),
        receiverCpuMs: Math.round(medianOf(spacedropRuns!, "receiverCpuMs")),
        // CPU seconds per GiB moved, Spacedrop's and the bare stream's, per side: what each side costs beyond the transport
        senderCpuSPerGiB: perGiB(medianOf(spacedropRuns!, "senderCpuMs")),
        receiverCpuSPerGiB: perGiB(medianOf(spacedropRuns!, "receiverCpuMs")),
        streamSenderCpuSPerGiB: perGiB(median(streamRuns!.map((line) => streamCpuMs(line, "senderCpu")))),
        streamReceiverCpuSPerGiB: perGiB(median(streamRuns!.map((line) => streamCpuMs(line, "receiverCpu")))),
        spacedropRunsMBps: runsOf(spacedropRuns!, "mbPerSec"),
        streamRunsMBps: runsOf(streamRuns!, "mbPerSec"),
        loadBefore,
        loadAfter: load()
      }
    } satisfies Figure
  }))

const smallFiles = (settings: Settings, scratch: string) =>
  Effect.scoped(Effect.gen(function*() {
    const tree = join(scratch, "tree")
    const made = yield* client(worker, ["make-tree", tree, String(settings.files), "spacedrop-bench"])
    const inbox = join(scratch, "inbox-small")
    mkdirSync(inbox)
    const receiver = yield* server(worker, ["sd-receive", inbox])
    const tar = yield* server(worker, ["tar-receive", inbox])
    const loadBefore = load()
    const [tarRuns, spacedropRuns] = yield* interleaved(settings.rounds, [
      client(worker, ["tar-send", String(tar.info.port), tree]),
      spacedropRound(receiver, tree)
    ])
    rmSync(tree, { recursive: true, force: true })
    const seconds = medianOf(spacedropRuns!, "seconds")
    const tarSeconds = medianOf(tarRuns!, "seconds")
    return {
      name: `spacedrop: ${settings.files} files of 1–64 KiB vs tar over TCP`,
      unit: "files/s",
      value: settings.files / seconds,
      baseline: settings.files / tarSeconds,
      baselineName: "tar -c piped over a plain node:net socket into tar -x (another process), the same tree",
      goal: 0.5,
      extra: {
        files: settings.files,
        bytes: Number(made.bytes),
        rounds: settings.rounds,
        spacedropMBps: round3(Number(made.bytes) / 1e6 / seconds),
        tarMBps: round3(Number(made.bytes) / 1e6 / tarSeconds),
        senderPeakRssMb: Math.round(maxOf(spacedropRuns!, "peakRssMb")),
        receiverPeakRssMb: Math.round(maxOf(spacedropRuns!, "receiverPeakRssMb")),
        senderCpuMs: Math.round(medianOf(spacedropRuns!, "senderCpuMs")),
        receiverCpuMs: Math.round(medianOf(spacedropRuns!, "receiverCpuMs")),
        spacedropRunsS: runsOf(spacedropRuns!, "seconds"),
        tarRunsS: runsOf(tarRuns!, "seconds"),
        loadBefore,
        loadAfter: load()
      }
    } satisfies Figure
  }))

/** Peak RSS of each side, over both workloads, against the 200 MB goal. */
const memory = (figures: ReadonlyArray<Figure>): ReadonlyArray<Figure> =>
  (["sender", "receiver"] as const).map((side) => {
    const peak = Math.max(...figures.map((f) => Number(f.extra?.[`${side}PeakRssMb`])))
    return {
      name: `spacedrop: ${side} peak RSS`,
      unit: "MB",
      value: peak,
      baseline: 200,
      baselineName: "the goal: under 200 MB",
      goal: 1,
      lowerIsBetter: true,
      extra: Object.fromEntries(figures.map((f) => [f.name, Number(f.extra?.[`${side}PeakRssMb`])]))
    } satisfies Figure
  })

/** Runs the Spacedrop benchmarks; returns their figures. */
export const run = (settings: Settings = defaults()) =>
  Effect.acquireUseRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "weft-bench-spacedrop-"))),
    (scratch) =>
      Effect.gen(function*() {
        const figures: Array<Figure> = [yield* largeFile(settings, scratch), yield* smallFiles(settings, scratch)]
        return [...figures, ...memory(figures)]
      }),
    (scratch) => Effect.sync(() => rmSync(scratch, { recursive: true, force: true }))
  )
