/**
 * The sending side: builds and hashes the manifest, offers it, and streams
 * the accepted files chunk after chunk within its window, never waiting for
 * a reply per chunk or per file (see `Protocol`).
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { createHash, randomBytes } from "node:crypto"
import { constants } from "node:fs"
import * as fs from "node:fs/promises"
import { ProtocolError } from "../../../transport/ProtocolError.js"
import type { PeerId } from "../../../transport/Transport.js"
import { MessageError } from "../../Messages.js"
import type { PluginHost } from "../../PluginHost.js"
import * as Paths from "../Paths.js"
import * as Protocol from "../Protocol.js"
import * as Files from "./files.js"
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
}

/** The sender's own settings. */
export interface SenderSettings {
  /** The name shown to receivers. */
  readonly name: string
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
    const sources = yield* Files.manifest(ids, paths)
    const entries = sources.map((s) => s.entry)
    const problem = Paths.checkManifest(entries)
    if (Option.isSome(problem)) {
      return yield* new Protocol.SpacedropError({ reason: problem.value.reason, ...ids, path: problem.value.path, detail: problem.value.detail })
    }
    const files = entries.filter((e) => e.kind === "file")
    const totalBytes = files.reduce((n, e) => n + e.size, 0)
    const running = yield* Running.make({ transfer, direction: "send", peer, totalBytes, totalFiles: files.length })
    const run = Effect.scoped(exchange({ host, settings, peer, ids, sources, totalBytes, running, options })).pipe(
      Effect.onExit((exit) => running.finish(exit))
    )
    yield* Effect.forkScoped(Effect.ignore(run))
    return running.transfer
  })

interface Exchange {
  readonly host: PluginHost["Type"]
  readonly settings: SenderSettings
  readonly peer: PeerId
  readonly ids: { readonly peer: PeerId; readonly transfer: string }
  readonly sources: ReadonlyArray<Files.Source>
  readonly totalBytes: number
  readonly running: Running.Running
  readonly options: SendOptions
}

