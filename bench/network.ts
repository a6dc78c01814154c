/**
 * Network benchmarks over loopback TCP, each end in its own process
 * (`network-worker.ts`), each figure beside a baseline measured in the same
 * run:
 *
 * - ping: the median round trip of the ping plugin on a kept libp2p stream,
 *   beside a raw node:net round trip of the same 32 bytes;
 * - stream throughput: one libp2p stream (Noise + Yamux) through our
 *   `Duplex`, beside raw node:net, beside TCP carrying ChaCha20-Poly1305
 *   frames (node:crypto, length-prefixed) — the least an encrypted stream
 *   must do — and beside js-libp2p itself, the same stack and window driven
 *   through its own stream API with no Weft code: what our layer costs, and
 *   how far the peer library alone gets. Both ends share the machine's cores,
 *   so once they are busy the ratio follows CPU per byte: `weftCpuSecPerGB`
 *   against `aeadCpuSecPerGB` and `libp2pCpuSecPerGB` (both ends, all
 *   threads) says why, and the per-round figures show how noisy the machine
 *   was;
 * - sync catch-up: an empty peer catching up from a full one over a session
 *   on the libp2p transport, beside the same catch-up over the in-memory
 *   `ChannelPair` (`sync-worker.ts catchup`).
 */
import * as Effect from "effect/Effect"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import { type Figure, median } from "./report.js"

const worker = fileURLToPath(new URL("./network-worker.js", import.meta.url))
const syncWorker = fileURLToPath(new URL("./sync-worker.js", import.meta.url))

type Line = Record<string, number | string>

/** A client phase that takes longer than this is stuck: it is killed and the section fails. */
const CLIENT_TIMEOUT_MS = 120_000

const lastLine = (output: string): Line => JSON.parse(output.trim().split("\n").pop()!)

/** A client role, run to completion; its figures. */
const client = (args: ReadonlyArray<string>, script = worker) =>
  Effect.async<Line, Error>((resume) => {
    const child = execFile(process.execPath, [script, ...args], { encoding: "utf8", maxBuffer: 1 << 20, timeout: CLIENT_TIMEOUT_MS }, (error, stdout, stderr) =>
      resume(error === null ? Effect.try({ try: () => lastLine(stdout), catch: (cause) => new Error(`${args[0]}: ${String(cause)}`) })
        : Effect.fail(new Error(`${args[0]} failed: ${error.message}\n${stderr}`))))
    return Effect.sync(() => child.kill())
  })

/** A server role, killed when the scope closes; what it printed when ready. */
const server = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.async<{ readonly child: ChildProcess; readonly info: Line }, Error>((resume) => {
      const child = spawn(process.execPath, [worker, ...args], { stdio: ["ignore", "pipe", "inherit"] })
      let output = ""
      let settled = false
      const settle = (effect: Effect.Effect<{ readonly child: ChildProcess; readonly info: Line }, Error>) => {
        if (settled) return
        settled = true
        resume(effect)
      }
      child.stdout.setEncoding("utf8")
      child.stdout.on("data", (data: string) => {
        output += data
        if (output.includes("\n")) settle(Effect.sync(() => ({ child, info: JSON.parse(output.split("\n")[0]!) as Line })))
      })
      child.once("exit", (code) => settle(Effect.fail(new Error(`${args[0]} exited (${code}) before it was ready`))))
      return Effect.sync(() => child.kill())
    }),
    ({ child }) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill()
      })
  )

/** The median of one field over some client runs. */
const medianOf = (lines: ReadonlyArray<Line>, key: string) => median(lines.map((line) => Number(line[key])))

/** Runs each client once per round, interleaved, so that a noisy stretch of the machine hits every figure alike. */
const interleaved = (rounds: number, clients: ReadonlyArray<Effect.Effect<Line, Error>>) =>
  Effect.gen(function*() {
    const runs: Array<Array<Line>> = clients.map(() => [])
    for (let round = 0; round < rounds; round++) {
      for (const [i, run] of clients.entries()) runs[i]!.push(yield* run)
    }
    return runs
  })

export interface Settings {
  /** Pings per series (after 200 to warm up). */
  readonly pings: number
  /** Bytes per bulk transfer. */
  readonly bytes: number
  /** Bytes per write of the Weft sender (its best measured size: smaller pays more per write, larger pipelines worse). */
  readonly writeBytes: number
  /** Bytes per write of the raw TCP sender (its best size: the baseline is as strong as node makes it). */
  readonly rawWriteBytes: number
  /** Plaintext bytes per frame of the encrypted baseline. */
  readonly frameBytes: number
  /** The Yamux stream window. */
  readonly window: number
  /**
   * Rounds of each ping series and bulk transfer (medians are reported):
   * five, because on a shared machine one baseline round in three can run at
   * twice its usual speed, and three rounds let two such decide the median.
   */
  readonly rounds: number
  /** Operations of the catch-up. */
  readonly ops: number
}

