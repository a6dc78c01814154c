/**
 * The transfers of `weft serve`'s node: the files it sends for `weft send`
 * and those it receives (`Inbox`), so that `weft transfers` lists them
 * (with the sender's name and the target of those received, and those that
 * ended lately) and pauses, resumes or cancels one from any terminal
 * (through the plugin's own `pause`, `resume`, `cancel` by id), and the
 * handlers of the transfer procedures (`TransfersControl`).
 *
 * A send runs in this service's scope (the node's), not in the control
 * connection's, so that another terminal finds it; the `SpacedropSend` call
 * that started it cancels it when its caller goes away. The last
 * `MAX_ENDED` ended transfers are kept for the listing; running ones are
 * never dropped.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Spacedrop from "../plugins/spacedrop/Spacedrop.js"
import type { PeerId } from "../transport/Transport.js"
import * as TransfersControl from "./TransfersControl.js"

/** Ended transfers kept for `weft transfers`. */
export const MAX_ENDED = 64

/** How often, at most, a `SpacedropSend` caller is sent progress. */
export const PROGRESS_INTERVAL = Duration.millis(200)

/** What a received transfer is listed with. */
export interface Received {
  readonly sender: string
  readonly target: string
}

/** The node's transfers. */
export interface Service {
  /** Sends `paths` to `peer` (hashed first; a path that cannot be sent fails at once); the transfer runs in the node's scope. */
  readonly send: (peer: PeerId, paths: ReadonlyArray<string>) => Effect.Effect<Spacedrop.Transfer, Spacedrop.SpacedropError>
  /** Keeps a received transfer in the listing. */
  readonly track: (transfer: Spacedrop.Transfer, received: Received) => Effect.Effect<void>
  /** The latest progress of a transfer kept here. */
  readonly progress: (id: string) => Effect.Effect<Option.Option<TransfersControl.Progress>>
  /** Running transfers, then those that ended, oldest first. */
  readonly list: Effect.Effect<ReadonlyArray<TransfersControl.TransferInfo>>
  /** Pauses a running transfer from this side (see `Spacedrop.pause`). */
  readonly pause: (id: string) => Effect.Effect<void, TransfersControl.TransfersError | Spacedrop.SpacedropError>
  /** Lifts this side's pause, or resumes an interrupted transfer from its last verified chunk (see `Spacedrop.resume`). */
  readonly resume: (id: string) => Effect.Effect<void, TransfersControl.TransfersError | Spacedrop.SpacedropError>
  /** Cancels a transfer (the other side fails `Cancelled`); an interrupted one is forgotten. */
  readonly cancel: (id: string) => Effect.Effect<void, TransfersControl.TransfersError | Spacedrop.SpacedropError>
}

/** The node's transfers. */
export class Transfers extends Context.Tag("weft/cli/Transfers")<Transfers, Service>() {}

/** A progress as the procedures carry it. */
export const toWire = (progress: Spacedrop.Progress): TransfersControl.Progress => ({
  transfer: progress.transfer,
  direction: progress.direction,
  peer: progress.peer,
  state: progress.state,
  bytes: progress.bytes,
  totalBytes: progress.totalBytes,
  files: progress.files,
  totalFiles: progress.totalFiles,
  ...(progress.current === undefined ? {} : { current: progress.current }),
  bytesPerSecond: Number.isFinite(progress.bytesPerSecond) ? progress.bytesPerSecond : 0,
  ...(progress.etaSeconds === undefined || !Number.isFinite(progress.etaSeconds) ? {} : { etaSeconds: progress.etaSeconds }),
  ...(progress.pausedBy.length === 0 ? {} : { pausedBy: progress.pausedBy })
})

interface Entry {
  readonly transfer: Spacedrop.Transfer
  readonly received: Received | undefined
  latest: TransfersControl.Progress
  error: string | undefined
  ended: boolean
}

const initial = (transfer: Spacedrop.Transfer): TransfersControl.Progress => ({
  transfer: transfer.id,
  direction: transfer.direction,
  peer: transfer.peer,
  state: "waiting",
  bytes: 0,
  totalBytes: 0,
  files: 0,
  totalFiles: 0,
  bytesPerSecond: 0
})

