/**
 * The sending side: builds and hashes the manifest, offers it, and streams
 * the accepted files chunk after chunk within its window, never waiting for
 * a reply per chunk or per file (see `Protocol`).
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { randomBytes } from "node:crypto"
import { ProtocolError } from "../../../transport/ProtocolError.js"
import type { PeerId } from "../../../transport/Transport.js"
import { MessageError } from "../../Messages.js"
import type { PluginHost } from "../../PluginHost.js"
import * as Paths from "../Paths.js"
import * as Protocol from "../Protocol.js"
import * as Files from "./files.js"
import * as Read from "./read.js"
import type * as Records from "./records.js"
import * as Registry from "./registry.js"
import * as Running from "./transfer.js"
import * as Wire from "./wire.js"

/** Options of one send. */
export interface SendOptions {
  /** How long to wait for the receiver's answer (default 75 s: its user's minute and some slack). */
  readonly answerTimeout?: Duration.DurationInput
  /**
   * Most time the receiver may take, once the transfer runs, to take a frame, to acknowledge a full window,
   * or to confirm the end (default 30 s): a receiver that stops reading fails the send with `Timeout`.
   */
  readonly idleTimeout?: Duration.DurationInput
  /** Most bytes sent and not yet acknowledged (default 8 MiB; at least 4 MiB). */
  readonly windowBytes?: number
  /** The chunk size (default: fitted to the total, see `chunkBytesFor`). */
  readonly chunkBytes?: number
  /**
   * How many times an accepted transfer whose connection dropped (or whose
   * receiver went quiet) is offered again on its own, from the receiver's
   * last verified chunk, before it ends `interrupted` (default 5; 0: never,
   * `Service.resume` then goes on by hand).
   */
  readonly reconnectAttempts?: number
  /** The wait before the first of those attempts, doubled after each (default 1 s, at most 30 s). */
  readonly reconnectDelay?: Duration.DurationInput
}

/** How long a cancel made while the receiver was out of reach tries to tell it (`Forget`, see `Protocol`). */
const FORGET_TIMEOUT = Duration.seconds(10)

/**
 * Tells `peer` that `transfer`, interrupted, was cancelled here, so that it
 * drops what it kept (`Forget`). Best effort and bounded: a receiver out of
 * reach learns it when it next asks for the transfer (`Reoffer` answered
 * `UnknownTransfer`). Whether the receiver took it.
 */
export const forget = (host: PluginHost["Type"], peer: PeerId, transfer: string): Effect.Effect<boolean> =>
  Effect.scoped(Effect.gen(function*() {
    const stream = yield* host.open(peer, Protocol.protocol)
    const wire = yield* Wire.make(stream, 64 * 1024)
    yield* wire.send({ type: "Forget", transfer: transfer as Protocol.TransferId })
    yield* wire.end
    // the receiver ends its side once it has forgotten it
    while (Option.isSome(yield* wire.next));
  })).pipe(
    Effect.timeoutFail({ duration: FORGET_TIMEOUT, onTimeout: () => new Error(`no answer within ${Duration.format(FORGET_TIMEOUT)}`) }),
    Effect.as(true),
    Effect.catchAll((e) =>
      Effect.as(Effect.logInfo(`spacedrop: transfer ${transfer} cancelled; ${peer} not told now (${e.message}): it learns it when it asks for the transfer`), false)
    )
  )

/** Attempts to go on after a dropped connection, by default. */
export const DEFAULT_RECONNECT_ATTEMPTS = 5
/** The longest wait between two attempts. */
const MAX_RECONNECT_DELAY = Duration.seconds(30)

/** The sender's own settings. */
export interface SenderSettings {
  /** The name shown to receivers. */
  readonly name: string
  /** The node's transfers (and their resume records). */
  readonly registry: Registry.Registry
}

/**
 * A chunk size fitted to the total: about a thousand chunks, between 64 KiB
 * (small transfers gain nothing from smaller frames) and 1 MiB (a larger
 * chunk only holds more memory and delays verification).
 */
