/**
 * A peer that completes a real Noise handshake and negotiates Yamux, then
 * breaks the framing below the plugin level: a Yamux frame with a bad
 * version or an unknown type, a data frame larger than the stream's window,
 * or bytes that are not a Noise message. The honest node (`Libp2pTransport`)
 * must close the connection, report why with a typed error on its
 * `Disconnected` event, run no handler, and keep serving other peers.
 *
 * The evil peer is a stock js-libp2p node whose Noise and Yamux factories are
 * wrapped (not patched) to hand the test the connection below them: the TCP
 * stream under Noise (to write raw bytes) and the decrypted stream under
 * Yamux (to write frames of our own, which Noise then encrypts as usual).
 *
 * Yamux frame header (12 bytes, big-endian): version (1, always 0), type (1:
 * 0 data, 1 window update, 2 ping, 3 go away), flags (2: SYN 1, ACK 2, FIN 4,
 * RST 8), stream id (4, odd from the dialer), length (4: a data frame's body
 * size, else the frame's value).
 */
import { noise } from "@chainsafe/libp2p-noise"
import { yamux } from "@chainsafe/libp2p-yamux"
import { describe, expect, it } from "@effect/vitest"
import type { ConnectionEncrypter, MessageStream, StreamMuxerFactory } from "@libp2p/interface"
import { tcp } from "@libp2p/tcp"
import { multiaddr } from "@multiformats/multiaddr"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { createLibp2p } from "libp2p"
import { randomBytes } from "node:crypto"
import { concat } from "uint8arrays"
import * as Identity from "./Identity.js"
import { MAX_CONNECTIONS_PER_PEER } from "./internal/libp2pTransport.js"
import * as Libp2pTransport from "./Libp2pTransport.js"
import * as ProtocolError from "./ProtocolError.js"
import type * as Transport from "./Transport.js"

const LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
const victimProtocol = "/weft-test/victim/1.0.0"
/** The honest node's stream window (and so the largest data frame it accepts). */
const WINDOW = Libp2pTransport.DEFAULT_STREAM_WINDOW_BYTES
/** A stream id the evil node's own Yamux never uses (its streams count up from 1). */
const STREAM_ID = 1001
const FrameType = { Data: 0, WindowUpdate: 1, Ping: 2, GoAway: 3 } as const
const Flag = { SYN: 1, ACK: 2, FIN: 4, RST: 8 } as const

const within = (what: string, duration: Duration.DurationInput) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration, onTimeout: () => new Error(`timed out: ${what}`) })

const eventually = (what: string, condition: Effect.Effect<boolean>, duration: Duration.DurationInput = "5 seconds") =>
  Effect.repeat(condition, { until: (ok) => ok, schedule: Schedule.spaced("10 millis") }).pipe(within(what, duration))

/** A Yamux frame header. */
const header = (frame: { readonly version?: number; readonly type: number; readonly flags: number; readonly streamId: number; readonly length: number }) => {
  const bytes = new Uint8Array(12)
  const view = new DataView(bytes.buffer)
  view.setUint8(0, frame.version ?? 0)
  view.setUint8(1, frame.type)
  view.setUint16(2, frame.flags)
  view.setUint32(4, frame.streamId)
  view.setUint32(8, frame.length)
  return bytes
}

/** One multistream-select message: varint length (short lines only), the line, a newline. */
const line = (text: string) => {
  const body = new TextEncoder().encode(`${text}\n`)
  expect(body.length).toBeLessThan(128)
  return concat([Uint8Array.of(body.length), body])
}

/**
 * A data frame opening a stream (SYN) whose body negotiates the victim
 * protocol as a dialer would, followed by `filler` bytes for the handler:
 * valid in every respect but, perhaps, its size.
 */
const openingFrame = (bodyBytes: number) => {
  const negotiation = concat([line("/multistream/1.0.0"), line(victimProtocol)])
  expect(bodyBytes).toBeGreaterThanOrEqual(negotiation.length)
  const body = new Uint8Array(bodyBytes)
  body.set(negotiation)
  return concat([header({ type: FrameType.Data, flags: Flag.SYN, streamId: STREAM_ID, length: bodyBytes }), body])
}

/** The connections under an evil node's Noise and Yamux, as they are made. */
interface Taps {
  /** The TCP stream under Noise: bytes written here bypass the encryption. */
  raw?: MessageStream
  /** The decrypted stream under Yamux: bytes written here are encrypted, but not framed by Yamux. */
  secured?: MessageStream
}

