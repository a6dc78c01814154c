/**
 * Spacedrop: send files and whole folders to any peer this node reaches,
 * library member or not (protocol and wire format in `Protocol.ts`).
 *
 * - Sending (`Spacedrop.send`): the paths are walked and hashed, offered
 *   with the sender's display name, and, once accepted, streamed in chunks
 *   within a window (never a round trip per chunk or per file). A file that
 *   changes while it is sent fails the transfer with `SourceChanged`; the
 *   receiver keeps nothing of it.
 * - Receiving (`Spacedrop.offers`): each offer arrives on a Stream, for as
 *   long as a watcher holds it; an offer with no watcher is refused at once
 *   (`NoListener`), one unanswered for `decisionTimeout` is refused
 *   `Timeout`. The first `accept` or `reject` decides; any other answer fails
 *   with `DecisionError` `AlreadyDecided`.
 * - Safety: every path is checked before acceptance (`Paths`), the target
 *   at acceptance (links inside it, files in the way, free space); files are
 *   written beside their target under a temporary name, each chunk checked
 *   against its hash, the whole file against the manifest's, synced, then
 *   linked into place under a new name: an existing file is never replaced
 *   (`a (1).txt`, or `Exists` with `onExisting: "refuse"`).
 * - Control: each side's `Transfer` has its progress as a Stream, `pause`,
 *   `resume` and `cancel`; the other side learns each (`paused` with
 *   `pausedBy` in its progress; `Cancelled`, `by` naming who). A pause holds
 *   until the side that paused resumes. The service does the same by
 *   transfer id (`transfers`, `pause`, `resume`, `cancel`), for a front end
 *   that did not start the transfer (a CLI).
 * - Resume: a sender whose connection drops offers the transfer again on
 *   its own (`SendOptions.reconnectAttempts`, with a growing delay), from
 *   the receiver's last verified chunk, its progress `reconnecting`
 *   meanwhile. A transfer whose attempts ran out, or whose process stops,
 *   ends `interrupted` with what was verified kept (resume records in
 *   memory, or in `stateDir` to outlive a restart). `resume(id)` goes on
 *   from the last verified chunk (the sender offers it again under the same
 *   id; a receiver asks its sender to); nothing verified is sent again.
 *   `cancel(id)` forgets it. A chunk that fails its hash is asked for again
 *   (`maxRetries` times, then `Corrupt`).
 *
 * ```ts
 * // the receiving node: accept every offer into ~/Downloads
 * const receive = Effect.gen(function*() {
 *   const spacedrop = yield* Spacedrop.Spacedrop
 *   const offers = yield* spacedrop.offers
 *   yield* Stream.runForEach(offers, (offer) =>
 *     Effect.gen(function*() {
 *       console.log(`${offer.sender} offers ${offer.count} entries, ${offer.totalBytes} bytes`)
 *       const transfer = yield* offer.accept(path.join(os.homedir(), "Downloads"))
 *       yield* Effect.forkScoped(Stream.runForEach(transfer.progress, (p) => Console.log(`${p.bytes}/${p.totalBytes}`)))
 *       const summary = yield* transfer.result
 *       console.log(`received ${summary.files.length} files`)
 *     }).pipe(Effect.catchAll(Console.error)))
 * })
 *
 * // the sending node
 * const send = (peer: PeerId) => Effect.scoped(Effect.gen(function*() {
 *   const spacedrop = yield* Spacedrop.Spacedrop
 *   const transfer = yield* spacedrop.send(peer, ["./photos", "./notes.txt"])
 *   return yield* transfer.result // SpacedropError "Declined", "NoListener", "Timeout", "Cancelled"…
 * }))
 *
 * // pause, resume, and resume after an interruption, by id (any front end of the node)
 * const control = (id: string) => Effect.gen(function*() {
 *   const spacedrop = yield* Spacedrop.Spacedrop
 *   yield* spacedrop.pause(id) // the other side's progress shows "paused", pausedBy ["sender"]
 *   for (const p of yield* spacedrop.transfers) console.log(p.transfer, p.direction, p.state, `${p.bytes}/${p.totalBytes}`)
 *   yield* spacedrop.resume(id) // running: lifts the pause; "interrupted": goes on from the last verified chunk
 *   return yield* (yield* spacedrop.transfer(id)).result
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { hostname } from "node:os"
import type { PeerId, TransportError } from "../../transport/Transport.js"
import * as Plugin from "../Plugin.js"
import { PluginHost } from "../PluginHost.js"
import type * as Files from "./internal/files.js"
import * as Receive from "./internal/receive.js"
import * as Records from "./internal/records.js"
import * as Registry from "./internal/registry.js"
import * as Send from "./internal/send.js"
import type * as Running from "./internal/transfer.js"
import * as Wire from "./internal/wire.js"
import * as Protocol from "./Protocol.js"

export const SpacedropError = Protocol.SpacedropError
export type SpacedropError = Protocol.SpacedropError
export const DecisionError = Protocol.DecisionError
export type DecisionError = Protocol.DecisionError
export type Transfer = Running.Transfer
export type Progress = Running.Progress
export type Summary = Running.Summary
export type TransferError = Running.TransferError
export type IncomingOffer = Receive.IncomingOffer
export type AcceptOptions = Receive.AcceptOptions
export type RefusalReason = Receive.RefusalReason
export type SendOptions = Send.SendOptions
export type Limits = Receive.Limits
export type OnExisting = Files.OnExisting
export type State = Running.State

/** The receiver's default bounds. */
export const DEFAULT_LIMITS: Limits = Receive.DEFAULT_LIMITS