const exchange = (x: Exchange): Effect.Effect<Running.Summary, Running.TransferError, Scope.Scope> =>
  Effect.gen(function*() {
    const { ids, running, sources } = x
    const entries = sources.map((s) => s.entry)
    const stream = yield* x.host.open(x.peer, Protocol.protocol).pipe(
      Effect.catchTag("PermissionError", (e) => Effect.fail(new Protocol.SpacedropError({ reason: "Failed", ...ids, detail: e.message })))
    )
    const where = { peer: x.peer, protocol: stream.protocol }
    const wire = yield* Wire.make(stream, MAX_ANSWER_FRAME_BYTES)
    const chunkBytes = x.options.chunkBytes ?? chunkBytesFor(x.totalBytes)
    const idleTimeout = Duration.decode(x.options.idleTimeout ?? Duration.seconds(30))
    const windowBytes = Math.max(4 * Protocol.ACK_EVERY_BYTES, x.options.windowBytes ?? 8 * 1024 * 1024)
    const stalled = (what: string) => new Protocol.SpacedropError({ reason: "Timeout", ...ids, detail: `${what} for ${Duration.format(idleTimeout)}` })
    const cancelled = new Protocol.SpacedropError({ reason: "Cancelled", ...ids, by: "sender", detail: "cancelled by the sender" })
    // set once the receiver's frames are being read: a Cancel then waits (briefly) for the receiver to end its side,
    // so it reads the Cancel before the stream is dropped
    let listening: Effect.Effect<unknown, unknown> | undefined
    // once we stop, the receiver's end (or reset) that follows our Cancel is not the transfer's failure
    let stopping = false
    const stop = (reason: Protocol.CancelReason, error: Protocol.SpacedropError) =>
      Effect.gen(function*() {
        stopping = true
        yield* Effect.ignore(wire.send({ type: "Cancel", reason, detail: error.detail.slice(0, 1024) }))
        yield* wire.end
        if (listening !== undefined) yield* Effect.ignore(Effect.timeout(listening, "5 seconds"))
        return yield* error
      })
    const onCancel = Effect.zipRight(Deferred.await(running.cancelled), stop("User", cancelled))
    const asTyped = <A, E, R>(effect: Effect.Effect<A, E | MessageError, R>) =>
      Effect.catchIf(effect, (e): e is MessageError => e instanceof MessageError, (e) =>
        Effect.fail(new Protocol.SpacedropError({ reason: e.reason === "VersionMismatch" ? "VersionMismatch" : e.reason === "Timeout" ? "Timeout" : "Closed", ...ids, detail: e.detail })))

    yield* wire.send({ type: "Offer", transfer: ids.transfer as Protocol.TransferId, sender: x.settings.name.slice(0, 256), count: entries.length, totalBytes: x.totalBytes, chunkBytes })
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
    const total = toSend.reduce((n, i) => n + entries[i]!.size, 0)
    yield* running.update((p) => ({ ...p, totalBytes: total, totalFiles: toSend.length }))
    yield* running.start

    // the receiver's side of the transfer: acknowledgements, then Complete (or a Cancel)
    const acked = yield* SubscriptionRef.make(0)
    const complete = yield* Deferred.make<{ readonly bytes: number; readonly files: number }, Running.TransferError>()
    let sentDone = false
    const listen = Effect.gen(function*() {
      while (true) {
        // no deadline here: on a slow link acknowledgements are rare; what the receiver owes us is timed where we wait for it
        const frame = yield* asTyped(wire.next)
        if (Option.isNone(frame)) return yield* new Protocol.SpacedropError({ reason: "Closed", ...ids, detail: "the receiver ended the stream before the end" })
        const f = frame.value
        if (f._tag === "Message" && f.message.type === "Ack") yield* SubscriptionRef.set(acked, f.message.bytes)
        else if (f._tag === "Message" && f.message.type === "Complete" && sentDone) return f.message
        else if (f._tag === "Message" && f.message.type === "Cancel") {
          const m = f.message
          return yield* new Protocol.SpacedropError({ reason: m.reason === "User" ? "Cancelled" : m.reason, ...ids, by: "receiver", detail: m.detail })
        } else return yield* new ProtocolError({ reason: "Unexpected", ...where, detail: "expected an Ack, Complete or Cancel" })
      }
    }).pipe(Effect.exit, Effect.flatMap((exit) => Deferred.complete(complete, exit)))
    yield* Effect.forkScoped(listen)
    listening = Deferred.await(complete)
    const failed = Effect.flatMap(Effect.exit(Deferred.await(complete)), (exit) =>
      exit._tag === "Failure" && !stopping ? exit : Effect.never)

    let sent = 0
    let filesSent = 0
    /** Waits until `n` more bytes fit in the window. */
    const window = (n: number) =>
      Effect.flatMap(SubscriptionRef.get(acked), (a) =>
        sent + n - a <= windowBytes
          ? Effect.void
          : Stream.runDrain(acked.changes.pipe(Stream.takeUntil((a) => sent + n - a <= windowBytes))).pipe(
            Effect.timeoutFail({ duration: idleTimeout, onTimeout: () => stalled("no acknowledgement with the window full") })
          ))
    /** Sends a frame the receiver must take within the idle bound (it stopped reading otherwise). */
    const deliver = (frame: Uint8Array) =>
      wire.sendRaw(frame).pipe(Effect.timeoutFail({ duration: idleTimeout, onTimeout: () => stalled("the receiver took nothing") }))

    const sendFile = (index: number) =>
      Effect.gen(function*() {
        const source = sources[index]!
        const entry = source.entry
        const path = source.file!
        const changed = (detail: string) =>
          stop("SourceChanged", new Protocol.SpacedropError({ reason: "SourceChanged", ...ids, by: "sender", path: entry.path, detail }))
        yield* running.update((p) => ({ ...p, current: entry.path }))
        yield* Effect.acquireUseRelease(
          Files.io(ids, path, "open", () => fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW)),
          (handle) =>
            Effect.gen(function*() {
              const before = yield* Files.io(ids, path, "stat", () => handle.stat())
              if (before.size !== entry.size || before.mtimeMs !== entry.mtime) return yield* changed("the file changed after it was offered")
              const hash = createHash("sha256")
              let offset = 0
              while (offset < entry.size) {
                const n = Math.min(chunkBytes, entry.size - offset)
                yield* window(n)
                const chunk = Wire.chunkFrame(index, offset, n)
                const read = yield* Files.io(ids, path, "read", () => readFully(handle, chunk.data, offset))
                if (read < n) return yield* changed(`the file shrank to ${offset + read} bytes while it was sent`)
                hash.update(chunk.data)
                yield* deliver(chunk.seal())
                offset += n
                sent += n
                yield* running.update((p) => ({ ...p, bytes: sent }))
              }
              const after = yield* Files.io(ids, path, "stat", () => handle.stat())
              if (after.size !== entry.size || after.mtimeMs !== entry.mtime) return yield* changed("the file changed while it was sent")
              if (hash.digest("hex") !== entry.hash) return yield* changed("the file's content changed while it was sent")
            }),
          (handle) => Effect.promise(() => handle.close().catch(() => undefined))
        )
        yield* deliver(Wire.messageFrame({ type: "FileEnd", index }))
        filesSent++
        yield* running.update((p) => ({ ...p, files: filesSent, current: undefined }))
      })

    const finished = yield* Effect.raceFirst(
      Effect.gen(function*() {
        for (const index of toSend) {
          if (yield* Deferred.isDone(running.cancelled)) return yield* stop("User", cancelled)
          yield* sendFile(index)
        }
        sentDone = true
        yield* deliver(Wire.messageFrame({ type: "Done" }))
        return yield* Deferred.await(complete).pipe(
          Effect.timeoutFail({ duration: idleTimeout, onTimeout: () => stalled("no confirmation after the last file") })
        )
      }),
      Effect.raceFirst(failed, onCancel)
    )
    yield* wire.end
    return {
      transfer: ids.transfer,
      peer: x.peer,
      files: toSend.map((i) => ({ path: entries[i]!.path })),
      directories: chosen.filter((i) => entries[i]!.kind === "directory").length,
      bytes: finished.bytes
    } satisfies Running.Summary
  })

/** Reads into `buffer` from `position` until it is full or the file ends; the bytes read. */
const readFully = async (handle: fs.FileHandle, buffer: Uint8Array, position: number): Promise<number> => {
  let filled = 0
  while (filled < buffer.length) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return filled
}
