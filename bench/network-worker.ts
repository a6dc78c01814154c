/**
 * Network benchmarks, one role per process, so that the two ends of a
 * connection run on different cores, as on two machines:
 *
 *   servers (print one JSON line when ready, then serve until killed)
 *     tcp-echo                       node:net echo
 *     tcp-sink                       node:net: counts bytes, answers the count at the end
 *     aead-sink <key>                node:net: decrypts ChaCha20-Poly1305 frames, answers the count
 *     weft-ping-serve                libp2p transport + plugin host + ping plugin; also OPEN (writes one
 *                                    byte on each stream opened) and CPU (answers its CPU ms so far)
 *     weft-sink <window>             libp2p transport: a protocol that counts bytes, answers the count
 *     libp2p-sink <window>           js-libp2p itself, no Weft: the same protocol on its stream events
 *     sync-serve <dir> <window>      libp2p transport: serves sync sessions from <dir>/full.db
 *   clients (print one JSON line with their figures)
 *     tcp-rtt <port> <count>                     32-byte round trips
 *     weft-ping <address> <count>                pings through the ping plugin, one kept stream
 *     weft-open <address> <count>                opens a stream, reads its first byte, closes it; and pings
 *                                                    on the same connection
 *     tcp-send <port> <bytes> <write>            bulk bytes
 *     aead-send <port> <key> <bytes> <frame>     bulk bytes in encrypted frames
 *     weft-send <address> <bytes> <write> <window> <pinging>   bulk bytes on one stream (pinging 1: and
 *                                                    pings through the ping plugin on the same connection)
 *     libp2p-send <address> <bytes> <write> <window>   the same bulk bytes through js-libp2p's own stream API
 *     sync-catchup <dir> <address> <window> <ops>   an empty engine catches up over a session
 *     sync-catchup-local <dir> <window> <ops>       the same, with the full peer in this process too
 *
 * Raw baselines are written as plainly and directly as node allows; Weft's
 * figures go through its public services.
 */
import "../src/transport/internal/promiseWithResolvers.js"
import { noise } from "@chainsafe/libp2p-noise"
import { yamux } from "@chainsafe/libp2p-yamux"
import type { Stream as Libp2pStream } from "@libp2p/interface"
import { ping } from "@libp2p/ping"
import { tcp } from "@libp2p/tcp"
import { multiaddr } from "@multiformats/multiaddr"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createCipheriv, createDecipheriv } from "node:crypto"
import { createServer, connect, type Socket } from "node:net"
import { createLibp2p } from "libp2p"
import { join } from "node:path"
import * as SyncSession from "../src/sync/SyncSession.js"
import * as Engines from "../src/engine/testing/Engines.js"
import * as Libraries from "../src/library/Libraries.js"
import * as Ping from "../src/plugins/ping/Ping.js"
import * as PluginHost from "../src/plugins/PluginHost.js"
import * as SyncProtocol from "../src/plugins/sync/Protocol.js"
import * as Framing from "../src/transport/Framing.js"
import * as Identity from "../src/transport/Identity.js"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import * as Transport from "../src/transport/Transport.js"
import { files } from "./engine.js"
import { median } from "./report.js"

const [role, ...args] = process.argv.slice(2) as [string, ...Array<string>]

const LOOPBACK = "127.0.0.1"
const SINK = "/weft-bench/sink/1.0.0"
const SYNC = "/weft-bench/sync/1.0.0"
/** A stream whose opener reads one byte (the request/response pattern's least). */
const OPEN = "/weft-bench/open/1.0.0"
/** Answers the serving process's CPU ms so far, as decimal text. */
const CPU = "/weft-bench/cpu/1.0.0"
const PING_BYTES = 32
/** How long one @libp2p/ping call may take before it counts as failed. */
const PING_TIMEOUT_MS = 10_000
const TAG_BYTES = 16
const SESSION = { library: "bench", batchSize: 1_000, window: 4 }

const ready = (figures: Record<string, unknown>) => console.log(JSON.stringify({ ready: true, ...figures }))
const done = (figures: Record<string, unknown>) => console.log(JSON.stringify(figures))

