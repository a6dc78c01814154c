/**
 * Rich-text documents of one engine: where they are stored, a bounded cache
 * of hot ones, and the limits on what an edit may expand to.
 *
 * Storage: `weft_documents` holds each document's last compaction
 * (`Automerge.save`), `weft_document_changes` the change chunks appended
 * since, in order. A document is the load of its compaction followed by its
 * chunks (Automerge loads a concatenation of chunks, queued changes included).
 * An edit appends its changes instead of saving the whole document, so its
 * cost does not grow with the document's history; a document is compacted
 * again once its chunks outweigh its compaction (or number over
 * `COMPACT_CHUNKS`), which keeps the saving amortised and the load bounded.
 *
 * Cache: a writer's transaction takes the documents it touches out of the
 * cache (or loads them), changes them in place, and `settle` puts them back
 * when the transaction committed, or frees them when it did not, so the
 * cache never holds a state the database does not. Past `capacity` the least
 * recently used documents are freed: Automerge's WebAssembly memory never
 * shrinks, so what counts is how many documents are live at once.
 *
 * Only the engine's writer uses this (under its semaphore): one transaction
 * at a time.
 *
 * @internal
 */
import * as Either from "effect/Either"
import type { Kysely } from "kysely"
import type * as Operation from "../../crdt/Operation.js"
import * as RichText from "../../crdt/RichText.js"
import type { NodeId } from "../../crdt/Timestamp.js"
import { StorageError } from "../Database.js"
import { IngestError } from "../EngineError.js"
import type { Bulk } from "./bulk.js"
import { concat } from "../../internal/bytes.js"

/** What one edit may expand to. */
export interface Limits {
  /** Most operations one Automerge change may stand for (local changes are split to fit). */
  readonly maxOpsPerChange: number
  /** Most operations one `Edit` operation's changes may stand for together. */
  readonly maxOpsPerEdit: number
  /** Most operations the changes of one ingested batch may stand for together. */
  readonly maxOpsPerBatch: number
  /** Longest text a local edit may leave (remote edits are not refused by size: see `checkIngest`). */
  readonly maxTextLength: number
  /** Documents kept loaded between transactions. */
  readonly cachedDocuments: number
}

/**
 * Defaults. Automerge applies about 0.5-1 M inserted characters a second here,
 * so a change of 10 000 operations blocks the event loop for some 10-20 ms:
 * the ingest yields between changes, and a peer's ping waits for at most one.
 * An edit of 100 000 operations is a 100 KB paste; a batch of 200 000 costs
 * ~100 MB of Automerge memory at its peak (~0.5 KB per inserted element).
 */
export const defaultLimits: Limits = {
  maxOpsPerChange: 10_000,
  maxOpsPerEdit: 100_000,
  maxOpsPerBatch: 200_000,
  maxTextLength: 1_000_000,
  cachedDocuments: 64
}

/**
 * Refuses remote `Edit` operations whose changes stand for more work than the
 * limits allow, counted from the change bytes before anything is applied (see
 * `RichText.inspect`). Only limits that depend on the operations alone are
 * checked here: a refusal that depended on what this node holds (the size a
 * document would reach) would let one peer keep what another refuses, and
 * their copies would never agree again. Sizes are bounded where edits are
 * made instead (`maxTextLength`, local writes only). A change that does not
 * parse is left to the projection, which refuses it as malformed.
 */
export const checkIngest = (ops: ReadonlyArray<Operation.Operation>, limits: Limits): IngestError | undefined => {
  let batch = 0
  for (const op of ops) {
    if (op._tag !== "Edit") continue
    let edit = 0
    for (const change of op.changes) {
      const inspected = RichText.inspect(change)
      if (Either.isLeft(inspected)) continue
      const n = inspected.right.ops
      const over = n > limits.maxOpsPerChange
        ? `a change of ${n} operations; the limit is ${limits.maxOpsPerChange}`
        : edit + n > limits.maxOpsPerEdit
        ? `changes of more than ${limits.maxOpsPerEdit} operations in one edit`
        : batch + n > limits.maxOpsPerBatch
        ? `changes of more than ${limits.maxOpsPerBatch} operations in one batch`
        : undefined
      if (over !== undefined) {
        return new IngestError({ reason: "TooLarge", origin: op.origin, seq: op.seq, detail: `${op.model}/${op.record}/${op.field}: ${over}` })
      }
      edit += n
      batch += n
    }
  }
  return undefined
}

