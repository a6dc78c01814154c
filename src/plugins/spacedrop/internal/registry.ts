/**
 * The transfers a node knows, by id: those running (or paused) now, and
 * the interrupted ones whose resume records are kept (`Records`). The
 * service's `transfers`, `pause`, `resume` and `cancel` look them up here.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { PeerId } from "../../../transport/Transport.js"
import * as Protocol from "../Protocol.js"
import type * as Records from "./records.js"
import type * as Running from "./transfer.js"

/** The transfers of one node. */
export interface Registry {
  readonly store: Records.Store
  /** Transfers running now (or paused, or waiting for an answer), by id. */
  readonly live: Map<string, Running.Running>
  /**
   * Receives this node cancelled (`peer transfer`), the latest
   * `MAX_CANCELLED`: a sender that was reconnecting when the cancel came
   * offers the transfer again, and that offer is refused, not asked again.
   */
  readonly cancelled: Set<string>
}

/** Most cancelled receives remembered. */
export const MAX_CANCELLED = 1024

const isTransferId = Schema.is(Protocol.TransferId)

export const make = (store: Records.Store): Registry => ({ store, live: new Map(), cancelled: new Set() })

/** Remembers that this node cancelled the receive of `transfer` from `peer` (the oldest forgotten past the bound). */
export const cancelledReceive = (registry: Registry, peer: string, transfer: string): Effect.Effect<void> =>
  Effect.sync(() => {
    const key = `${peer} ${transfer}`
    registry.cancelled.delete(key)
    registry.cancelled.add(key)
    if (registry.cancelled.size > MAX_CANCELLED) registry.cancelled.delete(registry.cancelled.values().next().value!)
  })

/** Whether this node cancelled the receive of `transfer` from `peer` (lately: see `Registry.cancelled`). */
export const wasCancelled = (registry: Registry, peer: string, transfer: string): boolean => registry.cancelled.has(`${peer} ${transfer}`)

/**
 * Tracks `running` while it runs. Fails `Busy` if a transfer of its id runs
 * already (a sender reusing an id, a resume while the transfer still runs).
 */
export const add = (registry: Registry, running: Running.Running): Effect.Effect<void, Protocol.SpacedropError> =>
  Effect.suspend(() => {
    const id = running.transfer.id
    if (registry.live.has(id)) {
      return Effect.fail(new Protocol.SpacedropError({ reason: "Busy", peer: running.transfer.peer, transfer: id, detail: "a transfer of this id runs already" }))
    }
    registry.live.set(id, running)
    return Effect.void
  })

/** Stops tracking `running` (if it is still the one tracked under its id). */
export const remove = (registry: Registry, running: Running.Running): Effect.Effect<void> =>
  Effect.sync(() => {
    if (registry.live.get(running.transfer.id) === running) registry.live.delete(running.transfer.id)
  })

/** The progress an interrupted transfer's record shows. */
export const dormant = (record: Records.Record): Running.Progress => ({
  transfer: record.transfer,
  direction: record.direction,
  peer: record.peer as PeerId,
  state: "interrupted",
  bytes: record.bytes,
  totalBytes: record.totalBytes,
  files: record.direction === "send" ? record.files : record.position.files,
  totalFiles: record.totalFiles,
  current: undefined,
  bytesPerSecond: 0,
  etaSeconds: undefined,
  pausedBy: []
})

/** Every transfer known: the live ones, then the interrupted ones with a record. */
export const list = (registry: Registry): Effect.Effect<ReadonlyArray<Running.Progress>> =>
  Effect.gen(function*() {
    const live = yield* Effect.forEach([...registry.live.values()], (r) => r.current)
    const records = yield* registry.store.list(new Set(registry.live.keys()))
    return [...live, ...records.filter((r) => !registry.live.has(r.transfer)).map(dormant)]
  })

/** What `id` names: a live transfer, or an interrupted one's record. */
export type Found =
  | { readonly _tag: "Live"; readonly running: Running.Running }
  | { readonly _tag: "Interrupted"; readonly record: Records.Record }

/** Finds `id`, or fails `UnknownTransfer`. */
export const find = (registry: Registry, id: string): Effect.Effect<Found, Protocol.SpacedropError> =>
  Effect.gen(function*() {
    const unknown = new Protocol.SpacedropError({ reason: "UnknownTransfer", peer: "", transfer: id.slice(0, 100), detail: "no transfer of this id is running, paused or resumable here" })
    if (!isTransferId(id)) return yield* unknown
    const running = registry.live.get(id)
    if (running !== undefined) return { _tag: "Live", running } as const
    for (const direction of ["send", "receive"] as const) {
      const record = yield* registry.store.get(direction, id)
      if (Option.isSome(record)) return { _tag: "Interrupted", record: record.value } as const
    }
    return yield* unknown
  })