const listen = (onSocket: (socket: Socket) => void) => {
  // exits on SIGTERM (so a `--cpu-prof` is written)
  process.once("SIGTERM", () => process.exit(0))
  const server = createServer({ noDelay: true }, onSocket)
  server.listen(0, LOOPBACK, () => {
    const address = server.address()
    ready({ port: typeof address === "object" && address !== null ? address.port : 0 })
  })
}

const dial = (port: number) =>
  new Promise<Socket>((resolve, reject) => {
    const socket = connect({ port, host: LOOPBACK, noDelay: true }, () => resolve(socket))
    socket.once("error", reject)
  })

/** CPU time (user + system) of this process, in ms. */
const cpuMs = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

/** What a sink answers when the sender ends: bytes received, and its CPU ms from the start of the connection. */
const answer = (count: number, cpu: number) => {
  const out = Buffer.alloc(16)
  out.writeBigUInt64BE(BigInt(count))
  out.writeBigUInt64BE(BigInt(Math.round(cpu * 1000)), 8)
  return out
}

const parseAnswer = (bytes: Uint8Array) => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return { count: Number(view.getBigUint64(0)), receiverCpuMs: Number(view.getBigUint64(8)) / 1000 }
}

/** Answers the byte count and CPU time when the sender ends. */
const answerCount = (socket: Socket, count: () => number) => {
  const cpuStart = cpuMs()
  socket.on("end", () => socket.end(answer(count(), cpuMs() - cpuStart)))
}

/** Resolves with the sink's answer. */
const awaitCount = (socket: Socket) =>
  new Promise<ReturnType<typeof parseAnswer>>((resolve) => {
    const parts: Array<Buffer> = []
    socket.on("data", (data: Buffer) => parts.push(data))
    socket.on("end", () => resolve(parseAnswer(Buffer.concat(parts))))
  })

/** The figures of a bulk transfer. */
const transfer = (bytes: number, started: { readonly wall: number; readonly cpu: number }, receiverCpuMs: number) => {
  const wallMs = performance.now() - started.wall
  return {
    bytes,
    mbPerSec: bytes / 1e6 / (wallMs / 1000),
    senderCpu: (cpuMs() - started.cpu) / wallMs,
    receiverCpu: receiverCpuMs / wallMs
  }
}

const start = () => ({ wall: performance.now(), cpu: cpuMs() })

/** Round trips in ms, as `<name>s` (count), `<name>P50Ms`, `<name>P99Ms`, `<name>MaxMs`. */
const percentiles = (rtts: ReadonlyArray<number>, name: string) => {
  const sorted = [...rtts].sort((a, b) => a - b)
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN
  return { [`${name}s`]: sorted.length, [`${name}P50Ms`]: at(0.5), [`${name}P99Ms`]: at(0.99), [`${name}MaxMs`]: at(1) }
}

const nonceOf = (counter: number, nonce: Buffer) => {
  nonce.writeUInt32LE(counter >>> 0, 4)
  nonce.writeUInt32LE(Math.floor(counter / 2 ** 32), 8)
  return nonce
}

/** A libp2p transport on loopback, with a fresh identity and the given stream window. */
const weftNode = (window: number) =>
  Effect.gen(function*() {
    const transport = yield* Libp2pTransport.make({
      identity: yield* Identity.generate(),
      listen: [`/ip4/${LOOPBACK}/tcp/0`],
      streamWindowBytes: window
    })
    const [address] = yield* transport.addresses
    return { transport, address: address! }
  })

/** A plugin host over `transport` with the ping plugin registered; its client. */
const withPing = (transport: Transport.Service) =>
  Effect.map(
    Layer.build(Layer.provideMerge(Ping.layer, PluginHost.layer()).pipe(
      Layer.provide(Layer.merge(Layer.succeed(Transport.Transport, transport), Libraries.layerMemory()))
    )),
    (context) => Context.get(context, Ping.Ping)
  )

/**
 * A bare js-libp2p node with the stack and window of `weftNode` (TCP, Noise,
 * stock Yamux): the peer library's own figure, beside which Weft's says what
 * its `Duplex`, Effect and frame guard cost.
 */
