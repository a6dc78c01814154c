/**
 * The append-only operation log and the version vector, in SQL.
 *
 * Rows are keyed by (origin number, seq); each origin's operations are a
 * contiguous range in sequence (and time) order. Origins are numbered in
 * `weft_origins` (`Origins`), which also holds the version vector, and
 * timestamps are stored as their 8 bytes. Reads validate every row with the
 * operation Schema: a corrupt row is a `StorageError`, never a bad operation.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { Kysely } from "kysely"
import * as Binary from "../crdt/Binary.js"
import * as Operation from "../crdt/Operation.js"
import type { NodeId } from "../crdt/Timestamp.js"
import * as VersionVector from "../crdt/VersionVector.js"
import { queryError, StorageError } from "./Database.js"
import { ValidationError } from "./EngineError.js"
import type { Bulk, SyncBulk } from "./internal/bulk.js"
import * as ParseError from "../internal/parseError.js"

const LOG = "weft_log"
const COLUMNS = ["origin", "seq", "ts", "kind", "model", "record", "payload"]

// hex digit values by char code (-1: not a lowercase hex digit), and each byte's two digits
const DIGIT = Array.from({ length: 128 }, (_, c) => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1))
const BYTE_HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"))

/** A timestamp's 8 bytes (its 16 hex digits), which sort as it does; `undefined` for a malformed one. */
export const packTimestamp = (ts: string): Uint8Array | undefined => {
  if (ts.length !== 16) return undefined
  const out = new Uint8Array(8)
  for (let i = 0; i < 8; i++) {
    const hi = DIGIT[ts.charCodeAt(2 * i)] ?? -1
    const lo = DIGIT[ts.charCodeAt(2 * i + 1)] ?? -1
    if (hi < 0 || lo < 0) return undefined
    out[i] = hi * 16 + lo
  }
  return out
}

/** The timestamp of 8 stored bytes; `undefined` for another length. */
export const unpackTimestamp = (bytes: Uint8Array): string | undefined => {
  if (bytes.length !== 8) return undefined
  let ts = ""
  for (let i = 0; i < 8; i++) ts += BYTE_HEX[bytes[i]!]!
  return ts
}

/**
 * The numbers of origins, as stored in `weft_origins`. A number is given the
 * first time an origin is appended and never changes. One given in a
 * transaction that rolls back stays given in memory (readers may hold it) and
 * is stored by the next commit that appends its origin (every commit stores
 * the vector entry, number included, of each origin it appends), or never:
 * stored numbers may have gaps, and new ones continue after the largest ever given.
 */
export interface Origins {
  readonly numbers: Map<string, number>
  readonly names: Map<number, string>
  /** The next number to give. */
  next: number
}

/** An empty numbering. */
export const emptyOrigins = (): Origins => ({ numbers: new Map(), names: new Map(), next: 1 })

/** The number of `origin`, given now if it has none. */
export const originNumber = (origins: Origins, origin: string): number => {
  let n = origins.numbers.get(origin)
  if (n === undefined) {
    n = origins.next++
    origins.numbers.set(origin, n)
    origins.names.set(n, origin)
  }
  return n
}

/** The log rows of operations, or the first one too large to keep. */
const logRows = (
  origins: Origins,
  ops: ReadonlyArray<Operation.Operation>,
  maxOperationBytes: number
): Array<ReadonlyArray<unknown>> | ValidationError => {
  const rows: Array<ReadonlyArray<unknown>> = []
  for (const op of ops) {
    const payload = Binary.encode(Operation.toPayload(op))
    if (payload.length > maxOperationBytes) {
      return new ValidationError({ reason: "TooLarge", model: op.model, record: op.record, detail: `operation ${Operation.id(op)} takes ${payload.length} bytes; the most is ${maxOperationBytes}` })
    }
    rows.push([originNumber(origins, op.origin), op.seq, packTimestamp(op.ts), Operation.kindOf(op), op.model, op.record, payload])
  }
  return rows
}

/** Appends operations (callers have removed the ones already held). */
export const append = (
  trx: Kysely<any>,
  bulk: Bulk,
  origins: Origins,
  ops: ReadonlyArray<Operation.Operation>,
  maxOperationBytes: number
): Effect.Effect<void, StorageError | ValidationError> =>
  Effect.suspend((): Effect.Effect<void, StorageError | ValidationError> => {
    const rows = logRows(origins, ops, maxOperationBytes)
    if (rows instanceof ValidationError) return Effect.fail(rows)
    return Effect.tryPromise({ try: () => bulk.insert(trx, LOG, COLUMNS, rows), catch: queryError })
  })

/** `append` in this turn of the event loop, inside `Database.sync`'s transaction; the error of an operation too large. */
export const appendSync = (
  trx: Kysely<any>,
  bulk: SyncBulk,
  origins: Origins,
  ops: ReadonlyArray<Operation.Operation>,
  maxOperationBytes: number
): ValidationError | undefined => {
  const rows = logRows(origins, ops, maxOperationBytes)
  if (rows instanceof ValidationError) return rows
  bulk.insert(trx, LOG, COLUMNS, rows)
  return undefined
}

