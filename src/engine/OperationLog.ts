/**
 * The append-only operation log and the version vector, in SQL.
 *
 * Rows are keyed by (origin number, seq); each origin's operations are a
 * contiguous range in sequence (and time) order. Origins are numbered in
 * `weft_origins` (`Origins`), and
 * timestamps are stored as their 8 bytes. Since migration 0004 model and
 * field names are numbered in `weft_names` (`Words`): a row's model is its
 * number, a create's or update's payload is `[field number, value, …]`
 * instead of a map naming each field, and a record id of the canonical UUID
 * form is its 16 bytes. Rows written before keep their text until read (both
 * forms read back the same operation). The version vector is each origin's
 * last row. Reads validate every row with the operation Schema: a corrupt
 * row is a `StorageError`, never a bad operation.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { sql, type Kysely } from "kysely"
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
 * the number of each origin it appends that is not stored yet), or never:
 * stored numbers may have gaps, and new ones continue after the largest ever given.
 */
export interface Origins {
  readonly numbers: Map<string, number>
  readonly names: Map<number, string>
  /** The next number to give. */
  next: number
  /** Numbers stored in `weft_origins` (by a committed write, or found there on open). */
  readonly stored: Set<number>
  /** Model and field names by number, read with the origins (they travel together to every reader of rows). */
  readonly words: Words
}

/**
 * Model and field names numbered in `weft_names`, so that rows name them by a
 * small integer (a model's rides in the log's `kind` column, as kind + 4 ×
 * its number). Every declared name is numbered when the engine opens
 * (`numberWords`), before any write; numbers never change.
 */
export interface Words {
  readonly numbers: Map<string, number>
  readonly names: Map<number, string>
}

/** An empty numbering. */
export const emptyOrigins = (): Origins => ({ numbers: new Map(), names: new Map(), next: 1, stored: new Set(), words: { numbers: new Map(), names: new Map() } })

/**
 * A record id as stored in the log: a lowercase UUID (8-4-4-4-12 lowercase hex digits) as its 16
 * bytes (20 fewer than its text), any other id as text. Read in one pass over the characters: the
 * regular expression, five slices, their concatenation and a hex decode per operation written cost
 * about a microsecond.
 */
export const packRecordId = (id: string): string | Uint8Array => {
  if (id.length !== 36 || id.charCodeAt(8) !== 45 || id.charCodeAt(13) !== 45 || id.charCodeAt(18) !== 45 || id.charCodeAt(23) !== 45) return id
  const out = new Uint8Array(16)
  let at = 0
  for (let i = 0; i < 36; i += 2) {
    if (i === 8 || i === 13 || i === 18 || i === 23) i++
    const hi = DIGIT[id.charCodeAt(i)] ?? -1
    const lo = DIGIT[id.charCodeAt(i + 1)] ?? -1
    if (hi < 0 || lo < 0) return id
    out[at++] = hi * 16 + lo
  }
  return out
}

/** The record id of a stored one (`undefined`: bytes that are not 16). */
export const unpackRecordId = (stored: string | Uint8Array): string | undefined => {
  if (typeof stored === "string") return stored
  if (stored.length !== 16) return undefined
  let hex = ""
  for (let i = 0; i < 16; i++) {
    hex += BYTE_HEX[stored[i]!]!
    if (i === 3 || i === 5 || i === 7 || i === 9) hex += "-"
  }
  return hex
}

/** A create's or update's fields as stored: `[field number, value, …]` (a name not numbered stays text). */
const packFields = (words: Words, fields: Readonly<Record<string, unknown>>): Array<unknown> => {
  const out: Array<unknown> = []
  for (const key in fields) out.push(words.numbers.get(key) ?? key, fields[key])
  return out
}

/** The fields of a stored payload (a map, as before 0004, or pairs), or why it is not one. */
const unpackFields = (words: Words, payload: unknown): unknown => {
  if (!Array.isArray(payload)) return payload
  if (payload.length % 2 !== 0) return "a payload's fields are (field, value) pairs"
  const fields: Record<string, unknown> = Object.create(null)
  for (let i = 0; i < payload.length; i += 2) {
    const key = payload[i]
    const name = typeof key === "number" ? words.names.get(key) : typeof key === "string" ? key : undefined
    if (name === undefined || Object.hasOwn(fields, name)) return `field ${String(key)} is not a numbered name, or is named twice`
    fields[name] = payload[i + 1]
  }
  return fields
}

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

const NO_MODEL = new Uint8Array(0)