/** The receiver's frame bound under `limits` (a frame header claiming more is a violation). */
export const maxFrameBytes: (limits: Limits) => number = Receive.maxFrameBytes

/** Most inbound Spacedrop streams of one peer at once, by default. */
export const DEFAULT_MAX_INBOUND_STREAMS = 4

/** Options of the plugin. */
export interface Options {
  /** The name receivers are shown (default: this machine's host name). */
  readonly name?: string
  /** How long an offer waits for an answer before it is refused `Timeout` (default 60 s). */
  readonly decisionTimeout?: Duration.DurationInput
  /** Most time between two frames from the sender once a transfer runs (default 30 s). */
  readonly idleTimeout?: Duration.DurationInput
  /** What to do with a file that exists where one arrives (default `rename`: `a (1).txt`). */
  readonly onExisting?: OnExisting
  /** Bounds of what is received (defaults: `DEFAULT_LIMITS`). */
  readonly limits?: Partial<Limits>
  /** Most offers waiting for an answer at once; more are refused `Busy` (default 16). */
  readonly maxPendingOffers?: number
  /** Most inbound Spacedrop streams of one peer at once (default `DEFAULT_MAX_INBOUND_STREAMS`). */
  readonly maxInboundStreams?: number
  /**
   * Where resume records are kept (made if missing): with it, an interrupted
   * transfer resumes after a restart of either process too. Without it they
   * are kept in memory: a transfer resumes after its connection dropped.
   */
  readonly stateDir?: string
  /** Most interrupted transfers kept for resuming; past it a transfer runs without a record (default 64). */
  readonly maxResumable?: number
  /** Most times one chunk (or file) that failed its hash is asked for again before `Corrupt` (default 3). */
  readonly maxRetries?: number
}

/** Sends and receives files. */
export interface Service {
  /**
   * Offers `paths` (files and folders) to `peer`. Fails at once if a path
   * cannot be sent (a link, an unreadable file, an unportable name);
   * otherwise the transfer runs in the caller's scope: its `result` says
   * how it ended (`Declined`, `NoListener`, `Timeout`, `Cancelled`, …).
   */
  readonly send: (
    peer: PeerId,
    paths: ReadonlyArray<string>,
    options?: SendOptions
  ) => Effect.Effect<Transfer, SpacedropError, Scope.Scope>
  /**
   * Offers from now on, watched until the scope closes (subscribed at once:
   * no offer arriving after this returns is missed). While no scope
   * watches, offers are refused `NoListener`.
   */
  readonly offers: Effect.Effect<Stream.Stream<IncomingOffer>, never, Scope.Scope>
  /**
   * Every transfer this node knows: running, waiting for an answer, paused,
   * and interrupted ones it can resume (from its resume records, on disk
   * with `stateDir`).
   */
  readonly transfers: Effect.Effect<ReadonlyArray<Progress>>
  /** The running (or paused) transfer `id`; `UnknownTransfer` if none runs. */
  readonly transfer: (id: string) => Effect.Effect<Transfer, SpacedropError>
  /** Pauses transfer `id` from this side (see `Transfer.pause`); an interrupted one stays as it is. */
  readonly pause: (id: string) => Effect.Effect<void, SpacedropError>
  /**
   * Resumes transfer `id`: lifts this side's pause of a running one; an
   * interrupted one goes on from its last verified chunk (the sender offers
   * it again; a receiver asks its sender to). Its new run is then
   * `transfer(id)`, whose `result` says how it went. A receiver's request
   * fails if the sender cannot be reached or has no such transfer.
   */
  readonly resume: (id: string) => Effect.Effect<void, SpacedropError>
  /** Cancels transfer `id` (see `Transfer.cancel`); an interrupted one is forgotten, with what it kept. */
  readonly cancel: (id: string) => Effect.Effect<void, SpacedropError>
}

/** Spacedrop on a node. */
export class Spacedrop extends Context.Tag("weft/plugins/Spacedrop")<Spacedrop, Service>() {}

const resolve = (options: Options): Receive.Settings => ({
  limits: { ...Receive.DEFAULT_LIMITS, ...options.limits },
  decisionTimeout: Duration.decode(options.decisionTimeout ?? Duration.seconds(60)),
  idleTimeout: Duration.decode(options.idleTimeout ?? Duration.seconds(30)),
  onExisting: options.onExisting ?? "rename",
  maxPendingOffers: options.maxPendingOffers ?? 16,
  maxRetries: options.maxRetries ?? 3
})

/** The plugin (the receiving side) over `shared` state. */
export const plugin = (shared: Receive.Shared, options: Options = {}) =>
  Plugin.make({
    name: "spacedrop",
    ...Protocol.protocol,
    maxInboundStreams: options.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
    handle: Receive.handle(shared)
  })

