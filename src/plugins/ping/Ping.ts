/**
 * The ping plugin: the plugin on a raw stream, short on purpose (a plugin
 * of typed procedures is better written on `RpcPlugin`, as
 * `examples/greet.ts` is).
 *
 * A plugin is three things, all here:
 * 1. its protocol (`Protocol.ts`: id, permission, wire format in the doc comment);
 * 2. a handler for inbound streams, registered on the host with `Plugin.make`
 *    (the host routes by protocol id, checks the permission, and gives each
 *    stream its own scope, closed when the connection drops);
 * 3. a typed client, here the `Ping` service, which opens streams through the
 *    host and turns every failure into a typed error.
 *
 * Everything untrusted is bounded: the handler holds at most one ping's 32
 * bytes and resets a stream idle for `IDLE_TIMEOUT`, an echo that differs is
 * an error, every ping has a timeout.
 *
 * Interop: the protocol is libp2p's own, and the libp2p transport does not run
 * libp2p's ping service, so this plugin answers any libp2p peer (and libp2p's
 * connection monitor), and pings them. A stock js-libp2p listener gives a
 * ping stream at most 10 s in all, so a longer series to such a peer is reset.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { randomBytes } from "node:crypto"
import * as Framing from "../../transport/Framing.js"
import type { Duplex, PeerId, TransportError } from "../../transport/Transport.js"
import * as Plugin from "../Plugin.js"
import { type PermissionError, PluginHost } from "../PluginHost.js"
import * as Control from "./Control.js"
import * as Protocol from "./Protocol.js"

/** A ping failed. */
export const PingError = Protocol.PingError
export type PingError = Protocol.PingError

/** Round-trip times of a series of pings, in milliseconds (on the `Clock`: high-resolution when live). */
export interface Result {
  readonly peer: PeerId
  readonly rtts: ReadonlyArray<number>
  readonly min: number
  readonly median: number
  readonly max: number
}

/** Options of a series of pings. */
export interface Options {
  /** Pings on the one stream (default 1). */
  readonly count?: number
  /** Most time one ping may take, from its write to its echo (default 10 s). */
  readonly timeout?: Duration.DurationInput
}

/** Sends pings and measures their round trips. */
export class Ping extends Context.Tag("weft/plugins/Ping")<Ping, {
  readonly ping: (peer: PeerId, options?: Options) => Effect.Effect<Result, PingError | TransportError | PermissionError>
}>() {}

/**
 * A deadline on the `Clock` for a loop of quick steps: one timer for the
 * loop, re-armed by each step, instead of a timer per step (which would cost
 * about as much as a ping's whole round trip on loopback). `passed` completes
 * once the clock reaches an armed deadline; `disarm` puts it off indefinitely.
 */
const deadline = (clock: Clock.Clock, millis: number) => {
  let at = Number.POSITIVE_INFINITY
  return {
    arm: () => {
      at = clock.unsafeCurrentTimeMillis() + millis
    },
    disarm: () => {
      at = Number.POSITIVE_INFINITY
    },
    // disarmed, it checks again every `millis`: a deadline armed meanwhile is at least that far off
    passed: Effect.gen(function*() {
      while (true) {
        const left = at - clock.unsafeCurrentTimeMillis()
        if (left <= 0) return
        yield* Effect.sleep(Duration.millis(Math.min(left, millis)))
      }
    })
  }
}

/** How long the handler waits for the next ping before it resets the stream (libp2p's ping timeout). */
export const IDLE_TIMEOUT: Duration.Duration = Duration.seconds(10)

/**
 * Answers pings: echoes each 32 bytes until the dialer ends the stream, or
 * resets it once nothing was read from the dialer for `IDLE_TIMEOUT` (it
 * went silent, or stopped reading its echoes).
 *
 * Any chunking is accepted. Each ping is read whole, then echoed; the next
 * is read only once the echo is written, so a dialer that does not read its
 * echoes stops being read too, and what the handler holds is at most one
 * ping beyond the chunk the transport delivered.
 */
export const handle = (stream: Duplex): Effect.Effect<void, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const reader = yield* Framing.reader(stream.source, { peer: stream.remote, protocol: stream.protocol })
    const idle = deadline(yield* Effect.clock, Duration.toMillis(IDLE_TIMEOUT))
    idle.arm()
    const echo = Effect.gen(function*() {
      while (true) {
        const ping = yield* reader.bytes(Protocol.PAYLOAD_BYTES)
        if (Option.isNone(ping)) return yield* stream.end
        idle.arm()
        yield* stream.write(ping.value)
      }
    })
    yield* Effect.raceFirst(echo, Effect.zipRight(idle.passed, stream.reset))
  })

/** The plugin: any authenticated peer may ping; two concurrent ping streams per peer, as libp2p allows. */
export const plugin = Plugin.make({
  name: "ping",
  ...Protocol.protocol,
  maxInboundStreams: 2,
  handle
})

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * Pings `peer` over the host in context: `count` pings on one stream, each
 * timed on the `Clock` (so under `TestClock` a simulated network's latency is
 * what is measured) and failing with `Timeout` if its echo is not back
 * `timeout` after its write began.
 */
export const ping = (peer: PeerId, options: Options = {}) =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const timeout = Duration.decode(options.timeout ?? Duration.seconds(10))
    const count = Math.max(1, Math.floor(options.count ?? 1))
    const clock = yield* Effect.clock
    return yield* Effect.scoped(Effect.gen(function*() {
      const stream = yield* host.open(peer, Protocol.protocol)
      const reader = yield* Framing.reader(stream.source, { peer, protocol: stream.protocol })
      const echoDue = deadline(clock, Duration.toMillis(timeout))
      const timedOut = Effect.zipRight(
        echoDue.passed,
        Effect.fail(new PingError({ reason: "Timeout", peer, detail: `no echo within ${Duration.format(timeout)}` }))
      )
      const pings = Effect.gen(function*() {
        const rtts: Array<number> = []
        for (let i = 0; i < count; i++) {
          const payload = new Uint8Array(randomBytes(Protocol.PAYLOAD_BYTES))
          const start = clock.unsafeCurrentTimeNanos()
          echoDue.arm()
          yield* stream.write(payload)
          const echo = yield* reader.bytes(Protocol.PAYLOAD_BYTES)
          const elapsed = Number(clock.unsafeCurrentTimeNanos() - start) / 1e6
          echoDue.disarm()
          if (Option.isNone(echo)) return yield* new PingError({ reason: "Closed", peer, detail: "the peer ended the stream before echoing" })
          if (!echo.value.every((byte, j) => byte === payload[j])) {
            return yield* new PingError({ reason: "WrongEcho", peer, detail: "the echo differs from the bytes sent" })
          }
          rtts.push(elapsed)
        }
        return rtts
      })
      const rtts = yield* Effect.raceFirst(pings, timedOut)
      yield* stream.end
      return { peer, rtts, min: Math.min(...rtts), median: median(rtts), max: Math.max(...rtts) } satisfies Result
    }))
  })

/** Registers the ping plugin on the host and provides the client. */
export const layer: Layer.Layer<Ping, TransportError, PluginHost> = Layer.scoped(
  Ping,
  Effect.gen(function*() {
    const host = yield* PluginHost
    yield* host.register(plugin)
    return { ping: (peer, options) => ping(peer, options).pipe(Effect.provideService(PluginHost, host)) }
  })
)

/** Serves ping's control procedures (`Control`) with the `Ping` client in context. */
export const controlHandlers = Control.Control.toLayer(Effect.map(Ping, (client) =>
  Control.Control.of({
    Ping: ({ count, peer }) => client.ping(peer, { count })
  })))
