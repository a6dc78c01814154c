/**
 * rspc benchmarks, each beside a baseline measured in the same run, both
 * peers in this process (so each figure and its baseline share the same
 * event loop and cores):
 *
 * - call round trip: one small call at a time through rspc over the real
 *   libp2p transport (TCP loopback, Noise, Yamux), p50 and p99, beside the
 *   ping plugin's round trip on the same connection (goal: p50 at most 2×
 *   ping's), with the CPU time of each round trip (both peers, µs), which a
 *   loaded machine disturbs less than wall time;
 * - small-call throughput with 32 calls in flight on one rspc client, beside
 *   the same `@effect/rpc` group served by the same kit over a plain Unix
 *   socket with no grants, no encryption and no multiplexing (goal ≥ 0.5).
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, connect as netConnect, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Libraries from "../src/library/Libraries.js"
import * as Ping from "../src/plugins/ping/Ping.js"
import * as PluginHost from "../src/plugins/PluginHost.js"
import * as RpcPlugin from "../src/plugins/RpcPlugin.js"
import * as Grants from "../src/plugins/rspc/Grants.js"
import * as Protocol from "../src/plugins/rspc/Protocol.js"
import * as Rspc from "../src/plugins/rspc/Rspc.js"
import * as Identity from "../src/transport/Identity.js"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import { type Duplex, type PeerId, Transport, TransportError } from "../src/transport/Transport.js"
import type { Figure } from "./report.js"
import { median } from "./report.js"

class Bench extends RpcGroup.make(
  Rpc.make("Echo", { payload: { n: Schema.Number, text: Schema.String }, success: Schema.Number }).pipe(Protocol.capability("bench.call"))
).middleware(Protocol.Guard) {}

const handlers = Bench.toLayer({ Echo: ({ n }) => Effect.succeed(n) })
const LIBRARY = "bench"
const ROUND_TRIPS = Number(process.env.WEFT_BENCH_RSPC_ROUND_TRIPS ?? 2000)
const CALLS = Number(process.env.WEFT_BENCH_RSPC_CALLS ?? 20_000)
const IN_FLIGHT = 32

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
}

/** A peer on loopback: its transport, host, ping plugin, and the grants of its rspc server. */
const peer = (identity: Identity.Service, members: ReadonlyArray<PeerId>) =>
  Effect.gen(function*() {
    const transport = yield* Libp2pTransport.make({ identity, listen: ["/ip4/127.0.0.1/tcp/0"] })
    const base = Layer.mergeAll(
      Layer.succeed(Transport, transport),
      Libraries.layerMemory([{ id: LIBRARY, name: "bench", members: [...members] }]),
      Grants.layerMemory()
    )
    const context = yield* Layer.build(Layer.provideMerge(Ping.layer, Layer.provideMerge(PluginHost.layer({ connectDiscovered: false }), base)))
    return { transport, context, host: Context.get(context, PluginHost.PluginHost) }
  })

/** A connected socket as a `Duplex` (as the control socket wraps one). */
const duplexOf = (socket: Socket): Duplex => {
  const where = { peer: "local" as PeerId, protocol: "/bench/socket" }
  return {
    protocol: where.protocol,
    remote: where.peer,
    source: Stream.async<Uint8Array, TransportError>((emit) => {
      socket.on("data", (chunk) => emit.single(new Uint8Array(chunk)))
      socket.on("end", () => emit.end())
      socket.on("error", (cause) => emit.fail(new TransportError({ reason: "Reset", ...where, detail: cause.message })))
    }),
    write: (chunk) => Effect.async<void, TransportError>((resume) => {
      socket.write(chunk, (cause) => resume(cause ? Effect.fail(new TransportError({ reason: "Reset", ...where, detail: cause.message })) : Effect.void))
    }),
    end: Effect.sync(() => socket.end()),
    reset: Effect.sync(() => socket.destroy())
  }
}

/** Calls/s of `CALLS` calls, `IN_FLIGHT` at once. */
const throughput = (call: (n: number) => Effect.Effect<number, unknown>) =>
  Effect.gen(function*() {
    // warm-up
    yield* Effect.forEach(Array.from({ length: 500 }, (_, i) => i), call, { concurrency: IN_FLIGHT, discard: true })
    const start = performance.now()
    yield* Effect.forEach(Array.from({ length: CALLS }, (_, i) => i), call, { concurrency: IN_FLIGHT, discard: true })
    return CALLS / ((performance.now() - start) / 1000)
  })

