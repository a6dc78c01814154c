/**
 * The engine's SQL database: a Kysely instance, transactions as Effects, and
 * the one place where driver exceptions become `StorageError`s.
 *
 * The SQL the engine writes is dialect-neutral (multi-row `INSERT … ON
 * CONFLICT DO UPDATE`, `IN` lists, no vendor functions); what differs between
 * dialects is described by `Capabilities`, not by testing the dialect's name.
 *
 * `layerSqlite` is the embedded default: better-sqlite3 in WAL mode with
 * `synchronous = NORMAL`, one connection serialised by Kysely, prepared
 * statements cached by SQL text (Kysely would otherwise prepare every query
 * again).
 *
 * @since 0.1.0
 */
import SqliteDatabase from "better-sqlite3"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { Kysely, SqliteDialect, type Dialect, type SqliteStatement } from "kysely"
import { StorageError } from "./EngineError.js"
import * as Bulk from "./internal/bulk.js"

/** A database operation failed (defined with the engine's other errors). */
export { StorageError }

/** What the SQL dialect can do, where the engine's SQL depends on it. */
export interface Capabilities {
  /** Most bound parameters one statement may carry. */
  readonly maxParameters: number
  /** Column type for byte arrays. */
  readonly blobType: "blob" | "bytea"
  /** Column type for floating point numbers. */
  readonly realType: "real" | "double precision"
  /**
   * Whether a table keyed by its primary key can be stored as that key's B-tree alone
   * (SQLite's `WITHOUT ROWID`): no rowid B-tree beside a copy of the key in an index.
   */
  readonly withoutRowid: boolean
}

/**
 * A database whose statements run synchronously (SQLite): a write can run
 * from BEGIN to COMMIT in one turn of the event loop, so no other query can
 * run between its statements and it needs no hold on the connection.
 */
export interface Sync {
  readonly bulk: Bulk.SyncBulk
  /**
   * Runs `body` in a transaction, in this turn of the event loop: committed when `keep` says
   * so of its result, rolled back otherwise or when it throws (the exception is thrown on).
   * `body` must not start anything asynchronous that touches the database.
   */
  readonly transaction: <A>(body: () => A, keep: (a: A) => boolean) => A
  /**
   * Runs a read on a prepared statement, synchronously. It sees whatever the connection holds:
   * run it only while no asynchronous transaction is open on it (between writes).
   */
  readonly all: <Row>(sql: string, parameters: ReadonlyArray<unknown>) => Array<Row>
}

/** The engine's database. */
export class Database extends Context.Tag("weft/engine/Database")<
  Database,
  {
    readonly kysely: Kysely<any>
    readonly capabilities: Capabilities
    /** Multi-row statements compiled once per shape, for the write path. */
    readonly bulk: Bulk.Bulk
    /** The synchronous write path, where the driver has one (SQLite). */
    readonly sync: Sync | undefined
    /** Runs a query; exceptions become `StorageError`. */
    readonly execute: <A>(query: (db: Kysely<any>) => Promise<A>) => Effect.Effect<A, StorageError>
    /**
     * Runs `body` in one transaction: committed when it succeeds, rolled back
     * when it fails or is interrupted. Queries inside use the `Kysely` it is given.
     */
    readonly transaction: <A, E, R>(
      body: (trx: Kysely<any>) => Effect.Effect<A, E, R>
    ) => Effect.Effect<A, E | StorageError, R>
  }
>() {}

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** Translates a driver exception. */
export const queryError = (cause: unknown): StorageError =>
  new StorageError({ reason: "Query", detail: describe(cause), cause })

