/**
 * Schema of the engine's own tables, as Kysely migrations. Projection tables
 * (one per app model) are not migrations: they follow the app's model
 * declarations and are reconciled at start by `Projection`.
 *
 * Tables:
 * - `weft_origins` — each origin known, numbered (`n`) so that the log and
 *   record states name it by a small integer. Until 0005 it also held each
 *   origin's last seq and timestamp (the version vector); since 0004 those
 *   were written only when the origin was first stored, and went stale, so
 *   0005 drops them: the vector is each origin's last row in the log.
 * - `weft_log` — the append-only log, keyed by (origin number, seq) and
 *   stored as that key's B-tree alone where the dialect can (`WITHOUT
 *   ROWID`): each origin's operations are a contiguous, time-ordered range,
 *   which is what `opsSince` reads and what keeps appends at the end of the
 *   B-tree. Timestamps are their 8 bytes (`OperationLog.packTimestamp`).
 * - `weft_meta` — the node id and the clock.
 * - `weft_tombstones` — merged state of records that are not visible
 *   (deleted, or known only through updates), so model tables hold only
 *   what an app should see.
 * - `weft_documents` — Automerge documents of rich-text fields, as of their
 *   last compaction; `weft_document_changes` — the changes appended to each
 *   since, numbered from 0 (see `internal/documents`).
 *
 * - `weft_names` — model and field names, numbered (since 0004): log rows
 *   and record states name them by number.
 *
 * 0004 also changes what rows hold, without rewriting the rows already
 * written (the readers take both forms): new log rows store the model's
 * number, a create's or update's fields as `[field number, value, …]` and a
 * UUID-shaped record id as its 16 bytes; new record states name fields by
 * number; and `weft_origins` is written only when an origin is first stored
 * (the version vector is read from the log's last row of each origin), so a
 * commit no longer rewrites it.
 *
 * Until 0003 the log was `weft_operations` (origin and timestamp as text per
 * row, and a rowid B-tree beside its key's index) and the vector
 * `weft_vector`; 0003 moves them to the tables above.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from "kysely"
import { type Capabilities, Database, StorageError } from "./Database.js"
import { packTimestamp } from "./OperationLog.js"

const migrations = (capabilities: Capabilities): Record<string, Migration> => ({
  "0001_operation_log": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("weft_operations")
        .addColumn("origin", "text", (c) => c.notNull())
        .addColumn("seq", "integer", (c) => c.notNull())
        .addColumn("ts", "text", (c) => c.notNull())
        .addColumn("kind", "integer", (c) => c.notNull())
        .addColumn("model", "text", (c) => c.notNull())
        .addColumn("record", "text", (c) => c.notNull())
        .addColumn("payload", capabilities.blobType)
        .addPrimaryKeyConstraint("weft_operations_pk", ["origin", "seq"])
        .execute()
      await db.schema
        .createTable("weft_vector")
        .addColumn("origin", "text", (c) => c.primaryKey())
        .addColumn("seq", "integer", (c) => c.notNull())
        .addColumn("ts", "text", (c) => c.notNull())
        .execute()
      await db.schema
        .createTable("weft_meta")
        .addColumn("key", "text", (c) => c.primaryKey())
        .addColumn("value", "text", (c) => c.notNull())
        .execute()
      await db.schema
        .createTable("weft_tombstones")
        .addColumn("model", "text", (c) => c.notNull())
        .addColumn("id", "text", (c) => c.notNull())
        .addColumn("state", capabilities.blobType, (c) => c.notNull())
        .addPrimaryKeyConstraint("weft_tombstones_pk", ["model", "id"])
        .execute()
      await db.schema
        .createTable("weft_documents")
        .addColumn("model", "text", (c) => c.notNull())
        .addColumn("id", "text", (c) => c.notNull())
        .addColumn("field", "text", (c) => c.notNull())
        .addColumn("doc", capabilities.blobType, (c) => c.notNull())
        .addPrimaryKeyConstraint("weft_documents_pk", ["model", "id", "field"])
        .execute()
    },
    async down(db: Kysely<any>) {
      for (const table of ["weft_documents", "weft_tombstones", "weft_meta", "weft_vector", "weft_operations"]) {
        await db.schema.dropTable(table).ifExists().execute()
      }
    }
  },
  // an edit appends its changes instead of saving its whole document again
  "0002_document_changes": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("weft_document_changes")
        .addColumn("model", "text", (c) => c.notNull())
        .addColumn("id", "text", (c) => c.notNull())
        .addColumn("field", "text", (c) => c.notNull())
        .addColumn("n", "integer", (c) => c.notNull())
        .addColumn("change", capabilities.blobType, (c) => c.notNull())
        .addPrimaryKeyConstraint("weft_document_changes_pk", ["model", "id", "field", "n"])
        .execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable("weft_document_changes").ifExists().execute()
    }
  },
  // origins numbered, timestamps packed, the log stored as its key's B-tree: a third less disk per operation
  "0003_numbered_origins": {
    up: (db: Kysely<any>) =>
      db.isTransaction ? numberOrigins(db, capabilities) : db.transaction().execute((trx) => numberOrigins(trx, capabilities)),
    // no way back: the old tables are gone, and record states written since name origins by number
    async down(db: Kysely<any>) {
      await db.schema.dropTable("weft_log").ifExists().execute()
      await db.schema.dropTable("weft_origins").ifExists().execute()
    }
  },
  // model and field names numbered: rows name them by a small integer instead of repeating them
  "0004_numbered_names": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("weft_names")
        .addColumn("n", "integer", (c) => c.primaryKey())
        .addColumn("name", "text", (c) => c.notNull().unique())
        .execute()
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable("weft_names").ifExists().execute()
    }
  },
  // weft_origins' seq and ts were written only when an origin was first stored (since 0004) and
  // went stale at its next commit: the vector is read from the log, so the columns go
  "0005_origins_without_vector": {
    async up(db: Kysely<any>) {
      await db.schema.alterTable("weft_origins").dropColumn("seq").execute()
      await db.schema.alterTable("weft_origins").dropColumn("ts").execute()
    },
    async down(db: Kysely<any>) {
      // the vector as the log holds it (what the columns said when they were right)
      await db.schema.alterTable("weft_origins").addColumn("seq", "integer", (c) => c.notNull().defaultTo(0)).execute()
      await db.schema.alterTable("weft_origins").addColumn("ts", "text", (c) => c.notNull().defaultTo("")).execute()
    }
  }
})

/** Rows copied per statement by the 0003 migration. */
const COPY_PAGE = 2_000