interface OperationRow {
  readonly origin: number
  readonly seq: number
  readonly ts: Uint8Array
  readonly kind: number
  readonly model: string
  readonly record: string
  readonly payload: Uint8Array | null
}

const corrupt = (detail: string) => new StorageError({ reason: "Corrupt", detail })

const fromRow = (names: ReadonlyMap<number, string>, row: OperationRow): Either.Either<Operation.Operation, StorageError> => {
  const origin = names.get(row.origin)
  if (origin === undefined) return Either.left(corrupt(`operation ${row.origin}/${row.seq}: no origin is numbered ${row.origin}`))
  const ts = unpackTimestamp(row.ts)
  if (ts === undefined) return Either.left(corrupt(`operation ${origin}/${row.seq}: a timestamp of ${row.ts.length} bytes`))
  const payload = row.payload === null ? Either.right(null) : Binary.decode(row.payload)
  if (Either.isLeft(payload)) return Either.left(corrupt(`operation ${origin}/${row.seq}: ${payload.left.message}`))
  return Either.mapLeft(
    Operation.decodeTuple([row.kind, origin, row.seq, ts, row.model, row.record, payload.right]),
    (e) => corrupt(`operation ${origin}/${row.seq}: ${ParseError.describe(e)}`)
  )
}

const fromRows = (names: ReadonlyMap<number, string>, rows: ReadonlyArray<OperationRow>): Effect.Effect<Array<Operation.Operation>, StorageError> =>
  Effect.suspend(() => {
    const ops: Array<Operation.Operation> = []
    for (const row of rows) {
      const op = fromRow(names, row)
      if (Either.isLeft(op)) return Effect.fail(op.left)
      ops.push(op.right)
    }
    return Effect.succeed(ops)
  })

/** Operations of `origin` after `afterSeq`, in order, at most `limit`. */
export const readOrigin = (
  db: Kysely<any>,
  origins: Origins,
  origin: string,
  afterSeq: number,
  limit: number
): Effect.Effect<Array<Operation.Operation>, StorageError> => {
  const n = origins.numbers.get(origin)
  if (n === undefined) return Effect.succeed([])
  return Effect.tryPromise({
    try: () =>
      db.selectFrom(LOG).selectAll()
        .where("origin", "=", n).where("seq", ">", afterSeq)
        .orderBy("seq").limit(limit)
        .execute() as Promise<Array<OperationRow>>,
    catch: queryError
  }).pipe(Effect.flatMap((rows) => fromRows(origins.names, rows)))
}

/** A page of operations the holder of `theirs` lacks. */
export interface Page {
  readonly ops: ReadonlyArray<Operation.Operation>
  /** Whether more operations are lacking after this page. */
  readonly hasMore: boolean
}

/**
 * Operations that `mine` holds and `theirs` lacks: per origin in sequence
 * order, origins one after another, at most `limit`. Applying a page keeps
 * every origin a prefix on the receiving side.
 */
export const since = (
  db: Kysely<any>,
  origins: Origins,
  mine: VersionVector.VersionVector,
  theirs: VersionVector.VersionVector,
  limit: number
): Effect.Effect<Page, StorageError> =>
  Effect.suspend(() => {
    // what to reach, read now: `mine` may be the engine's live vector, which moves on after each commit
    const behind: Array<readonly [origin: string, after: number, target: number]> = []
    for (const [origin, entry] of mine) {
      const after = VersionVector.seqOf(theirs, origin)
      if (entry.seq > after) behind.push([origin, after, entry.seq])
    }
    behind.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    return Effect.gen(function*() {
      const ops: Array<Operation.Operation> = []
      for (const [origin, after, target] of behind) {
        const remaining = limit - ops.length
        if (remaining <= 0) return { ops, hasMore: true }
        const wanted = Math.min(remaining, target - after)
        const page = yield* readOrigin(db, origins, origin, after, wanted)
        ops.push(...page)
        const reached = page.length === 0 ? after : page[page.length - 1]!.seq
        if (reached < target) {
          if (page.length < wanted) {
            return yield* corrupt(`log of ${origin} ends at ${reached}, the version vector says ${target}`)
          }
          return { ops, hasMore: true }
        }
      }
      return { ops, hasMore: false }
    })
  })