/** The log rows of operations, or the first one too large to keep. */
const logRows = (
  origins: Origins,
  ops: ReadonlyArray<Operation.Operation>,
  maxOperationBytes: number
): Array<ReadonlyArray<unknown>> | ValidationError => {
  const rows: Array<ReadonlyArray<unknown>> = []
  for (const op of ops) {
    const packed = op._tag === "Create" || op._tag === "Update"
    const payload = Binary.encode(packed ? packFields(origins.words, op.fields) : Operation.toPayload(op))
    // the bound is on the operation as it travels (field names in full), not on its smaller stored
    // form: that is at most the stored bytes and each name's (63 characters and a 2-byte header at most)
    if (payload.length + (packed ? 65 * Object.keys(op.fields).length + 5 : 0) > maxOperationBytes) {
      const size = packed ? Binary.encode(Operation.toPayload(op)).length : payload.length
      if (size > maxOperationBytes) {
        return new ValidationError({ reason: "TooLarge", model: op.model, record: op.record, detail: `operation ${Operation.id(op)} takes ${size} bytes; the most is ${maxOperationBytes}` })
      }
    }
    // a numbered model rides in the kind column (kind + 4 × number), its own column left an empty blob
    const model = origins.words.numbers.get(op.model)
    const kind = Operation.kindOf(op) + (model === undefined ? 0 : 4 * model)
    rows.push([originNumber(origins, op.origin), op.seq, packTimestamp(op.ts), kind, model === undefined ? op.model : NO_MODEL, packRecordId(op.record), payload])
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
  readonly model: string | Uint8Array
  readonly record: string | Uint8Array
  readonly payload: Uint8Array | null
}

const corrupt = (detail: string) => new StorageError({ reason: "Corrupt", detail })

const fromRow = (origins: Origins, row: OperationRow): Either.Either<Operation.Operation, StorageError> => {
  const origin = origins.names.get(row.origin)
  if (origin === undefined) return Either.left(corrupt(`operation ${row.origin}/${row.seq}: no origin is numbered ${row.origin}`))
  const ts = unpackTimestamp(row.ts)
  if (ts === undefined) return Either.left(corrupt(`operation ${origin}/${row.seq}: a timestamp of ${row.ts.length} bytes`))
  const payload = row.payload === null ? Either.right(null) : Binary.decode(row.payload)
  if (Either.isLeft(payload)) return Either.left(corrupt(`operation ${origin}/${row.seq}: ${payload.left.message}`))
  const kind = typeof row.kind === "number" ? row.kind % 4 : row.kind
  const numbered = typeof row.kind === "number" ? Math.floor(row.kind / 4) : 0
  const model = numbered > 0 ? origins.words.names.get(numbered) : row.model
  if (typeof model !== "string") return Either.left(corrupt(`operation ${origin}/${row.seq}: no model name, or none numbered ${numbered}`))
  const record = unpackRecordId(row.record)
  if (record === undefined) return Either.left(corrupt(`operation ${origin}/${row.seq}: a record id of ${row.record.length} bytes`))
  const fields = kind === 0 || kind === 1 ? unpackFields(origins.words, payload.right) : payload.right
  if (typeof fields === "string") return Either.left(corrupt(`operation ${origin}/${row.seq}: ${fields}`))
  return Either.mapLeft(
    Operation.fromTuple([kind, origin, row.seq, ts, model, record, fields]),
    (e) => corrupt(`operation ${origin}/${row.seq}: ${ParseError.describe(e)}`)
  )
}

const fromRows = (origins: Origins, rows: ReadonlyArray<OperationRow>): Effect.Effect<Array<Operation.Operation>, StorageError> =>
  Effect.suspend(() => {
    const ops: Array<Operation.Operation> = []
    for (const row of rows) {
      const op = fromRow(origins, row)
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
  }).pipe(Effect.flatMap((rows) => fromRows(origins, rows)))
}

/** A page of operations the holder of `theirs` lacks. */
export interface Page {
  readonly ops: ReadonlyArray<Operation.Operation>
  /** Whether more operations are lacking after this page. */
  readonly hasMore: boolean
}

/** Per origin that `theirs` lacks operations of: (origin, the last seq it holds, our last seq), by origin. */
const lacking = (
  mine: VersionVector.VersionVector,
  theirs: VersionVector.VersionVector
): Array<readonly [origin: string, after: number, target: number]> => {
  // what to reach, read now: `mine` may be the engine's live vector, which moves on after each commit
  const behind: Array<readonly [origin: string, after: number, target: number]> = []
  for (const [origin, entry] of mine) {
    const after = VersionVector.seqOf(theirs, origin)
    if (entry.seq > after) behind.push([origin, after, entry.seq])
  }
  behind.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  return behind
}

/** What a page read of one origin says: go on to the next origin, the page is full, or the log is short. */
const reachedOrigin = (origin: string, read: number, reached: number, wanted: number, target: number) => {
  if (reached >= target) return "next" as const
  if (read < wanted) return corrupt(`log of ${origin} ends at ${reached}, the version vector says ${target}`)
  return "full" as const
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
    const behind = lacking(mine, theirs)
    return Effect.gen(function*() {
      const ops: Array<Operation.Operation> = []
      for (const [origin, after, target] of behind) {
        const remaining = limit - ops.length
        if (remaining <= 0) return { ops, hasMore: true }
        const wanted = Math.min(remaining, target - after)
        const page = yield* readOrigin(db, origins, origin, after, wanted)
        ops.push(...page)
        const reached = reachedOrigin(origin, page.length, page.length === 0 ? after : page[page.length - 1]!.seq, wanted, target)
        if (reached instanceof StorageError) return yield* reached
        if (reached === "full") return { ops, hasMore: true }
      }
      return { ops, hasMore: false }
    })
  })