/** The Bench group over a Unix socket, served by the kit with a guard that lets everything through. */
const overSocket = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "weft-bench-rspc-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const path = join(dir, "s.sock")
  const server = yield* RpcPlugin.makeServer(Bench, { maxInFlight: IN_FLIGHT, maxFrameBytes: Protocol.DEFAULT_LIMITS.maxFrameBytes }).pipe(
    Effect.provide(handlers),
    Effect.provideService(Protocol.Guard, ({ next }) => next)
  )
  const runtime = yield* Effect.runtime<never>()
  const listener = createServer((socket) => {
    void Effect.runFork(Effect.scoped(Effect.ignore(server.serve(duplexOf(socket), { peer: "local" as PeerId, library: LIBRARY }))).pipe(Effect.provide(runtime.context)))
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => {
      listener.listen(path, () => resume(Effect.void))
    }),
    () => Effect.sync(() => listener.close())
  )
  const socket = yield* Effect.acquireRelease(
    Effect.async<Socket>((resume) => {
      const s = netConnect({ path }, () => resume(Effect.succeed(s)))
    }),
    (s) => Effect.sync(() => s.destroy())
  )
  return yield* RpcPlugin.makeClient(Bench, duplexOf(socket), { maxInFlight: IN_FLIGHT, maxFrameBytes: Protocol.DEFAULT_LIMITS.maxFrameBytes })
})

/** The figures. */
export const run = (): Effect.Effect<ReadonlyArray<Figure>, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const [alice, bob] = [yield* Identity.generate(), yield* Identity.generate()]
    const members = [alice.peerId, bob.peerId] as Array<PeerId>
    const server = yield* peer(bob, members)
    const caller = yield* peer(alice, members)
    yield* Rspc.serve({ group: Bench }).pipe(Effect.provide(handlers), Effect.provide(server.context))
    const grants = Context.get(server.context, Grants.Grants)
    yield* grants.grant(alice.peerId, LIBRARY, ["bench.call"])
    const [address] = yield* server.transport.addresses
    const bobId = yield* caller.host.connect(address!)
    yield* Effect.repeat(caller.host.available, { until: (peers) => peers.includes(bobId) })
    const client = yield* Rspc.client(Bench, { peer: bobId, library: LIBRARY }).pipe(Effect.provide(caller.context))

    // round trips: ping and rspc alternate in rounds, so load changes hit both alike
    const ping = Context.get(caller.context, Ping.Ping)
    yield* ping.ping(bobId, { count: 200 })
    yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (n) => client.Echo({ n, text: "warm" }), { discard: true })
    const pings: Array<number> = []
    const calls: Array<number> = []
    // CPU time (both peers: one process) of each, a steadier figure than wall time on a loaded machine
    let pingCpu = 0
    let callCpu = 0
    const cpu = () => {
      const used = process.cpuUsage()
      return used.user + used.system
    }
    const rounds = 10
    for (let round = 0; round < rounds; round++) {
      const beforePings = cpu()
      pings.push(...(yield* ping.ping(bobId, { count: ROUND_TRIPS / rounds })).rtts)
      const beforeCalls = cpu()
      pingCpu += beforeCalls - beforePings
      for (let i = 0; i < ROUND_TRIPS / rounds; i++) {
        const start = performance.now()
        yield* client.Echo({ n: i, text: "x" })
        calls.push(performance.now() - start)
      }
      callCpu += cpu() - beforeCalls
    }
    // the same group through the kit alone (no grants, no Guard) on the same connection: what of the
    // round trip is rspc's own, and what the kit's over libp2p
    const kitProtocol = { protocol: "/weft-bench/kit/1.0.0", permission: "library", group: Bench } as const
    yield* RpcPlugin.serve({ name: "kit", ...kitProtocol }).pipe(
      Effect.provide(handlers),
      Effect.provideService(Protocol.Guard, ({ next }) => next),
      Effect.provide(server.context)
    )
    const kit = yield* RpcPlugin.client(kitProtocol, bobId, LIBRARY).pipe(Effect.provide(caller.context))
    const kitCalls: Array<number> = []
    for (let i = 0; i < ROUND_TRIPS / 2; i++) {
      const start = performance.now()
      yield* kit.Echo({ n: i, text: "x" })
      kitCalls.push(performance.now() - start)
    }
    const rspcRate = yield* throughput((n) => client.Echo({ n, text: "small" }))
    const socketClient = yield* overSocket
    const socketRate = yield* throughput((n) => socketClient.Echo({ n, text: "small" }))
    // the kit's own round trip, without libp2p: what of rspc's is the RPC layer's
    const socketCalls: Array<number> = []
    for (let i = 0; i < ROUND_TRIPS / 2; i++) {
      const start = performance.now()
      yield* socketClient.Echo({ n: i, text: "x" })
      socketCalls.push(performance.now() - start)
    }
    return [
      {
        name: "rspc call round trip p50 (libp2p loopback)",
        unit: "ms",
        value: median(calls),
        baseline: median(pings),
        baselineName: "ping plugin round trip p50, same connection",
        goal: 0.5,
        lowerIsBetter: true,
        extra: {
          rspcCpuMicros: callCpu / calls.length,
          pingCpuMicros: pingCpu / pings.length,
          rspcP99: percentile(calls, 0.99),
          pingP99: percentile(pings, 0.99),
          socketP50: median(socketCalls),
          kitOverLibp2pP50: median(kitCalls),
          samples: calls.length
        }
      },
      {
        name: "rspc small calls, 32 in flight",
        unit: "calls/s",
        value: rspcRate,
        baseline: socketRate,
        baselineName: "same @effect/rpc group, same kit, plain Unix socket",
        goal: 0.5,
        extra: { calls: CALLS }
      }
    ]
  }))
