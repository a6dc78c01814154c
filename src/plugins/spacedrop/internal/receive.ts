/**
 * The receiving side: the plugin's handler. It reads and checks an offer,
 * shows it to the app's watchers, waits for one decision, then writes the
 * accepted files (see `Protocol` for the exchange, `Files` for the disk).
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { createHash } from "node:crypto"
import { constants } from "node:fs"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import { ProtocolError } from "../../../transport/ProtocolError.js"
import type { Duplex, PeerId, TransportError } from "../../../transport/Transport.js"
import { MessageError } from "../../Messages.js"
import type * as Plugin from "../../Plugin.js"
import * as Paths from "../Paths.js"
import * as Protocol from "../Protocol.js"
import * as Files from "./files.js"
import * as Records from "./records.js"
import * as Registry from "./registry.js"
import * as Running from "./transfer.js"
import * as Wire from "./wire.js"

/** Bounds of what a receiver takes. */
export interface Limits extends Paths.PathLimits {
  /** Most entries of one offer (default 100 000). */
  readonly maxEntries: number
  /** Most bytes of one offer's manifest, all pages (default 64 MiB). */
  readonly maxManifestBytes: number
  /** Most data bytes of one chunk (default 4 MiB). */
  readonly maxChunkBytes: number
}

export const DEFAULT_LIMITS: Limits = {
  ...Paths.DEFAULT_LIMITS,
  maxEntries: 100_000,
  maxManifestBytes: 64 * 1024 * 1024,
  maxChunkBytes: 4 * 1024 * 1024
}

/** The receiver's frame bound under `limits`: a whole chunk, or a page of entries with room to spare. */
export const maxFrameBytes = (limits: Limits): number => Math.max(limits.maxChunkBytes + Protocol.CHUNK_HEADER_BYTES, Protocol.MAX_PAGE_BYTES * 2)

/** The receiver's settings, resolved. */
export interface Settings {
  readonly limits: Limits
  readonly decisionTimeout: Duration.Duration
  readonly idleTimeout: Duration.Duration
  readonly onExisting: Files.OnExisting
  readonly maxPendingOffers: number
  /** Most times one chunk (or file) is asked for again after failing its hash, before the transfer fails `Corrupt`. */
  readonly maxRetries: number
}

/** How to accept an offer. */
export interface AcceptOptions {
  /** Only these entries (manifest paths; a directory brings everything under it). Default: all. */
  readonly entries?: ReadonlyArray<string>
  /** Overrides the plugin's `onExisting` for this transfer. */
  readonly onExisting?: Files.OnExisting
}

/** An offer waiting for the app's answer. */
export interface IncomingOffer {
  readonly id: string
  readonly peer: PeerId
  /** The sender's display name, as the sender calls itself (shown, not trusted). */
  readonly sender: string
  readonly entries: ReadonlyArray<Protocol.Entry>
  readonly count: number
  readonly totalBytes: number
  /**
   * Accepts into the directory `target`: checks it (links, files in the way,
   * free space) and starts the transfer. A failed check refuses the offer
   * with that reason, and fails with it. The first answer wins: later ones
   * fail with `DecisionError` `AlreadyDecided` (or `Expired` once the offer
   * timed out or was withdrawn).
   */
  readonly accept: (target: string, options?: AcceptOptions) => Effect.Effect<Running.Transfer, Protocol.DecisionError | Protocol.SpacedropError>
  /**
   * Refuses the offer; the sender's `send` fails with `reason` (default
   * `Declined`: the user said no; `NoListener`: nobody was there to ask,
   * `Timeout`: nobody answered in time, `Busy`: too many questions wait).
   */
  readonly reject: (detail?: string, reason?: RefusalReason) => Effect.Effect<void, Protocol.DecisionError>
}

/** Why an app refuses an offer (the other reasons are the plugin's own checks). */
export type RefusalReason = Extract<Protocol.RejectReason, "Declined" | "NoListener" | "Timeout" | "Busy">

/** What the plugin shares between its handler and its watchers. */
export interface Shared {
  readonly settings: Settings
  /** Front ends watching for offers now. */
  readonly watchers: Ref.Ref<number>
  /** Offers waiting for an answer now. */
  readonly pending: Ref.Ref<number>
  readonly offers: PubSub.PubSub<IncomingOffer>
  /** The node's transfers, and their resume records. */
  readonly registry: Registry.Registry
  /** Offers an interrupted send of this node again (its receiver asked with `Reoffer`). */
  readonly reoffer: (record: Records.SendRecord) => Effect.Effect<void, Protocol.SpacedropError>
}

type Decision =
  | {
    readonly _tag: "Accept"
    readonly root: string
    readonly indices: ReadonlyArray<number>
    readonly onExisting: Files.OnExisting
    readonly running: Running.Running
    /** The names accepted (`undefined`: all). */
    readonly select: ReadonlyArray<string> | undefined
    /** The record of an interrupted transfer this one resumes. */
    readonly resumed: Records.ReceiveRecord | undefined
  }
  | { readonly _tag: "Reject"; readonly reason: Protocol.RejectReason; readonly detail: string }

type OfferState = "pending" | "deciding" | "decided" | "expired"

const violation = (where: Wire.Where, reason: ProtocolError["reason"], detail: string) => new ProtocolError({ reason, ...where, detail })

/** The indices of the entries named (a directory brings everything under it), or the first name the offer lacks. */
const select = (entries: ReadonlyArray<Protocol.Entry>, names: ReadonlyArray<string> | undefined): Either.Either<ReadonlyArray<number>, string> => {
  if (names === undefined) return Either.right(entries.map((_, i) => i))
  const known = new Set(entries.map((e) => e.path))
  const unknown = names.find((name) => !known.has(name))
  if (unknown !== undefined) return Either.left(unknown)
  const chosen = new Set(names)
  return Either.right(entries.flatMap((entry, i) => {
    const names = entry.path.split("/")
    for (let n = 1; n <= names.length; n++) if (chosen.has(names.slice(0, n).join("/"))) return [i]
    return []
  }))
}

/** What reading an offer came to. */
type Read =
  | { readonly _tag: "Ended" }
  | { readonly _tag: "Reoffer"; readonly transfer: string }
  | { readonly _tag: "Forget"; readonly transfer: string }
  | { readonly _tag: "Refused"; readonly offer: typeof Protocol.Offer.Type; readonly reason: Protocol.RejectReason; readonly detail: string }
  | { readonly _tag: "Offered"; readonly offer: typeof Protocol.Offer.Type; readonly entries: ReadonlyArray<Protocol.Entry> }

