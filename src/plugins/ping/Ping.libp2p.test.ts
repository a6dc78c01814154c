/**
 * Interop: our ping plugin over our libp2p transport against a stock js-libp2p
 * node (TCP, Noise, Yamux, identify, and @libp2p/ping's own service), both
 * ways, on loopback.
 */
import { noise } from "@chainsafe/libp2p-noise"
import { yamux } from "@chainsafe/libp2p-yamux"
import { identify } from "@libp2p/identify"
import { peerIdFromString } from "@libp2p/peer-id"
import { ping } from "@libp2p/ping"
import { tcp } from "@libp2p/tcp"
import { multiaddr } from "@multiformats/multiaddr"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { createLibp2p } from "libp2p"
import * as Identity from "../../transport/Identity.js"
import * as Libp2pTransport from "../../transport/Libp2pTransport.js"
import * as Transport from "../../transport/Transport.js"
import * as Libraries from "../../library/Libraries.js"
import * as PluginHost from "../PluginHost.js"
import * as Ping from "./Ping.js"
import * as Protocol from "./Protocol.js"

const LOOPBACK = "/ip4/127.0.0.1/tcp/0"

/** A stock js-libp2p node with libp2p's own ping service, stopped with the scope. */
const stockNode = Effect.acquireRelease(
  Effect.promise(() =>
    createLibp2p({
      addresses: { listen: [LOOPBACK] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping() }
    })
  ),
  (node) => Effect.promise(async () => node.stop())
)

/** Our peer: the libp2p transport, a plugin host, and (unless `withPing` is false) the ping plugin. */
const ourPeer = (withPing = true) =>
  Effect.gen(function*() {
    const transport = yield* Libp2pTransport.make({ identity: yield* Identity.generate(), listen: [LOOPBACK] })
    const host = Layer.provide(
      PluginHost.layer(),
      Layer.merge(Layer.succeed(Transport.Transport, transport), Libraries.layerMemory())
    )
    const [address] = yield* transport.addresses
    if (!withPing) {
      return { transport, address: address!, host: Context.get(yield* Layer.build(host), PluginHost.PluginHost), client: undefined }
    }
    const context = yield* Layer.build(Layer.provideMerge(Ping.layer, host))
    return { transport, address: address!, host: Context.get(context, PluginHost.PluginHost), client: Context.get(context, Ping.Ping) }
  })

/** The stock node pings `target` (an address, or the id of a connected peer); its round trip in ms (libp2p measures with `Date.now()`). */
const stockPing = (node: Effect.Effect.Success<typeof stockNode>, target: string) =>
  Effect.tryPromise({
    try: (signal) => node.services.ping.ping(target.startsWith("/") ? multiaddr(target) : peerIdFromString(target), { signal }),
    catch: (cause) => cause
  })