export const chunkBytesFor = (totalBytes: number): number => {
  const target = 2 ** Math.ceil(Math.log2(Math.max(1, totalBytes / 1024)))
  return Math.min(1024 * 1024, Math.max(64 * 1024, target))
}

/** Most bytes of one frame from the receiver (an `Accepted` listing a subset of a large manifest). */
const MAX_ANSWER_FRAME_BYTES = 16 * 1024 * 1024

/** The manifest in pages of at most `MAX_PAGE_BYTES` of JSON. */
const pages = (entries: ReadonlyArray<Protocol.Entry>): Array<Array<Protocol.Entry>> => {
  const out: Array<Array<Protocol.Entry>> = []
  let page: Array<Protocol.Entry> = []
  let bytes = 0
  for (const entry of entries) {
    const size = JSON.stringify(entry).length * 3 + 1
    if (page.length > 0 && bytes + size > Protocol.MAX_PAGE_BYTES - 64) {
      out.push(page)
      page = []
      bytes = 0
    }
    page.push(entry)
    bytes += size
  }
  if (page.length > 0) out.push(page)
  return out
}

/** What a send offers: its id, its peer, its sources and chunk size (kept in the resume record, so a re-offer is the same). */
export interface Plan {
  readonly transfer: string
  readonly peer: PeerId
  readonly sources: ReadonlyArray<Files.Source>
  readonly chunkBytes: number
}

/** Sends `paths` to `peer`: prepared here (hashed; a bad path fails at once), run in the caller's scope. */
export const send = (
  host: PluginHost["Type"],
  settings: SenderSettings,
  peer: PeerId,
  paths: ReadonlyArray<string>,
  options: SendOptions = {}
): Effect.Effect<Running.Transfer, Protocol.SpacedropError, Scope.Scope> =>
  Effect.gen(function*() {
    const transfer = randomBytes(12).toString("base64url")
    const ids = { peer, transfer }
    const { chunkBytes, sources } = yield* Files.manifest(ids, paths, (totalBytes) => options.chunkBytes ?? chunkBytesFor(totalBytes))
    const entries = sources.map((s) => s.entry)
    const problem = Paths.checkManifest(entries)
    if (Option.isSome(problem)) {
      return yield* new Protocol.SpacedropError({ reason: problem.value.reason, ...ids, path: problem.value.path, detail: problem.value.detail })
    }
    return yield* start(host, settings, { transfer, peer, sources, chunkBytes }, options)
  })

/** Offers `plan` again, from its resume record (the receiver says where to go on). */
export const resume = (
  host: PluginHost["Type"],
  settings: SenderSettings,
  record: Records.SendRecord,
  options: SendOptions = {}
): Effect.Effect<Running.Transfer, Protocol.SpacedropError, Scope.Scope> =>
  start(host, settings, {
    transfer: record.transfer,
    peer: record.peer as PeerId,
    sources: record.sources.map((s) => ({ entry: s.entry, file: s.file })),
    chunkBytes: record.chunkBytes
  }, options, record)

