/**
 * Hybrid logical clock (Kulkarni et al.): timestamps that follow the wall
 * clock but never go backwards, and that order every event after the events
 * it could have seen.
 *
 * The clock is a value; `send` and `receive` take the wall-clock reading as an
 * argument and return the next clock, so the rules can be tested and
 * simulated without I/O. The engine persists `last` with every commit.
 *
 * Drift guard: a remote timestamp more than `maxDriftMillis` ahead of the
 * local wall clock is refused with a `ClockDriftError` and never adopted, so
 * one peer with a broken clock cannot drag every peer's clock into the future.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Timestamp from "./Timestamp.js"

/** Default bound on how far ahead of our wall clock a remote timestamp may be. */
export const DEFAULT_MAX_DRIFT_MILLIS = 60_000

/** The state of a node's clock: the largest timestamp it has issued or adopted. */
export interface Hlc {
  readonly node: Timestamp.NodeId
  readonly last: Timestamp.Timestamp
  readonly maxDriftMillis: number
}

/** A remote timestamp was too far ahead of the local wall clock. */
export class ClockDriftError extends Schema.TaggedError<ClockDriftError>("weft/ClockDriftError")(
  "ClockDriftError",
  {
    reason: Schema.Literal("AheadOfWallClock", "ClockExhausted"),
    remote: Schema.String,
    wallClockMillis: Schema.Number,
    driftMillis: Schema.Number,
    maxDriftMillis: Schema.Number
  }
) {
  override get message(): string {
    return this.reason === "ClockExhausted"
      ? `clock exhausted at ${this.remote}`
      : `remote timestamp ${this.remote} is ${this.driftMillis} ms ahead of the wall clock (limit ${this.maxDriftMillis} ms)`
  }
}

/** A clock for `node` that has issued nothing newer than `last`. */
export const make = (
  node: Timestamp.NodeId,
  options?: { readonly last?: Timestamp.Timestamp; readonly maxDriftMillis?: number }
): Hlc => ({
  node,
  last: options?.last ?? Timestamp.zero,
  maxDriftMillis: options?.maxDriftMillis ?? DEFAULT_MAX_DRIFT_MILLIS
})

const wall = (now: number): number => Math.min(Math.max(Math.floor(now), 0), Timestamp.MAX_MILLIS)

// Past the counter's range the clock borrows the next millisecond instead of failing:
// order is kept and the extra drift is one millisecond per 65536 events.
const next = (millis: number, counter: number): Either.Either<Timestamp.Timestamp, ClockDriftError> => {
  if (counter <= Timestamp.MAX_COUNTER) return Either.right(Timestamp.make(millis, counter))
  if (millis < Timestamp.MAX_MILLIS) return Either.right(Timestamp.make(millis + 1, 0))
  return Either.left(
    new ClockDriftError({
      reason: "ClockExhausted",
      remote: Timestamp.make(millis, Timestamp.MAX_COUNTER),
      wallClockMillis: millis,
      driftMillis: 0,
      maxDriftMillis: 0
    })
  )
}

/**
 * Timestamp for a local event at wall-clock time `now` (ms), strictly greater
 * than every timestamp the clock has issued or received.
 */
export const send = (clock: Hlc, now: number): Either.Either<readonly [Timestamp.Timestamp, Hlc], ClockDriftError> => {
  const lastMillis = Timestamp.millis(clock.last)
  const physical = wall(now)
  const ts = physical > lastMillis ? Either.right(Timestamp.make(physical, 0)) : next(lastMillis, Timestamp.counter(clock.last) + 1)
  return Either.map(ts, (t) => [t, { ...clock, last: t }] as const)
}

/** Refuses a remote timestamp that is further ahead of `now` than the clock allows. */
export const checkDrift = (clock: Hlc, remote: Timestamp.Timestamp, now: number): Either.Either<void, ClockDriftError> => {
  const drift = Timestamp.millis(remote) - wall(now)
  return drift > clock.maxDriftMillis
    ? Either.left(
      new ClockDriftError({
        reason: "AheadOfWallClock",
        remote,
        wallClockMillis: wall(now),
        driftMillis: drift,
        maxDriftMillis: clock.maxDriftMillis
      })
    )
    : Either.void
}

/**
 * The largest timestamp `checkDrift` lets through at `now`, so that a batch can compare each
 * timestamp as a string instead of parsing it (timestamps sort as they compare): `undefined`
 * when every timestamp passes, `null` when the bound is below any timestamp (check each).
 */
export const driftCeiling = (clock: Hlc, now: number): Timestamp.Timestamp | undefined | null => {
  // a timestamp passes when its millis - wall(now) <= maxDriftMillis
  const bound = Math.floor(wall(now) + clock.maxDriftMillis)
  if (!(bound >= 0)) return null
  return bound >= Timestamp.MAX_MILLIS ? undefined : Timestamp.make(bound, Timestamp.MAX_COUNTER)
}

/**
 * Timestamp for receiving a remote event stamped `remote` at wall-clock time
 * `now`: greater than both `remote` and everything this clock issued. Fails,
 * leaving the clock unchanged, when `remote` drifts too far ahead.
 */
export const receive = (
  clock: Hlc,
  remote: Timestamp.Timestamp,
  now: number
): Either.Either<readonly [Timestamp.Timestamp, Hlc], ClockDriftError> =>
  Either.flatMap(checkDrift(clock, remote, now), () => {
    const physical = wall(now)
    const lastMillis = Timestamp.millis(clock.last)
    const remoteMillis = Timestamp.millis(remote)
    const millis = Math.max(lastMillis, remoteMillis, physical)
    const counter = millis === lastMillis && millis === remoteMillis
      ? Math.max(Timestamp.counter(clock.last), Timestamp.counter(remote)) + 1
      : millis === lastMillis
      ? Timestamp.counter(clock.last) + 1
      : millis === remoteMillis
      ? Timestamp.counter(remote) + 1
      : 0
    return Either.map(next(millis, counter), (t) => [t, { ...clock, last: t }] as const)
  })