/** Reads the offer and its pages; `Refused` when it is over a bound, or unsafe. */
const readOffer = (wire: Wire.Wire, where: Wire.Where, limits: Limits): Effect.Effect<Read, ProtocolError | MessageError | TransportError> =>
  Effect.gen(function*() {
    const next = (what: string) =>
      wire.next.pipe(
        Effect.timeoutFail({
          duration: Protocol.OFFER_TIMEOUT,
          onTimeout: () => new MessageError({ reason: "Timeout", ...where, detail: `no ${what} within ${Duration.format(Protocol.OFFER_TIMEOUT)}` })
        })
      )
    const first = yield* next("offer")
    if (Option.isNone(first)) return { _tag: "Ended" } as const
    if (first.value._tag === "Message" && first.value.message.type === "Reoffer") return { _tag: "Reoffer", transfer: first.value.message.transfer } as const
    if (first.value._tag === "Message" && first.value.message.type === "Forget") return { _tag: "Forget", transfer: first.value.message.transfer } as const
    if (first.value._tag !== "Message" || first.value.message.type !== "Offer") {
      return yield* violation(where, "Unexpected", `expected an Offer, got ${first.value._tag === "Chunk" ? "a chunk" : first.value.message.type}`)
    }
    const offer = first.value.message
    const refuse = (reason: Protocol.RejectReason, detail: string): Read => ({ _tag: "Refused", offer, reason, detail })
    if (offer.count > limits.maxEntries) return refuse("TooLarge", `${offer.count} entries offered, at most ${limits.maxEntries} taken`)
    if (offer.chunkBytes > limits.maxChunkBytes) return refuse("TooLarge", `chunks of ${offer.chunkBytes} bytes, at most ${limits.maxChunkBytes} taken`)
    const entries: Array<Protocol.Entry> = []
    let bytes = first.value.bytes
    while (entries.length < offer.count) {
      const page = yield* next("page of entries")
      if (Option.isNone(page)) return { _tag: "Ended" } as const
      if (page.value._tag !== "Message" || page.value.message.type !== "Entries") {
        return yield* violation(where, "Unexpected", "expected a page of entries")
      }
      bytes += page.value.bytes
      if (bytes > limits.maxManifestBytes) return refuse("TooLarge", `a manifest over ${limits.maxManifestBytes} bytes`)
      if (entries.length + page.value.message.entries.length > offer.count) {
        return yield* violation(where, "Unexpected", `more entries than the ${offer.count} offered`)
      }
      for (const entry of page.value.message.entries) entries.push(entry)
    }
    let total = 0
    for (const entry of entries) {
      if (entry.kind === "file" && entry.hash === undefined) return yield* violation(where, "Malformed", `file ${JSON.stringify(entry.path)} has no hash`)
      if (entry.kind === "file") total += entry.size
    }
    if (total !== offer.totalBytes) return yield* violation(where, "Malformed", `the files add up to ${total} bytes, the offer says ${offer.totalBytes}`)
    const problem = Paths.checkManifest(entries, limits)
    if (Option.isSome(problem)) return refuse(problem.value.reason, `${JSON.stringify(problem.value.path.slice(0, 200))}: ${problem.value.detail}`)
    return { _tag: "Offered", offer, entries } as const
  })


/** How long a resumed transfer waits for its old run (on a connection that went quiet) to stop. */
const SUPERSEDE_TIMEOUT = Duration.seconds(10)

/** A temporary file's name: beside its target, named by transfer and entry, so a resume finds it. */
const tempName = (transfer: string, index: number) => `.weft-${transfer}-${index}.part`

/** Whether `name` is one of the temporary files of `transfer` (`tempName`). */
const isTempOf = (transfer: string, name: string) => name.startsWith(`.weft-${transfer}-`) && /^\.weft-[A-Za-z0-9_-]{1,64}-\d+\.part$/.test(name)

/**
 * Removes what an interrupted receive kept: its temporary files (only ours,
 * by name: `temp`, and those in the `scratch` directories inside the
 * target, which a crash may have left) and its record.
 */
export const forget = (store: Records.Store, record: Records.ReceiveRecord): Effect.Effect<void> =>
  Effect.gen(function*() {
    const temp = record.temp
    if (temp !== undefined && isTempOf(record.transfer, nodePath.basename(temp))) yield* Files.removeQuietly(temp)
    for (const dir of record.scratch ?? []) {
      // only inside the target: the record is ours, but a file on disk
      const inside = nodePath.relative(record.root, dir)
      if (inside.startsWith("..") || nodePath.isAbsolute(inside)) continue
      const names = yield* Effect.promise(() => fs.readdir(dir).catch(() => [] as Array<string>))
      for (const name of names) if (isTempOf(record.transfer, name)) yield* Files.removeQuietly(nodePath.join(dir, name))
    }
    yield* store.remove("receive", record.transfer)
  })