const start = (
  host: PluginHost["Type"],
  settings: SenderSettings,
  plan: Plan,
  options: SendOptions,
  record?: Records.SendRecord
): Effect.Effect<Running.Transfer, Protocol.SpacedropError, Scope.Scope> =>
  Effect.gen(function*() {
    const files = plan.sources.filter((s) => s.entry.kind === "file")
    const running = yield* Running.make({
      transfer: plan.transfer,
      direction: "send",
      peer: plan.peer,
      totalBytes: record?.totalBytes ?? files.reduce((n, s) => n + s.entry.size, 0),
      totalFiles: record?.totalFiles ?? files.length,
      ...(record === undefined ? {} : { bytes: record.bytes, files: record.files })
    })
    const { registry } = settings
    yield* Registry.add(registry, running)
    // whether the resume record is kept: from a resumed one, or once the receiver accepts
    let recorded = record !== undefined
    const keep = (record: Records.SendRecord) =>
      registry.store.put(record).pipe(
        Effect.as(true),
        Effect.catchAll((e) => Effect.as(Effect.logWarning(`spacedrop: transfer ${plan.transfer} will not be resumable: ${e.message}`), false))
      )
    const recordOf = (progress: Running.Progress): Records.SendRecord => ({
      direction: "send",
      transfer: plan.transfer as Protocol.TransferId,
      peer: plan.peer,
      chunkBytes: plan.chunkBytes,
      sources: plan.sources.map((s) => (s.file === undefined ? { entry: s.entry } : { entry: s.entry, file: s.file })),
      bytes: progress.bytes,
      files: progress.files,
      totalBytes: progress.totalBytes,
      totalFiles: progress.totalFiles
    })
    const accepted = Effect.flatMap(running.current, (p) =>
      recorded ? Effect.void : Effect.map(keep(recordOf(p)), (kept) => void (recorded = kept)))
    const attempts = Math.max(0, options.reconnectAttempts ?? DEFAULT_RECONNECT_ATTEMPTS)
    const firstDelay = Duration.decode(options.reconnectDelay ?? Duration.seconds(1))
    const cancelled = new Protocol.SpacedropError({ reason: "Cancelled", peer: plan.peer, transfer: plan.transfer, by: "sender", detail: "cancelled by the sender" })
    // whether a run ended with the receiver told of a cancel (a `Cancel` on its stream), or told us of one
    const told = (exit: Exit.Exit<unknown, Running.TransferError>) =>
      Option.exists(Cause.failureOption(Exit.isFailure(exit) ? exit.cause : Cause.empty), (e) => e._tag === "SpacedropError" && e.reason === "Cancelled")
    // the exchange again on a new stream (and connection) after a drop: the receiver's record says where to go on,
    // so nothing it verified comes again; the same `Transfer` (its progress, its result) follows every attempt
    const runs = Effect.gen(function*() {
      for (let attempt = 1;; attempt++) {
        let answered = false
        const exit = yield* Effect.exit(Effect.scoped(exchange({ host, settings, plan, running, options, accepted, answered: () => void (answered = true) })))
        // a receiver that did not answer the offer in time is not a dropped connection: offering again would only
        // ask it again (its user, if it kept no record); the transfer stays resumable by hand
        const unanswered = !answered && Option.exists(Cause.failureOption(Exit.isFailure(exit) ? exit.cause : Cause.empty), (e) =>
          e._tag === "SpacedropError" && e.reason === "Timeout")
        const cancelledHere = yield* Deferred.isDone(running.cancelled)
        if (cancelledHere && recorded && Exit.isFailure(exit) && !Exit.isInterrupted(exit) && !told(exit)) {
          // cancelled while this attempt could not reach the receiver (it was dialling, or the stream failed
          // first): the receiver kept the transfer for a resume that will not come
          yield* forget(host, plan.peer, plan.transfer)
          return yield* cancelled
        }
        const retry = attempt <= attempts && recorded && Exit.isFailure(exit) && !Exit.isInterrupted(exit) && !unanswered &&
          !cancelledHere && Running.isResumable(exit, { timeout: true })
        if (!retry) return yield* exit
        const delay = Duration.min(Duration.times(firstDelay, 2 ** (attempt - 1)), MAX_RECONNECT_DELAY)
        const why = Option.match(Cause.failureOption(exit.cause), { onNone: () => "interrupted", onSome: (e) => e.message })
        yield* Effect.logInfo(`spacedrop: transfer ${plan.transfer} stopped (${why}); attempt ${attempt} of ${attempts} to go on in ${Duration.format(delay)}`)
        // kept where it is now, should this process stop while it waits
        yield* keep(recordOf(yield* running.current))
        yield* running.update((p) => ({ ...p, state: "reconnecting", current: undefined, bytesPerSecond: 0, etaSeconds: undefined }))
        const stopped = yield* Effect.raceFirst(Effect.as(Effect.sleep(delay), false), Effect.as(Deferred.await(running.cancelled), true))
        if (stopped) {
          // the receiver kept the transfer for a resume that will not come: told now if it can be reached
          yield* forget(host, plan.peer, plan.transfer)
          return yield* cancelled
        }
      }
    })
    const run = runs.pipe(
      Effect.onExit((exit) =>
        Effect.gen(function*() {
          // a cancel asked for here is final, even when the connection failed first
          const cancelledHere = yield* Deferred.isDone(running.cancelled)
          const kept = recorded && !cancelledHere && Running.isResumable(exit, { timeout: true }) && (yield* keep(recordOf(yield* running.current)))
          if (!kept && recorded) yield* registry.store.remove("send", plan.transfer)
          yield* running.finish(exit, kept)
          yield* Registry.remove(registry, running)
        })
      )
    )
    yield* Effect.forkScoped(Effect.ignore(run))
    return running.transfer
  })

