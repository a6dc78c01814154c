/**
 * Network benchmarks over loopback TCP, each end in its own process
 * (`network-worker.ts`), each figure beside a baseline measured in the same
 * run:
 *
 * - ping: the median round trip of the ping plugin on a kept libp2p stream,
 *   beside a raw node:net round trip of the same 32 bytes;
 * - stream open: a stream opened, its first byte (written by the handler)
 *   read, the stream closed, p50 and p99 and CPU per open (both ends), beside
 *   the ping plugin's round trip on the same connection: what every
 *   request/response protocol pays above a round trip;
 * - ping behind a bulk transfer: pings through the ping plugin while one
 *   stream of the same connection carries `bytes` (1 GiB; `WEFT_BENCH_BULK_BYTES`
 *   sets it) as fast as it goes, beside js-libp2p's own `@libp2p/ping`
 *   during the same transfer on a bare js-libp2p node of the same stack (the
 *   stack's floor), and beside a raw node:net round trip with no transfer;
 *   with the transfer's throughput beside the same transfer without pings;
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
import { availableParallelism, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import { type Figure, median } from "./report.js"

const worker = fileURLToPath(new URL("./network-worker.js", import.meta.url))
const syncWorker = fileURLToPath(new URL("./sync-worker.js", import.meta.url))

type Line = Record<string, number | string>

/** A client phase that takes longer than this is stuck: it is killed and the section fails (a 1 GiB transfer on a loaded machine may take a minute or more). */
const CLIENT_TIMEOUT_MS = 600_000

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
  /** Streams opened per series of the stream-open figure (after 200 to warm up). */
  readonly opens: number
  /** Bytes per bulk transfer (`WEFT_BENCH_BULK_BYTES`, default 1 GiB). */
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
  /** Rounds of the ping behind a bulk transfer (each runs four transfers of `bytes`). */
  readonly bulkPingRounds: number
  /** Operations of the catch-up. */
  readonly ops: number
}

/** Bytes per bulk transfer: `WEFT_BENCH_BULK_BYTES` if set (a positive integer), else 1 GiB. */
const bulkBytes = (): number => {
  const set = Number(process.env.WEFT_BENCH_BULK_BYTES)
  return Number.isSafeInteger(set) && set > 0 ? set : 1024 * 1024 * 1024
}

export const defaults: Settings = {
  pings: 5_000,
  opens: 2_000,
  bytes: bulkBytes(),
  writeBytes: 512 * 1024,
  rawWriteBytes: 1024 * 1024,
  frameBytes: 64 * 1024,
  window: Libp2pTransport.DEFAULT_STREAM_WINDOW_BYTES,
  rounds: 5,
  bulkPingRounds: 3,
  ops: 100_000
}

/** The machine's load average (1, 5, 15 minutes), to print beside figures. */
const load = () => loadavg().map((n) => n.toFixed(2)).join(" ")

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

/** Stream open + first byte, beside the ping round trip on the same connection, in the same client. */
export const openFigure = (settings: Settings) =>
  Effect.scoped(Effect.gen(function*() {
    const weft = (yield* server(["weft-ping-serve"])).info
    const [runs] = yield* interleaved(settings.rounds, [client(["weft-open", String(weft.address), String(settings.opens)])])
    return {
      name: "stream open + first byte p50 (libp2p transport)",
      unit: "ms",
      value: medianOf(runs!, "openP50Ms"),
      baseline: medianOf(runs!, "pingMedianMs"),
      baselineName: "ping plugin round trip on the same connection, same client",
      extra: {
        opens: settings.opens,
        rounds: settings.rounds,
        openP99Ms: round3(medianOf(runs!, "openP99Ms")),
        // both ends, all threads, GC included
        cpuPerOpenMs: round3(medianOf(runs!, "cpuPerOpenMs")),
        clientCpuPerOpenMs: round3(medianOf(runs!, "clientCpuPerOpenMs")),
        serverCpuPerOpenMs: round3(medianOf(runs!, "serverCpuPerOpenMs")),
        openP50RunsMs: runsOf(runs!, "openP50Ms")
      }
    } satisfies Figure
  }))

/** Per-round medians of a field, in run order. */
const runsOf = (lines: ReadonlyArray<Line>, key: string) => lines.map((line) => round3(Number(line[key]))).join(" ")

/**
 * Pings during a bulk transfer on the same connection: Weft's ping plugin
 * while a Weft stream carries `bytes`, beside js-libp2p's `@libp2p/ping`
 * while a bare js-libp2p stream of the same stack and window carries as
 * many (each ping a stream of its own, as @libp2p/ping does; its round trip
 * as it reports it, in whole ms), beside a raw node:net round trip with no
 * transfer. Each round also runs both transfers without pings, so that the
 * cost of pinging to the transfer is measured in the same stretch.
 */