const numberOrigins = async (db: Kysely<any>, capabilities: Capabilities): Promise<void> => {
  await db.schema
    .createTable("weft_origins")
    .addColumn("n", "integer", (c) => c.primaryKey())
    .addColumn("origin", "text", (c) => c.notNull().unique())
    .addColumn("seq", "integer", (c) => c.notNull())
    .addColumn("ts", "text", (c) => c.notNull())
    .execute()
  let log = db.schema
    .createTable("weft_log")
    .addColumn("origin", "integer", (c) => c.notNull())
    .addColumn("seq", "integer", (c) => c.notNull())
    .addColumn("ts", capabilities.blobType, (c) => c.notNull())
    .addColumn("kind", "integer", (c) => c.notNull())
    .addColumn("model", "text", (c) => c.notNull())
    .addColumn("record", "text", (c) => c.notNull())
    .addColumn("payload", capabilities.blobType)
    .addPrimaryKeyConstraint("weft_log_pk", ["origin", "seq"])
  if (capabilities.withoutRowid) log = log.modifyEnd(sql`without rowid`)
  await log.execute()

  const vector = await db.selectFrom("weft_vector").select(["origin", "seq", "ts"]).orderBy("origin").execute()
  const numbers = new Map<string, number>()
  for (const [i, row] of vector.entries()) {
    numbers.set(row.origin, i + 1)
    await db.insertInto("weft_origins").values({ n: i + 1, origin: row.origin, seq: row.seq, ts: row.ts }).execute()
  }
  let after: { origin: string; seq: number } | undefined
  while (true) {
    const from = after
    let page = db.selectFrom("weft_operations").selectAll()
    if (from !== undefined) {
      page = page.where((eb) => eb.or([eb("origin", ">", from.origin), eb.and([eb("origin", "=", from.origin), eb("seq", ">", from.seq)])]))
    }
    const rows = await page.orderBy("origin").orderBy("seq").limit(COPY_PAGE).execute()
    if (rows.length === 0) break
    await db.insertInto("weft_log").values(rows.map((row) => {
      const n = numbers.get(row.origin)
      // the vector covers the log; an operation of an origin it lacks is a corrupt database, not one to guess at
      if (n === undefined) throw new Error(`operation ${row.origin}/${row.seq} is of an origin the version vector lacks`)
      const ts = packTimestamp(row.ts)
      if (ts === undefined) throw new Error(`operation ${row.origin}/${row.seq} has a malformed timestamp`)
      return { origin: n, seq: row.seq, ts, kind: row.kind, model: row.model, record: row.record, payload: row.payload }
    })).execute()
    const last = rows[rows.length - 1]!
    after = { origin: last.origin, seq: last.seq }
  }
  await db.schema.dropTable("weft_operations").execute()
  await db.schema.dropTable("weft_vector").execute()
}

/** Brings the engine's tables to the latest version. */
export const migrateToLatest: Effect.Effect<void, StorageError, Database> = Effect.gen(function*() {
  const { capabilities, kysely } = yield* Database
  const provider: MigrationProvider = { getMigrations: async () => migrations(capabilities) }
  const migrator = new Migrator({
    db: kysely,
    provider,
    migrationTableName: "weft_migrations",
    migrationLockTableName: "weft_migrations_lock"
  })
  // migrateToLatest reports failures in its result; a rejection is the same failure, not a defect
  const result = yield* Effect.tryPromise({
    try: () => migrator.migrateToLatest(),
    catch: (cause) => new StorageError({ reason: "Migration", detail: `migrations: ${cause instanceof Error ? cause.message : String(cause)}`, cause })
  })
  if (result.error !== undefined) {
    const failed = result.results?.find((r) => r.status === "Error")?.migrationName ?? "unknown"
    return yield* new StorageError({
      reason: "Migration",
      detail: `migration ${failed} failed: ${result.error instanceof Error ? result.error.message : String(result.error)}`,
      cause: result.error
    })
  }
})