/**
 * Operations the rich-text changes of `ops` stand for together (unparseable
 * changes count as none: they are refused as malformed). A sender keeps each
 * batch within a receiver's `maxOpsPerBatch` by this count.
 */
export const work = (ops: ReadonlyArray<Operation.Operation>): number => {
  let total = 0
  for (const op of ops) {
    if (op._tag !== "Edit") continue
    for (const change of op.changes) total += Either.getOrElse(Either.map(RichText.inspect(change), (i) => i.ops), () => 0)
  }
  return total
}

/** Chunks after which a document is compacted, whatever their size. */
export const COMPACT_CHUNKS = 256
/** Chunk bytes a document may gather before compaction, at least. */
const COMPACT_BYTES = 64 * 1024

interface Entry {
  doc: RichText.Doc
  /** Size of the stored compaction, and of the chunks stored after it. */
  saved: number
  chunkBytes: number
  /** Number of the next chunk (chunks are numbered from 0 after each compaction). */
  next: number
  /** Changes to store when the transaction writes. */
  readonly appended: Array<Uint8Array>
  /** Whether the document has no stored row yet. */
  fresh: boolean
}

const keyOf = (model: string, id: string, field: string) => `${model}\u0000${id}\u0000${field}`


/** Loads a document from its stored compaction and chunks. */
export const decode = (compaction: Uint8Array, chunks: ReadonlyArray<Uint8Array>, node: NodeId) =>
  RichText.load(chunks.length === 0 ? compaction : concat([compaction, ...chunks]), node)

const corrupt = (model: string, id: string, field: string, e: RichText.RichTextError) =>
  new StorageError({ reason: "Corrupt", detail: `document ${model}/${id}/${field}: ${e.detail}` })

/** The documents of one engine. */
export interface Documents {
  readonly limits: Limits
  /**
   * The documents of `fields` of records `ids` (absent: never edited), for
   * the current transaction: each is the transaction's own until `settle`.
   */
  readonly get: (
    trx: Kysely<any>,
    model: string,
    ids: ReadonlyArray<string>,
    fields: ReadonlyArray<string>
  ) => Promise<Either.Either<Map<string, Map<string, RichText.Doc>>, StorageError>>
  /** A new document for a field never edited, the transaction's own like those `get` returns. */
  readonly create: (model: string, id: string, field: string) => RichText.Doc
  /**
   * Records a document's new value (the same document, changed in place) and
   * the changes that made it, to be appended on `write`.
   */
  readonly update: (model: string, id: string, field: string, doc: RichText.Doc, changes: ReadonlyArray<Uint8Array>) => void
  /** Writes the documents updated in this transaction: chunks appended, or a compaction. */
  readonly write: (trx: Kysely<any>) => Promise<void>
  /** Ends the transaction: its documents go to the cache if it committed, are freed otherwise. */
  readonly settle: (committed: boolean) => void
  /** Frees every cached document (the projection is being rebuilt). */
  readonly clear: () => void
  /** Documents in the cache, for tests. */
  readonly cached: () => number
}