export const pingBehindBulkFigures = (settings: Settings) =>
  Effect.scoped(Effect.gen(function*() {
    const bytes = String(settings.bytes)
    const window = String(settings.window)
    const write = String(settings.writeBytes)
    const tcp = (yield* server(["tcp-echo"])).info
    const weft = (yield* server(["weft-sink", window])).info
    const libp2p = (yield* server(["libp2p-sink", window])).info
    const loadBefore = load()
    const [weftPinged, libp2pPinged, weftAlone, libp2pAlone, tcpRuns] = yield* interleaved(settings.bulkPingRounds, [
      client(["weft-send", String(weft.address), bytes, write, window, "1"]),
      client(["libp2p-send", String(libp2p.address), bytes, write, window, "1"]),
      client(["weft-send", String(weft.address), bytes, write, window, "0"]),
      client(["libp2p-send", String(libp2p.address), bytes, write, window, "0"]),
      client(["tcp-rtt", String(tcp.port), String(Math.min(settings.pings, 2_000))])
    ])
    const weftP50 = medianOf(weftPinged!, "pingP50Ms")
    const tcpP50 = medianOf(tcpRuns!, "medianMs")
    const common = {
      bytes: settings.bytes,
      windowBytes: settings.window,
      writeBytes: settings.writeBytes,
      rounds: settings.bulkPingRounds,
      loadBefore,
      loadAfter: load()
    }
    const name = `ping p50 behind a ${Math.round(settings.bytes / 2 ** 20)} MiB stream on the same connection (ping plugin)`
    return [
      {
        name,
        unit: "ms",
        value: weftP50,
        baseline: medianOf(libp2pPinged!, "pingP50Ms"),
        baselineName: "@libp2p/ping on a bare js-libp2p node of the same stack and window, behind the same transfer (whole ms, as it reports)",
        lowerIsBetter: true,
        extra: {
          ...common,
          goalP50Ms: 5,
          goalMet: weftP50 < 5 ? "yes" : "no",
          weftP99Ms: round3(medianOf(weftPinged!, "pingP99Ms")),
          weftMaxMs: round3(Math.max(...weftPinged!.map((line) => Number(line.pingMaxMs)))),
          weftPings: medianOf(weftPinged!, "pings"),
          libp2pP99Ms: medianOf(libp2pPinged!, "pingP99Ms"),
          libp2pPings: medianOf(libp2pPinged!, "pings"),
          // @libp2p/ping calls that failed or took over 10 s, over all rounds
          libp2pPingFailures: libp2pPinged!.reduce((n, line) => n + Number(line.pingFailures), 0),
          // each @libp2p/ping call whole (it opens a stream per ping), on the high-resolution clock
          libp2pCallP50Ms: round3(medianOf(libp2pPinged!, "pingCallP50Ms")),
          rawTcpIdleP50Ms: round3(tcpP50),
          weftRunsP50Ms: runsOf(weftPinged!, "pingP50Ms"),
          libp2pRunsP50Ms: runsOf(libp2pPinged!, "pingP50Ms")
        }
      },
      {
        name: `${name} vs raw TCP`,
        unit: "ms",
        value: weftP50,
        baseline: tcpP50,
        baselineName: "raw node:net round trip of 32 bytes, echo in another process, no transfer",
        lowerIsBetter: true,
        extra: { ...common, tcpRunsMs: runsOf(tcpRuns!, "medianMs") }
      },
      {
        name: `bulk stream throughput while pinging on the same connection`,
        unit: "MB/s",
        value: medianOf(weftPinged!, "mbPerSec"),
        baseline: medianOf(weftAlone!, "mbPerSec"),
        baselineName: "the same Weft transfer without pings, in the same rounds",
        goal: 0.8,
        extra: {
          ...common,
          libp2pPingingMBps: Math.round(medianOf(libp2pPinged!, "mbPerSec")),
          libp2pAloneMBps: Math.round(medianOf(libp2pAlone!, "mbPerSec")),
          weftPingingRunsMBps: runsMBps(weftPinged!),
          weftAloneRunsMBps: runsMBps(weftAlone!)
        }
      }
    ] satisfies ReadonlyArray<Figure>
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
    const loadBefore = load()
    const [rawRuns, aeadRuns, libp2pRuns, weftRuns] = yield* interleaved(settings.rounds, [
      client(["tcp-send", String(raw.port), bytes, String(settings.rawWriteBytes)]),
      client(["aead-send", String(aead.port), key, bytes, String(settings.frameBytes)]),
      client(["libp2p-send", String(libp2p.address), bytes, String(settings.writeBytes), window]),
      weftSend(false)
    ])
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
      loadBefore,
      loadAfter: load()
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
    figures.push(yield* openFigure(settings))
    figures.push(...(yield* pingBehindBulkFigures(settings)))
    figures.push(...(yield* throughputFigures(settings)))
    figures.push(...(yield* syncFigures(settings)))
    return figures
  })