const SELECT_ORIGIN = `select "origin", "seq", "ts", "kind", "model", "record", "payload" from "${LOG}" where "origin" = ? and "seq" > ? order by "seq" limit ?`

/**
 * `since` in this turn of the event loop, on a database whose statements run synchronously
 * (`Database.Sync`): one prepared statement per origin read, no query built and no promise per
 * page, so a page's rows are garbage as soon as they are operations (read through Kysely, a page
 * lived across several turns of the event loop and its rows were promoted to the old generation).
 * A write's transaction may be open on the connection meanwhile (its rows are visible to this
 * read): each origin is read only up to its seq in `mine`, which must hold committed operations only.
 */
export const sinceSync = (
  all: <Row>(sql: string, parameters: ReadonlyArray<unknown>) => Array<Row>,
  origins: Origins,
  mine: VersionVector.VersionVector,
  theirs: VersionVector.VersionVector,
  limit: number
): Either.Either<Page, StorageError> => {
  const ops: Array<Operation.Operation> = []
  for (const [origin, after, target] of lacking(mine, theirs)) {
    const remaining = limit - ops.length
    if (remaining <= 0) return Either.right({ ops, hasMore: true })
    const wanted = Math.min(remaining, target - after)
    const n = origins.numbers.get(origin)
    const start = ops.length
    if (n !== undefined) {
      for (const row of all<OperationRow>(SELECT_ORIGIN, [n, after, wanted])) {
        const op = fromRow(origins, row)
        if (Either.isLeft(op)) return Either.left(op.left)
        ops.push(op.right)
      }
    }
    const read = ops.length - start
    const reached = reachedOrigin(origin, read, read === 0 ? after : ops[ops.length - 1]!.seq, wanted, target)
    if (reached instanceof StorageError) return Either.left(reached)
    if (reached === "full") return Either.right({ ops, hasMore: true })
  }
  return Either.right({ ops, hasMore: false })
}

/** Every operation, page by page, in (origin number, seq) order. */
export const scan = <E>(
  db: Kysely<any>,
  pageSize: number,
  each: (ops: ReadonlyArray<Operation.Operation>) => Effect.Effect<void, E>
): Effect.Effect<number, StorageError | E> =>
  Effect.gen(function*() {
    const { origins } = yield* readOrigins(db)
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
      yield* each(yield* fromRows(origins, rows))
      count += rows.length
      const last = rows[rows.length - 1]!
      cursor = { origin: last.origin, seq: last.seq }
    }
  })

interface OriginRow {
  readonly n: number
  readonly origin: string
  readonly seq: number | null
  readonly ts: Uint8Array | null
}

/**
 * The version vector and the origins' numbers (and the numbered names). Each origin's entry is its
 * last row in the log, read by key: `weft_origins` holds numbers only (a commit stores no vector
 * besides the log rows it appends).
 */