const tapNoise = (taps: Taps) => (components: Parameters<ReturnType<typeof noise>>[0]): ConnectionEncrypter => {
  const inner = noise()(components)
  return {
    protocol: inner.protocol,
    secureInbound: (connection, options) => inner.secureInbound(connection, options),
    secureOutbound: (connection, options) => {
      taps.raw = connection
      return inner.secureOutbound(connection, options)
    }
  }
}

const tapYamux = (taps: Taps) => (): StreamMuxerFactory => {
  const inner = yamux()()
  return {
    protocol: inner.protocol,
    createStreamMuxer: (connection) => {
      taps.secured = connection
      return inner.createStreamMuxer(connection)
    }
  }
}

/** A js-libp2p node with tapped Noise and Yamux, and nothing else (no identify, no listener). */
const evilNode = Effect.gen(function*() {
  const taps: Taps = {}
  const node = yield* Effect.acquireRelease(
    Effect.promise(() =>
      createLibp2p({
        transports: [tcp()],
        connectionEncrypters: [tapNoise(taps)],
        streamMuxers: [tapYamux(taps)]
      })
    ),
    (node) => Effect.promise(async () => node.stop())
  )
  return { node, taps, peerId: node.peerId.toString() }
})

/**
 * An honest transport with a handler for the victim protocol that records
 * who reached it and what it read, and a record of its transport events.
 */
const honestNode = Effect.gen(function*() {
  const transport = yield* Libp2pTransport.make({ identity: yield* Identity.generate(), listen: LOOPBACK })
  const reached = yield* Ref.make<ReadonlyArray<{ readonly peer: string; readonly bytes: number }>>([])
  // how each handler's source ended: "end", or the failure's reason
  const ended = yield* Ref.make<ReadonlyArray<string>>([])
  yield* transport.handle(victimProtocol, (stream) =>
    Effect.gen(function*() {
      yield* Ref.update(reached, (all) => [...all, { peer: stream.remote, bytes: 0 }])
      const outcome = yield* stream.source.pipe(
        Stream.runForEach((chunk) =>
          Ref.update(reached, (all) => all.map((r, i) => (i === all.length - 1 ? { ...r, bytes: r.bytes + chunk.length } : r)))
        ),
        Effect.either
      )
      yield* Ref.update(ended, (all) => [...all, outcome._tag === "Right" ? "end" : outcome.left.reason])
    }))
  const events = yield* Ref.make<ReadonlyArray<Transport.TransportEvent>>([])
  yield* Effect.forkScoped(Stream.runForEach(transport.events, (event) => Ref.update(events, (all) => [...all, event])))
  // the subscription starts with the fiber
  yield* Effect.sleep(Duration.millis(20))
  const [address] = yield* transport.addresses
  return { transport, reached, ended, events, address: address! }
})

type Honest = Effect.Effect.Success<typeof honestNode>
type Evil = Effect.Effect.Success<typeof evilNode>

/** Open TCP sockets in this process (both ends of a loopback connection count). */
const tcpSockets = () => process.getActiveResourcesInfo().filter((kind) => kind === "TCPSocketWrap").length

/** An evil node connected to `honest`, both sides seeing the connection; `socketsBefore` counts sockets before it. */
const connectedEvil = (honest: Honest) =>
  Effect.gen(function*() {
    const socketsBefore = tcpSockets()
    const evil = yield* evilNode
    const connection = yield* Effect.promise(() => evil.node.dial(multiaddr(honest.address)))
    expect(connection.remotePeer.toString()).toBe(honest.transport.peerId)
    yield* eventually("the honest node seeing the evil one", Effect.map(honest.transport.connections, (peers) => peers.includes(evil.peerId as Transport.PeerId)))
    expect(evil.taps.raw).toBeDefined()
    expect(evil.taps.secured).toBeDefined()
    return { evil, connection, socketsBefore }
  })

