/**
 * An in-process transport for tests and simulations: a `MemoryNetwork` hub
 * that hands each peer a `Transport` service, with faults injected from a
 * seed.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const network = yield* MemoryTransport.make({ seed: 42, latency: { minMillis: 5, maxMillis: 50 } })
 *   const alice = yield* network.transport("alice")
 *   const bob = yield* network.transport("bob")
 *   yield* bob.handle("/weft/echo/1.0.0", (stream) => Stream.runForEach(stream.source, stream.write))
 *   const stream = yield* alice.open(bob.peerId, "/weft/echo/1.0.0")
 *   yield* network.partition(["alice"], ["bob"]) // the stream resets, connects fail until `heal`
 * })
 * ```
 *
 * Model: a peer is reachable at `memory://<peerId>` while the scope it was
 * registered in is open. Two peers share at most one connection; each
 * stream is two one-way lanes. A lane holds at most `windowBytes` of written
 * but unread bytes (a writer waits beyond that), and carries them in order:
 * each chunk, cut to at most `windowBytes`, is due `latency` after it was
 * written, but never before the chunk written ahead of it. Connecting and
 * opening are instantaneous; only stream data is delayed.
 *
 * Faults: `partition`, `heal` and `disconnect` on the network; a peer whose
 * scope closes has crashed (its connections drop and its handlers are
 * interrupted); and each delivered chunk resets its stream with probability
 * `resetProbability`.
 *
 * Reproducibility: every random draw (latency, injected reset) comes from a
 * generator seeded with the network's seed, the stream's number and the
 * lane's direction, and is drawn when the chunk is written, so a lane's fate
 * depends only on what was written to it. Under `TestClock` a simulation
 * replays exactly from its seed.
 *
 * Stream lifetime: closing the scope a stream was opened (or handled) in
 * resets it, unless our side has ended: then the remote still reads what was
 * written, up to the end, and only our read side is dropped (the remote's
 * further writes fail with `Reset`).
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/memoryTransport.js"
import * as Transport from "./Transport.js"

/** Default bound on one lane's written but unread bytes: 64 KiB. */
export const DEFAULT_WINDOW_BYTES = internal.DEFAULT_WINDOW_BYTES

/** Default bound on a protocol's inbound streams per peer, as in `Transport.HandleOptions`. */
export const DEFAULT_MAX_INBOUND_STREAMS = internal.DEFAULT_MAX_INBOUND_STREAMS

/** Settings of a memory network. */
export interface Options {
  /** Seeds every random draw, so a run under `TestClock` replays exactly. */
  readonly seed: number
  /** Delay of each chunk, drawn uniformly in whole milliseconds (default: none). */
  readonly latency?: { readonly minMillis: number; readonly maxMillis: number }
  /** Probability that delivering a chunk resets its stream instead (default 0). */
  readonly resetProbability?: number
  /** Bound on a lane's written but unread bytes (default `DEFAULT_WINDOW_BYTES`). */
  readonly windowBytes?: number
}

/** What the network did, for tracing a simulation; `at` is the clock's time in milliseconds. */
export type NetworkEvent =
  | { readonly _tag: "Connected"; readonly peers: readonly [string, string]; readonly at: number }
  | { readonly _tag: "Disconnected"; readonly peers: readonly [string, string]; readonly detail: string; readonly at: number }
  | {
    readonly _tag: "Delivered"
    readonly stream: number
    readonly protocol: string
    readonly from: string
    readonly to: string
    /** Bytes of the chunk; `end` marks the writer's end of the lane. */
    readonly bytes: number
    readonly end: boolean
    readonly at: number
  }
  | { readonly _tag: "Reset"; readonly stream: number; readonly protocol: string; readonly detail: string; readonly at: number }

/** A shared in-process network; closing its scope stops every peer on it. */
export interface MemoryNetwork {
  readonly seed: number
  /**
   * Registers `peerId` at `memory://<peerId>` and returns its transport. When
   * the scope closes the peer is gone, as in a crash; the id may register again.
   */
  readonly transport: (peerId: string) => Effect.Effect<Transport.Service, Transport.TransportError, Scope.Scope>
  /** Drops every connection between the groups; they cannot reach each other until `heal`. */
  readonly partition: (a: ReadonlyArray<string>, b: ReadonlyArray<string>) => Effect.Effect<void>
  /** Removes every partition. */
  readonly heal: Effect.Effect<void>
  /** Drops the connection between two peers (their streams reset); they may connect again. */
  readonly disconnect: (a: string, b: string) => Effect.Effect<void>
  /** Peers currently registered. */
  readonly peers: Effect.Effect<ReadonlyArray<Transport.PeerId>>
  /** Network events from now until the scope closes (an unbounded queue: take from it). */
  readonly subscribe: Effect.Effect<Queue.Dequeue<NetworkEvent>, never, Scope.Scope>
}

/**
 * Makes a memory network. Invalid options (a negative latency, a probability
 * outside [0, 1], a window below one byte) are defects.
 */
export const make: (options: Options) => Effect.Effect<MemoryNetwork, never, Scope.Scope> = internal.make

/** The transport of `peerId` on `network`, registered for the layer's lifetime. */
export const layer = (network: MemoryNetwork, peerId: string): Layer.Layer<Transport.Transport, Transport.TransportError> =>
  Layer.scoped(Transport.Transport, network.transport(peerId))