/** Builds the service over a Kysely dialect; the Kysely instance is destroyed with the scope. */
export const make = (
  dialect: Dialect,
  capabilities: Capabilities,
  direct?: Bulk.Direct & { readonly transaction: Sync["transaction"] }
): Effect.Effect<Database["Type"], StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const kysely = yield* Effect.acquireRelease(
      Effect.sync(() => new Kysely<any>({ dialect })),
      (db) => Effect.promise(() => db.destroy())
    )
    const execute = <A>(query: (db: Kysely<any>) => Promise<A>) =>
      Effect.tryPromise({ try: () => query(kysely), catch: queryError })
    const transaction = <A, E, R>(body: (trx: Kysely<any>) => Effect.Effect<A, E, R>) =>
      Effect.acquireUseRelease(
        Effect.tryPromise({ try: () => kysely.startTransaction().execute(), catch: queryError }),
        (trx) => Effect.flatMap(body(trx), (a) => Effect.as(Effect.tryPromise({ try: () => trx.commit().execute(), catch: queryError }), a)),
        (trx, exit) =>
          Exit.isSuccess(exit)
            ? Effect.void
            // the rollback of a failed transaction cannot fail meaningfully: the connection is closed
            // or the transaction is already gone, and the original error is what matters
            : Effect.ignore(Effect.tryPromise(() => trx.rollback().execute()))
      )
    const bulk = Bulk.make(capabilities.maxParameters, direct)
    const sync = direct === undefined || bulk.sync === undefined ? undefined : { bulk: bulk.sync, transaction: direct.transaction, all: direct.all }
    return { kysely, capabilities, bulk, sync, execute, transaction }
  })

/** Options of the embedded SQLite database. */
export interface SqliteOptions {
  /** A file path, or `":memory:"`. */
  readonly filename: string
  /** `NORMAL` (default, durable at checkpoints, safe against corruption in WAL mode) or `FULL` (fsync per commit). */
  readonly synchronous?: "NORMAL" | "FULL"
  /** Prepared statements kept for reuse. */
  readonly statementCacheSize?: number
}

/** SQLite capabilities (SQLite ≥ 3.32 allows 32766 parameters per statement). */
export const sqliteCapabilities: Capabilities = { maxParameters: 32_000, blobType: "blob", realType: "real", withoutRowid: true }

/** The embedded SQLite database (better-sqlite3). */
export const makeSqlite = (options: SqliteOptions): Effect.Effect<Database["Type"], StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const sqlite = yield* Effect.try({
      try: () => {
        const db = new SqliteDatabase(options.filename)
        db.pragma("journal_mode = WAL")
        db.pragma(`synchronous = ${options.synchronous ?? "NORMAL"}`)
        db.pragma("foreign_keys = ON")
        return db
      },
      catch: (cause) => new StorageError({ reason: "Open", detail: `${options.filename}: ${describe(cause)}`, cause })
    })
    // Kysely closes the database only if it ever ran a query; this covers the other case
    yield* Effect.addFinalizer(() => Effect.sync(() => sqlite.open && sqlite.close()))
    const capacity = options.statementCacheSize ?? 256
    const statements = new Map<string, SqliteStatement>()
    const cached = {
      close: () => sqlite.close(),
      prepare: (sql: string): SqliteStatement => {
        let statement = statements.get(sql)
        if (statement === undefined) {
          statement = sqlite.prepare(sql) as unknown as SqliteStatement
          if (statements.size >= capacity) statements.delete(statements.keys().next().value!)
          statements.set(sql, statement)
        }
        return statement
      }
    }
    // the write path's statements, run on the same cached statements without Kysely's executor in between
    const statement = (sql: string) => cached.prepare(sql) as unknown as SqliteDatabase.Statement
    const begin = sqlite.prepare("BEGIN")
    const commit = sqlite.prepare("COMMIT")
    const rollback = sqlite.prepare("ROLLBACK")
    const direct = {
      run: (sql: string, parameters: ReadonlyArray<unknown>) => void statement(sql).run(parameters),
      all: <Row>(sql: string, parameters: ReadonlyArray<unknown>) => statement(sql).all(parameters) as Array<Row>,
      runEach: (sql: string, rows: ReadonlyArray<ReadonlyArray<unknown>>) => {
        const prepared = statement(sql)
        for (const row of rows) prepared.run(row)
      },
      transaction: <A>(body: () => A, keep: (a: A) => boolean): A => {
        begin.run()
        let result: A
        try {
          result = body()
          if (keep(result)) commit.run()
        } finally {
          // a body that threw, a result not kept, or a COMMIT that failed
          if (sqlite.inTransaction) rollback.run()
        }
        return result
      }
    }
    return yield* make(new SqliteDialect({ database: cached }), sqliteCapabilities, direct)
  })

/** Layer of the embedded SQLite database. */
export const layerSqlite = (options: SqliteOptions): Layer.Layer<Database, StorageError> =>
  Layer.scoped(Database, makeSqlite(options))
