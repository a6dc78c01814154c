/**
 * Schema of the engine's own tables, as Kysely migrations. Projection tables
 * (one per app model) are not migrations: they follow the app's model
 * declarations and are reconciled at start by `Projection`.
 *
 * Tables:
 * - `weft_operations` — the append-only log, keyed by (origin, seq): each
 *   origin's operations are a contiguous, time-ordered range, which is what
 *   `opsSince` reads and what keeps appends at the end of the B-tree.
 * - `weft_vector` — per origin, the last operation held (seq and timestamp).
 * - `weft_meta` — the node id and the clock.
 * - `weft_tombstones` — merged state of records that are not visible
 *   (deleted, or known only through updates), so model tables hold only
 *   what an app should see.
 * - `weft_documents` — Automerge documents of rich-text fields, as of their
 *   last compaction; `weft_document_changes` — the changes appended to each
 *   since, numbered from 0 (see `internal/documents`).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { Migrator, type Kysely, type Migration, type MigrationProvider } from "kysely"
import { type Capabilities, Database, StorageError } from "./Database.js"

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
  }
})

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
