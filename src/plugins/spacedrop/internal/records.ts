/**
 * Resume records: what each side keeps of a transfer so that it can go on
 * after its connection dropped or its process stopped, from the last
 * verified chunk.
 *
 * - The sender keeps what it offered (the manifest, where each file is read
 *   from, the chunk size), so it can offer the same transfer id again.
 * - The receiver keeps what it accepted (the manifest's SHA-256, the
 *   target, the chosen names) and how far it got: the accepted files in
 *   place, and the verified bytes of the next one, which sit in its
 *   temporary file beside the target. A record on disk is written only
 *   after that file was synced, so it never claims more than the disk holds.
 *
 * Records live in memory (`memory`: a dropped connection) or in a
 * directory (`directory`: a restart too), one JSON file per transfer,
 * written atomically, read with a size bound and decoded with Schema. A
 * record that does not decode is logged and removed: the transfer starts
 * over, nothing crashes. Records are removed when a transfer completes or
 * is cancelled, and at most `maxRecords` are kept.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import * as JsonFile from "../../../internal/jsonFile.js"
import * as Protocol from "../Protocol.js"
import * as Files from "./files.js"

const Count = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))
const Peer = Schema.String.pipe(Schema.maxLength(256))
/** A local path (the sender's source file, the receiver's target). */
const LocalPath = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(64 * 1024))

/** Most entries a record holds (the receiver's default bound on an offer is 100 000). */
export const MAX_RECORD_ENTRIES = 1_000_000
/** Most bytes of one record file. */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024

/** What the sender keeps: enough to offer the same transfer again. */
export const SendRecord = Schema.Struct({
  direction: Schema.Literal("send"),
  transfer: Protocol.TransferId,
  peer: Peer,
  chunkBytes: Schema.Int.pipe(Schema.between(1, 2 ** 30)),
  sources: Schema.Array(Schema.Struct({ entry: Protocol.Entry, file: Schema.optional(LocalPath) })).pipe(Schema.maxItems(MAX_RECORD_ENTRIES)),
  /** Progress when it was interrupted (shown in `transfers`; the receiver says where to go on). */
  bytes: Count,
  files: Count,
  totalBytes: Count,
  totalFiles: Count
})
export type SendRecord = typeof SendRecord.Type

/** What the receiver keeps: what it accepted, and how far it verified. */
export const ReceiveRecord = Schema.Struct({
  direction: Schema.Literal("receive"),
  transfer: Protocol.TransferId,
  peer: Peer,
  /** The sender's display name. */
  sender: Schema.String.pipe(Schema.maxLength(256)),
  /** SHA-256 of the offer's manifest and chunk size (see `manifestHash`): a re-offer must match it. */
  manifest: Protocol.Hash,
  /** The target directory (resolved). */
  root: LocalPath,
  /** The names the user accepted (absent: everything). */
  select: Schema.optional(Schema.Array(Schema.String.pipe(Schema.maxLength(64 * 1024))).pipe(Schema.maxItems(MAX_RECORD_ENTRIES))),
  onExisting: Schema.Literal("rename", "refuse"),
  /** Accepted files in place, and the verified (synced) bytes of the next one. */
  position: Protocol.Position,
  /** The temporary file holding the next file's verified bytes (removed with the record). */
  temp: Schema.optional(LocalPath),
  /**
   * The directories where this transfer's temporary files may be, beyond
   * `temp`: those of the files that may be written before the next record
   * (verified files waiting in a group to be put in place, which a hard
   * crash leaves behind). Cancelling the record removes this transfer's
   * temporary files there.
   */
  scratch: Schema.optional(Schema.Array(LocalPath).pipe(Schema.maxItems(MAX_RECORD_ENTRIES))),
  /** Files saved under another name than their own (`a (1).txt`): [entry index, saved as]. */
  renamed: Schema.Array(Schema.Tuple(Count, LocalPath)).pipe(Schema.maxItems(MAX_RECORD_ENTRIES)),
  bytes: Count,
  totalBytes: Count,
  totalFiles: Count
})
export type ReceiveRecord = typeof ReceiveRecord.Type

export const Record = Schema.Union(SendRecord, ReceiveRecord)
export type Record = typeof Record.Type

/** The SHA-256 a re-offer must match: the manifest and the chunk size. */
export const manifestHash = (entries: ReadonlyArray<Protocol.Entry>, chunkBytes: number): string => {
  const hash = createHash("sha256").update(`${chunkBytes}\n`)
  for (const entry of entries) hash.update(JSON.stringify([entry.path, entry.kind, entry.size, entry.mtime, entry.hash ?? null])).update("\n")
  return hash.digest("hex")
}

