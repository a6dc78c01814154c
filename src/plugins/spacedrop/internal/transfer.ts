/**
 * A transfer under way, as the app holds it on either side: its progress
 * (a Stream), ways to pause, resume and cancel it, and its outcome.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { ProtocolError } from "../../../transport/ProtocolError.js"
import type { PeerId, TransportError } from "../../../transport/Transport.js"
import * as Protocol from "../Protocol.js"

/**
 * Where a transfer is. `paused`: either side holds it paused.
 * `reconnecting` (sender): its connection dropped, and it waits to offer
 * the transfer again from the receiver's last verified chunk. `interrupted`:
 * it stopped (its connection dropped, its process stopped) with what it
 * verified kept, and can be resumed (`Service.resume`).
 */
export type State = "waiting" | "transferring" | "paused" | "reconnecting" | "done" | "failed" | "cancelled" | "interrupted"

/** A transfer's progress, on either side. */
export interface Progress {
  readonly transfer: string
  readonly direction: "send" | "receive"
  readonly peer: PeerId
  readonly state: State
  /** Bytes sent (sender) or verified and written (receiver). */
  readonly bytes: number
  readonly totalBytes: number
  /** Files complete: sent whole (sender), or verified and in place (receiver). */
  readonly files: number
  readonly totalFiles: number
  /** The file being sent or received (its manifest path). */
  readonly current: string | undefined
  /** Average rate since the transfer began (on the `Clock`). */
  readonly bytesPerSecond: number
  /** Seconds left at that rate; `undefined` until there is a rate. */
  readonly etaSeconds: number | undefined
  /** The sides holding the transfer paused (empty unless `paused`). */
  readonly pausedBy: ReadonlyArray<Protocol.Side>
}

/** One received (or sent) file: its manifest path, and where it was saved (receiver). */
export interface FileResult {
  readonly path: string
  readonly savedAs?: string
}

/** What a completed transfer moved. */
export interface Summary {
  readonly transfer: string
  readonly peer: PeerId
  readonly files: ReadonlyArray<FileResult>
  readonly directories: number
  readonly bytes: number
}

/** Why a transfer failed: a typed Spacedrop error, or the other side broke the protocol or the connection. */
export type TransferError = Protocol.SpacedropError | ProtocolError | TransportError

/** A transfer, sending or receiving. */
export interface Transfer {
  readonly id: string
  readonly peer: PeerId
  readonly direction: "send" | "receive"
  /** Progress from now on (the latest first); ends once the transfer has ended. */
  readonly progress: Stream.Stream<Progress>
  /** Cancels the transfer; the other side learns it (`Cancelled`, with who). Does nothing once it ended. */
  readonly cancel: Effect.Effect<void>
  /**
   * Holds the transfer paused from this side; the other side learns it (its
   * progress shows `paused`). Chunks already in flight still arrive. Does
   * nothing once it ended, or if this side holds it paused already.
   */
  readonly pause: Effect.Effect<void>
  /** Lifts this side's pause; the transfer goes on unless the other side holds it paused too. */
  readonly resume: Effect.Effect<void>
  /** Waits for the outcome. */
  readonly result: Effect.Effect<Summary, TransferError>
}

/** Whether a transfer in `state` has ended (for now: an interrupted one may be resumed as a new run). */
export const terminal = (state: State) => state === "done" || state === "failed" || state === "cancelled" || state === "interrupted"

/** Who holds a transfer paused. */
export interface Holds {
  readonly sender: boolean
  readonly receiver: boolean
}

/** The running side of a transfer: what its protocol loop updates. */
export interface Running {
  readonly transfer: Transfer
  /** Completes once the app asked to cancel. */
  readonly cancelled: Deferred.Deferred<void>
  /** Completes once a new connection resumes this transfer: this run stops, keeping what it verified. */
  readonly superseded: Deferred.Deferred<void>
  /** Marks the start of the data phase (the rate is measured from here). */
  readonly start: Effect.Effect<void>
  readonly update: (f: (progress: Progress) => Progress) => Effect.Effect<void>
  /** Who holds the transfer paused; this side's hold is set by `transfer.pause`/`resume`, the other's by its messages. */
  readonly holds: SubscriptionRef.SubscriptionRef<Holds>
  /** Sets the other side's hold (it sent `Pause` or `Resume`). */
  readonly holdRemote: (paused: boolean) => Effect.Effect<void>
  /** Waits until neither side holds the transfer paused. */
  readonly unpaused: Effect.Effect<void>
  /** Waits until a side holds the transfer paused. */
  readonly paused: Effect.Effect<void>
  /** The latest progress. */
  readonly current: Effect.Effect<Progress>
  /**
   * Records the outcome (once); the progress ends with it. `resumable`: the
   * failure kept what was verified (state `interrupted`, not `failed`).
   */
  readonly finish: (exit: Exit.Exit<Summary, TransferError>, resumable?: boolean) => Effect.Effect<void>
}

const side = (direction: "send" | "receive"): Protocol.Side => (direction === "send" ? "sender" : "receiver")
const other = (direction: "send" | "receive"): Protocol.Side => (direction === "send" ? "receiver" : "sender")
const holders = (holds: Holds): ReadonlyArray<Protocol.Side> => [...(holds.sender ? ["sender" as const] : []), ...(holds.receiver ? ["receiver" as const] : [])]