/** Serves one inbound stream: an offer (a new one, or a resumed one), then (if accepted) its files; or a `Reoffer` request. */
export const handle = (shared: Shared) =>
(stream: Duplex, context: Plugin.StreamContext): Effect.Effect<void, ProtocolError, Scope.Scope> =>
  Effect.gen(function*() {
    const { registry, settings } = shared
    const { store } = registry
    const peer = context.peer
    const where = { peer, protocol: stream.protocol }
    const wire = yield* Wire.make(stream, maxFrameBytes(settings.limits))
    const refuse = (reason: Protocol.RejectReason, detail: string) =>
      Effect.zipRight(Effect.ignore(wire.send({ type: "Rejected", reason, detail: detail.slice(0, 1024) })), wire.end)

    const read = yield* readOffer(wire, where, settings.limits).pipe(
      Effect.tapErrorTag("MessageError", (e) => (e.reason === "VersionMismatch" ? refuse("Failed", e.detail) : Effect.void))
    )
    if (read._tag === "Ended") return
    if (read._tag === "Reoffer") {
      // the receiver of one of our sends asks for it again: only that peer, only an interrupted one
      if (registry.live.has(read.transfer)) return yield* refuse("Busy", "a transfer of this id runs here now")
      const record = yield* store.get("send", read.transfer)
      if (Option.isNone(record) || record.value.direction !== "send" || record.value.peer !== peer) {
        // cancelled here (perhaps while the receiver was out of reach), or done: it will never go on
        return yield* refuse("UnknownTransfer", "no interrupted transfer of this id to you here")
      }
      const offered = yield* Effect.either(shared.reoffer(record.value))
      if (Either.isLeft(offered)) return yield* refuse("Failed", offered.left.detail)
      yield* wire.send({ type: "Accepted" })
      return yield* wire.end
    }
    if (read._tag === "Forget") {
      // the sender cancelled a transfer it could not reach: what this side kept of it goes (only that peer's)
      const live = registry.live.get(read.transfer)
      if (live !== undefined && live.transfer.peer === peer && live.transfer.direction === "receive") {
        // an old run still waiting on a half-open connection: stopped first (it keeps its record as it stops)
        yield* Deferred.succeed(live.superseded, undefined)
        yield* Effect.ignore(Effect.timeout(Effect.exit(live.transfer.result), SUPERSEDE_TIMEOUT))
      }
      const record = yield* store.get("receive", read.transfer)
      if (Option.isSome(record) && record.value.direction === "receive" && record.value.peer === peer) {
        yield* Effect.logInfo(`transfer ${read.transfer} from ${peer}: cancelled by the sender while interrupted; what was kept is removed`)
        yield* forget(store, record.value)
      }
      return yield* wire.end
    }
    if (read._tag === "Refused") {
      const { offer, reason, detail } = read
      yield* Effect.logInfo(`refused offer ${offer.transfer} from ${peer}: ${reason}: ${detail}`)
      return yield* refuse(reason, detail)
    }
    const { offer, entries } = read
    const ids = { peer, transfer: offer.transfer }
    if (Registry.wasCancelled(registry, peer, offer.transfer)) {
      // the sender was out of reach when this side cancelled, and offers it again: not asked again
      yield* Effect.logInfo(`refused offer ${offer.transfer} from ${peer}: cancelled here before`)
      return yield* refuse("Declined", "the receiver cancelled this transfer")
    }
    const live = registry.live.get(offer.transfer)
    if (live !== undefined) {
      // the sender is back on a new connection while this side still waits on the old one: the old run stops
      // (keeping what it verified) and this one resumes it
      if (live.transfer.peer !== peer || live.transfer.direction !== "receive") return yield* refuse("Busy", "a transfer of this id runs here already")
      yield* Deferred.succeed(live.superseded, undefined)
      yield* Effect.ignore(Effect.timeout(Effect.exit(live.transfer.result), SUPERSEDE_TIMEOUT))
      if (registry.live.has(offer.transfer)) return yield* refuse("Busy", "a transfer of this id runs here already")
    }
    const manifest = Records.manifestHash(entries, offer.chunkBytes)
    const kept = yield* store.get("receive", offer.transfer)
    let resumed: Records.ReceiveRecord | undefined
    if (Option.isSome(kept) && kept.value.direction === "receive") {
      const record = kept.value
      if (record.peer !== peer) return yield* refuse("Busy", "a transfer of this id from another peer is kept here")
      // the same transfer with another manifest is a new offer: what was kept of the old one goes
      if (record.manifest === manifest) resumed = record
      else yield* forget(store, record)
    }

    // the sender sends nothing more until answered: whatever comes (its end, a Cancel, a reset) withdraws the offer
    const after = yield* Effect.forkScoped(wire.next)
    const runAccepted = (decision: Extract<Decision, { _tag: "Accept" }>) =>
      receiveFiles({ wire, where, ids, offer, entries, decision, after, settings, registry, manifest }).pipe(
        // whatever the outcome, our side ends cleanly: the sender reads what we sent last
        Effect.ensuring(wire.end),
        Effect.catchIf((e) => !(e instanceof ProtocolError), (e) => Effect.logInfo(`transfer ${offer.transfer} from ${peer} failed: ${e.message}`))
      )

    if (resumed !== undefined) {
      // accepted before: no one is asked again; what was verified is not sent again
      const indices = select(entries, resumed.select)
      if (Either.isLeft(indices)) {
        yield* forget(store, resumed)
        return yield* refuse("Failed", "the kept record names an entry the offer lacks")
      }
      const running = yield* Running.make({
        transfer: offer.transfer,
        direction: "receive",
        peer,
        totalBytes: resumed.totalBytes,
        totalFiles: resumed.totalFiles,
        bytes: resumed.bytes,
        files: resumed.position.files
      })
      const added = yield* Effect.either(Registry.add(registry, running))
      if (Either.isLeft(added)) return yield* refuse("Busy", added.left.detail)
      yield* Effect.logInfo(`resuming transfer ${offer.transfer} from ${peer} at file ${resumed.position.files}, byte ${resumed.position.offset}`)
      return yield* runAccepted({ _tag: "Accept", root: resumed.root, indices: indices.right, onExisting: resumed.onExisting, running, select: resumed.select, resumed })
    }

    if ((yield* Ref.get(shared.watchers)) === 0) return yield* refuse("NoListener", "nobody is watching for offers here")
    const admitted = yield* Ref.modify(shared.pending, (n) => (n < settings.maxPendingOffers ? [true, n + 1] : [false, n]))
    if (!admitted) return yield* refuse("Busy", "too many offers wait for an answer; send again later")

    const decided = yield* Deferred.make<Decision>()
    const state = yield* Ref.make<OfferState>("pending")
    const claim = Ref.modify(state, (s): [OfferState, OfferState] => (s === "pending" ? ["pending", "deciding"] : [s, s]))
    const claimed = <E>(then: Effect.Effect<void, E>): Effect.Effect<void, E | Protocol.DecisionError> =>
      Effect.flatMap(claim, (previous): Effect.Effect<void, E | Protocol.DecisionError> =>
        previous === "pending"
          ? then
          : Effect.fail(new Protocol.DecisionError({
            reason: previous === "expired" ? "Expired" : "AlreadyDecided",
            transfer: offer.transfer,
            detail: previous === "expired" ? "the offer timed out or was withdrawn" : "another answer came first"
          })))
    const decide = (decision: Decision) => Effect.zipRight(Deferred.succeed(decided, decision), Ref.set(state, "decided"))
    // set once this handler has ended: an acceptance that completes after that has no one to run it
    const gone = yield* Deferred.make<void>()
    let started = false
    const closed = () =>
      Exit.fail(new Protocol.SpacedropError({ reason: "Closed", ...ids, detail: "the sender's stream closed before the transfer began" }))
    const abandon = (running: Running.Running) => Effect.zipRight(running.finish(closed()), Registry.remove(registry, running))

    const incoming: IncomingOffer = {
      id: offer.transfer,
      peer,
      sender: offer.sender,
      entries,
      count: offer.count,
      totalBytes: offer.totalBytes,
      reject: (detail, reason = "Declined") => claimed(decide({ _tag: "Reject", reason, detail: detail ?? "the user declined" })),
      accept: (target, options = {}) =>
        Effect.gen(function*() {
          const indices = select(entries, options.entries)
          if (Either.isLeft(indices)) {
            return yield* new Protocol.SpacedropError({ reason: "Failed", ...ids, path: indices.left, detail: "the offer has no such entry" })
          }
          const onExisting = options.onExisting ?? settings.onExisting
          let transfer: Running.Transfer | undefined
          yield* claimed(
            Effect.gen(function*() {
              const chosen = indices.right.map((i) => entries[i]!)
              const checked = yield* Effect.either(Files.checkTarget(ids, target, chosen, onExisting))
              if (Either.isLeft(checked)) {
                const e = checked.left
                const reason: Protocol.RejectReason = e.reason === "UnsafePath" || e.reason === "Exists" || e.reason === "NoSpace" ? e.reason : "Failed"
                yield* decide({ _tag: "Reject", reason, detail: e.detail })
                return yield* Effect.fail(e)
              }
              const files = chosen.filter((e) => e.kind === "file")
              const running = yield* Running.make({
                transfer: offer.transfer,
                direction: "receive",
                peer,
                totalBytes: files.reduce((n, e) => n + e.size, 0),
                totalFiles: files.length
              })
              const added = yield* Effect.either(Registry.add(registry, running))
              if (Either.isLeft(added)) {
                yield* decide({ _tag: "Reject", reason: "Busy", detail: added.left.detail })
                return yield* Effect.fail(added.left)
              }
              transfer = running.transfer
              yield* decide({ _tag: "Accept", root: checked.right, indices: indices.right, onExisting, running, select: options.entries, resumed: undefined })
              if (yield* Deferred.isDone(gone)) yield* abandon(running)
            })
          )
          return transfer!
        })
    }

    // however this handler ends (interrupted too), an offer still pending expires, and one accepted but never
    // started ends its transfer as Closed
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Deferred.succeed(gone, undefined)
        yield* Ref.update(state, (s) => (s === "pending" ? "expired" : s))
        const decision = yield* Deferred.poll(decided)
        if (decision._tag === "Some" && !started) {
          const d = yield* decision.value
          if (d._tag === "Accept") yield* abandon(d.running)
        }
      }))
    yield* PubSub.publish(shared.offers, incoming)
    const outcome = yield* Effect.raceFirst(
      Effect.map(Deferred.await(decided), (d) => ({ _tag: "Decided" as const, decision: d })),
      Effect.raceFirst(
        Effect.as(Effect.sleep(settings.decisionTimeout), { _tag: "Timeout" as const }),
        Effect.as(Fiber.await(after), { _tag: "Withdrawn" as const })
      )
    ).pipe(Effect.ensuring(Ref.update(shared.pending, (n) => n - 1)))

    let decision: Decision
    if (outcome._tag === "Decided") {
      decision = outcome.decision
    } else {
      // an answer under way still wins: it claimed the offer before the clock or the sender did
      const expired = yield* Ref.modify(state, (s): [boolean, OfferState] => (s === "pending" ? [true, "expired"] : [false, s]))
      if (expired && outcome._tag === "Timeout") {
        yield* Effect.logInfo(`offer ${offer.transfer} from ${peer}: no answer in time`)
        return yield* refuse("Timeout", `nobody answered within ${Duration.format(settings.decisionTimeout)}`)
      }
      if (expired) return yield* withdrawn(after, where)
      decision = yield* Deferred.await(decided)
    }
    if (decision._tag === "Reject") {
      yield* Effect.logInfo(`refused offer ${offer.transfer} from ${peer}: ${decision.reason}`)
      return yield* refuse(decision.reason, decision.detail)
    }
    started = true
    yield* runAccepted(decision)
  }).pipe(
    Effect.catchIf(
      (e): e is Exclude<typeof e, ProtocolError> => !(e instanceof ProtocolError),
      (e) => Effect.logInfo(`spacedrop stream from ${context.peer} ended: ${e.message}`)
    ),
    Effect.annotateLogs({ plugin: "spacedrop", peer: context.peer })
  )