export const defaults: Settings = {
  pings: 5_000,
  bytes: 1024 * 1024 * 1024,
  writeBytes: 512 * 1024,
  rawWriteBytes: 1024 * 1024,
  frameBytes: 64 * 1024,
  window: Libp2pTransport.DEFAULT_STREAM_WINDOW_BYTES,
  rounds: 5,
  ops: 100_000
}

const round3 = (n: number) => Math.round(n * 1000) / 1000

/** Every round's MB/s, in run order. */
const runsMBps = (lines: ReadonlyArray<Line>) => lines.map((line) => Math.round(Number(line.mbPerSec))).join(" ")

/** CPU seconds both ends spent per GB moved (all threads, GC included): what bounds throughput once the cores are busy. */
const cpuSecondsPerGB = (line: Line) => (Number(line.senderCpu) + Number(line.receiverCpu)) * 1000 / Number(line.mbPerSec)

export const pingFigure = (settings: Settings) =>
  Effect.scoped(Effect.gen(function*() {
    const tcp = (yield* server(["tcp-echo"])).info
    const weft = (yield* server(["weft-ping-serve"])).info
    const pings = String(settings.pings)
    const [tcpRuns, weftRuns] = yield* interleaved(settings.rounds, [
      client(["tcp-rtt", String(tcp.port), pings]),
      client(["weft-ping", String(weft.address), pings])
    ])
    return {
      name: "ping RTT (ping plugin, kept libp2p stream)",
      unit: "ms",
      value: medianOf(weftRuns!, "medianMs"),
      baseline: medianOf(tcpRuns!, "medianMs"),
      baselineName: "raw node:net round trip of the same 32 bytes, echo in another process",
      lowerIsBetter: true,
      extra: {
        pings: settings.pings,
        rounds: settings.rounds,
        weftMinMs: round3(Math.min(...weftRuns!.map((line) => Number(line.minMs)))),
        tcpMediansMs: tcpRuns!.map((line) => round3(Number(line.medianMs))).join(" "),
        weftMediansMs: weftRuns!.map((line) => round3(Number(line.medianMs))).join(" ")
      }
    } satisfies Figure
  }))