/** A new transfer's progress and controls; `state` "interrupted" makes a dormant one (listed, never run). */
export const make = (
  init: Omit<Progress, "state" | "bytes" | "files" | "current" | "bytesPerSecond" | "etaSeconds" | "pausedBy"> & { readonly state?: State; readonly bytes?: number; readonly files?: number }
): Effect.Effect<Running> =>
  Effect.gen(function*() {
    const ref = yield* SubscriptionRef.make<Progress>({
      ...init,
      state: init.state ?? "waiting",
      bytes: init.bytes ?? 0,
      files: init.files ?? 0,
      current: undefined,
      bytesPerSecond: 0,
      etaSeconds: undefined,
      pausedBy: []
    })
    const holds = yield* SubscriptionRef.make<Holds>({ sender: false, receiver: false })
    // bytes already held when this run began (a resumed transfer): the rate counts only what this run moved
    let base = init.bytes ?? 0
    const result = yield* Deferred.make<Summary, TransferError>()
    const cancelled = yield* Deferred.make<void>()
    const superseded = yield* Deferred.make<void>()
    let started: number | undefined
    const rated = (progress: Progress, now: number): Progress => {
      if (started === undefined || now <= started) return progress
      const bytesPerSecond = Math.max(0, progress.bytes - base) / ((now - started) / 1000)
      const etaSeconds = bytesPerSecond > 0 ? (progress.totalBytes - progress.bytes) / bytesPerSecond : undefined
      return { ...progress, bytesPerSecond, etaSeconds }
    }
    const update = (f: (progress: Progress) => Progress) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => SubscriptionRef.update(ref, (p) => (terminal(p.state) ? p : rated(f(p), now))))
    /** Sets a hold and shows it in the progress (`paused` only once the data phase began). */
    const hold = (who: Protocol.Side, paused: boolean) =>
      Effect.flatMap(SubscriptionRef.updateAndGet(holds, (h) => ({ ...h, [who]: paused })), (h) =>
        update((p) => ({
          ...p,
          pausedBy: holders(h),
          state: p.state === "waiting" || p.state === "reconnecting" ? p.state : h.sender || h.receiver ? "paused" : "transferring"
        })))
    // checked first without a subscription: the sender asks before every chunk
    const whenHolds = (f: (h: Holds) => boolean) =>
      Effect.flatMap(SubscriptionRef.get(holds), (h) => (f(h) ? Effect.void : Stream.runDrain(holds.changes.pipe(Stream.takeUntil(f)))))
    const transfer: Transfer = {
      id: init.transfer,
      peer: init.peer,
      direction: init.direction,
      progress: ref.changes.pipe(Stream.takeUntil((p) => terminal(p.state))),
      cancel: Effect.asVoid(Deferred.succeed(cancelled, undefined)),
      pause: hold(side(init.direction), true),
      resume: hold(side(init.direction), false),
      result: Deferred.await(result)
    }
    return {
      transfer,
      cancelled,
      superseded,
      start: Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.zipRight(
          Effect.sync(() => (started = now)),
          Effect.flatMap(SubscriptionRef.get(holds), (h) =>
            update((p) => {
              base = p.bytes
              return { ...p, state: h.sender || h.receiver ? "paused" : "transferring", pausedBy: holders(h) }
            }))
        )),
      update,
      holds,
      holdRemote: (paused) => hold(other(init.direction), paused),
      unpaused: whenHolds((h) => !h.sender && !h.receiver),
      paused: whenHolds((h) => h.sender || h.receiver),
      current: SubscriptionRef.get(ref),
      finish: (outcome, resumable = false) => {
        // an interruption (the connection dropped, the scope closed) is a typed failure for whoever awaits the result
        const exit: Exit.Exit<Summary, TransferError> = Exit.isInterrupted(outcome)
          ? Exit.fail(new Protocol.SpacedropError({ reason: "Closed", peer: init.peer, transfer: init.transfer, detail: "the transfer was interrupted: its connection dropped or its scope closed" }))
          : outcome
        return Effect.zipRight(
          update((p) =>
            exit._tag === "Success"
              ? { ...p, state: "done", current: undefined, etaSeconds: 0 }
              : { ...p, state: isCancel(exit) ? "cancelled" : resumable ? "interrupted" : "failed", current: undefined, etaSeconds: undefined }
          ),
          Deferred.complete(result, exit)
        )
      }
    }
  })

/**
 * Whether a transfer that ended so keeps what was verified, to be resumed:
 * its connection or its process went away (or, with `timeout`, the other
 * side went quiet), and nobody decided to stop it.
 */
export const isResumable = (exit: Exit.Exit<unknown, TransferError>, options: { readonly timeout: boolean }): boolean => {
  if (Exit.isSuccess(exit)) return false
  if (Exit.isInterrupted(exit)) return true
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return false
  const e = failure.value
  return e._tag === "TransportError" ||
    (e._tag === "SpacedropError" && e.by === undefined && (e.reason === "Closed" || (options.timeout && e.reason === "Timeout")))
}

const isCancel = (exit: Exit.Exit<Summary, TransferError>) =>
  exit._tag === "Failure" && exit.cause._tag === "Fail" && exit.cause.error._tag === "SpacedropError" && exit.cause.error.reason === "Cancelled"