/** The sender withdrew its offer before an answer: a Cancel or its end is fine, anything else out of turn. */
const withdrawn = (
  after: Fiber.RuntimeFiber<Option.Option<Protocol.Frame>, ProtocolError | MessageError | TransportError>,
  where: Wire.Where
) =>
  Effect.gen(function*() {
    const first = yield* Fiber.join(after)
    if (Option.isSome(first) && !(first.value._tag === "Message" && first.value.message.type === "Cancel")) {
      return yield* violation(where, "Unexpected", "a frame before the offer was answered")
    }
    yield* Effect.logInfo(`${where.peer} withdrew its offer`)
  })

interface Receiving {
  readonly wire: Wire.Wire
  readonly where: Wire.Where
  readonly ids: { readonly peer: PeerId; readonly transfer: string }
  readonly offer: typeof Protocol.Offer.Type
  readonly entries: ReadonlyArray<Protocol.Entry>
  readonly decision: Extract<Decision, { _tag: "Accept" }>
  readonly after: Fiber.RuntimeFiber<Option.Option<Protocol.Frame>, ProtocolError | MessageError | TransportError>
  readonly settings: Settings
  readonly registry: Registry.Registry
  /** The manifest's hash (see `Records.manifestHash`). */
  readonly manifest: string
}

/**
 * The file being written. Its disk work is queued on `io`, in order, and
 * not awaited chunk by chunk: the next frame is read while the last one is
 * written. `io` never rejects; the first failure is kept in `failure`.
 */
interface Open {
  readonly entry: Protocol.Entry
  readonly index: number
  readonly temp: string
  readonly final: string
  /** Set once the file is created (or reopened). */
  handle: Files.FileHandle | undefined
  io: Promise<void>
  /**
   * A checkpoint's sync of what was written before it, run beside the
   * writes queued after it (a sync of many MiB in the queue held every
   * write behind it, and the reading with them); waited for before the
   * file is closed. Never rejects either.
   */
  syncing: Promise<void>
  failure: Protocol.SpacedropError | undefined
  /** The file's hash so far: the digests its chunks were verified with, folded in (no second pass over the bytes). */
  hash: Files.FileHash
  /** Bytes verified (written, or gathered to be). */
  written: number
  /**
   * Verified data not yet handed to a write, as it arrived (views of the
   * transport's pieces): written in one `writev` once `GATHER_BYTES` are
   * in, at the file's end, and before any sync.
   */
  gathered: Array<Uint8Array>
  gatheredBytes: number
}

/** A durable record is rewritten at most every this many verified bytes (after a sync of the file being written)… */
const CHECKPOINT_BYTES = 16 * 1024 * 1024
/** …or this many files put in place. */
const CHECKPOINT_FILES = 256
/** Most rewinds of one run, whatever the chunks: a sender whose every chunk fails is not worth more. */
const MAX_REWINDS = 64
/**
 * Verified files waiting to be synced and put in place together: at most
 * this many (each holds a descriptor)… The group's syncs run at once, so a
 * file costs a fraction of a sync, not one (a sync is ~0.5–2 ms on a disk).
 */
const GROUP_FILES = 64
/** …or this many bytes. */
const GROUP_BYTES = 32 * 1024 * 1024
/** Most bytes handed to writes not yet done (or gathered for one): past it the reader waits for the disk. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024
/**
 * Verified bytes gathered before they go to the disk in one write (under
 * half of `MAX_QUEUED_BYTES`, so that the writes queued before them can
 * always drain the reader's wait).
 */
