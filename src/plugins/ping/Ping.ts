/**
 * The ping plugin: the reference plugin, meant to be read and copied.
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
 * bytes, an echo that differs is an error, every ping has a timeout.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import type { Duplex, PeerId, TransportError } from "../../transport/Transport.js"
import * as Plugin from "../Plugin.js"
import { type PermissionError, PluginHost } from "../PluginHost.js"
import * as Protocol from "./Protocol.js"

/** A ping failed. */
export class PingError extends Schema.TaggedError<PingError>("weft/PingError")("PingError", {
  reason: Schema.Literal("Timeout", "WrongEcho", "Closed"),
  peer: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `ping ${this.reason} (${this.peer}): ${this.detail}`
  }
}

/** Round-trip times of a series of pings, in milliseconds (high-resolution clock). */
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
  /** Most time one ping may take (default 10 s). */
  readonly timeout?: Duration.DurationInput
}

/** Sends pings and measures their round trips. */
export class Ping extends Context.Tag("weft/plugins/Ping")<Ping, {
  readonly ping: (peer: PeerId, options?: Options) => Effect.Effect<Result, PingError | TransportError | PermissionError>
}>() {}

/** Reads exactly `n` bytes, keeping what follows for the next read. */
const reader = (source: Stream.Stream<Uint8Array, TransportError>) =>
  Effect.map(Stream.toPull(source), (pull) => {
    let pending = new Uint8Array(0)
    return (n: number) =>
      Effect.gen(function*() {
        while (pending.length < n) {
          const chunk = yield* Effect.catchAll(pull, (e) => (Option.isNone(e) ? Effect.succeed(undefined) : Effect.fail(e.value)))
          if (chunk === undefined) return Option.none<Uint8Array>()
          for (const bytes of chunk) {
            const joined = new Uint8Array(pending.length + bytes.length)
            joined.set(pending)
            joined.set(bytes, pending.length)
            pending = joined
          }
        }
        const out = pending.slice(0, n)
        pending = pending.subarray(n)
        return Option.some(out)
      })
  })

/** Answers pings: echoes each 32 bytes until the dialer ends the stream. */
export const handle = (stream: Duplex) =>
  Effect.gen(function*() {
    const read = yield* reader(stream.source)
    while (true) {
      const payload = yield* read(Protocol.PAYLOAD_BYTES)
      if (Option.isNone(payload)) return yield* stream.end
      yield* stream.write(payload.value)
    }
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

/** Pings `peer` over the host in context: `count` pings on one stream. */
export const ping = (peer: PeerId, options: Options = {}) =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const timeout = options.timeout ?? Duration.seconds(10)
    return yield* Effect.scoped(Effect.gen(function*() {
      const stream = yield* host.open(peer, Protocol.protocol)
      const read = yield* reader(stream.source)
      const rtts: Array<number> = []
      for (let i = 0; i < Math.max(1, options.count ?? 1); i++) {
        const payload = new Uint8Array(randomBytes(Protocol.PAYLOAD_BYTES))
        const start = performance.now()
        yield* stream.write(payload)
        const echo = yield* read(Protocol.PAYLOAD_BYTES).pipe(
          Effect.timeoutFail({ duration: timeout, onTimeout: () => new PingError({ reason: "Timeout", peer, detail: `no echo within ${Duration.format(timeout)}` }) })
        )
        const elapsed = performance.now() - start
        if (Option.isNone(echo)) return yield* new PingError({ reason: "Closed", peer, detail: "the peer ended the stream before echoing" })
        if (!echo.value.every((byte, j) => byte === payload[j])) {
          return yield* new PingError({ reason: "WrongEcho", peer, detail: "the echo differs from the bytes sent" })
        }
        rtts.push(elapsed)
      }
      yield* stream.end
      return { peer, rtts, min: Math.min(...rtts), median: median(rtts), max: Math.max(...rtts) }
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
