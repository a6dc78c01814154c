/**
 * Two connected in-memory frame channels, for testing sync sessions without
 * a transport: bounded (a side that does not read stops the other), closable
 * (`end`) and breakable (`cut`, like a dropped connection).
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import type { Channel } from "../SyncSession.js"

/** The channel was cut. */
export class ChannelCut extends Error {
  readonly _tag = "ChannelCut"
}

/** One side of the pair, with a handle to end its sending half. */
export interface End extends Channel<ChannelCut> {
  /** Ends this side's frames: the other side's `frames` complete. */
  readonly end: Effect.Effect<void>
}

/** A pair of connected channels. */
export interface Pair {
  readonly left: End
  readonly right: End
  /** Breaks both directions: pending and future reads and writes fail. */
  readonly cut: Effect.Effect<void>
}

/** Makes a pair holding at most `capacity` unread frames per direction. */
export const make = (capacity = 8): Effect.Effect<Pair> =>
  Effect.gen(function*() {
    const broken = yield* Deferred.make<void>()
    const failure = Effect.zipRight(Deferred.await(broken), Effect.fail(new ChannelCut("channel cut")))
    const side = (inbox: Queue.Queue<Uint8Array | null>, outbox: Queue.Queue<Uint8Array | null>): End => ({
      frames: Stream.fromQueue(inbox).pipe(
        Stream.takeWhile((frame): frame is Uint8Array => frame !== null),
        Stream.interruptWhen(failure)
      ),
      send: (frame) => Effect.raceFirst(Queue.offer(outbox, frame).pipe(Effect.asVoid), failure),
      end: Effect.asVoid(Effect.raceFirst(Queue.offer(outbox, null), Deferred.await(broken)))
    })
    const toRight = yield* Queue.bounded<Uint8Array | null>(capacity)
    const toLeft = yield* Queue.bounded<Uint8Array | null>(capacity)
    return { left: side(toLeft, toRight), right: side(toRight, toLeft), cut: Deferred.succeed(broken, undefined) }
  })
