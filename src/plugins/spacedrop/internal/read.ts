/**
 * The sender's reading ahead: the files to send, from a place, as chunk
 * frames ready to go, read before the sending asks for them (bounded by
 * bytes and items). Small files are read whole, several at once (a file's
 * own round trips to the disk overlap); larger ones chunk after chunk.
 *
 * Plain promises, not an Effect per step: thousands of small files a
 * second make the runtime's per-step cost the bottleneck. Node's errors are
 * turned into typed errors by `Files.ioError` and handed on as items; no
 * promise here rejects.
 */
import { createHash } from "node:crypto"
import { constants } from "node:fs"
import * as fs from "node:fs/promises"
import type * as Protocol from "../Protocol.js"
import * as Files from "./files.js"
import * as Wire from "./wire.js"

/** What the reading hands the sending: a chunk frame, a file's end, or why it stopped. */
export type Item =
  | {
    readonly _tag: "Chunk"
    readonly k: number
    readonly offset: number
    readonly length: number
    readonly frame: Uint8Array
    /** The frame carries the file's `FileEnd` too (a small file read whole): no `End` item follows. */
    readonly ends: boolean
  }
  | { readonly _tag: "End"; readonly k: number }
  | { readonly _tag: "Changed"; readonly entry: Protocol.Entry; readonly detail: string }
  | { readonly _tag: "Failed"; readonly error: Protocol.SpacedropError }

/** Files up to this size are read whole, several at a time. */
export const SMALL_FILE_BYTES = 256 * 1024
/** Small files read at once. */
const READ_AHEAD_FILES = 8
/** Bytes of frames read ahead of the sending. */
const READ_AHEAD_BYTES = 4 * 1024 * 1024
/** Items read ahead of the sending. */
const READ_AHEAD_ITEMS = 256
/** The hash of an empty file (no chunks). */
const EMPTY_HASH = createHash("sha256").digest("hex")

/** One file to send: its entry index in the manifest, its entry, where it is read from. */
export interface ToSend {
  readonly index: number
  readonly entry: Protocol.Entry
  readonly path: string
}

/** Items from a reading ahead, in order. */
export interface Reader {
  /** The next item; `undefined` once every file was read. */
  readonly next: () => Promise<Item | undefined>
  /** Stops reading (what was read ahead is dropped, files are closed). */
  readonly stop: () => void
}

const same = (stat: { readonly size: number; readonly mtimeMs: number }, entry: Protocol.Entry) => stat.size === entry.size && stat.mtimeMs === entry.mtime

/** Reads into `buffer` from `position` until it is full or the file ends; the bytes read. */
export const readFully = async (handle: fs.FileHandle, buffer: Uint8Array, position: number): Promise<number> => {
  let filled = 0
  while (filled < buffer.length) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return filled
}

