/**
 * A transfer under way, as the app holds it on either side: its progress
 * (a Stream), a way to cancel it, and its outcome.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { ProtocolError } from "../../../transport/ProtocolError.js"
import type { PeerId, TransportError } from "../../../transport/Transport.js"
import * as Protocol from "../Protocol.js"

/** Where a transfer is. */
export type State = "waiting" | "transferring" | "done" | "failed" | "cancelled"

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
  /** Waits for the outcome. */
  readonly result: Effect.Effect<Summary, TransferError>
}

const terminal = (state: State) => state === "done" || state === "failed" || state === "cancelled"

/** The running side of a transfer: what its protocol loop updates. */
export interface Running {
  readonly transfer: Transfer
  /** Completes once the app asked to cancel. */
  readonly cancelled: Deferred.Deferred<void>
  /** Marks the start of the data phase (the rate is measured from here). */
  readonly start: Effect.Effect<void>
  readonly update: (f: (progress: Progress) => Progress) => Effect.Effect<void>
  /** Records the outcome (once); the progress ends with it. */
  readonly finish: (exit: Exit.Exit<Summary, TransferError>) => Effect.Effect<void>
}

export const make = (init: Omit<Progress, "state" | "bytes" | "files" | "current" | "bytesPerSecond" | "etaSeconds">): Effect.Effect<Running> =>
  Effect.gen(function*() {
    const ref = yield* SubscriptionRef.make<Progress>({
      ...init,
      state: "waiting",
      bytes: 0,
      files: 0,
      current: undefined,
      bytesPerSecond: 0,
      etaSeconds: undefined
    })
    const result = yield* Deferred.make<Summary, TransferError>()
    const cancelled = yield* Deferred.make<void>()
    let started: number | undefined
    const rated = (progress: Progress, now: number): Progress => {
      if (started === undefined || now <= started) return progress
      const bytesPerSecond = progress.bytes / ((now - started) / 1000)
      const etaSeconds = bytesPerSecond > 0 ? (progress.totalBytes - progress.bytes) / bytesPerSecond : undefined
      return { ...progress, bytesPerSecond, etaSeconds }
    }
    const update = (f: (progress: Progress) => Progress) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => SubscriptionRef.update(ref, (p) => (terminal(p.state) ? p : rated(f(p), now))))
    const transfer: Transfer = {
      id: init.transfer,
      peer: init.peer,
      direction: init.direction,
      progress: ref.changes.pipe(Stream.takeUntil((p) => terminal(p.state))),
      cancel: Effect.asVoid(Deferred.succeed(cancelled, undefined)),
      result: Deferred.await(result)
    }
    return {
      transfer,
      cancelled,
      start: Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.zipRight(Effect.sync(() => (started = now)), update((p) => ({ ...p, state: "transferring" })))),
      update,
      finish: (outcome) => {
        // an interruption (the connection dropped, the scope closed) is a typed failure for whoever awaits the result
        const exit: Exit.Exit<Summary, TransferError> = Exit.isInterrupted(outcome)
          ? Exit.fail(new Protocol.SpacedropError({ reason: "Closed", peer: init.peer, transfer: init.transfer, detail: "the transfer was interrupted: its connection dropped or its scope closed" }))
          : outcome
        return Effect.zipRight(
          update((p) =>
            exit._tag === "Success"
              ? { ...p, state: "done", current: undefined, etaSeconds: 0 }
              : { ...p, state: isCancel(exit) ? "cancelled" : "failed", current: undefined, etaSeconds: undefined }
          ),
          Deferred.complete(result, exit)
        )
      }
    }
  })

const isCancel = (exit: Exit.Exit<Summary, TransferError>) =>
  exit._tag === "Failure" && exit.cause._tag === "Fail" && exit.cause.error._tag === "SpacedropError" && exit.cause.error.reason === "Cancelled"