const libp2pNode = (window: number) =>
  createLibp2p({
    addresses: { listen: [`/ip4/${LOOPBACK}/tcp/0`] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: window, maxReadBufferLength: 2 * window } })],
    // libp2p's own ping (`/ipfs/ping/1.0.0`), the floor for a ping behind a bulk transfer on this stack
    services: { ping: ping() },
    // its connection monitor pings through that service too, and aborted the connection mid-transfer
    // when an answer queued behind the bulk bytes took longer than it allows (machine at load 15)
    connectionMonitor: { abortConnectionOnPingFailure: false }
  })

/** Resolves once libp2p has handed all that was sent on to the muxer, as the Weft `Duplex` waits. */
const handedOn = (stream: Libp2pStream) =>
  new Promise<void>((resolve, reject) => {
    const check = () => {
      if (stream.writeBufferLength > 0 || stream.writableNeedsDrain) return
      cleanup()
      resolve()
    }
    const closed = () => {
      cleanup()
      reject(new Error("the stream closed while a write waited"))
    }
    const cleanup = () => {
      stream.removeEventListener("drain", check)
      stream.removeEventListener("idle", check)
      stream.removeEventListener("close", closed)
    }
    stream.addEventListener("drain", check)
    stream.addEventListener("idle", check)
    stream.addEventListener("close", closed)
    check()
  })

const countBytes = (stream: Transport.Duplex) =>
  Stream.runFold(stream.source, 0, (n, bytes) => n + bytes.length)

/** Runs a server until SIGTERM, then closes its scope (and exits, so a `--cpu-prof` is written). */
const serveForever = <E>(effect: Effect.Effect<unknown, E, Scope.Scope>) => {
  const fiber = Effect.runFork(Effect.scoped(Effect.zipRight(effect, Effect.never)))
  process.once("SIGTERM", () => {
    Effect.runPromise(Fiber.interrupt(fiber)).finally(() => process.exit(0))
  })
  return Effect.runPromise(Fiber.join(fiber))
}

/** A libp2p node serving sync sessions from the full engine in `dir`. */
const syncServer = (dir: string, window: number) =>
  Effect.gen(function*() {
    const full = yield* Engines.open({ models: [files], node: "full", filename: join(dir, "full.db") })
    const node = yield* weftNode(window)
    yield* node.transport.handle(SYNC, (stream) =>
      // the engines' node ids are not peer ids here, so the Hello is not checked against the connection
      SyncSession.run(full, Framing.make(stream, SyncProtocol.MAX_FRAME_BYTES), SESSION))
    return node
  })

/** An empty engine in `dir` catching up `total` operations from the sync server at `address`. */
const catchUp = (dir: string, address: string, window: number, total: number) =>
  Effect.gen(function*() {
    const empty = yield* Engines.open({ models: [files], node: `empty-${process.pid}`, filename: join(dir, `empty-${process.pid}.db`) })
    const { transport } = yield* weftNode(window)
    const peer = yield* transport.connect(address)
    const held = Effect.map(empty.versionVector, (v) => [...v.values()].reduce((n, e) => n + e.seq, 0))
    const start = performance.now()
    const stream = yield* transport.open(peer, SYNC)
    const session = SyncSession.run(empty, Framing.make(stream, SyncProtocol.MAX_FRAME_BYTES), SESSION).pipe(
      Effect.zipRight(Effect.dieMessage("the full peer ended the session before the catch-up completed"))
    )
    const caughtUp = Effect.repeat(held, { until: (n) => n >= total, schedule: Schedule.spaced(Duration.millis(2)) })
    // a failed session fails the phase instead of leaving it waiting
    yield* Effect.raceFirst(caughtUp, session)
    const ops = yield* held
    return { ops, opsPerSec: ops / ((performance.now() - start) / 1000), peakRssMb: process.resourceUsage().maxRSS / 1024 }
  })

