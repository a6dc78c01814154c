/**
 * The engine: an event-sourced store of an app's records. Every change
 * becomes operations appended to the log; the projection (one SQL table per
 * model) is their fold; sync moves operations between logs.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const engine = yield* Engine.Engine
 *   yield* engine.mutate([files.create("f1", { name: "a.txt", size: 1, tags: [] })])
 *   const big = yield* engine.query(files, (q) => q.where("size", ">", 0))
 * })
 * program.pipe(Effect.provide(Engine.layerSqlite({ filename: "app.db", models: [files] })))
 * ```
 *
 * Writes (`mutate`, `ingest`, `rebuild`) are serialised and each is one
 * transaction: the log append, the projection update, the version vector
 * and the clock commit together or not at all.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { Kysely, SelectQueryBuilder } from "kysely"
import type { ClockDriftError } from "../crdt/Hlc.js"
import type { Operation } from "../crdt/Operation.js"
import type { NodeId } from "../crdt/Timestamp.js"
import type { VersionVector } from "../crdt/VersionVector.js"
import * as Database from "./Database.js"
import type { IngestError, LaggedError, MutationError, ValidationError } from "./EngineError.js"
import type * as Documents from "./internal/documents.js"
import * as internal from "./internal/engine.js"
import type * as Model from "./Model.js"
import type { Page } from "./OperationLog.js"
import type { RecordChange } from "./Projection.js"

/** Options of an engine. */
export interface Options {
  /** The app's models. */
  readonly models: ReadonlyArray<Model.Any>
  /**
   * This node's id (the origin of its operations). Defaults to the id stored
   * with the database, or a new random id on first use. A database refuses
   * to open as a different node.
   */
  readonly node?: string
  /** How far ahead of the wall clock a remote timestamp may be (default 60 s). */
  readonly maxDriftMillis?: number
  /** Most changes per `mutate` and operations per `ingest` (default 10 000). */
  readonly maxBatchSize?: number
  /**
   * Most bytes of one operation, local or remote (default 1 MiB): a sync frame holds 4 MiB, and an
   * operation no frame could carry would stop its origin's sync at it for good.
   */
  readonly maxOperationBytes?: number
  /**
   * Most origins the library may hold operations of (default 200 000). Until signed operations tie
   * origins to members, a member can make up origins at will; past the bound, ingest refuses with
   * `IngestError` "TooManyOrigins" and the vectors every session exchanges stay bounded.
   */
  readonly maxOrigins?: number
  /**
   * Bounds on rich-text work (defaults in parentheses): operations one Automerge change may
   * stand for (10 000: local splices are split to fit), one `Edit` operation (100 000) and one
   * ingested batch (200 000), all counted from the change bytes before anything is applied, a
   * remote edit over them refused as `IngestError` `TooLarge`; the longest text a local edit may
   * leave (1 000 000); documents kept loaded between writes (64).
   */
  readonly richText?: Partial<Documents.Limits>
  /**
   * Most changes a `subscribe` stream holds for a reader that does not keep up (default 20 000,
   * twice the largest batch). Past it the stream fails with `LaggedError`: the reader queries the
   * current state and subscribes again, instead of the engine holding every change since in memory.
   */
  readonly subscriberBuffer?: number
}

/** One committed transaction. */
export interface Commit {
  readonly source: "local" | "remote" | "rebuild"
  /** Operations appended to the log. */
  readonly ops: ReadonlyArray<Operation>
  /** Records whose visible state changed. */
  readonly changes: ReadonlyArray<RecordChange>
}

/** A record that a commit changed, with where the change came from. */
export interface Change extends RecordChange {
  readonly source: Commit["source"]
}

/** What an ingest did. */
export interface IngestResult {
  /** Operations appended. */
  readonly applied: number
  /** Operations already held, skipped. */
  readonly duplicates: number
}

/** Builds on a query of one model's table (where, order by, limit …). */
export type QueryBuilder<M extends Model.Any> = (
  query: SelectQueryBuilder<{ [K in M["name"]]: Model.Table<M> }, M["name"], {}>
) => SelectQueryBuilder<{ [K in M["name"]]: Model.Table<M> }, M["name"], {}>