/** Every operation, page by page, in (origin number, seq) order. */
export const scan = <E>(
  db: Kysely<any>,
  pageSize: number,
  each: (ops: ReadonlyArray<Operation.Operation>) => Effect.Effect<void, E>
): Effect.Effect<number, StorageError | E> =>
  Effect.gen(function*() {
    const { names } = (yield* readOrigins(db)).origins
    let count = 0
    let cursor: { origin: number; seq: number } | undefined
    while (true) {
      const after = cursor
      const rows = yield* Effect.tryPromise({
        try: () => {
          let query = db.selectFrom(LOG).selectAll()
          if (after !== undefined) {
            query = query.where((eb) =>
              eb.or([eb("origin", ">", after.origin), eb.and([eb("origin", "=", after.origin), eb("seq", ">", after.seq)])])
            )
          }
          return query.orderBy("origin").orderBy("seq").limit(pageSize).execute() as Promise<Array<OperationRow>>
        },
        catch: queryError
      })
      if (rows.length === 0) return count
      yield* each(yield* fromRows(names, rows))
      count += rows.length
      const last = rows[rows.length - 1]!
      cursor = { origin: last.origin, seq: last.seq }
    }
  })

interface OriginRow {
  readonly n: number
  readonly origin: string
  readonly seq: number
  readonly ts: string
}

/** The stored version vector and the origins' numbers. */
export const readOrigins = (
  db: Kysely<any>
): Effect.Effect<{ readonly vector: Map<string, VersionVector.Entry>; readonly origins: Origins }, StorageError> =>
  Effect.tryPromise({
    try: () => db.selectFrom("weft_origins").selectAll().execute() as Promise<Array<OriginRow>>,
    catch: queryError
  }).pipe(
    Effect.flatMap((rows) => {
      const origins = emptyOrigins()
      for (const row of rows) {
        const n = Number(row.n)
        if (!Number.isSafeInteger(n) || n < 1 || origins.names.has(n) || origins.numbers.has(row.origin)) {
          return Effect.fail(corrupt(`origin ${row.origin} numbered ${row.n}: numbers are distinct positive integers`))
        }
        origins.numbers.set(row.origin, n)
        origins.names.set(n, row.origin)
        origins.next = Math.max(origins.next, n + 1)
      }
      return Either.match(VersionVector.fromStored(rows.map((row) => ({ origin: row.origin, seq: Number(row.seq), ts: row.ts }))), {
        onLeft: (detail) => Effect.fail(corrupt(`version vector: ${detail}`)),
        onRight: (vector) => Effect.succeed({ vector, origins })
      })
    })
  )

const vectorRows = (origins: Origins, advanced: VersionVector.VersionVector) => {
  const rows: Array<ReadonlyArray<unknown>> = []
  for (const [origin, entry] of advanced) rows.push([originNumber(origins, origin), origin, entry.seq, entry.ts])
  return rows
}
const VECTOR_CONFLICT = { target: ["n"], update: ["seq", "ts"] }

/** Stores the entries that a commit moved (each origin with its number). */
export const writeVector = (
  trx: Kysely<any>,
  bulk: Bulk,
  origins: Origins,
  advanced: VersionVector.VersionVector
): Effect.Effect<void, StorageError> => {
  if (advanced.size === 0) return Effect.void
  return Effect.tryPromise({
    try: () => bulk.insert(trx, "weft_origins", ["n", "origin", "seq", "ts"], vectorRows(origins, advanced), VECTOR_CONFLICT),
    catch: queryError
  })
}

/** `writeVector` in this turn of the event loop, inside `Database.sync`'s transaction. */
export const writeVectorSync = (trx: Kysely<any>, bulk: SyncBulk, origins: Origins, advanced: VersionVector.VersionVector): void => {
  if (advanced.size > 0) bulk.insert(trx, "weft_origins", ["n", "origin", "seq", "ts"], vectorRows(origins, advanced), VECTOR_CONFLICT)
}

/** Reads a value of the engine's metadata. */
export const readMeta = (db: Kysely<any>, key: string): Effect.Effect<string | undefined, StorageError> =>
  Effect.tryPromise({
    try: async () => {
      const row = await db.selectFrom("weft_meta").select("value").where("key", "=", key).executeTakeFirst()
      return row?.value as string | undefined
    },
    catch: queryError
  })

/** Writes a value of the engine's metadata (a statement compiled once, not a query built per commit). */
export const writeMeta = (trx: Kysely<any>, bulk: Bulk, key: string, value: string): Effect.Effect<void, StorageError> =>
  Effect.tryPromise({
    try: () => bulk.insert(trx, "weft_meta", ["key", "value"], [[key, value]], { target: ["key"], update: ["value"] }),
    catch: queryError
  })

/** `writeMeta` in this turn of the event loop, inside `Database.sync`'s transaction. */
export const writeMetaSync = (trx: Kysely<any>, bulk: SyncBulk, key: string, value: string): void =>
  bulk.insert(trx, "weft_meta", ["key", "value"], [[key, value]], { target: ["key"], update: ["value"] })

/** Metadata keys. */
export const META_NODE = "node"
export const META_CLOCK = "clock"

/** The node id stored with the log, if any. */
export const readNode = (db: Kysely<any>): Effect.Effect<NodeId | undefined, StorageError> =>
  readMeta(db, META_NODE) as Effect.Effect<NodeId | undefined, StorageError>