const GATHER_BYTES = 2 * 1024 * 1024

/**
 * Writes the accepted files as their chunks come, each verified, synced and
 * put in place; keeps the resume record up to date, and on the way out
 * either keeps what was verified (the connection or the process went away)
 * or removes it.
 *
 * A file whose whole hash matched joins a group; the group's files are
 * synced together, then put in place, before anything counts on them (the
 * progress, a record, `Complete`). A file is never put in place before its
 * hash matched and its bytes were synced.
 */
const receiveFiles = (r: Receiving): Effect.Effect<Running.Summary, Running.TransferError, Scope.Scope> =>
  Effect.gen(function*() {
    const { wire, where, ids, offer, entries, decision, settings, registry } = r
    const { store } = registry
    const { root, running, onExisting } = decision
    const files = decision.indices.filter((i) => entries[i]!.kind === "file")
    const results: Array<Running.FileResult> = []
    const renamed = new Map<number, string>(decision.resumed?.renamed ?? [])
    // the next accepted file expected (files before it are verified; those in `group` are not yet in place)
    let next = 0
    let current: Open | undefined
    // verified, not yet synced and in place
    let group: Array<Open> = []
    let groupBytes = 0
    // verified bytes (`placedBytes`: of the files in place)
    let bytes = 0
    let placedBytes = 0
    let queued = 0
    const finalOf = (index: number) => nodePath.join(root, entries[index]!.path)
    const tempOf = (index: number) => nodePath.join(nodePath.dirname(finalOf(index)), tempName(offer.transfer, index))

    const fresh = (index: number, handle: Files.FileHandle | undefined, written: number): Open => ({
      entry: entries[index]!,
      index,
      temp: tempOf(index),
      final: finalOf(index),
      handle,
      io: Promise.resolve(),
      syncing: Promise.resolve(),
      failure: undefined,
      hash: new Files.FileHash(offer.chunkBytes),
      written,
      gathered: [],
      gatheredBytes: 0
    })
    /** Queues `op` on the file's handle, after what is queued already; `bytes` count against `MAX_QUEUED_BYTES` until it is done. */
    // the reading, waiting for the queued writes to drain to half the bound
    let drained: (() => void) | undefined
    const enqueue = (file: Open, what: string, op: (handle: Files.FileHandle) => Promise<unknown>, bytes = 0) => {
      file.io = file.io.then(async () => {
        try {
          if (file.failure === undefined && file.handle !== undefined) await op(file.handle)
        } catch (cause) {
          file.failure ??= Files.ioError(ids, file.temp, what)(cause)
        } finally {
          queued -= bytes
          if (drained !== undefined && queued <= MAX_QUEUED_BYTES / 2) {
            const resume = drained
            drained = undefined
            resume()
          }
        }
      })
    }
    /** Verified data of the file, taken as it came (counted in `queued` from now until it is written). */
    const gather = (file: Open, data: ReadonlyArray<Uint8Array>, bytes: number) => {
      for (const piece of data) file.gathered.push(piece)
      file.gatheredBytes += bytes
      queued += bytes
      if (file.gatheredBytes >= GATHER_BYTES) writeOut(file)
    }
    /** Queues the write of what the file gathered: one `writev` at the offset it starts at. */
    const writeOut = (file: Open) => {
      if (file.gatheredBytes === 0) return
      const pieces = file.gathered
      const bytes = file.gatheredBytes
      const at = file.written - bytes
      file.gathered = []
      file.gatheredBytes = 0
      enqueue(file, "write", (handle) => Files.writeAll(handle, pieces, at), bytes)
    }
    /** Syncs what is written of the file so far, beside the writes queued after this (see `Open.syncing`). */
    const syncBeside = (file: Open) => {
      writeOut(file)
      const upTo = file.io
      const before = file.syncing
      file.syncing = Promise.all([upTo, before]).then(async () => {
        try {
          if (file.failure === undefined && file.handle !== undefined) await file.handle.sync()
        } catch (cause) {
          file.failure ??= Files.ioError(ids, file.temp, "sync")(cause)
        }
      })
    }
    /** All of the file's work: its queue and its sync beside it. */
    const idle = (file: Open) => Promise.all([file.io, file.syncing])
    /** Waits for the file's queued work; fails with its first failure. */
    const settle = (file: Open) =>
      Effect.flatMap(Effect.promise(() => idle(file)), () => (file.failure === undefined ? Effect.void : Effect.fail(file.failure)))
    const settleAll = (open: ReadonlyArray<Open>) => Effect.promise(() => Promise.all(open.map(idle)))
    /**
     * Past the bound, waits until the queued writes drain to half of it: the
     * reading goes on while the rest is written (waiting for all of it left
     * the stream unread, and the sender's window shut, until the disk was idle).
     */
    const backpressure = Effect.suspend(() =>
      queued <= MAX_QUEUED_BYTES ? Effect.void : Effect.promise(() => new Promise<void>((resume) => (drained = resume)))
    )

    /** Opens the temporary file of a resumed entry, its first `offset` bytes verified before; `undefined` if it is not usable. */
    const reopen = (index: number, offset: number) =>
      Effect.gen(function*() {
        const entry = entries[index]!
        const temp = tempOf(index)
        yield* Files.ensureDirectory(ids, root, nodePath.posix.dirname(entry.path).replace(/^\.$/, ""), new Set())
        const stat = yield* Files.lstatOrNone(ids, temp)
        if (stat === undefined || !stat.isFile() || stat.size < offset) return undefined
        const handle = yield* Files.io(ids, temp, "open", () => fs.open(temp, constants.O_RDWR | constants.O_NOFOLLOW))
        const open = fresh(index, handle, offset)
        const hashed = yield* Effect.either(Effect.gen(function*() {
          yield* Files.io(ids, temp, "truncate", () => handle.truncate(offset))
          return yield* Files.io(ids, temp, "read", () => Files.hashPrefix(handle, open.hash, offset))
        }))
        if (Either.isLeft(hashed) || hashed.right < offset) {
          yield* Effect.promise(() => handle.close().catch(() => undefined))
          return undefined
        }
        return open
      }).pipe(
        Effect.catchAll((e) => Effect.as(Effect.logWarning(`transfer ${offer.transfer}: the kept part of ${entries[index]!.path} is not usable, it comes again: ${e.message}`), undefined))
      )

    if (decision.resumed !== undefined) {
      const position = decision.resumed.position
      next = Math.min(position.files, files.length)
      for (const index of files.slice(0, next)) {
        results.push({ path: entries[index]!.path, savedAs: renamed.get(index) ?? finalOf(index) })
        bytes += entries[index]!.size
      }
      placedBytes = bytes
      if (next < files.length && position.offset > 0 && position.offset <= entries[files[next]!]!.size) {
        current = yield* reopen(files[next]!, position.offset)
        bytes += current?.written ?? 0
      }
    }
    yield* wire.send({
      type: "Accepted",
      ...(decision.select === undefined ? {} : { entries: decision.indices }),
      ...(decision.resumed === undefined ? {} : { from: { files: next, offset: current?.written ?? 0 } })
    })
    yield* running.update((p) => ({ ...p, bytes, files: results.length }))
    yield* running.start

    // the resume record: written now (a new transfer), then at checkpoints, and as the transfer stops. It counts
    // only files in place (the group is put in place before a record is written) and the current file's bytes
    const recordAt = (): Records.ReceiveRecord => ({
      direction: "receive",
      transfer: offer.transfer,
      peer: ids.peer,
      sender: offer.sender,
      manifest: r.manifest,
      root,
      ...(decision.select === undefined ? {} : { select: decision.select }),
      onExisting,
      position: { files: results.length, offset: group.length === 0 ? current?.written ?? 0 : 0 },
      ...(current === undefined || group.length > 0 ? {} : { temp: current.temp }),
      scratch: scratchDirs(),
      renamed: [...renamed],
      bytes: group.length === 0 ? bytes : placedBytes,
      totalBytes: files.reduce((n, i) => n + entries[i]!.size, 0),
      totalFiles: files.length
    })
    /**
     * The directories of the files that may be written before the next
     * record: from the first not in place, as many as two checkpoints apart
     * and a group (a checkpoint may be skipped while the last one runs).
     */
    const scratchDirs = () => {
      const from = results.length
      const upTo = Math.min(files.length, from + 2 * Math.max(CHECKPOINT_FILES, renamed.size) + GROUP_FILES + 1)
      const dirs = new Set<string>()
      for (let k = from; k < upTo; k++) dirs.add(nodePath.dirname(finalOf(files[k]!)))
      return [...dirs]
    }
    const put = (record: Records.ReceiveRecord) =>
      store.put(record).pipe(
        Effect.as(true),
        Effect.catchAll((e) => Effect.as(Effect.logWarning(`spacedrop: transfer ${offer.transfer} will not be resumable: ${e.message}`), false))
      )
    const keep = Effect.suspend(() => put(recordAt()))
    let recorded = decision.resumed !== undefined || (yield* keep)
    let checkpointed = { bytes, files: results.length }
    // directories that got a new name since they were last synced: synced (where the platform allows) before a
    // record or Complete counts on those names, so a placed file survives a crash as its bytes do; a few
    // directory syncs per batch of files, not one per file
    const unsynced = new Set<string>()
    const takeUnsynced = () => {
      const dirs = [...unsynced]
      unsynced.clear()
      return dirs
    }
    const syncDirectories = Effect.suspend(() => {
      const dirs = takeUnsynced()
      return Effect.promise(() => Promise.all(dirs.map(Files.syncDirectory)))
    })

    // the group being synced and put in place (removed with the rest if that fails)
    let placing: Array<Open> = []
    // flushes and checkpoints one at a time (a pause's checkpoint runs beside the reading loop)
    const exclusive = yield* Effect.makeSemaphore(1)
    /** Syncs the group's files all at once, then puts them in place. */
    const flushGroup = Effect.suspend(() => {
      if (group.length === 0) return Effect.void
      const batch = group
      placing = batch
      group = []
      groupBytes = 0
      return Effect.gen(function*() {
        for (const file of batch) {
          const mtime = new Date(file.entry.mtime)
          // the modification time is kept where the file system allows it
          enqueue(file, "utimes", (handle) => handle.utimes(mtime, mtime).catch(() => undefined))
          enqueue(file, "sync", (handle) => handle.sync())
          enqueue(file, "close", async (handle) => {
            await file.syncing
            file.handle = undefined
            return handle.close()
          })
        }
        // the group's descriptors and syncs first, all at once
        yield* settleAll(batch)
        const failed = batch.find((f) => f.failure !== undefined)
        if (failed !== undefined) return yield* Effect.fail(failed.failure!)
        const saved = yield* Files.placeAll(ids, batch, onExisting)
        placing = []
        for (const [i, file] of batch.entries()) {
          const savedAs = saved[i]!
          unsynced.add(nodePath.dirname(savedAs))
          if (savedAs !== file.final) renamed.set(file.index, savedAs)
          results.push({ path: file.entry.path, savedAs })
          placedBytes += file.entry.size
        }
        yield* running.update((p) => ({ ...p, files: results.length }))
      })
    })
    const flush = exclusive.withPermits(1)(Effect.uninterruptible(flushGroup))

    // a checkpoint's syncs and record, run beside the reading (a sync of many MiB would stall the stream)
    let checkpointing: Fiber.RuntimeFiber<void> | undefined
    const awaitCheckpoint = Effect.suspend(() => {
      const fiber = checkpointing
      checkpointing = undefined
      return fiber === undefined ? Effect.void : Fiber.join(fiber)
    })
    /**
     * On a durable store, now and then: the group put in place, the file being written synced, then the
     * record saying how far it is. `force` (a pause, the end): done before going on.
     */
    const checkpoint = (force: boolean): Effect.Effect<void, Protocol.SpacedropError, Scope.Scope> =>
      Effect.suspend(() =>
        !recorded || !store.durable ||
          (!force && bytes - checkpointed.bytes < CHECKPOINT_BYTES && next - checkpointed.files < Math.max(CHECKPOINT_FILES, renamed.size))
          ? Effect.void
          : exclusive.withPermits(1)(checkpointNow(force))
      )
    const checkpointNow = (force: boolean): Effect.Effect<void, Protocol.SpacedropError, Scope.Scope> =>
      Effect.gen(function*() {
        if (!recorded || !store.durable) return
        // the record grows with the renamed files: written less often as it grows, so rewriting it stays linear
        if (!force && bytes - checkpointed.bytes < CHECKPOINT_BYTES && next - checkpointed.files < Math.max(CHECKPOINT_FILES, renamed.size)) return
        // one at a time: the next one waits for the one under way
        if (!force && checkpointing !== undefined && checkpointing.unsafePoll() === null) return
        yield* awaitCheckpoint
        yield* Effect.uninterruptible(flushGroup)
        checkpointed = { bytes, files: next }
        const record = recordAt()
        const file = current
        const dirs = takeUnsynced()
        if (file !== undefined) syncBeside(file)
        const work = Effect.gen(function*() {
          if (file !== undefined) yield* settle(file)
          yield* Effect.promise(() => Promise.all(dirs.map(Files.syncDirectory)))
          recorded = yield* put(record)
        }).pipe(Effect.catchAll((e) => Effect.logWarning(`spacedrop: transfer ${offer.transfer}: a checkpoint failed: ${e.message}`)))
        if (force) yield* work
        else checkpointing = yield* Effect.forkScoped(work)
      })

    const made = new Set<string>()
    for (const i of decision.indices) {
      const entry = entries[i]!
      yield* Files.ensureDirectory(ids, root, entry.kind === "directory" ? entry.path : nodePath.posix.dirname(entry.path).replace(/^\.$/, ""), made)
    }
    let acked = { bytes: 0, files: 0 }
    const failWith = (reason: Protocol.CancelReason, error: Protocol.SpacedropError) =>
      Effect.zipRight(
        Effect.ignore(wire.send({ type: "Cancel", reason, detail: error.detail.slice(0, 1024) })),
        Effect.zipRight(wire.end, Effect.fail(error))
      )
    // verified, whether or not in place yet: the sender's window
    const ack = (force: boolean) => {
      if (!force && bytes - acked.bytes < Protocol.ACK_EVERY_BYTES && next - acked.files < Protocol.ACK_EVERY_FILES) return Effect.void
      acked = { bytes, files: next }
      return wire.send({ type: "Ack", ...acked })
    }
    const open = (index: number) =>
      Effect.suspend(() => {
        const file = fresh(index, undefined, 0)
        const resumed = decision.resumed !== undefined
        // created on its queue, held from the start: a cancel landing meanwhile finds it in `current`, and
        // `discard` waits for its creation before removing it
        file.io = (async () => {
          try {
            // a resumed transfer may have left one of ours here, unverified: it is written again
            if (resumed) await fs.rm(file.temp, { force: true }).catch(() => undefined)
            file.handle = await Files.openExclusive(file.temp)
          } catch (cause) {
            file.failure = Files.ioError(ids, file.temp, "create")(cause)
          }
        })()
        current = file
        return Effect.succeed(file)
      })
    /** Closes and removes files not put in place (their work done first). */
    const remove = (open: ReadonlyArray<Open>) =>
      Effect.promise(() =>
        Promise.all(open.map(async (file) => {
          await idle(file)
          await file.handle?.close().catch(() => undefined)
          file.handle = undefined
          await fs.rm(file.temp, { force: true }).catch(() => undefined)
        }))
      )
    const discard = Effect.suspend(() => {
      const open = [...placing, ...group, ...(current === undefined ? [] : [current])]
      current = undefined
      group = []
      placing = []
      return remove(open)
    })

    // a chunk (or file) that failed its hash is asked for again: skip what was in flight until it comes
    let skipping: { readonly index: number; readonly offset: number } | undefined
    let skipped = 0
    const retries = new Map<string, number>()
    let rewinds = 0
    const rewind = (index: number, offset: number, error: Protocol.SpacedropError): Effect.Effect<void, Protocol.SpacedropError | TransportError> =>
      Effect.suspend((): Effect.Effect<void, Protocol.SpacedropError | TransportError> => {
        const key = `${index}:${offset}`
        const tries = (retries.get(key) ?? 0) + 1
        if (tries > settings.maxRetries || rewinds >= MAX_REWINDS) {
          return failWith("Corrupt", new Protocol.SpacedropError({ ...error, detail: `${error.detail} (asked again ${tries - 1} times)` }))
        }
        retries.set(key, tries)
        rewinds++
        skipping = { index, offset }
        skipped = 0
        return Effect.zipRight(Effect.logInfo(`transfer ${offer.transfer}: ${error.detail}; asked for again`), wire.send({ type: "Rewind", index, offset }))
      })
    // what may be in flight when the rewind reaches the sender: its window, at most
    const maxSkipped = 2 * 1024 * 1024 * 1024

    // a sender silent for idleTimeout while nobody holds the transfer paused has stalled
    let frames = 0
    const stalled = yield* Deferred.make<void>()
    yield* Effect.forkScoped(Effect.gen(function*() {
      const tick = Duration.divide(settings.idleTimeout, 4).pipe(Option.getOrElse(() => settings.idleTimeout))
      let seen = frames
      let quiet = 0
      while (true) {
        yield* Effect.sleep(tick)
        const holds = yield* SubscriptionRef.get(running.holds)
        if (frames !== seen || holds.sender || holds.receiver) quiet = 0
        else quiet++
        seen = frames
        if (quiet >= 4) return yield* Deferred.succeed(stalled, undefined)
      }
    }))
    // this side's pause, told to the sender
    let told = false
    yield* Effect.forkScoped(Stream.runForEach(running.holds.changes, (h) => {
      if (h.receiver === told) return Effect.void
      told = h.receiver
      return Effect.ignore(Effect.zipRight(wire.send({ type: h.receiver ? "Pause" : "Resume" }), h.receiver ? checkpoint(true) : Effect.void))
    }))
    // a sender gone quiet (a half-open connection, most likely) or back on a new connection: this run stops and
    // keeps what it verified, for the sender to resume
    const abort = Effect.raceFirst(
      Effect.raceFirst(
        Effect.zipRight(
          Deferred.await(stalled),
          Effect.fail(new Protocol.SpacedropError({ reason: "Timeout", ...ids, detail: `nothing from the sender for ${Duration.format(settings.idleTimeout)}` }))
        ),
        Effect.zipRight(
          Deferred.await(running.superseded),
          Effect.fail(new Protocol.SpacedropError({ reason: "Closed", ...ids, detail: "the sender resumed the transfer on a new connection" }))
        )
      ),
      Effect.zipRight(
        Deferred.await(running.cancelled),
        failWith("User", new Protocol.SpacedropError({ reason: "Cancelled", ...ids, by: "receiver", detail: "cancelled by the receiver" }))
      )
    )

    const loop = Effect.gen(function*() {
      let first = true
      while (true) {
        const frame = yield* (first ? Fiber.join(r.after) : wire.next).pipe(
          Effect.catchIf((e): e is MessageError => e instanceof MessageError, (e) =>
            Effect.fail(new Protocol.SpacedropError({ reason: e.reason === "VersionMismatch" ? "VersionMismatch" : "Closed", ...ids, detail: e.detail })))
        )
        first = false
        frames++
        if (Option.isNone(frame)) return yield* new Protocol.SpacedropError({ reason: "Closed", ...ids, detail: "the sender ended the stream before it was done" })
        const f = frame.value
        if (f._tag === "Chunk") {
          if (skipping !== undefined) {
            if (f.index !== skipping.index || f.offset !== skipping.offset) {
              skipped += f.length
              if (skipped > maxSkipped) return yield* violation(where, "Unexpected", `over ${maxSkipped} bytes sent after a rewind`)
              continue
            }
            skipping = undefined
          }
          const index = files[next]
          const entry = index === undefined ? undefined : entries[index]
          if (index === undefined || entry === undefined || f.index !== index) return yield* violation(where, "Unexpected", `a chunk of entry ${f.index}, expected ${index ?? "none"}`)
          const file = current ?? (yield* open(index))
          // every chunk but a file's last is of the offer's size: the file's hash is made of those chunks' digests
          if (f.offset !== file.written || f.length !== Math.min(offer.chunkBytes, entry.size - f.offset)) {
            return yield* violation(where, "Unexpected", `a chunk at ${f.offset}+${f.length} of ${JSON.stringify(entry.path)} (${file.written} written of ${entry.size}, chunks of ${offer.chunkBytes})`)
          }
          // hashed piece by piece as the data arrived (never gathered into one buffer)
          const chunkHash = createHash("sha256")
          for (const piece of f.data) chunkHash.update(piece)
          const digest = chunkHash.digest()
          if (!digest.equals(f.hash)) {
            yield* rewind(index, f.offset, new Protocol.SpacedropError({ reason: "Corrupt", ...ids, path: entry.path, detail: `the chunk at ${f.offset} does not match its hash` }))
            continue
          }
          file.hash.addChunk(digest)
          file.written += f.length
          gather(file, f.data, f.length)
          bytes += f.length
          // a file's last chunk shows with its end (one progress update per small file, not three)
          if (file.written < entry.size) yield* running.update((p) => ({ ...p, bytes, current: entry.path }))
          yield* backpressure
          yield* checkpoint(false)
          yield* ack(false)
          continue
        }
        const message = f.message
        switch (message.type) {
          case "FileEnd": {
            if (skipping !== undefined) continue
            const index = files[next]
            if (index === undefined || message.index !== index) return yield* violation(where, "Unexpected", `the end of entry ${message.index}, expected ${index ?? "none"}`)
            const entry = entries[index]!
            const file = current ?? (yield* open(index))
            writeOut(file)
            if (file.written !== entry.size) return yield* violation(where, "Unexpected", `the end of ${JSON.stringify(entry.path)} after ${file.written} of ${entry.size} bytes`)
            if (file.hash.digest() !== entry.hash) {
              const error = new Protocol.SpacedropError({ reason: "Corrupt", ...ids, path: entry.path, detail: "the file does not match the hash in the offer" })
              if (entry.size === 0) return yield* failWith("Corrupt", error)
              // every chunk matched its own hash, the whole did not: the whole file again
              yield* settle(file)
              yield* Files.io(ids, file.temp, "truncate", () => file.handle!.truncate(0))
              bytes -= file.written
              file.written = 0
              file.hash = new Files.FileHash(offer.chunkBytes)
              yield* running.update((p) => ({ ...p, bytes }))
              yield* rewind(index, 0, error)
              continue
            }
            // verified: synced and put in place with its group
            current = undefined
            group.push(file)
            groupBytes += entry.size
            next++
            if (group.length >= GROUP_FILES || groupBytes >= GROUP_BYTES) yield* flush
            yield* running.update((p) => ({ ...p, bytes, current: undefined }))
            yield* checkpoint(false)
            yield* ack(false)
            continue
          }
          case "Done": {
            if (skipping !== undefined) continue
            if (next !== files.length) return yield* violation(where, "Unexpected", `Done after ${next} of ${files.length} files`)
            yield* awaitCheckpoint
            yield* flush
            yield* syncDirectories
            yield* wire.send({ type: "Complete", bytes, files: results.length })
            yield* wire.end
            return {
              transfer: offer.transfer,
              peer: ids.peer,
              files: results,
              directories: decision.indices.filter((i) => entries[i]!.kind === "directory").length,
              bytes
            } satisfies Running.Summary
          }
          case "Pause":
          case "Resume":
            yield* running.holdRemote(message.type === "Pause")
            if (message.type === "Pause") yield* checkpoint(true)
            continue
          case "Cancel":
            return yield* new Protocol.SpacedropError({
              reason: message.reason === "User" ? "Cancelled" : message.reason,
              ...ids,
              by: "sender",
              detail: message.detail
            })
          default:
            return yield* violation(where, "Unexpected", `${message.type} during the transfer`)
        }
      }
    })
    // raced once as a whole, not frame by frame (a race per frame costs fibers per frame)
    return yield* Effect.raceFirst(loop, abort).pipe(
      // a local failure is told to the sender (a violation is not: the host disconnects it)
      Effect.tapError((e) =>
        e instanceof Protocol.SpacedropError && e.by === undefined && e.reason !== "Cancelled" && e.reason !== "Corrupt" && e.reason !== "Closed" &&
          e.reason !== "Timeout"
          ? Effect.ignore(Effect.zipRight(wire.send({ type: "Cancel", reason: "Failed", detail: e.message.slice(0, 1024) }), wire.end))
          : Effect.void
      ),
      Effect.onExit((exit) =>
        Effect.gen(function*() {
          yield* Effect.exit(awaitCheckpoint)
          // kept: the connection dropped (its handler is interrupted too), or the process is stopping (a record in
          // memory is then refused, see `Records.memory`); never when a side decided to stop
          let kept = false
          // a cancel asked for here is final even when the connection went first (the sender, told,
          // may reset the stream while the Cancel is still being sent): nothing is kept to resume
          const cancelledHere = yield* Deferred.isDone(running.cancelled)
          // the sender may not have read the Cancel (the connection went first) and offer the transfer again
          if (cancelledHere) yield* Registry.cancelledReceive(registry, ids.peer, offer.transfer)
          if (Exit.isFailure(exit)) {
            // files verified whole go in place whatever stopped the transfer, as each did on its own before
            // groups (and, for a resume, nothing verified is sent again); if they cannot, they go
            const placed = yield* Effect.either(flush)
            if (Either.isLeft(placed)) yield* discard
          }
          if (recorded && !cancelledHere && Running.isResumable(exit, { timeout: true })) {
            const file = current
            if (file !== undefined) {
              writeOut(file)
              enqueue(file, "sync", (handle) => handle.sync())
              yield* Effect.promise(() => idle(file))
              if (file.failure !== undefined) yield* discard
              else yield* Effect.promise(() => file.handle?.close().catch(() => undefined) ?? Promise.resolve())
            }
            yield* syncDirectories
            kept = yield* keep
          }
          if (!kept) {
            if (Exit.isFailure(exit)) yield* discard
            if (recorded) yield* store.remove("receive", offer.transfer)
          }
          // and it ends as what it is, whatever the stream's teardown failed with meanwhile
          yield* running.finish(
            cancelledHere && Exit.isFailure(exit)
              ? Exit.fail(new Protocol.SpacedropError({ reason: "Cancelled", ...ids, by: "receiver", detail: "cancelled by the receiver" }))
              : exit,
            kept
          )
          yield* Registry.remove(registry, running)
        })
      )
    )
  })