/** The engine's operations. */
export interface Service {
  /** This node's id. */
  readonly node: NodeId
  /** The declared models, by name. */
  readonly models: ReadonlyMap<string, Model.Any>
  /** The database, for any read an app needs (joins, aggregates); type it with `Model.Tables`. */
  readonly kysely: Kysely<any>
  /**
   * Runs `read` between writes: a read of several statements sees one committed state, as no write
   * commits between them. It holds writes back while it runs: keep it short, never loop inside it.
   */
  readonly readCommitted: <A, E, R>(read: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Applies local changes atomically; returns the commit. */
  readonly mutate: (
    changes: ReadonlyArray<Model.Change>
  ) => Effect.Effect<Commit, ValidationError | MutationError | ClockDriftError | Database.StorageError>
  /** Reads visible records of a model, decoded. */
  readonly query: <M extends Model.Any>(
    model: M,
    build?: QueryBuilder<M>
  ) => Effect.Effect<ReadonlyArray<Model.Row<M>>, Database.StorageError>
  /** Reads one visible record. */
  readonly get: <M extends Model.Any>(model: M, id: string) => Effect.Effect<Option.Option<Model.Row<M>>, Database.StorageError>
  /**
   * Committed changes of a model, or of one record, from when the stream runs. A reader more than
   * `Options.subscriberBuffer` changes behind gets `LaggedError` once it has read what was held.
   */
  readonly subscribe: (filter?: { readonly model?: string; readonly record?: string }) => Stream.Stream<Change, LaggedError>
  /** Every commit from now on, subscribed at once (no commit after this returns is missed). */
  readonly commits: Effect.Effect<Queue.Dequeue<Commit>, never, Scope.Scope>
  /**
   * Calls `f` with every commit from now on, synchronously as it commits (before the write's effect
   * returns; no commit after this returns is missed), until the scope closes: no queue and no fiber
   * per commit, for bookkeeping that must follow every commit (a sync session's). `f` runs while the
   * writer is held: it must be quick and must not throw.
   */
  readonly observe: (f: (commit: Commit) => void) => Effect.Effect<void, never, Scope.Scope>
  /** Appends remote operations atomically: validated, deduplicated, gap-free per origin. */
  readonly ingest: (
    ops: ReadonlyArray<Operation>
  ) => Effect.Effect<IngestResult, ValidationError | IngestError | ClockDriftError | Database.StorageError>
  /** Per origin, the last operation held. */
  readonly versionVector: Effect.Effect<VersionVector>
  /** Operations the holder of `vector` lacks, at most `limit`, per origin in order. */
  readonly opsSince: (vector: VersionVector, limit: number) => Effect.Effect<Page, Database.StorageError>
  /** Replays the log into a fresh projection. */
  readonly rebuild: Effect.Effect<void, Database.StorageError | ValidationError>
}

/** The engine service. */
export class Engine extends Context.Tag("weft/engine/Engine")<Engine, Service>() {}

/** Opens an engine over the `Database` in context; it closes with the scope. */
export const make: (
  options: Options
) => Effect.Effect<Service, Database.StorageError | ValidationError, Database.Database | Scope.Scope> = internal.make

/** Layer of an engine over the `Database` in context. */
export const layer = (options: Options): Layer.Layer<Engine, Database.StorageError | ValidationError, Database.Database> =>
  Layer.scoped(Engine, make(options))

/** Opens an engine on its own embedded SQLite database (the default); both close with the scope. */
export const makeSqlite = (
  options: Options & Database.SqliteOptions
): Effect.Effect<Service, Database.StorageError | ValidationError, Scope.Scope> =>
  Effect.flatMap(Database.makeSqlite(options), (database) => make(options).pipe(Effect.provideService(Database.Database, database)))

/** Layer of an engine on the embedded SQLite database (the default). */
export const layerSqlite = (
  options: Options & Database.SqliteOptions
): Layer.Layer<Engine, Database.StorageError | ValidationError> => Layer.scoped(Engine, makeSqlite(options))