export const readOrigins = (
  db: Kysely<any>
): Effect.Effect<{ readonly vector: Map<string, VersionVector.Entry>; readonly origins: Origins }, StorageError> =>
  Effect.tryPromise({
    try: async () => {
      const rows = await sql<OriginRow>`select o.n as n, o.origin as origin, l.seq as seq, l.ts as ts from weft_origins o
        left join weft_log l on l.origin = o.n and l.seq = (select max(m.seq) from weft_log m where m.origin = o.n)`.execute(db)
      const words = await db.selectFrom("weft_names").select(["n", "name"]).execute()
      return { rows: rows.rows, words }
    },
    catch: queryError
  }).pipe(
    Effect.flatMap(({ rows, words }) => {
      const origins = emptyOrigins()
      for (const row of rows) {
        const n = Number(row.n)
        if (!Number.isSafeInteger(n) || n < 1 || origins.names.has(n) || origins.numbers.has(row.origin)) {
          return Effect.fail(corrupt(`origin ${row.origin} numbered ${row.n}: numbers are distinct positive integers`))
        }
        origins.numbers.set(row.origin, n)
        origins.names.set(n, row.origin)
        origins.stored.add(n)
        origins.next = Math.max(origins.next, n + 1)
      }
      for (const { n, name } of words) {
        if (typeof n !== "number" || typeof name !== "string" || origins.words.names.has(n) || origins.words.numbers.has(name)) {
          return Effect.fail(corrupt(`name ${String(name)} numbered ${String(n)}: names and numbers are distinct`))
        }
        origins.words.numbers.set(name, n)
        origins.words.names.set(n, name)
      }
      const entries: Array<VersionVector.StoredEntry> = []
      for (const row of rows) {
        // an origin numbered but without rows holds nothing yet
        if (row.seq === null || row.ts === null) continue
        const ts = unpackTimestamp(row.ts)
        if (ts === undefined) return Effect.fail(corrupt(`operation ${row.origin}/${row.seq}: a timestamp of ${row.ts.length} bytes`))
        entries.push({ origin: row.origin, seq: Number(row.seq), ts })
      }
      return Either.match(VersionVector.fromStored(entries), {
        onLeft: (detail) => Effect.fail(corrupt(`version vector: ${detail}`)),
        onRight: (vector) => Effect.succeed({ vector, origins })
      })
    })
  )

/** Numbers the names not numbered yet (in a transaction, before any write that uses them). */
export const numberWords = (trx: Kysely<any>, origins: Origins, names: Iterable<string>): Effect.Effect<void, StorageError> =>
  Effect.tryPromise({
    try: async () => {
      const { words } = origins
      let next = Math.max(0, ...words.names.keys()) + 1
      for (const name of names) {
        if (words.numbers.has(name)) continue
        await trx.insertInto("weft_names").values({ n: next, name }).execute()
        words.numbers.set(name, next)
        words.names.set(next, name)
        next++
      }
    },
    catch: queryError
  })

const originRows = (origins: Origins, advanced: VersionVector.VersionVector) => {
  const rows: Array<ReadonlyArray<unknown>> = []
  for (const origin of advanced.keys()) {
    const n = originNumber(origins, origin)
    if (!origins.stored.has(n)) rows.push([n, origin])
  }
  return rows
}
// a number given in a transaction that rolled back is stored by a later one: the same row again, kept
const ORIGIN_CONFLICT = { target: ["n"], update: ["origin"] }
const ORIGIN_COLUMNS = ["n", "origin"]

/**
 * Stores the origins that a commit appends and `weft_origins` lacks (each with its number); the
 * caller marks them stored once the commit is done (`originsStored`).
 */
export const writeVector = (
  trx: Kysely<any>,
  bulk: Bulk,
  origins: Origins,
  advanced: VersionVector.VersionVector
): Effect.Effect<void, StorageError> => {
  const rows = originRows(origins, advanced)
  if (rows.length === 0) return Effect.void
  return Effect.tryPromise({ try: () => bulk.insert(trx, "weft_origins", ORIGIN_COLUMNS, rows, ORIGIN_CONFLICT), catch: queryError })
}

/** `writeVector` in this turn of the event loop, inside `Database.sync`'s transaction. */
export const writeVectorSync = (trx: Kysely<any>, bulk: SyncBulk, origins: Origins, advanced: VersionVector.VersionVector): void => {
  const rows = originRows(origins, advanced)
  if (rows.length > 0) bulk.insert(trx, "weft_origins", ORIGIN_COLUMNS, rows, ORIGIN_CONFLICT)
}

/** After a commit: the origins it appended are stored. */
export const originsStored = (origins: Origins, advanced: VersionVector.VersionVector): void => {
  for (const origin of advanced.keys()) origins.stored.add(originNumber(origins, origin))
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