describe("Ping interop with stock js-libp2p", () => {
  it.scopedLive("our ping plugin pings a stock node (answered by @libp2p/ping's service)", () =>
    Effect.gen(function*() {
      const stock = yield* stockNode
      const ours = yield* ourPeer()
      const stockId = yield* ours.host.connect(stock.getMultiaddrs()[0]!.toString())
      expect(stockId).toBe(stock.peerId.toString())
      const client = ours.client!
      const result = yield* client.ping(stockId, { count: 50, timeout: "5 seconds" })
      expect(result.rtts).toHaveLength(50)
      expect(result.min).toBeGreaterThan(0)
      expect(result.min).toBeLessThanOrEqual(result.median)
      expect(result.median).toBeLessThanOrEqual(result.max)
      // loopback: well under a millisecond or two once warm, never near the timeout
      expect(result.median).toBeLessThan(50)
      expect(result.max).toBeLessThan(1000)
      // a second series opens a new stream: the stock handler finished the first one
      const again = yield* client.ping(stockId, { count: 3, timeout: "5 seconds" })
      expect(again.rtts).toHaveLength(3)
      console.log(`weft → stock js-libp2p: ${result.rtts.length} pings on one stream, min ${result.min.toFixed(3)} ms, median ${result.median.toFixed(3)} ms, max ${result.max.toFixed(3)} ms`)
    }))

  it.scopedLive("a stock node pings us (answered by our ping plugin), stream after stream", () =>
    Effect.gen(function*() {
      const stock = yield* stockNode
      const ours = yield* ourPeer()
      const rtts: Array<number> = []
      // more than the two inbound ping streams a peer may hold at once: each must be finished and freed
      for (let i = 0; i < 6; i++) rtts.push(yield* stockPing(stock, ours.address))
      for (const rtt of rtts) {
        expect(rtt).toBeGreaterThanOrEqual(0)
        expect(rtt).toBeLessThan(1000)
      }
      expect(stock.getConnections().map((c) => c.remotePeer.toString())).toEqual([ours.transport.peerId])
      console.log(`stock js-libp2p → weft: ${rtts.join(", ")} ms (Date.now() resolution)`)
    }))

  it.scopedLive("both ways at once on one connection", () =>
    Effect.gen(function*() {
      const stock = yield* stockNode
      const ours = yield* ourPeer()
      const stockId = yield* ours.host.connect(stock.getMultiaddrs()[0]!.toString())
      const client = ours.client!
      // the stock node has the connection once its side of the upgrade completes
      yield* Effect.repeat(Effect.sync(() => stock.getConnections().length), { until: (n) => n > 0, schedule: Schedule.spaced("5 millis") }).pipe(
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the stock node never saw our connection") })
      )
      const [mine, theirs] = yield* Effect.all([
        client.ping(stockId, { count: 20, timeout: "5 seconds" }),
        // by peer id: the stock node uses the connection we opened
        Effect.forEach([1, 2, 3, 4], () => stockPing(stock, ours.transport.peerId))
      ], { concurrency: "unbounded" })
      expect(mine.rtts).toHaveLength(20)
      expect(theirs).toHaveLength(4)
      expect(stock.getConnections()).toHaveLength(1)
    }))

  it.scopedLive("without the ping plugin our node does not speak /ipfs/ping/1.0.0 (the transport has no ping of its own)", () =>
    Effect.gen(function*() {
      const stock = yield* stockNode
      const ours = yield* ourPeer(false)
      const outcome = yield* Effect.either(stockPing(stock, ours.address))
      expect(Either.isLeft(outcome)).toBe(true)
      expect((outcome as Either.Left<unknown, number>).left).toMatchObject({ name: "UnsupportedProtocolError" })
      // and the connection survived the refusal
      expect(stock.getConnections().map((c) => c.remotePeer.toString())).toEqual([ours.transport.peerId])
      expect(Protocol.PROTOCOL_ID).toBe("/ipfs/ping/1.0.0")
    }))
})

describe("Ping behind a bulk transfer", () => {
  const SINK = "/weft-test/sink/1.0.0"

  it.scopedLive("pings on a connection are answered while a bulk stream of it runs, and the transfer arrives whole", () =>
    Effect.gen(function*() {
      const writer = yield* ourPeer()
      const reader = yield* ourPeer()
      const received = yield* Ref.make(0)
      yield* reader.transport.handle(SINK, (stream) =>
        Stream.runForEach(stream.source, (chunk) => Ref.update(received, (n) => n + chunk.length)))
      const peer = yield* writer.transport.connect(reader.address)
      const total = 64 * 1024 * 1024
      const chunk = new Uint8Array(512 * 1024).fill(7)
      const bulk = yield* writer.transport.open(peer, SINK)
      const sending = yield* Effect.forkScoped(Effect.gen(function*() {
        for (let sent = 0; sent < total; sent += chunk.length) yield* bulk.write(chunk)
        yield* bulk.end
      }))
      // the transfer is under way: its first window has arrived
      yield* Effect.repeat(Ref.get(received), { until: (n) => n >= 1024 * 1024, schedule: Schedule.spaced("1 millis") })
      const result = yield* writer.client!.ping(peer, { count: 20, timeout: "10 seconds" })
      const receivedByThen = yield* Ref.get(received)
      expect(result.rtts).toHaveLength(20)
      expect(receivedByThen, "the pings were answered before the transfer ended").toBeLessThan(total)
      yield* Fiber.join(sending)
      yield* Effect.repeat(Ref.get(received), { until: (n) => n >= total, schedule: Schedule.spaced("5 millis") }).pipe(
        Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error("the transfer never completed") })
      )
      expect(yield* Ref.get(received)).toBe(total)
      // the connection the pings used is the transfer's: one connection between the two
      expect(yield* writer.transport.connections).toEqual([peer])
    }))
})