/** @internal */
export const make = (bulk: Bulk, node: NodeId, limits: Limits): Documents => {
  // Map iteration order is insertion order: the first key is the least recently used
  const cache = new Map<string, Entry>()
  const working = new Map<string, Entry>()

  const take = (key: string): Entry | undefined => {
    const own = working.get(key)
    if (own !== undefined) return own
    const hot = cache.get(key)
    if (hot === undefined) return undefined
    cache.delete(key)
    working.set(key, hot)
    return hot
  }

  const get: Documents["get"] = async (trx, model, ids, fields) => {
    const out = new Map<string, Map<string, RichText.Doc>>()
    const put = (id: string, field: string, doc: RichText.Doc) => {
      const perRecord = out.get(id) ?? new Map<string, RichText.Doc>()
      out.set(id, perRecord.set(field, doc))
    }
    const missing: Array<string> = []
    for (const id of ids) {
      let all = true
      for (const field of fields) {
        const entry = take(keyOf(model, id, field))
        if (entry === undefined) all = false
        else put(id, field, entry.doc)
      }
      if (!all) missing.push(id)
    }
    if (missing.length === 0) return Either.right(out)
    const rows = await bulk.selectIn<{ id: string; field: string; doc: Uint8Array }>(trx, "weft_documents", ["id", "field", "doc"], "id", missing, { model })
    const chunkRows = await bulk.selectIn<{ id: string; field: string; n: number; change: Uint8Array }>(
      trx,
      "weft_document_changes",
      ["id", "field", "n", "change"],
      "id",
      missing,
      { model }
    )
    const chunks = new Map<string, Array<{ n: number; change: Uint8Array }>>()
    for (const row of chunkRows) {
      const key = keyOf(model, row.id, row.field)
      const list = chunks.get(key) ?? []
      chunks.set(key, list)
      list.push(row)
    }
    const wanted = new Set(fields)
    for (const row of rows) {
      const key = keyOf(model, row.id, row.field)
      if (!wanted.has(row.field) || working.has(key)) continue
      const own = (chunks.get(key) ?? []).sort((a, b) => a.n - b.n)
      const doc = decode(row.doc, own.map((c) => c.change), node)
      if (Either.isLeft(doc)) return Either.left(corrupt(model, row.id, row.field, doc.left))
      const chunkBytes = own.reduce((n, c) => n + c.change.length, 0)
      working.set(key, { doc: doc.right, saved: row.doc.length, chunkBytes, next: own.length === 0 ? 0 : own[own.length - 1]!.n + 1, appended: [], fresh: false })
      put(row.id, row.field, doc.right)
    }
    return Either.right(out)
  }

  const create: Documents["create"] = (model, id, field) => {
    const key = keyOf(model, id, field)
    const held = take(key)
    if (held !== undefined) return held.doc
    const doc = RichText.make(node)
    working.set(key, { doc, saved: 0, chunkBytes: 0, next: 0, appended: [], fresh: true })
    return doc
  }

  const update: Documents["update"] = (model, id, field, doc, changes) => {
    // Automerge changes a document in place and hands back a new value of it: the entry's memory is the same
    const entry = working.get(keyOf(model, id, field))!
    entry.doc = doc
    entry.appended.push(...changes)
  }

  const write: Documents["write"] = async (trx) => {
    const compactions: Array<Array<unknown>> = []
    const compacted: Array<readonly [string, string, string]> = []
    const appends: Array<Array<unknown>> = []
    for (const [key, entry] of working) {
      if (entry.appended.length === 0) continue
      const [model, id, field] = key.split("\u0000") as [string, string, string]
      const bytes = entry.appended.reduce((n, c) => n + c.length, 0)
      if (entry.fresh || entry.next + entry.appended.length > COMPACT_CHUNKS || entry.chunkBytes + bytes > Math.max(COMPACT_BYTES, entry.saved)) {
        const saved = RichText.save(entry.doc)
        compactions.push([model, id, field, saved])
        if (!entry.fresh && entry.next > 0) compacted.push([model, id, field])
        entry.saved = saved.length
        entry.chunkBytes = 0
        entry.next = 0
        entry.fresh = false
      } else {
        for (const change of entry.appended) appends.push([model, id, field, entry.next++, change])
        entry.chunkBytes += bytes
      }
      entry.appended.length = 0
    }
    for (const [model, id, field] of compacted) {
      await trx.deleteFrom("weft_document_changes").where("model", "=", model).where("id", "=", id).where("field", "=", field).execute()
    }
    if (compactions.length > 0) {
      await bulk.insert(trx, "weft_documents", ["model", "id", "field", "doc"], compactions, { target: ["model", "id", "field"], update: ["doc"] })
    }
    if (appends.length > 0) await bulk.insert(trx, "weft_document_changes", ["model", "id", "field", "n", "change"], appends)
  }

  const settle: Documents["settle"] = (committed) => {
    for (const [key, entry] of working) {
      if (committed && entry.appended.length === 0) {
        cache.set(key, entry)
      } else {
        // not committed (or committed without being written): what the database holds is what counts
        RichText.free(entry.doc)
      }
    }
    working.clear()
    while (cache.size > limits.cachedDocuments) {
      const [key, entry] = cache.entries().next().value!
      cache.delete(key)
      RichText.free(entry.doc)
    }
  }

  const clear = () => {
    for (const entry of cache.values()) RichText.free(entry.doc)
    cache.clear()
  }

  return { limits, get, create, update, write, settle, clear, cached: () => cache.size }
}