export const throughputFigures = (settings: Settings) =>
  Effect.scoped(Effect.gen(function*() {
    const bytes = String(settings.bytes)
    const window = String(settings.window)
    const key = randomBytes(32).toString("hex")
    const raw = (yield* server(["tcp-sink"])).info
    const aead = (yield* server(["aead-sink", key])).info
    const weft = (yield* server(["weft-sink", window])).info
    const libp2p = (yield* server(["libp2p-sink", window])).info
    const weftSend = (pinging: boolean) =>
      client(["weft-send", String(weft.address), bytes, String(settings.writeBytes), window, pinging ? "1" : "0"])
    const [rawRuns, aeadRuns, libp2pRuns, weftRuns] = yield* interleaved(settings.rounds, [
      client(["tcp-send", String(raw.port), bytes, String(settings.rawWriteBytes)]),
      client(["aead-send", String(aead.port), key, bytes, String(settings.frameBytes)]),
      client(["libp2p-send", String(libp2p.address), bytes, String(settings.writeBytes), window]),
      weftSend(false)
    ])
    // once more with pings on the same connection: what the window costs a ping behind a bulk transfer
    const pinged = yield* weftSend(true)
    const weftValue = medianOf(weftRuns!, "mbPerSec")
    const aeadValue = medianOf(aeadRuns!, "mbPerSec")
    const libp2pValue = medianOf(libp2pRuns!, "mbPerSec")
    const extra = {
      bytes: settings.bytes,
      writeBytes: settings.writeBytes,
      windowBytes: settings.window,
      rounds: settings.rounds,
      // CPU time over wall time of each end during the transfer (1 = one core busy throughout)
      weftSenderCpu: round3(medianOf(weftRuns!, "senderCpu")),
      weftReceiverCpu: round3(medianOf(weftRuns!, "receiverCpu")),
      pingDuringBulkMedianMs: round3(Number(pinged.pingMedianMs)),
      pingDuringBulkP90Ms: round3(Number(pinged.pingP90Ms)),
      pingDuringBulkMaxMs: round3(Number(pinged.pingMaxMs)),
      bulkWhilePingingMBps: Math.round(Number(pinged.mbPerSec))
    }
    return [
      {
        name: "stream throughput (libp2p: Noise + Yamux, one stream) vs encrypted framing",
        unit: "MB/s",
        value: weftValue,
        baseline: aeadValue,
        baselineName: `node:net + ChaCha20-Poly1305 frames of ${settings.frameBytes / 1024} KiB (node:crypto), receiver in another process`,
        goal: 0.7,
        extra: {
          ...extra,
          aeadSenderCpu: round3(medianOf(aeadRuns!, "senderCpu")),
          aeadReceiverCpu: round3(medianOf(aeadRuns!, "receiverCpu")),
          // with both ends on one machine, each figure is bounded by cores / CPU per byte
          cores: availableParallelism(),
          weftCpuSecPerGB: round3(median(weftRuns!.map(cpuSecondsPerGB))),
          aeadCpuSecPerGB: round3(median(aeadRuns!.map(cpuSecondsPerGB))),
          // the peer library alone against the same baseline: the most this stack reaches here
          libp2pMBps: Math.round(libp2pValue),
          libp2pToAeadRatio: round3(libp2pValue / aeadValue),
          libp2pCpuSecPerGB: round3(median(libp2pRuns!.map(cpuSecondsPerGB))),
          // every round, in run order: how noisy the machine was
          weftRunsMBps: runsMBps(weftRuns!),
          aeadRunsMBps: runsMBps(aeadRuns!),
          libp2pRunsMBps: runsMBps(libp2pRuns!)
        }
      },
      {
        name: "stream throughput (libp2p: Noise + Yamux, one stream) vs js-libp2p itself",
        unit: "MB/s",
        value: weftValue,
        baseline: libp2pValue,
        baselineName: "the same js-libp2p stack and window through its own stream API, no Weft code, receiver in another process",
        extra: {
          bytes: settings.bytes,
          writeBytes: settings.writeBytes,
          rounds: settings.rounds,
          weftCpuSecPerGB: round3(median(weftRuns!.map(cpuSecondsPerGB))),
          libp2pCpuSecPerGB: round3(median(libp2pRuns!.map(cpuSecondsPerGB)))
        }
      },
      {
        name: "stream throughput (libp2p: Noise + Yamux, one stream) vs raw TCP",
        unit: "MB/s",
        value: weftValue,
        baseline: medianOf(rawRuns!, "mbPerSec"),
        baselineName: `raw node:net, ${settings.rawWriteBytes / 1024} KiB writes, receiver in another process`,
        extra
      }
    ] satisfies ReadonlyArray<Figure>
  }))

export const syncFigures = (settings: Settings) =>
  Effect.acquireUseRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "weft-bench-network-"))),
    (dir) =>
      Effect.gen(function*() {
        yield* client(["fill", dir, String(settings.ops)], syncWorker)
        const memory = yield* client(["catchup", dir], syncWorker)
        const total = String(memory.ops)
        const window = String(settings.window)
        const local = yield* client(["sync-catchup-local", dir, window, total])
        const remote = yield* Effect.scoped(Effect.flatMap(server(["sync-serve", dir, window]), ({ info }) =>
          client(["sync-catchup", dir, String(info.address), window, total])))
        const name = `catch-up sync ${settings.ops / 1000}k ops over libp2p (TCP, Noise, Yamux)`
        const baselineName = "the same catch-up over the in-memory ChannelPair (both engines in one process)"
        return [
          {
            name: `${name}, both peers in one process`,
            unit: "ops/s",
            value: Number(local.opsPerSec),
            baseline: Number(memory.opsPerSec),
            baselineName,
            extra: { ops: Number(local.ops), peakRssMb: Number(local.peakRssMb) }
          },
          {
            name: `${name}, full peer in another process`,
            unit: "ops/s",
            value: Number(remote.opsPerSec),
            baseline: Number(memory.opsPerSec),
            baselineName,
            extra: { ops: Number(remote.ops), catchUpPeakRssMb: Number(remote.peakRssMb) }
          }
        ] satisfies ReadonlyArray<Figure>
      }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** Runs the network benchmarks; returns their figures. */
export const run = (settings: Settings = defaults) =>
  Effect.gen(function*() {
    const figures: Array<Figure> = [yield* pingFigure(settings)]
    figures.push(...(yield* throughputFigures(settings)))
    figures.push(...(yield* syncFigures(settings)))
    return figures
  })