/** After a violation: the connection gone on both sides, reported, no handler run, and a good peer still served. */
const expectDisconnectedAndStillServing = (
  honest: Honest,
  evil: Evil,
  connection: { readonly status: string },
  socketsBefore: number,
  reason: ProtocolError.ProtocolError["reason"]
) =>
  Effect.gen(function*() {
    const started = performance.now()
    yield* eventually("the honest node dropping the evil one", Effect.map(honest.transport.connections, (peers) => !peers.includes(evil.peerId as Transport.PeerId)))
    yield* eventually(
      "a Disconnected event for the evil peer",
      Effect.map(honest.events, (all) => all.some((e) => e._tag === "Disconnected" && e.peer === evil.peerId))
    )
    const elapsed = performance.now() - started
    // with the typed error saying why, a violation by its type
    const disconnected = (yield* Ref.get(honest.events)).find((e) => e._tag === "Disconnected" && e.peer === evil.peerId)
    expect(disconnected).toMatchObject({ error: { _tag: "ProtocolError", reason, peer: evil.peerId } })
    expect(ProtocolError.isViolation(disconnected?._tag === "Disconnected" && disconnected.error)).toBe(true)
    // "aborted": the honest side's GoAway, then its reset of the socket
    yield* eventually("the evil side seeing its connection end", Effect.sync(() => connection.status === "closed" || connection.status === "aborted"))
    // no socket left behind: the evil peer's and the honest node's ends of it are both gone
    yield* eventually("no socket left", Effect.sync(() => tcpSockets() <= socketsBefore))
    expect(yield* Ref.get(honest.reached)).toEqual([])

    // a good peer still gets through
    const good = yield* Libp2pTransport.make({ identity: yield* Identity.generate(), listen: [] })
    expect(yield* good.connect(honest.address)).toBe(honest.transport.peerId)
    const stream = yield* good.open(honest.transport.peerId, victimProtocol)
    yield* stream.write(new Uint8Array(100))
    yield* stream.end
    yield* eventually("the good peer's bytes in the handler", Effect.map(honest.reached, (all) => all.some((r) => r.peer === good.peerId && r.bytes === 100)))
    expect((yield* Ref.get(honest.reached)).map((r) => r.peer)).toEqual([good.peerId])
    return elapsed
  })

describe("Libp2pTransport: a peer that breaks the framing below the plugins", () => {
  it.scopedLive("control: the crafted stream-opening frame, at a legal size, does reach the handler", () =>
    Effect.gen(function*() {
      const honest = yield* honestNode
      const { evil } = yield* connectedEvil(honest)
      evil.taps.secured!.send(openingFrame(1024))
      yield* eventually("the handler reached by the evil peer", Effect.map(honest.reached, (all) => all.some((r) => r.peer === evil.peerId && r.bytes > 0)))
      expect(yield* honest.transport.connections).toContain(evil.peerId)
    }))

  it.scopedLive("a request whose bytes and FIN come in one write with the stream's opening (not a violation): the handler's source ends after them", () =>
    // what a dialer that negotiates lazily (go- and rust-libp2p can) sends for a request it then closes:
    // libp2p reads the bytes ahead while it negotiates, and says 'end' before delivering them
    Effect.gen(function*() {
      const honest = yield* honestNode
      const { evil } = yield* connectedEvil(honest)
      evil.taps.secured!.send(concat([
        openingFrame(1024),
        header({ type: FrameType.WindowUpdate, flags: Flag.FIN, streamId: STREAM_ID, length: 0 })
      ]))
      yield* eventually("the handler's source ending", Effect.map(Ref.get(honest.ended), (all) => all.length > 0))
      expect(yield* Ref.get(honest.ended)).toEqual(["end"])
      expect((yield* Ref.get(honest.reached)).map((r) => r.bytes)[0]).toBeGreaterThan(0)
    }))

  const malformed: ReadonlyArray<readonly [string, () => Uint8Array]> = [
    ["a frame with version 1", () => concat([header({ version: 1, type: FrameType.Data, flags: Flag.SYN, streamId: STREAM_ID, length: 0 })])],
    ["a frame of unknown type 9", () => header({ type: 9, flags: Flag.SYN, streamId: STREAM_ID, length: 0 })],
    ["a data frame on stream 0", () => concat([header({ type: FrameType.Data, flags: 0, streamId: 0, length: 4 }), new Uint8Array(4)])],
    ["a ping answer nobody asked for", () => header({ type: FrameType.Ping, flags: Flag.ACK, streamId: 0, length: 12345 })],
    ["a stream opened with the listener's (even) ids", () => header({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1000, length: 0 })]
  ]
  for (const [name, frame] of malformed) {
    it.scopedLive(`${name}: disconnected, no handler run, others still served`, () =>
      Effect.gen(function*() {
        const honest = yield* honestNode
        const { connection, evil, socketsBefore } = yield* connectedEvil(honest)
        evil.taps.secured!.send(frame())
        const elapsed = yield* expectDisconnectedAndStillServing(honest, evil, connection, socketsBefore, "Malformed")
        expect(elapsed).toBeLessThan(2000)
      }))
  }

  it.scopedLive(`a data frame one byte over the stream window (${WINDOW + 1} bytes) opening the victim protocol: disconnected, no handler run`, () =>
    Effect.gen(function*() {
      const honest = yield* honestNode
      const { connection, evil, socketsBefore } = yield* connectedEvil(honest)
      evil.taps.secured!.send(openingFrame(WINDOW + 1))
      yield* expectDisconnectedAndStillServing(honest, evil, connection, socketsBefore, "Oversize")
    }))

  // yamux alone would buffer the body a data header announces before checking it against the window
  // (up to 4 GiB per connection); the transport's guard reads headers as they arrive (internal/yamuxGuard.ts)
  it.scopedLive("a data frame header claiming 4 GiB: disconnected at the header, before its body is buffered", () =>
    Effect.gen(function*() {
      const honest = yield* honestNode
      const { connection, evil, socketsBefore } = yield* connectedEvil(honest)
      evil.taps.secured!.send(header({ type: FrameType.Data, flags: Flag.SYN, streamId: STREAM_ID, length: 0xffffffff }))
      // twice the largest frame the honest node accepts: no legal frame can still be arriving
      for (let sent = 0; sent < 2 * WINDOW; sent += 64 * 1024) evil.taps.secured!.send(new Uint8Array(64 * 1024))
      const elapsed = yield* expectDisconnectedAndStillServing(honest, evil, connection, socketsBefore, "Oversize")
      expect(elapsed).toBeLessThan(2000)
    }))

  it.scopedLive("bytes that are not a Noise message after the handshake: disconnected, no handler run", () =>
    Effect.gen(function*() {
      const honest = yield* honestNode
      const { connection, evil, socketsBefore } = yield* connectedEvil(honest)
      // a well-formed length prefix, then 64 bytes that fail authentication
      evil.taps.raw!.send(concat([Uint8Array.of(0, 64), randomBytes(64)]))
      const elapsed = yield* expectDisconnectedAndStillServing(honest, evil, connection, socketsBefore, "Malformed")
      expect(elapsed).toBeLessThan(2000)
    }))
})