interface Exchange {
  readonly host: PluginHost["Type"]
  readonly settings: SenderSettings
  readonly plan: Plan
  readonly running: Running.Running
  readonly options: SendOptions
  /** Runs once the receiver accepted (the resume record is written). */
  readonly accepted: Effect.Effect<void>
  /** Called once the receiver answered the offer. */
  readonly answered: () => void
}

/** Where the sender is: the `k`th file to send, `offset` bytes into it. */
interface At {
  readonly k: number
  readonly offset: number
}

const exchange = (x: Exchange): Effect.Effect<Running.Summary, Running.TransferError, Scope.Scope> =>
  Effect.gen(function*() {
    const { running, plan } = x
    const { sources, chunkBytes } = plan
    const ids = { peer: plan.peer, transfer: plan.transfer }
    const entries = sources.map((s) => s.entry)
    const totalBytes = entries.reduce((n, e) => n + (e.kind === "file" ? e.size : 0), 0)
    const stream = yield* x.host.open(plan.peer, Protocol.protocol).pipe(
      Effect.catchTag("PermissionError", (e) => Effect.fail(new Protocol.SpacedropError({ reason: "Failed", ...ids, detail: e.message })))
    )
    const where = { peer: plan.peer, protocol: stream.protocol }
    const wire = yield* Wire.make(stream, MAX_ANSWER_FRAME_BYTES)
    const idleTimeout = Duration.decode(x.options.idleTimeout ?? Duration.seconds(30))
    const windowBytes = Math.max(4 * Protocol.ACK_EVERY_BYTES, x.options.windowBytes ?? 8 * 1024 * 1024)
    const stalled = (what: string) => new Protocol.SpacedropError({ reason: "Timeout", ...ids, detail: `${what} for ${Duration.format(idleTimeout)}` })
    const cancelled = new Protocol.SpacedropError({ reason: "Cancelled", ...ids, by: "sender", detail: "cancelled by the sender" })
    // set once the receiver's frames are being read: a Cancel then waits for the receiver to end its side, so it
    // reads the Cancel before the stream is dropped. It has up to the idle bound to get there: it reads what was in
    // flight before it (a window, slow on a loaded machine or disk); dropping the stream sooner left it believing
    // the connection failed (`interrupted`, resumable) instead of learning that the sender cancelled
    let listening: Effect.Effect<unknown, unknown> | undefined
    // once we stop, the receiver's end (or reset) that follows our Cancel is not the transfer's failure; nothing
    // more is sent after the Cancel
    let stopping = false
    const stop = (reason: Protocol.CancelReason, error: Protocol.SpacedropError) =>
      Effect.suspend(() => {
        // one Cancel: a second stop (the pump and the cancel both saw it) leaves the first to finish
        if (stopping) return Effect.never
        stopping = true
        return Effect.gen(function*() {
          yield* Effect.ignore(wire.send({ type: "Cancel", reason, detail: error.detail.slice(0, 1024) }))
          yield* wire.end
          if (listening !== undefined) yield* Effect.ignore(Effect.timeout(listening, idleTimeout))
          return yield* error
        })
      })
    const onCancel = Effect.zipRight(Deferred.await(running.cancelled), stop("User", cancelled))
    const asTyped = <A, E, R>(effect: Effect.Effect<A, E | MessageError, R>) =>
      Effect.catchIf(effect, (e): e is MessageError => e instanceof MessageError, (e) =>
        Effect.fail(new Protocol.SpacedropError({ reason: e.reason === "VersionMismatch" ? "VersionMismatch" : e.reason === "Timeout" ? "Timeout" : "Closed", ...ids, detail: e.detail })))

    yield* wire.send({ type: "Offer", transfer: ids.transfer as Protocol.TransferId, sender: x.settings.name.slice(0, 256), count: entries.length, totalBytes, chunkBytes })
    for (const page of pages(entries)) yield* wire.send({ type: "Entries", entries: page })

    const answerTimeout = Duration.decode(x.options.answerTimeout ?? Duration.seconds(75))
    const answer = yield* Effect.raceFirst(
      asTyped(wire.next.pipe(
        Effect.timeoutFail({
          duration: answerTimeout,
          onTimeout: () => new Protocol.SpacedropError({ reason: "Timeout", ...ids, detail: `no answer within ${Duration.format(answerTimeout)}` })
        })
      )),
      onCancel
    )
    if (Option.isNone(answer)) return yield* new Protocol.SpacedropError({ reason: "Closed", ...ids, detail: "the receiver ended the stream without answering" })
    x.answered()
    const a = answer.value
    if (a._tag !== "Message" || (a.message.type !== "Accepted" && a.message.type !== "Rejected")) {
      return yield* new ProtocolError({ reason: "Unexpected", ...where, detail: "expected an answer to the offer" })
    }
    if (a.message.type === "Rejected") {
      return yield* new Protocol.SpacedropError({ reason: a.message.reason, ...ids, by: "receiver", detail: a.message.detail })
    }
    const chosen = a.message.entries ?? entries.map((_, i) => i)
    for (let i = 0; i < chosen.length; i++) {
      if (chosen[i]! >= entries.length || (i > 0 && chosen[i]! <= chosen[i - 1]!)) {
        return yield* new ProtocolError({ reason: "Malformed", ...where, detail: "the accepted entries are not increasing indices of the offer" })
      }
    }
    const toSend = chosen.filter((i) => entries[i]!.kind === "file")
    // bytes before the kth file
    const before = [0]
    for (const i of toSend) before.push(before[before.length - 1]! + entries[i]!.size)
    const total = before[toSend.length]!
    const from = a.message.from ?? { files: 0, offset: 0 }
    if (from.files > toSend.length || from.offset > (from.files < toSend.length ? entries[toSend[from.files]!]!.size : 0)) {
      return yield* new ProtocolError({ reason: "Malformed", ...where, detail: `a resume from file ${from.files} at ${from.offset}, past the accepted files` })
    }
    yield* x.accepted
    let at: At = { k: from.files, offset: from.offset }
    let sent = before[at.k]! + at.offset
    let filesSent = at.k
    yield* running.update((p) => ({ ...p, totalBytes: total, totalFiles: toSend.length, bytes: sent, files: filesSent }))
    // a receiver's pause held the run before a reconnect: its new run starts unpaused (and says so if it pauses)
    yield* running.holdRemote(false)
    yield* running.start

    // the receiver's side of the transfer: acknowledgements, pauses, rewinds, then Complete (or a Cancel)
    let acked = 0
    let rewind: At | undefined
    // bumped on every acknowledgement and rewind: what the sender may wait for
    const tick = yield* SubscriptionRef.make(0)
    const position = new Map(toSend.map((index, k) => [index, k]))
    const complete = yield* Deferred.make<{ readonly bytes: number; readonly files: number }, Running.TransferError>()
    let sentDone = false
    const listen = Effect.gen(function*() {
      while (true) {
        // no deadline here: on a slow link acknowledgements are rare; what the receiver owes us is timed where we wait for it
        const frame = yield* asTyped(wire.next)
        if (Option.isNone(frame)) return yield* new Protocol.SpacedropError({ reason: "Closed", ...ids, detail: "the receiver ended the stream before the end" })
        const f = frame.value
        if (f._tag !== "Message") return yield* new ProtocolError({ reason: "Unexpected", ...where, detail: "a chunk from the receiver" })
        const m = f.message
        switch (m.type) {
          case "Ack":
            acked = m.bytes
            yield* SubscriptionRef.update(tick, (n) => n + 1)
            break
          case "Pause":
          case "Resume":
            yield* running.holdRemote(m.type === "Pause")
            break
          case "Rewind": {
            const k = position.get(m.index)
            // only back to where we have been: before the file being sent, or within it up to its offset
            if (k === undefined || k > at.k || (k === at.k && m.offset > at.offset) || m.offset > entries[m.index]!.size) {
              return yield* new ProtocolError({ reason: "Unexpected", ...where, detail: `a rewind to ${m.offset} of entry ${m.index}, which was not sent` })
            }
            rewind = { k, offset: m.offset }
            yield* SubscriptionRef.update(tick, (n) => n + 1)
            break
          }
          case "Complete":
            if (!sentDone) return yield* new ProtocolError({ reason: "Unexpected", ...where, detail: "Complete before Done" })
            return m
          case "Cancel":
            return yield* new Protocol.SpacedropError({ reason: m.reason === "User" ? "Cancelled" : m.reason, ...ids, by: "receiver", detail: m.detail })
          default:
            return yield* new ProtocolError({ reason: "Unexpected", ...where, detail: `${m.type} from the receiver during the transfer` })
        }
      }
    }).pipe(Effect.exit, Effect.flatMap((exit) => Deferred.complete(complete, exit)))
    yield* Effect.forkScoped(listen)
    listening = Deferred.await(complete)
    const failed = Effect.flatMap(Effect.exit(Deferred.await(complete)), (exit) =>
      exit._tag === "Failure" && !stopping ? exit : Effect.never)
    // this side's pause, told to the receiver
    let told = false
    yield* Effect.forkScoped(Stream.runForEach(running.holds.changes, (h) => {
      if (h.sender === told) return Effect.void
      told = h.sender
      return Effect.ignore(wire.send({ type: h.sender ? "Pause" : "Resume" }))
    }))

    /** Waits until `n` more bytes fit in the window, or a rewind came. */
    const window = (n: number) =>
      sent + n - acked <= windowBytes
        ? Effect.void
        : Stream.runDrain(tick.changes.pipe(Stream.takeUntil(() => sent + n - acked <= windowBytes || rewind !== undefined))).pipe(
          Effect.timeoutFail({ duration: idleTimeout, onTimeout: () => stalled("no acknowledgement with the window full") })
        )
    // a frame the receiver does not take within the idle bound: it stopped reading. Watched by one fiber,
    // not a timeout per frame (a timer and a race per frame)
    let writing = false
    let delivered = 0
    const deliver = (frame: Uint8Array) =>
      Effect.suspend(() => {
        if (stopping) return Effect.never
        writing = true
        return Effect.map(wire.sendRaw(frame), () => {
          writing = false
          delivered++
        })
      })
    const stuck = Effect.gen(function*() {
      const tick = Duration.divide(idleTimeout, 4).pipe(Option.getOrElse(() => idleTimeout))
      let seen = delivered
      let quiet = 0
      while (true) {
        yield* Effect.sleep(tick)
        quiet = writing && !stopping && delivered === seen ? quiet + 1 : 0
        seen = delivered
        if (quiet >= 4) return yield* stalled("the receiver took nothing")
      }
    })

    const changed = (entry: Protocol.Entry, detail: string) =>
      stop("SourceChanged", new Protocol.SpacedropError({ reason: "SourceChanged", ...ids, by: "sender", path: entry.path, detail }))
    // the files read ahead of the sending (see `Read`), started again from a rewind
    const toRead = toSend.map((index) => ({ index, entry: entries[index]!, path: sources[index]!.file! }))
    let reader = Read.make(ids, toRead, chunkBytes, at)
    yield* Effect.addFinalizer(() => Effect.sync(() => reader.stop()))
    const restart = Effect.sync(() => {
      reader.stop()
      reader = Read.make(ids, toRead, chunkBytes, at)
    })

    /** The file at `at` went out whole (its `FileEnd` too): on to the next. */
    const fileSent = Effect.suspend(() => {
      at = { k: at.k + 1, offset: 0 }
      filesSent++
      const coming = at.k < toSend.length ? entries[toSend[at.k]!]!.path : undefined
      return running.update((p) => ({ ...p, bytes: sent, files: filesSent, current: coming }))
    })

    const pump = Effect.gen(function*() {
      while (true) {
        while (at.k < toSend.length) {
          if (yield* Deferred.isDone(running.cancelled)) return yield* stop("User", cancelled)
          yield* running.unpaused
          if (rewind !== undefined) {
            at = rewind
            rewind = undefined
            sent = before[at.k]! + at.offset
            filesSent = at.k
            yield* restart
            yield* running.update((p) => ({ ...p, bytes: sent, files: filesSent }))
          }
          const item = yield* Effect.promise(() => reader.next())
          if (item === undefined) return yield* Effect.dieMessage(`spacedrop: the reading ended before file ${at.k}`)
          switch (item._tag) {
            case "Chunk": {
              yield* window(item.length)
              // what was read ahead is dropped: the reading starts again at the rewind
              if (rewind !== undefined) continue
              if (item.k !== at.k || item.offset !== at.offset) return yield* Effect.dieMessage(`spacedrop: read ahead out of order (${item.k}:${item.offset}, at ${at.k}:${at.offset})`)
              yield* deliver(item.frame)
              at = { k: at.k, offset: at.offset + item.length }
              sent += item.length
              // a small file's progress goes with its end, a larger one's with each chunk
              if (!item.ends) {
                const entry = entries[toSend[at.k]!]!
                if (entry.size > Read.SMALL_FILE_BYTES) yield* running.update((p) => ({ ...p, bytes: sent, current: entry.path }))
                break
              }
              yield* fileSent
              break
            }
            case "End": {
              if (item.k !== at.k) return yield* Effect.dieMessage(`spacedrop: read ahead out of order (end of ${item.k}, at ${at.k})`)
              yield* deliver(Wire.fileEndFrame(toSend[at.k]!))
              yield* fileSent
              break
            }
            case "Changed":
              return yield* changed(item.entry, item.detail)
            case "Failed":
              return yield* item.error
          }
        }
        sentDone = true
        yield* deliver(Wire.messageFrame({ type: "Done" }))
        const ended = yield* Effect.raceFirst(
          Effect.map(Deferred.await(complete), (c) => Option.some(c)),
          Effect.as(Stream.runDrain(tick.changes.pipe(Stream.takeUntil(() => rewind !== undefined))), Option.none())
        ).pipe(Effect.timeoutFail({ duration: idleTimeout, onTimeout: () => stalled("no confirmation after the last file") }))
        if (Option.isSome(ended)) return ended.value
        // the receiver found a bad chunk in what was in flight: back there, then Done again
        sentDone = false
      }
    })

    const finished = yield* Effect.raceFirst(pump, Effect.raceFirst(failed, Effect.raceFirst(onCancel, stuck)))
    yield* wire.end
    return {
      transfer: ids.transfer,
      peer: plan.peer,
      files: toSend.map((i) => ({ path: entries[i]!.path })),
      directories: chosen.filter((i) => entries[i]!.kind === "directory").length,
      bytes: finished.bytes
    } satisfies Running.Summary
  })