/** How long a receiver waits for its sender to answer a `Reoffer`. */
const REOFFER_TIMEOUT = Duration.seconds(10)

/** Registers the plugin on the host in context and provides the service; unregistered with the scope. */
export const make = (options: Options = {}): Effect.Effect<Service, TransportError, PluginHost | Scope.Scope> =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const scope = yield* Effect.scope
    const offers = yield* Effect.acquireRelease(PubSub.unbounded<IncomingOffer>(), PubSub.shutdown)
    const maxResumable = options.maxResumable ?? 64
    const store = options.stateDir === undefined ? Records.memory(maxResumable) : Records.directory(options.stateDir, maxResumable)
    const registry = Registry.make(store)
    // in memory, what was kept of interrupted receives (their temporary files) goes with the plugin
    yield* Effect.addFinalizer(() => store.close((record) => (record.direction === "receive" ? Receive.forget(store, record) : Effect.void)))
    const settings: Send.SenderSettings = { name: options.name ?? hostname(), registry }
    const reoffer = (record: Records.SendRecord) => Effect.asVoid(Scope.extend(Send.resume(host, settings, record), scope))
    const shared: Receive.Shared = {
      settings: resolve(options),
      watchers: yield* Ref.make(0),
      pending: yield* Ref.make(0),
      offers,
      registry,
      reoffer
    }
    yield* host.register(plugin(shared, options))

    /** A receiver asks the sender of an interrupted transfer to offer it again. */
    const ask = (record: Records.ReceiveRecord) =>
      Effect.scoped(Effect.gen(function*() {
        const ids = { peer: record.peer, transfer: record.transfer }
        const stream = yield* host.open(record.peer as PeerId, Protocol.protocol)
        const wire = yield* Wire.make(stream, 64 * 1024)
        yield* wire.send({ type: "Reoffer", transfer: record.transfer })
        const answer = yield* wire.next
        yield* wire.end
        if (Option.isSome(answer) && answer.value._tag === "Message" && answer.value.message.type === "Accepted") return
        const refused = Option.isSome(answer) && answer.value._tag === "Message" && answer.value.message.type === "Rejected" ? answer.value.message : undefined
        // the sender will never offer it again (it cancelled it, perhaps while this side was out of reach): kept for nothing
        if (refused?.reason === "UnknownTransfer") yield* Receive.forget(store, record)
        return yield* new SpacedropError({ reason: refused?.reason ?? "Closed", ...ids, by: "sender", detail: refused?.detail ?? "the sender did not answer the request" })
      })).pipe(
        Effect.timeoutFail({
          duration: REOFFER_TIMEOUT,
          onTimeout: () => new SpacedropError({ reason: "Timeout", peer: record.peer, transfer: record.transfer, detail: "the sender did not answer the request" })
        }),
        Effect.catchIf((e) => !(e instanceof SpacedropError), (e) =>
          Effect.fail(new SpacedropError({ reason: e._tag === "TransportError" ? "Closed" : "Failed", peer: record.peer, transfer: record.transfer, detail: e.message })))
      )

    return {
      send: (peer, paths, sendOptions) => Send.send(host, settings, peer, paths, sendOptions),
      offers: Effect.gen(function*() {
        yield* Effect.acquireRelease(Ref.update(shared.watchers, (n) => n + 1), () => Ref.update(shared.watchers, (n) => n - 1))
        return Stream.fromQueue(yield* PubSub.subscribe(offers))
      }),
      transfers: Registry.list(registry),
      transfer: (id) =>
        Effect.flatMap(Registry.find(registry, id), (found) =>
          found._tag === "Live"
            ? Effect.succeed(found.running.transfer)
            : Effect.fail(new SpacedropError({ reason: "UnknownTransfer", peer: found.record.peer, transfer: id, detail: "the transfer is interrupted: resume it first" }))),
      pause: (id) => Effect.flatMap(Registry.find(registry, id), (found) => (found._tag === "Live" ? found.running.transfer.pause : Effect.void)),
      resume: (id) =>
        Effect.flatMap(Registry.find(registry, id), (found) =>
          found._tag === "Live"
            ? found.running.transfer.resume
            : found.record.direction === "send"
            ? reoffer(found.record)
            : ask(found.record)),
      cancel: (id) =>
        Effect.flatMap(Registry.find(registry, id), (found) =>
          found._tag === "Live"
            ? found.running.transfer.cancel
            : found.record.direction === "send"
            // its receiver kept it too: told in the background (bounded), or when it asks for it
            ? Effect.zipRight(store.remove("send", id), Effect.asVoid(Effect.forkIn(Send.forget(host, found.record.peer as PeerId, id), scope)))
            // its sender may be waiting to reconnect: its offer, when it comes, is refused
            : Effect.zipRight(Registry.cancelledReceive(registry, found.record.peer, id), Receive.forget(store, found.record)))
    }
  })

/** Layer of the plugin and its service. */
export const layer = (options: Options = {}): Layer.Layer<Spacedrop, TransportError, PluginHost> => Layer.scoped(Spacedrop, make(options))