const roles: Record<string, () => unknown> = {
  "tcp-echo": () => listen((socket) => socket.on("data", (data) => socket.write(data))),

  "tcp-sink": () =>
    listen((socket) => {
      let count = 0
      socket.on("data", (data: Buffer) => (count += data.length))
      answerCount(socket, () => count)
    }),

  "aead-sink": () => {
    const key = Buffer.from(args[0]!, "hex")
    listen((socket) => {
      // decrypts as bytes arrive, copying nothing: a frame's header, then its ciphertext, then its tag;
      // a frame's plaintext counts once its tag is verified
      const nonce = Buffer.alloc(12)
      const header = Buffer.alloc(4)
      const tag = Buffer.alloc(TAG_BYTES)
      let count = 0
      let unverified = 0
      let frames = 0
      let state: "header" | "body" | "tag" = "header"
      let filled = 0
      let body = 0
      let decipher = createDecipheriv("chacha20-poly1305", key, nonceOf(0, nonce), { authTagLength: TAG_BYTES })
      socket.on("data", (data: Buffer) => {
        let offset = 0
        while (offset < data.length) {
          if (state === "header") {
            const used = Math.min(4 - filled, data.length - offset)
            data.copy(header, filled, offset, offset + used)
            filled += used
            offset += used
            if (filled < 4) break
            body = header.readUInt32BE(0) - TAG_BYTES
            decipher = createDecipheriv("chacha20-poly1305", key, nonceOf(frames++, nonce), { authTagLength: TAG_BYTES })
            state = "body"
            filled = 0
          } else if (state === "body") {
            const used = Math.min(body, data.length - offset)
            unverified += decipher.update(data.subarray(offset, offset + used)).length
            body -= used
            offset += used
            if (body === 0) state = "tag"
          } else {
            const used = Math.min(TAG_BYTES - filled, data.length - offset)
            data.copy(tag, filled, offset, offset + used)
            filled += used
            offset += used
            if (filled < TAG_BYTES) break
            decipher.setAuthTag(tag)
            decipher.final()
            count += unverified
            unverified = 0
            state = "header"
            filled = 0
          }
        }
      })
      answerCount(socket, () => count)
    })
  },

  "tcp-rtt": async () => {
    const [port, count] = args.map(Number) as [number, number]
    const socket = await dial(port)
    const payload = Buffer.alloc(PING_BYTES, 7)
    let received = 0
    let wake: () => void = () => {}
    socket.on("data", (data: Buffer) => {
      received += data.length
      if (received >= PING_BYTES) {
        received -= PING_BYTES
        wake()
      }
    })
    const rtts: Array<number> = []
    for (let i = 0; i < count; i++) {
      const echoed = new Promise<void>((resolve) => (wake = resolve))
      const start = performance.now()
      socket.write(payload)
      await echoed
      rtts.push(performance.now() - start)
    }
    socket.destroy()
    done({ medianMs: median(rtts), pings: count })
  },

  "tcp-send": async () => {
    const [port, total, size] = args.map(Number) as [number, number, number]
    const socket = await dial(port)
    const chunk = Buffer.alloc(size, 1)
    const counted = awaitCount(socket)
    const started = start()
    for (let sent = 0; sent < total; sent += size) {
      if (!socket.write(chunk)) await new Promise((resolve) => socket.once("drain", resolve))
    }
    socket.end()
    const { count, receiverCpuMs } = await counted
    done(transfer(count, started, receiverCpuMs))
  },

  "aead-send": async () => {
    const key = Buffer.from(args[1]!, "hex")
    const [port, , total, size] = args.map(Number) as [number, number, number, number]
    const socket = await dial(port)
    const plaintext = Buffer.alloc(size, 1)
    const nonce = Buffer.alloc(12)
    const counted = awaitCount(socket)
    const started = start()
    let frames = 0
    for (let sent = 0; sent < total; sent += size) {
      const cipher = createCipheriv("chacha20-poly1305", key, nonceOf(frames++, nonce), { authTagLength: TAG_BYTES })
      const header = Buffer.alloc(4)
      header.writeUInt32BE(size + TAG_BYTES)
      const body = cipher.update(plaintext)
      cipher.final()
      // one writev per frame
      socket.cork()
      socket.write(header)
      socket.write(body)
      const flushed = socket.write(cipher.getAuthTag())
      socket.uncork()
      if (!flushed) await new Promise((resolve) => socket.once("drain", resolve))
    }
    socket.end()
    const { count, receiverCpuMs } = await counted
    done(transfer(count, started, receiverCpuMs))
  },

  "weft-ping-serve": () =>
    serveForever(Effect.gen(function*() {
      const { address, transport } = yield* weftNode(Libp2pTransport.DEFAULT_STREAM_WINDOW_BYTES)
      yield* withPing(transport)
      yield* transport.handle(OPEN, (stream) =>
        Effect.zipRight(stream.write(new Uint8Array([1])), Stream.runDrain(stream.source)))
      yield* transport.handle(CPU, (stream) =>
        // after the opener ended its side
        Effect.zipRight(Stream.runDrain(stream.source), Effect.zipRight(stream.write(new TextEncoder().encode(String(cpuMs()))), stream.end)))
      ready({ address, peer: transport.peerId })
    })),

  "weft-sink": () =>
    serveForever(Effect.gen(function*() {
      const { address, transport } = yield* weftNode(Number(args[0]))
      // answers pings on the same connection during a transfer
      yield* withPing(transport)
      yield* transport.handle(SINK, (stream) =>
        Effect.gen(function*() {
          const cpuStart = cpuMs()
          const count = yield* countBytes(stream)
          yield* stream.write(answer(count, cpuMs() - cpuStart))
          yield* stream.end
        }))
      ready({ address, peer: transport.peerId })
    })),

  "libp2p-sink": async () => {
    process.once("SIGTERM", () => process.exit(0))
    const node = await libp2pNode(Number(args[0]))
    await node.handle(SINK, (stream) => {
      const cpuStart = cpuMs()
      let count = 0
      stream.addEventListener("message", (event) => (count += event.data.byteLength))
      stream.addEventListener("remoteCloseWrite", () => {
        stream.send(answer(count, cpuMs() - cpuStart))
        void stream.close()
      })
    })
    ready({ address: node.getMultiaddrs()[0]!.toString(), peer: node.peerId.toString() })
  },

  "sync-serve": () =>
    serveForever(Effect.gen(function*() {
      const [dir, window] = args as [string, string]
      const { address, transport } = yield* syncServer(dir, Number(window))
      ready({ address, peer: transport.peerId })
    })),

  "weft-ping": () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const [address, count] = args as [string, string]
      const { transport } = yield* weftNode(Libp2pTransport.DEFAULT_STREAM_WINDOW_BYTES)
      const client = yield* withPing(transport)
      const peer = yield* transport.connect(address)
      // warm up: stream negotiation and JIT
      yield* client.ping(peer, { count: 200 })
      const result = yield* client.ping(peer, { count: Number(count) })
      done({ medianMs: result.median, minMs: result.min, pings: result.rtts.length })
    }))),

  "weft-open": () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const [address, count] = args as [string, string]
      const { transport } = yield* weftNode(Libp2pTransport.DEFAULT_STREAM_WINDOW_BYTES)
      const client = yield* withPing(transport)
      const peer = yield* transport.connect(address)
      const serverCpuMs = Effect.scoped(Effect.gen(function*() {
        const stream = yield* transport.open(peer, CPU)
        yield* stream.end
        const bytes = Buffer.concat(Chunk.toReadonlyArray(yield* Stream.runCollect(stream.source)))
        return Number(bytes.toString("utf8"))
      }))
      // one stream opened, its first byte read, the stream closed (its scope resets it, as a client done
      // with a response does)
      const openOnce = Effect.scoped(Effect.flatMap(transport.open(peer, OPEN), (stream) => Stream.runHead(stream.source)))
      // warm up: JIT, and the peer store learning the protocol
      yield* Effect.repeatN(openOnce, 199)
      yield* client.ping(peer, { count: 200 })
      const times: Array<number> = []
      const serverStart = yield* serverCpuMs
      const started = start()
      for (let i = 0; i < Number(count); i++) {
        const t0 = performance.now()
        yield* openOnce
        times.push(performance.now() - t0)
      }
      const clientCpu = cpuMs() - started.cpu
      const serverCpu = (yield* serverCpuMs) - serverStart
      const pings = yield* client.ping(peer, { count: Number(count) })
      done({
        ...percentiles(times, "open"),
        cpuPerOpenMs: (clientCpu + serverCpu) / times.length,
        clientCpuPerOpenMs: clientCpu / times.length,
        serverCpuPerOpenMs: serverCpu / times.length,
        pingMedianMs: pings.median
      })
    }))),

  "weft-send": () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const [address, total, size, window, pinging] = [args[0]!, ...args.slice(1).map(Number)] as [string, number, number, number, number]
      const { transport } = yield* weftNode(window)
      const client = yield* withPing(transport)
      const peer = yield* transport.connect(address)
      const chunk = new Uint8Array(size).fill(1)
      // with `pinging`: series of pings on the same connection for as long as the transfer runs
      const rtts: Array<number> = []
      const pings = Effect.forever(Effect.flatMap(client.ping(peer, { count: 10 }), (result) => Effect.sync(() => rtts.push(...result.rtts))))
      const started = start()
      const stream = yield* transport.open(peer, SINK)
      const pinger = pinging > 0 ? yield* Effect.forkScoped(pings) : undefined
      for (let sent = 0; sent < total; sent += size) yield* stream.write(chunk)
      yield* stream.end
      const { count, receiverCpuMs } = parseAnswer(Buffer.concat(Chunk.toReadonlyArray(yield* Stream.runCollect(stream.source))))
      const figures = transfer(count, started, receiverCpuMs)
      if (pinger !== undefined) yield* Fiber.interrupt(pinger)
      done(pinger === undefined ? figures : { ...figures, ...percentiles(rtts, "ping") })
    }))),

  "libp2p-send": async () => {
    const [address, total, size, window, pinging] = [args[0]!, ...args.slice(1).map(Number)] as [string, number, number, number, number]
    const node = await libp2pNode(window)
    const connection = await node.dial(multiaddr(address))
    const chunk = new Uint8Array(size).fill(1)
    // with `pinging`: @libp2p/ping's pings on the same connection, one after another, for as long as the
    // transfer runs. Each opens a stream (as @libp2p/ping does); `rtts` is what it reports (Date.now(), whole
    // ms), `calls` each whole call with the stream's opening, on the high-resolution clock
    const rtts: Array<number> = []
    const calls: Array<number> = []
    let sending = true
    let failures = 0
    const pings = async () => {
      while (sending) {
        const called = performance.now()
        try {
          // with a deadline: @libp2p/ping 3.1 waits forever for an echo on a stream the remote reset
          rtts.push(await node.services.ping.ping(connection.remotePeer, { signal: AbortSignal.timeout(PING_TIMEOUT_MS) }))
          calls.push(performance.now() - called)
        } catch {
          failures++
        }
      }
    }
    const started = start()
    const stream = await connection.newStream(SINK)
    const pinger = pinging > 0 ? pings() : undefined
    const parts: Array<Uint8Array> = []
    stream.addEventListener("message", (event) => parts.push(event.data.subarray()))
    const answered = new Promise<void>((resolve) => stream.addEventListener("remoteCloseWrite", () => resolve()))
    for (let sent = 0; sent < total; sent += size) {
      if (!stream.send(chunk)) await handedOn(stream)
    }
    await stream.close()
    await answered
    const { count, receiverCpuMs } = parseAnswer(Buffer.concat(parts))
    const figures = transfer(count, started, receiverCpuMs)
    sending = false
    await pinger
    done(pinging > 0 ? { ...figures, ...percentiles(rtts, "ping"), ...percentiles(calls, "pingCall"), pingFailures: failures } : figures)
    await node.stop()
  },

  "sync-catchup": () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const [dir, address, window, total] = args as [string, string, string, string]
      done(yield* catchUp(dir, address, Number(window), Number(total)))
    }))),

  "sync-catchup-local": () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const [dir, window, total] = args as [string, string, string]
      const { address } = yield* syncServer(dir, Number(window))
      done(yield* catchUp(dir, address, Number(window), Number(total)))
    })))
}

const main = roles[role]
if (main === undefined) {
  console.error(`unknown role ${role}`)
  process.exitCode = 2
} else {
  Promise.resolve(main()).catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