/** Reads `files` from file `k`, `offset` bytes into it, in chunks of `chunkBytes`. */
export const make = (where: Files.Where, files: ReadonlyArray<ToSend>, chunkBytes: number, from: { readonly k: number; readonly offset: number }): Reader => {
  let stopped = false
  const failed = (path: string, what: string) => (cause: unknown): Item => ({ _tag: "Failed", error: Files.ioError(where, path, what)(cause) })
  const open = (path: string) => fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW)

  /** A small file whole (open, read, stat, close), hashed once: its file hash is its one chunk's, hashed again (32 bytes). */
  const readSmall = async (k: number): Promise<ReadonlyArray<Item>> => {
    const { entry, index, path } = files[k]!
    let handle: fs.FileHandle
    try {
      handle = await open(path)
    } catch (cause) {
      return [failed(path, "open")(cause)]
    }
    try {
      let item: Item = { _tag: "End", k }
      if (entry.size > 0) {
        const chunk = Wire.chunkFrame(index, 0, entry.size, true)
        const read = await readFully(handle, chunk.data, 0)
        if (read < entry.size) return [{ _tag: "Changed", entry, detail: `the file shrank to ${read} bytes while it was sent` }]
        chunk.seal()
        const hash = new Files.FileHash(chunkBytes)
        hash.addChunk(chunk.digest())
        if (hash.digest() !== entry.hash) return [{ _tag: "Changed", entry, detail: "the file's content changed while it was sent" }]
        item = { _tag: "Chunk", k, offset: 0, length: entry.size, frame: chunk.frame, ends: true }
      } else if (entry.hash !== EMPTY_HASH) {
        return [{ _tag: "Changed", entry, detail: "the file's content changed while it was sent" }]
      }
      // a file that grew, or was written over, shows in its size or time once read
      if (!same(await handle.stat(), entry)) return [{ _tag: "Changed", entry, detail: "the file changed while it was sent" }]
      return [item]
    } catch (cause) {
      return [failed(path, "read")(cause)]
    } finally {
      await handle.close().catch(() => undefined)
    }
  }

  /** A larger file chunk after chunk from `offset` (a resumed or rewound file is hashed up to there from the disk). */
  async function* readLarge(k: number, offset: number): AsyncGenerator<Item> {
    const { entry, index, path } = files[k]!
    let handle: fs.FileHandle
    try {
      handle = await open(path)
    } catch (cause) {
      yield failed(path, "open")(cause)
      return
    }
    try {
      if (!same(await handle.stat(), entry)) return yield { _tag: "Changed", entry, detail: "the file changed after it was offered" }
      const hash = new Files.FileHash(chunkBytes)
      const prefix = await Files.hashPrefix(handle, hash, offset)
      if (prefix < offset) return yield { _tag: "Changed", entry, detail: `the file shrank to ${prefix} bytes` }
      for (let at = offset; at < entry.size;) {
        const n = Math.min(chunkBytes, entry.size - at)
        const chunk = Wire.chunkFrame(index, at, n)
        const read = await readFully(handle, chunk.data, at)
        if (read < n) return yield { _tag: "Changed", entry, detail: `the file shrank to ${at + read} bytes while it was sent` }
        // each byte hashed once here: the chunk's digest, sent with it, is folded into the file's
        const frame = chunk.seal()
        hash.addChunk(chunk.digest())
        yield { _tag: "Chunk", k, offset: at, length: n, frame, ends: false }
        at += n
      }
      if (!same(await handle.stat(), entry)) return yield { _tag: "Changed", entry, detail: "the file changed while it was sent" }
      if (hash.digest() !== entry.hash) return yield { _tag: "Changed", entry, detail: "the file's content changed while it was sent" }
      yield { _tag: "End", k }
    } catch (cause) {
      yield failed(path, "read")(cause)
    } finally {
      await handle.close().catch(() => undefined)
    }
  }

  // read whole only what fits one chunk of this transfer: the receiver refuses a chunk longer than the offer's chunk size
  const smallBytes = Math.min(SMALL_FILE_BYTES, chunkBytes)
  const isSmall = (k: number) => !(k === from.k && from.offset > 0) && files[k]!.entry.size <= smallBytes
  async function* all(): AsyncGenerator<Item> {
    const ahead = new Map<number, Promise<ReadonlyArray<Item>>>()
    for (let k = from.k; k < files.length && !stopped; k++) {
      for (let j = k; j < files.length && j < k + READ_AHEAD_FILES; j++) if (isSmall(j) && !ahead.has(j)) ahead.set(j, readSmall(j))
      const items = isSmall(k) ? await ahead.get(k)! : readLarge(k, k === from.k ? from.offset : 0)
      ahead.delete(k)
      for await (const item of items) {
        yield item
        // nothing after a file that changed or failed: the send stops there
        if (item._tag === "Changed" || item._tag === "Failed") return
      }
    }
  }

  // the reading runs ahead into `buffer`, up to its bounds; `next` takes from it
  const buffer: Array<Item> = []
  let bytes = 0
  let done = false
  let wakeReader: (() => void) | undefined
  let wakeSender: (() => void) | undefined
  const wake = (which: "reader" | "sender") => {
    const resume = which === "reader" ? wakeReader : wakeSender
    if (which === "reader") wakeReader = undefined
    else wakeSender = undefined
    resume?.()
  }
  const sizeOf = (item: Item) => (item._tag === "Chunk" ? item.length : 0)
  const items = all()
  void (async () => {
    try {
      for await (const item of items) {
        if (stopped) break
        buffer.push(item)
        bytes += sizeOf(item)
        wake("sender")
        while (!stopped && (bytes >= READ_AHEAD_BYTES || buffer.length >= READ_AHEAD_ITEMS)) await new Promise<void>((resume) => (wakeReader = resume))
        if (stopped) break
      }
    } catch (cause) {
      // not expected (every read is caught above): the sending stops with it rather than wait
      buffer.push(failed(files[from.k]?.path ?? "", "read ahead")(cause))
    } finally {
      done = true
      wake("sender")
    }
  })()
  return {
    next: async () => {
      while (buffer.length === 0 && !done) await new Promise<void>((resume) => (wakeSender = resume))
      const item = buffer.shift()
      if (item !== undefined) bytes -= sizeOf(item)
      wake("reader")
      return item
    },
    stop: () => {
      stopped = true
      buffer.length = 0
      bytes = 0
      wake("reader")
    }
  }
}