/** The service, over the Spacedrop in context; transfers it started are stopped with the scope. */
export const make: Effect.Effect<Service, never, Spacedrop.Spacedrop | Scope.Scope> = Effect.gen(function*() {
  const spacedrop = yield* Spacedrop.Spacedrop
  const scope = yield* Effect.scope
  const entries = new Map<string, Entry>()

  const forget = () => {
    const ended = [...entries.values()].filter((entry) => entry.ended)
    for (const entry of ended.slice(0, Math.max(0, ended.length - MAX_ENDED))) entries.delete(entry.transfer.id)
  }

  const keep = (transfer: Spacedrop.Transfer, received: Received | undefined) =>
    Effect.gen(function*() {
      const entry: Entry = { transfer, received, latest: initial(transfer), error: undefined, ended: false }
      entries.set(transfer.id, entry)
      const follow = Stream.runForEach(transfer.progress, (progress) => Effect.sync(() => (entry.latest = toWire(progress)))).pipe(
        Effect.zipRight(Effect.exit(transfer.result)),
        Effect.flatMap((exit) =>
          Effect.sync(() => {
            if (Exit.isFailure(exit)) entry.error = Option.match(Cause.failureOption(exit.cause), { onNone: () => "interrupted", onSome: (e) => e.message })
            entry.ended = true
            forget()
          })
        )
      )
      yield* Effect.forkIn(follow, scope)
    })

  const send = (peer: PeerId, paths: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<Spacedrop.Transfer, Spacedrop.SpacedropError>()
      // the transfer lives in the node's scope, closed (and its scope with it) once it has ended
      const running = Effect.scoped(Effect.gen(function*() {
        const transfer = yield* spacedrop.send(peer, paths)
        yield* keep(transfer, undefined)
        yield* Deferred.succeed(started, transfer)
        yield* Effect.exit(transfer.result)
      })).pipe(Effect.catchAll((error) => Deferred.fail(started, error)))
      const fiber = yield* Effect.forkIn(running, scope)
      // given up while the files were being prepared: nothing was offered yet, stop preparing
      return yield* Deferred.await(started).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber)))
    })

  const info = (progress: TransfersControl.Progress, entry: Entry | undefined): TransfersControl.TransferInfo => ({
    ...progress,
    ...(entry?.received === undefined ? {} : { sender: entry.received.sender, target: entry.received.target }),
    ...(entry?.error === undefined || progress.state === "transferring" || progress.state === "paused" ? {} : { error: entry.error })
  })

  /** `op` on transfer `id`; an id the plugin does not know is one that ended here, or one never seen. */
  const act = (
    id: string,
    op: (id: string) => Effect.Effect<void, Spacedrop.SpacedropError>
  ): Effect.Effect<void, TransfersControl.TransfersError | Spacedrop.SpacedropError> =>
    op(id).pipe(Effect.catchIf((error) => error.reason === "UnknownTransfer", (error) =>
      Effect.flatMap(spacedrop.transfers, (live): Effect.Effect<never, TransfersControl.TransfersError | Spacedrop.SpacedropError> => {
        if (live.some((p) => p.transfer === id)) return Effect.fail(error)
        const entry = entries.get(id)
        return Effect.fail(
          entry === undefined
            ? new TransfersControl.TransfersError({ reason: "NotFound", id, detail: "no such transfer on this node (`weft transfers` lists them)" })
            : new TransfersControl.TransfersError({ reason: "Ended", id, detail: `it ended already (${entry.latest.state})` })
        )
      })))

  return {
    send,
    track: (transfer, received) => keep(transfer, received),
    progress: (id) => Effect.sync(() => Option.map(Option.fromNullable(entries.get(id)), (entry) => entry.latest)),
    list: Effect.map(spacedrop.transfers, (live) => {
      // what the plugin knows (running, paused, interrupted), then what ended here lately
      const ids = new Set(live.map((progress) => progress.transfer))
      return [
        ...live.map((progress) => info(toWire(progress), entries.get(progress.transfer))),
        ...[...entries.values()].filter((entry) => entry.ended && !ids.has(entry.transfer.id)).map((entry) => info(entry.latest, entry))
      ]
    }),
    pause: (id) => act(id, spacedrop.pause),
    resume: (id) => act(id, spacedrop.resume),
    cancel: (id) => act(id, spacedrop.cancel)
  }
})

/** The service as a layer. */
export const layer: Layer.Layer<Transfers, never, Spacedrop.Spacedrop> = Layer.scoped(Transfers, make)

/** Progress at most every `PROGRESS_INTERVAL` (the latest of each interval), then the outcome. */
export const events = (transfer: Spacedrop.Transfer): Stream.Stream<TransfersControl.SendEvent, Spacedrop.TransferError> =>
  Stream.concat(
    transfer.progress.pipe(
      Stream.groupedWithin(1024, PROGRESS_INTERVAL),
      // the latest of each interval, and the last of each state it went through (so "waiting" is seen)
      Stream.mapConcat((chunk) => {
        const all = Chunk.toReadonlyArray(chunk)
        return all.filter((progress, i) => i === all.length - 1 || all[i + 1]!.state !== progress.state)
      }),
      Stream.map((progress): TransfersControl.SendEvent => ({ _tag: "Progress", progress: toWire(progress) }))
    ),
    Stream.fromEffect(Effect.map(transfer.result, (summary): TransfersControl.SendEvent => ({
      _tag: "Done",
      sent: { transfer: summary.transfer, peer: summary.peer, files: summary.files.length, directories: summary.directories, bytes: summary.bytes }
    })))
  )

/** Serves the transfer procedures with `Transfers` in context. */
export const controlHandlers = TransfersControl.Control.toLayer(Effect.gen(function*() {
  const transfers = yield* Transfers
  return {
    SpacedropSend: ({ paths, peer }) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const transfer = yield* transfers.send(peer, paths)
        // the caller went away (Ctrl-C) before the end: the transfer stops, and the receiver learns it;
        // once the transfer ended this does nothing
        yield* Effect.addFinalizer(() => transfer.cancel)
        return events(transfer)
      })),
    Transfers: () => transfers.list,
    TransferPause: ({ id }) => transfers.pause(id),
    TransferResume: ({ id }) => transfers.resume(id),
    TransferCancel: ({ id }) => transfers.cancel(id)
  }
}))