/** Where records are kept. */
export interface Store {
  /** Whether records survive a restart (a directory): the receiver then checkpoints as it goes. */
  readonly durable: boolean
  /** The record of `transfer`; a record that does not decode is removed (logged), and `None`. */
  readonly get: (direction: "send" | "receive", transfer: string) => Effect.Effect<Option.Option<Record>>
  /** Keeps `record` in place of the last one; fails `Busy` past `maxRecords`. */
  readonly put: (record: Record) => Effect.Effect<void, Protocol.SpacedropError>
  readonly remove: (direction: "send" | "receive", transfer: string) => Effect.Effect<void>
  /** Every record kept (the unreadable ones removed), but those of the transfers in `except` (left unread). */
  readonly list: (except?: ReadonlySet<string>) => Effect.Effect<ReadonlyArray<Record>>
  /**
   * The plugin stops: records that would not outlive it (in memory) are
   * handed to `forget` and later `put`s fail, so nothing is left behind for
   * nobody to resume.
   */
  readonly close: (forget: (record: Record) => Effect.Effect<void>) => Effect.Effect<void>
}

const key = (direction: "send" | "receive", transfer: string) => `${direction}-${transfer}`

const busy = (record: Record, maxRecords: number) =>
  new Protocol.SpacedropError({ reason: "Busy", peer: record.peer, transfer: record.transfer, detail: `${maxRecords} resumable transfers are kept already` })

/** Records in memory: a transfer resumes after a dropped connection, not after a restart. */
export const memory = (maxRecords: number): Store => {
  const records = new Map<string, Record>()
  let closed = false
  return {
    durable: false,
    get: (direction, transfer) => Effect.sync(() => Option.fromNullable(records.get(key(direction, transfer)))),
    put: (record) =>
      Effect.suspend(() => {
        if (closed) return Effect.fail(new Protocol.SpacedropError({ reason: "Failed", peer: record.peer, transfer: record.transfer, detail: "the plugin has stopped" }))
        const k = key(record.direction, record.transfer)
        if (!records.has(k) && records.size >= maxRecords) return Effect.fail(busy(record, maxRecords))
        records.set(k, record)
        return Effect.void
      }),
    remove: (direction, transfer) => Effect.sync(() => void records.delete(key(direction, transfer))),
    list: (except) => Effect.sync(() => [...records.values()].filter((r) => except === undefined || !except.has(r.transfer))),
    close: (forget) =>
      Effect.suspend(() => {
        closed = true
        const all = [...records.values()]
        records.clear()
        return Effect.forEach(all, forget, { discard: true })
      })
  }
}

const FILE = /^(send|receive)-([A-Za-z0-9_-]{1,64})\.json$/

/** Records as files in `dir` (made if missing): a transfer resumes after a restart too. */
export const directory = (dir: string, maxRecords: number): Store => {
  // ids come from the network: one that is not an id names no file (never a path outside `dir`)
  const valid = (transfer: string) => /^[A-Za-z0-9_-]{1,64}$/.test(transfer)
  const path = (direction: "send" | "receive", transfer: string) => nodePath.join(dir, `${key(direction, transfer)}.json`)
  const failed = (transfer: string) => (detail: string) => new Protocol.SpacedropError({ reason: "Failed", peer: "", transfer, detail })
  const remove = (direction: "send" | "receive", transfer: string) =>
    !valid(transfer) ? Effect.void : Effect.promise(() => fs.rm(path(direction, transfer), { force: true }).catch(() => undefined))
  const get = (direction: "send" | "receive", transfer: string): Effect.Effect<Option.Option<Record>> =>
    !valid(transfer) ? Effect.succeedNone : JsonFile.read(path(direction, transfer), Record, { io: failed(transfer), corrupt: failed(transfer) }, MAX_RECORD_BYTES).pipe(
      Effect.flatMap((record) =>
        Option.isSome(record) && (record.value.direction !== direction || record.value.transfer !== transfer)
          ? Effect.fail(failed(transfer)("the record names another transfer"))
          : Effect.succeed(record)
      ),
      Effect.catchAll((e) =>
        Effect.zipRight(
          Effect.logWarning(`spacedrop: an unreadable resume record is removed (the transfer starts over): ${e.detail}`),
          Effect.as(remove(direction, transfer), Option.none())
        )
      )
    )
  const names = Effect.promise(() => fs.readdir(dir).catch(() => [] as Array<string>)).pipe(
    Effect.map((names) => names.flatMap((name) => {
      const match = FILE.exec(name)
      return match === null ? [] : [{ direction: match[1] as "send" | "receive", transfer: match[2]! }]
    }))
  )
  return {
    durable: true,
    get,
    put: (record) =>
      Effect.gen(function*() {
        const known = yield* names
        if (known.length >= maxRecords && !known.some((k) => k.direction === record.direction && k.transfer === record.transfer)) {
          return yield* busy(record, maxRecords)
        }
        yield* JsonFile.write(path(record.direction, record.transfer), Schema.encodeSync(Record)(record), failed(record.transfer))
        // the rename is durable only once the directory is synced too
        yield* Effect.promise(() => Files.syncDirectory(dir))
      }).pipe(Effect.mapError((e) => new Protocol.SpacedropError({ reason: e.reason, peer: record.peer, transfer: record.transfer, detail: e.detail }))),
    remove,
    close: () => Effect.void,
    // a live transfer's record (a sender's holds its whole manifest) is not read for a listing
    list: (except) =>
      Effect.flatMap(names, (known) =>
        Effect.map(
          Effect.forEach(known.filter((k) => except === undefined || !except.has(k.transfer)), (k) => get(k.direction, k.transfer)),
          (records) => records.flatMap(Option.toArray)
        ))
  }
}