describe("Libp2pTransport: a peer with several connections", () => {
  it.scopedLive("gets no more inbound streams of a protocol at once than maxInboundStreams, over all its connections", () =>
    Effect.gen(function*() {
      const honest = yield* Libp2pTransport.make({ identity: yield* Identity.generate(), listen: LOOPBACK })
      const holdProtocol = "/weft-test/hold/1.0.0"
      const running = yield* Ref.make(0)
      const peak = yield* Ref.make(0)
      yield* honest.handle(holdProtocol, () =>
        Effect.acquireRelease(
          Effect.flatMap(Ref.updateAndGet(running, (n) => n + 1), (n) => Ref.update(peak, (p) => Math.max(p, n))),
          () => Ref.update(running, (n) => n - 1)
        ).pipe(Effect.zipRight(Effect.never)), { maxInboundStreams: 2 })
      const evil = yield* evilNode
      const [address] = yield* honest.addresses
      // as many connections as a peer may hold (libp2p counts its limit per connection), each opening the protocol twice
      const opened = yield* Effect.promise(async () => {
        let accepted = 0
        for (let i = 0; i < MAX_CONNECTIONS_PER_PEER; i++) {
          const connection = await evil.node.dial(multiaddr(address!), { force: true })
          for (let j = 0; j < 2; j++) {
            const stream = await connection.newStream(holdProtocol).catch(() => undefined)
            if (stream !== undefined) accepted++
          }
        }
        return accepted
      })
      expect(opened).toBeGreaterThan(2)
      yield* eventually("the honest side settling", Effect.map(Ref.get(running), (n) => n === 2))
      yield* Effect.sleep(Duration.millis(200))
      expect(yield* Ref.get(peak)).toBe(2)
      expect(yield* Ref.get(running)).toBe(2)
    }))

  it.scopedLive(`holds at most ${MAX_CONNECTIONS_PER_PEER} connections with this node; others are served meanwhile`, () =>
    Effect.gen(function*() {
      const honest = yield* honestNode
      const evil = yield* evilNode
      // one after another (libp2p merges dials to one peer made at the same time)
      yield* Effect.promise(async () => {
        for (let i = 0; i < 8; i++) await evil.node.dial(multiaddr(honest.address), { force: true }).catch(() => undefined)
      })
      yield* Effect.sleep(Duration.millis(300))
      const open = evil.node.getConnections().filter((connection) => connection.status === "open")
      expect(open.length).toBeGreaterThan(0)
      expect(open.length).toBeLessThanOrEqual(MAX_CONNECTIONS_PER_PEER)
      // the ones over the bound were closed as their encryption completed; another peer still gets in
      // (once the per-host rate of new connections allows: it is loopback for both here)
      yield* Effect.sleep(Duration.seconds(1.1))
      const good = yield* Libp2pTransport.make({ identity: yield* Identity.generate(), listen: [] })
      expect(yield* good.connect(honest.address)).toBe(honest.transport.peerId)
    }))
})

