import { randomUUID } from "node:crypto"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Kysely } from "kysely"
import * as Hlc from "../../crdt/Hlc.js"
import * as Operation from "../../crdt/Operation.js"
import * as RecordState from "../../crdt/RecordState.js"
import * as RichText from "../../crdt/RichText.js"
import * as Timestamp from "../../crdt/Timestamp.js"
import * as VersionVector from "../../crdt/VersionVector.js"
import { Database, queryError, StorageError } from "../Database.js"
import type * as Bulk from "./bulk.js"
import * as Documents from "./documents.js"
import type * as Engine from "../Engine.js"
import { IngestError, LaggedError, MutationError, ValidationError } from "../EngineError.js"
import * as Migrations from "../Migrations.js"
import * as Model from "../Model.js"
import * as OperationLog from "../OperationLog.js"
import * as Projection from "../Projection.js"
import * as ParseError from "../../internal/parseError.js"
import { describe } from "../../internal/describe.js"
import { isWellFormed } from "../../internal/wellFormed.js"

interface Subscriber {
  readonly filter: { readonly model?: string; readonly record?: string }
  readonly queue: Queue.Queue<Engine.Change>
  /** Set when a change did not fit: no more are delivered, and the stream fails once it read the rest. */
  lagged: boolean
}

const matches = (filter: Subscriber["filter"], change: { readonly model: string; readonly record: string }) =>
  (filter.model === undefined || change.model === filter.model) &&
  (filter.record === undefined || change.record === filter.record)

const decodeNode = Schema.decodeUnknownEither(Timestamp.NodeId)


interface WriterState {
  readonly clock: Hlc.Hlc
  /** The live vector: changed in place after each commit, only by the writer (O(batch), never a copy). */
  readonly vector: ReadonlyMap<string, VersionVector.Entry>
}

/** What a write leaves behind besides its operations. */
interface WriterNext {
  readonly clock: Hlc.Hlc
}

const holds = (entries: ReadonlyMap<string, VersionVector.Entry>, ts: Timestamp.Timestamp): boolean => {
  for (const entry of entries.values()) if (entry.ts === ts) return true
  return false
}

/** @internal */
export const make = (options: Engine.Options) =>
  Effect.gen(function*() {
    const database = yield* Database
    const { bulk, capabilities, kysely } = database
    const maxBatchSize = options.maxBatchSize ?? Operation.MAX_BATCH_SIZE
    const maxOperationBytes = options.maxOperationBytes ?? Operation.MAX_OPERATION_BYTES
    const maxOrigins = options.maxOrigins ?? VersionVector.DEFAULT_MAX_ORIGINS

    const models = new Map<string, Model.Any>()
    for (const model of options.models) {
      yield* Model.check(model)
      if (models.has(model.name)) {
        return yield* new ValidationError({ reason: "UnknownModel", model: model.name, detail: "declared twice" })
      }
      models.set(model.name, model)
    }

    yield* Migrations.migrateToLatest
    yield* Projection.ensureTables(kysely, capabilities, models.values())

    // identity: the database remembers which node it belongs to
    const stored = yield* OperationLog.readNode(kysely)
    const requested = options.node ?? stored ?? `weft-${randomUUID()}`
    const node = yield* Either.mapLeft(
      decodeNode(requested),
      (e) => new ValidationError({ reason: "InvalidValue", model: "weft_meta", field: "node", detail: ParseError.describe(e) })
    )
    if (stored !== undefined && stored !== node) {
      return yield* new StorageError({ reason: "NodeMismatch", detail: `the database belongs to node ${stored}, not ${node}` })
    }
    if (stored === undefined) yield* database.transaction((trx) => OperationLog.writeMeta(trx, bulk, OperationLog.META_NODE, node))

    // the clock restarts after everything it issued or saw, whatever the wall clock says now
    const { origins, vector } = yield* OperationLog.readOrigins(kysely)
    // every name a write can use is numbered before the first write
    const declared = [...models.values()].flatMap((model) => [model.name, ...model.fields.keys()])
    if (declared.some((name) => !origins.words.numbers.has(name))) {
      yield* database.transaction((trx) => OperationLog.numberWords(trx, origins, declared))
    }
    const storedClock = yield* OperationLog.readMeta(kysely, OperationLog.META_CLOCK)
    let last = Schema.is(Timestamp.Timestamp)(storedClock) ? storedClock : Timestamp.zero
    for (const entry of vector.values()) last = Timestamp.max(last, entry.ts)
    // readers get a copy, made at most once per commit
    let snapshot: VersionVector.VersionVector | undefined
    // read and replaced only while holding the writer
    let writerState: WriterState = {
      clock: Hlc.make(node, { last, ...(options.maxDriftMillis === undefined ? {} : { maxDriftMillis: options.maxDriftMillis }) }),
      vector
    }

    const documents = Documents.make(bulk, node, { ...Documents.defaultLimits, ...options.richText })
    yield* Effect.addFinalizer(() => Effect.sync(() => documents.clear()))

    const writer = yield* Effect.makeSemaphore(1)
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<Engine.Commit>(), PubSub.shutdown)
    // `subscribe` readers each hold a bounded queue: one that stops reading is cut off (LaggedError),
    // not left holding every change since
    const subscriberBuffer = Math.max(1, options.subscriberBuffer ?? 2 * Operation.MAX_BATCH_SIZE)
    const subscribers = new Set<Subscriber>()
    const observers = new Set<(commit: Engine.Commit) => void>()
    const deliver = (commit: Engine.Commit) => {
      for (const subscriber of subscribers) {
        for (const change of commit.changes) {
          if (!matches(subscriber.filter, change)) continue
          if (!Queue.unsafeOffer(subscriber.queue, { ...change, source: commit.source })) {
            subscriber.lagged = true
            subscribers.delete(subscriber)
            break
          }
        }
      }
    }

    // the documents a transaction changed are cached if it committed, and dropped if not
    const settleDocuments = <A, E, R>(transaction: Effect.Effect<A, E, R>) =>
      Effect.onExit(transaction, (exit) => Effect.sync(() => documents.settle(Exit.isSuccess(exit))))

    /** What a write body makes in its transaction: the operations, and the writer's state after them. */
    type Made = { readonly next: WriterNext; readonly ops: ReadonlyArray<Operation.Operation>; readonly folded?: Projection.Folded }
    type Written = { readonly advanced: Map<string, VersionVector.Entry>; readonly changes: ReadonlyArray<Projection.RecordChange>; readonly next: WriterNext; readonly ops: ReadonlyArray<Operation.Operation> }

    /** The clock is stored only when no vector entry this commit stores holds it already (see `make`). */
    const storesClock = (current: WriterState, next: WriterNext, advanced: ReadonlyMap<string, VersionVector.Entry>) =>
      next.clock.last !== current.clock.last && !holds(advanced, next.clock.last)

    /** A write through the asynchronous path: any dialect, rich text (its documents yield to the event loop). */
    const writeAsync = <E>(
      current: WriterState,
      body: (trx: Kysely<any>, current: WriterState, loaded: Projection.Loaded) => Effect.Effect<Made, E>
    ) =>
      database.transaction((trx) =>
        Effect.gen(function*() {
          const loaded: Projection.Loaded = new Map()
          const { folded, next, ops } = yield* body(trx, current, loaded)
          const advanced = new Map<string, VersionVector.Entry>()
          if (ops.length === 0) return { advanced, changes: [], next, ops } satisfies Written
          yield* OperationLog.append(trx, bulk, origins, ops, maxOperationBytes)
          const changes = yield* Projection.apply(trx, bulk, origins, models, documents, ops, loaded, folded)
          VersionVector.advanceInPlace(advanced, ops)
          yield* OperationLog.writeVector(trx, bulk, origins, advanced)
          // the clock restarts after the stored vector's timestamps too: when an entry this commit
          // stores holds the clock (every local write), storing the clock as well is a redundant statement
          if (storesClock(current, next, advanced)) yield* OperationLog.writeMeta(trx, bulk, OperationLog.META_CLOCK, next.clock.last)
          return { advanced, changes, next, ops } satisfies Written
        })
      ).pipe(settleDocuments)

    /**
     * The same write from BEGIN to COMMIT in this turn of the event loop (SQLite, no rich text): plain
     * calls on prepared statements, no Effect per statement. Returns the failure, or what was written;
     * a driver exception is thrown on (the caller translates it).
     */
    const writeSync = <E>(
      sync: Database["Type"]["sync"] & {},
      current: WriterState,
      body: (bulk: Bulk.SyncBulk, current: WriterState, loaded: Projection.Loaded) => Either.Either<Made, E>
    ): Either.Either<Written, E | ValidationError | StorageError> =>
      sync.transaction((): Either.Either<Written, E | ValidationError | StorageError> => {
        const loaded: Projection.Loaded = new Map()
        const made = body(sync.bulk, current, loaded)
        if (Either.isLeft(made)) return Either.left(made.left)
        const { folded, next, ops } = made.right
        const advanced = new Map<string, VersionVector.Entry>()
        if (ops.length === 0) return Either.right({ advanced, changes: [], next, ops })
        const tooLarge = OperationLog.appendSync(kysely, sync.bulk, origins, ops, maxOperationBytes)
        if (tooLarge !== undefined) return Either.left(tooLarge)
        const changes = Projection.applySync(kysely, sync.bulk, origins, models, ops, loaded, folded)
        if (Either.isLeft(changes)) return Either.left(changes.left)
        VersionVector.advanceInPlace(advanced, ops)
        OperationLog.writeVectorSync(kysely, sync.bulk, origins, advanced)
        if (storesClock(current, next, advanced)) OperationLog.writeMetaSync(kysely, sync.bulk, OperationLog.META_CLOCK, next.clock.last)
        return Either.right({ advanced, changes: changes.right, next, ops })
      }, Either.isRight)

    /** After a commit: the vector, the clock and the subscribers follow it (synchronous: nothing can come between). */
    const committed = (source: Engine.Commit["source"], { advanced, changes, next, ops }: Written): Engine.Commit => {
      // the vector changes in place (the writer is the only one changing it)
      for (const [origin, entry] of advanced) vector.set(origin, entry)
      OperationLog.originsStored(origins, advanced)
      if (advanced.size > 0) snapshot = undefined
      writerState = { clock: next.clock, vector }
      const done: Engine.Commit = { source, ops, changes }
      if (ops.length === 0) return done
      for (const observer of observers) observer(done)
      deliver(done)
      // unbounded: an offer always succeeds, at once (false only once the engine is closing)
      pubsub.unsafeOffer(done)
      return done
    }

    /**
     * Whether a write holds the writer through `writer` (an asynchronous write, a rebuild, a
     * `readCommitted` read). A synchronous write needs no permit while none does: it runs from
     * BEGIN to COMMIT, and updates the engine's state after it, in one step that nothing can interleave with.
     */
    let held = 0
    const holding = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      writer.withPermits(1)(Effect.acquireUseRelease(Effect.sync(() => held++), () => effect, () => Effect.sync(() => held--)))

    /** A synchronous write from start to end, the commit's follow-up included: no yield, no interruption point. */
    const runSync = <E>(
      source: Engine.Commit["source"],
      sync: Database["Type"]["sync"] & {},
      syncBody: (bulk: Bulk.SyncBulk, current: WriterState, loaded: Projection.Loaded) => Either.Either<Made, E>
    ): Either.Either<Engine.Commit, E | ValidationError | StorageError> => {
      let written: Either.Either<Written, E | ValidationError | StorageError>
      try {
        written = writeSync(sync, writerState, syncBody)
      } catch (cause) {
        return Either.left(queryError(cause))
      }
      return Either.map(written, (w) => committed(source, w))
    }

    /**
     * Runs one write: a transaction, then the in-memory state and subscribers follow the commit.
     * `syncBody`, when given, is the same body for `writeSync`, taken when the database has a
     * synchronous path and no model the write touches has rich text.
     */
    const commit = <E>(
      source: Engine.Commit["source"],
      touched: Iterable<string>,
      body: (trx: Kysely<any>, current: WriterState, loaded: Projection.Loaded) => Effect.Effect<Made, E>,
      syncBody?: (bulk: Bulk.SyncBulk, current: WriterState, loaded: Projection.Loaded) => Either.Either<Made, E>
    ): Effect.Effect<Engine.Commit, E | ValidationError | StorageError> =>
      Effect.suspend(() => {
        const sync = database.sync
        if (sync === undefined || syncBody === undefined || !Projection.canApplySync(models, touched)) {
          // uninterruptible once it holds the writer: an interruption while the COMMIT is on its way would
          // leave the database committed and the engine's vector and clock behind it (and every later write
          // reusing their numbers); the write is bounded, so the interruption only waits for it
          return holding(Effect.uninterruptible(Effect.suspend(() => Effect.map(writeAsync(writerState, body), (w) => committed(source, w)))))
        }
        // no permit, no fiber step between BEGIN and the state following the COMMIT: one synchronous call
        if (held === 0) return runSync(source, sync, syncBody)
        return holding(Effect.suspend(() => runSync(source, sync, syncBody)))
      })

    const mutate = (changes: ReadonlyArray<Model.Change>) =>
      Effect.suspend(() => {
        if (changes.length > maxBatchSize) {
          const first = changes[0]!
          return Effect.fail(new MutationError({ reason: "TooManyChanges", model: first.model, record: first.id, detail: `${changes.length} changes in one mutate; the limit is ${maxBatchSize}` }))
        }
        const prepared: Array<Prepared> = []
        const touched = new Set<string>()
        for (const change of changes) {
          const result = prepare(models, change)
          if (Either.isLeft(result)) return Effect.fail(result.left)
          prepared.push(result.right)
          touched.add(result.right.model.name)
        }
        return Effect.flatMap(Clock.currentTimeMillis, (now) =>
          commit(
            "local",
            touched,
            (trx, current, loaded) => localOps(trx, documents, bulk, origins, node, current, loaded, prepared, now),
            (syncBulk, current, loaded) => localOpsSync(syncBulk, kysely, documents, origins, node, current, loaded, prepared, now)
          ))
      })

    const ingest = (incoming: ReadonlyArray<Operation.Operation>) =>
      Effect.suspend(() => {
        if (incoming.length > maxBatchSize) {
          const first = incoming[0]!
          return Effect.fail(new IngestError({ reason: "TooManyOperations", origin: first.origin, seq: first.seq, detail: `${incoming.length} operations in one batch; the limit is ${maxBatchSize}` }))
        }
        const touched = new Set<string>()
        for (const op of incoming) {
          const valid = Model.validateOperation(models, op)
          if (Either.isLeft(valid)) return Effect.fail(valid.left)
          touched.add(op.model)
        }
        const tooLarge = Documents.checkIngest(incoming, documents.limits)
        if (tooLarge !== undefined) return Effect.fail(tooLarge)
        let duplicates = 0
        return Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const accept = (current: WriterState): Either.Either<Made, IngestError | Hlc.ClockDriftError> => {
            // a batch from a session comes in this order already: checked in one pass, copied and sorted only if not
            const sorted = inOrder(incoming) ? incoming : [...incoming].sort(byOriginSeq)
            const ceiling = Hlc.driftCeiling(current.clock, now)
            const accepted: Array<Operation.Operation> = []
            // what this batch moves each origin to: held = the batch's last accepted, else the vector's
            const pending = new Map<string, VersionVector.Entry>()
            let newest = Timestamp.zero
            let origins = current.vector.size
            duplicates = 0
            for (const op of sorted) {
              const held = pending.get(op.origin) ?? current.vector.get(op.origin)
              const heldSeq = held?.seq ?? 0
              if (op.seq <= heldSeq) {
                duplicates++
                continue
              }
              if (op.seq !== heldSeq + 1) {
                return Either.left(new IngestError({ reason: "Gap", origin: op.origin, seq: op.seq, detail: `holds ${op.origin} up to ${heldSeq}; ${op.seq} would leave a gap` }))
              }
              if (held !== undefined && op.ts <= held.ts) {
                return Either.left(new IngestError({ reason: "TimestampNotIncreasing", origin: op.origin, seq: op.seq, detail: `timestamp ${op.ts} is not after ${held.ts}` }))
              }
              if (ceiling === null || (ceiling !== undefined && op.ts > ceiling)) {
                const drift = Hlc.checkDrift(current.clock, op.ts, now)
                if (Either.isLeft(drift)) return Either.left(drift.left)
              }
              // until signed operations tie origins to members, anyone can make up origins: bound them
              if (held === undefined && ++origins > maxOrigins) {
                return Either.left(new IngestError({ reason: "TooManyOrigins", origin: op.origin, seq: op.seq, detail: `the library would hold operations of more than ${maxOrigins} origins (maxOrigins)` }))
              }
              pending.set(op.origin, { seq: op.seq, ts: op.ts })
              newest = Timestamp.max(newest, op.ts)
              accepted.push(op)
            }
            // an ingest issues no timestamp of its own: the clock need only restart after what it saw (the
            // next local timestamp is issued after it), and the newest timestamp seen is the last entry of
            // its origin, which this commit stores anyway: no clock row written (each op's drift was checked)
            const clock = Timestamp.max(current.clock.last, newest) === current.clock.last ? current.clock : { ...current.clock, last: newest }
            return Either.right({ next: { clock }, ops: accepted })
          }
          return Effect.map(
            commit("remote", touched, (_trx, current) => accept(current), (_bulk, current) => accept(current)),
            (result): Engine.IngestResult => ({ applied: result.ops.length, duplicates })
          )
        })
      })

    // a read of several statements (the log, then the origins it names) runs between writes: a write
    // committing between two of its statements would leave it with rows its earlier reads do not explain
    const readCommitted = <A, E, R>(read: Effect.Effect<A, E, R>) => holding(read)

    const query = <M extends Model.Any>(model: M, build?: Engine.QueryBuilder<M>) =>
      database.execute((db) => {
        const base = db.selectFrom(model.name) as any
        return (build === undefined ? base : build(base)).selectAll().execute() as Promise<Array<Record<string, unknown>>>
      }).pipe(
        Effect.flatMap((rows) =>
          Effect.forEach(rows, (row) =>
            Either.mapLeft(
              model.decodeRow(row),
              (e) => new StorageError({ reason: "Corrupt", detail: `${model.name}/${String(row.id)} does not match its model: ${ParseError.describe(e)}` })
            ))
        )
      ) as unknown as Effect.Effect<ReadonlyArray<Model.Row<M>>, StorageError>

    const service: Engine.Service = {
      node,
      models,
      kysely,
      readCommitted,
      mutate,
      ingest,
      query,
      get: (model, id) =>
        Effect.map(query(model, (q) => q.where("id" as any, "=", id)), (rows) => Option.fromNullable(rows[0])),
      subscribe: (filter) =>
        Stream.unwrapScoped(Effect.gen(function*() {
          const queue = yield* Effect.acquireRelease(Queue.bounded<Engine.Change>(subscriberBuffer), Queue.shutdown)
          const subscriber: Subscriber = { filter: filter ?? {}, queue, lagged: false }
          yield* Effect.acquireRelease(
            Effect.sync(() => subscribers.add(subscriber)),
            () => Effect.sync(() => subscribers.delete(subscriber))
          )
          // what was held is read first; the failure comes where the missed changes would have been
          const next: Effect.Effect<Engine.Change, Option.Option<LaggedError>> = Effect.suspend(() =>
            subscriber.lagged && Option.getOrElse(queue.unsafeSize(), () => 0) === 0
              ? Effect.fail(Option.some(new LaggedError({
                reason: "Lagged",
                buffered: subscriberBuffer,
                detail: `the reader fell more than ${subscriberBuffer} changes behind (Engine.Options.subscriberBuffer): query the current state and subscribe again`
              })))
              : Queue.take(queue)
          )
          return Stream.repeatEffectOption(next)
        })),
      commits: PubSub.subscribe(pubsub),
      observe: (f) =>
        Effect.asVoid(Effect.acquireRelease(
          Effect.sync(() => {
            // a function observing twice is called twice
            const observer = (commit: Engine.Commit) => f(commit)
            observers.add(observer)
            return observer
          }),
          (observer) => Effect.sync(() => observers.delete(observer))
        )),
      versionVector: Effect.sync(() => (snapshot ??= new Map(vector))),
      opsSince: (theirs, limit) => {
        const most = Math.max(1, Math.min(limit, maxBatchSize))
        const sync = database.sync
        if (sync === undefined) return OperationLog.since(kysely, origins, vector, theirs, most)
        // no need to wait for a write: a rich-text write may hold the connection in a transaction
        // across turns of the event loop, but the read takes each origin only up to the committed
        // vector's seq, and an uncommitted write only appends after it (the log is append-only)
        return Effect.suspend(() => OperationLog.sinceSync(sync.all, origins, vector, theirs, most))
      },
      rebuild: holding(
        database.transaction((trx) =>
          Effect.gen(function*() {
            documents.clear()
            yield* Projection.clear(trx, models.values())
            yield* OperationLog.scan(trx, 5_000, (ops) => Effect.asVoid(Projection.apply(trx, bulk, origins, models, documents, ops)))
          })
        ).pipe(settleDocuments)
      )
    }
    return service
  })

const byOriginSeq = (a: Operation.Operation, b: Operation.Operation) => (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : a.seq - b.seq)

const inOrder = (ops: ReadonlyArray<Operation.Operation>): boolean => {
  for (let i = 1; i < ops.length; i++) if (byOriginSeq(ops[i - 1]!, ops[i]!) > 0) return false
  return true
}

/** A change checked against its model, values encoded. */
type Prepared =
  | { readonly _tag: "Create" | "Update"; readonly model: Model.Any; readonly id: string; readonly registers: Operation.Fields; readonly texts: ReadonlyArray<readonly [string, string]> }
  | { readonly _tag: "Delete"; readonly model: Model.Any; readonly id: string }
  | { readonly _tag: "Splice"; readonly model: Model.Any; readonly id: string; readonly field: string; readonly splice: RichText.Splice }

const decodeRecordId = Schema.decodeUnknownEither(Operation.RecordId)

const checkId = (model: string, id: string) =>
  // what RecordId accepts, checked without a Schema decode per change; anything else gets the Schema's error
  typeof id === "string" && id.length >= 1 && id.length <= 256 && isWellFormed(id) ? Either.right(id) : Either.mapLeft(
    decodeRecordId(id),
    (e) => new ValidationError({ reason: "InvalidValue", model, record: typeof id === "string" ? id.slice(0, 256) : describe(id), field: "id", detail: ParseError.describe(e) })
  )

const prepare = (models: ReadonlyMap<string, Model.Any>, change: Model.Change): Either.Either<Prepared, ValidationError> => {
  const model = models.get(change.model)
  if (model === undefined) {
    return Either.left(new ValidationError({ reason: "UnknownModel", model: change.model, record: change.id, detail: `no model ${change.model} is declared` }))
  }
  const id = checkId(model.name, change.id)
  if (Either.isLeft(id)) return Either.left(id.left)
  switch (change._tag) {
    case "Delete":
      return Either.right({ _tag: "Delete", model, id: change.id })
    case "Splice": {
      const field = model.fields.get(change.field)
      if (field?.column !== "rich") {
        return Either.left(new ValidationError({ reason: field === undefined ? "UnknownField" : "NotRichText", model: model.name, record: change.id, field: change.field, detail: "splice needs a rich-text field" }))
      }
      // an insert with a lone surrogate would reach peers as U+FFFD: the texts would differ for good
      if (typeof change.splice.insert !== "string" || !isWellFormed(change.splice.insert)) {
        return Either.left(new ValidationError({ reason: "InvalidValue", model: model.name, record: change.id, field: change.field, detail: "a splice inserts a well-formed string (no lone surrogate)" }))
      }
      return Either.right({ _tag: "Splice", model, id: change.id, field: change.field, splice: change.splice })
    }
    case "Create":
    case "Update":
      return Either.map(Model.encodeValues(model, change.id, change.values, change._tag === "Create"), (encoded) => {
        const registers: Record<string, unknown> = {}
        const texts: Array<readonly [string, string]> = []
        for (const [key, value] of Object.entries(encoded)) {
          if (model.fields.get(key)!.column === "rich") texts.push([key, value as string])
          else registers[key] = value
        }
        return { _tag: change._tag, model, id: change.id, registers: registers as Operation.Fields, texts }
      })
  }
}

const key = (...parts: ReadonlyArray<string>) => parts.join("\u0000")

/** Turns prepared changes into operations, checking each against the state it meets. */
const localOps = (
  trx: Kysely<any>,
  documents: Documents.Documents,
  bulk: Bulk.Bulk,
  origins: OperationLog.Origins,
  node: Timestamp.NodeId,
  current: WriterState,
  loaded: Projection.Loaded,
  prepared: ReadonlyArray<Prepared>,
  now: number
) =>
  Effect.gen(function*() {
    // one load per model for the records the batch touches, and for the rich-text documents it edits
    const byModel = new Map<Model.Any, { ids: Set<string>; rich: Set<string> }>()
    for (const change of prepared) {
      const entry = byModel.get(change.model) ?? { ids: new Set<string>(), rich: new Set<string>() }
      byModel.set(change.model, entry)
      entry.ids.add(change.id)
      if (change._tag === "Splice" || ((change._tag === "Create" || change._tag === "Update") && change.texts.length > 0)) {
        entry.rich.add(change.id)
      }
    }
    const states = new Map<string, RecordState.RecordState>()
    const docs = new Map<string, RichText.Doc>()
    for (const [model, { ids, rich }] of byModel) {
      yield* Projection.load(trx, bulk, origins, model, ids, loaded)
      for (const id of ids) states.set(key(model.name, id), Projection.stateOf(loaded, model.name, id))
      if (rich.size > 0) {
        for (const [id, fields] of yield* Projection.loadDocuments(trx, documents, model, [...rich])) {
          for (const [field, doc] of fields) docs.set(key(model.name, id, field), doc)
        }
      }
    }
    return yield* buildOps(node, documents, current, prepared, states, docs, now)
  })

/** `localOps` in this turn of the event loop, inside `Database.sync`'s transaction (no rich text). */
const localOpsSync = (
  bulk: Bulk.SyncBulk,
  kysely: Kysely<any>,
  documents: Documents.Documents,
  origins: OperationLog.Origins,
  node: Timestamp.NodeId,
  current: WriterState,
  loaded: Projection.Loaded,
  prepared: ReadonlyArray<Prepared>,
  now: number
) => {
  const byModel = new Map<Model.Any, Set<string>>()
  for (const change of prepared) {
    const ids = byModel.get(change.model)
    if (ids === undefined) byModel.set(change.model, new Set([change.id]))
    else ids.add(change.id)
  }
  const states = new Map<string, RecordState.RecordState>()
  for (const [model, ids] of byModel) {
    const failed = Projection.loadSync(kysely, bulk, origins, model, ids, loaded)
    if (failed !== undefined) return Either.left(failed)
    for (const id of ids) states.set(key(model.name, id), Projection.stateOf(loaded, model.name, id))
  }
  return buildOps(node, documents, current, prepared, states, new Map(), now)
}

/** The operations of a batch of local changes, against preloaded states: plain code, one pass. */
const buildOps = (
  node: Timestamp.NodeId,
  documents: Documents.Documents,
  current: WriterState,
  prepared: ReadonlyArray<Prepared>,
  states: Map<string, RecordState.RecordState>,
  docs: Map<string, RichText.Doc>,
  now: number
): Either.Either<
  { readonly next: WriterNext; readonly ops: ReadonlyArray<Operation.Operation>; readonly folded: Projection.Folded },
  MutationError | ValidationError | Hlc.ClockDriftError
> => {
  const ops: Array<Operation.Operation> = []
  let clock = current.clock
  let seq = VersionVector.seqOf(current.vector, node)

  const emit = (op: (header: { origin: Timestamp.NodeId; seq: number; ts: Timestamp.Timestamp }) => Operation.Operation) => {
    const sent = Hlc.send(clock, now)
    if (Either.isLeft(sent)) return sent.left
    clock = sent.right[1]
    seq += 1
    const made = op({ origin: node, seq, ts: sent.right[0] })
    ops.push(made)
    if (made._tag !== "Edit") {
      const k = key(made.model, made.record)
      states.set(k, RecordState.apply(states.get(k) ?? RecordState.empty, made))
    }
    return undefined
  }
  const { maxOpsPerChange, maxOpsPerEdit, maxTextLength } = documents.limits
  const edit = (model: Model.Any, id: string, field: string, splice: (doc: RichText.Doc) => RichText.Splice) => {
    const k = key(model.name, id, field)
    const doc = docs.get(k) ?? documents.create(model.name, id, field)
    docs.set(k, doc)
    const wanted = splice(doc)
    // what a peer would refuse (see `Documents.checkIngest`) is refused here, before any change is made
    const ops = wanted.deleteCount + wanted.insert.length
    const before = RichText.text(doc).length
    const after = before - wanted.deleteCount + wanted.insert.length
    const tooLarge = ops > maxOpsPerEdit || Math.ceil(ops / maxOpsPerChange) > Operation.MAX_CHANGES_PER_EDIT
      ? `a splice of ${ops} characters; one edit may change at most ${Math.min(maxOpsPerEdit, maxOpsPerChange * Operation.MAX_CHANGES_PER_EDIT)}: split it`
      : after > maxTextLength && after > before
      ? `a text of ${after} characters; the limit is ${maxTextLength}`
      : undefined
    if (tooLarge !== undefined) return new ValidationError({ reason: "TooLarge", model: model.name, record: id, field, detail: tooLarge })
    const result = RichText.splice(doc, wanted, now, maxOpsPerChange)
    if (Either.isLeft(result)) {
      return new ValidationError({ reason: "InvalidValue", model: model.name, record: id, field, detail: result.left.detail })
    }
    docs.set(k, result.right.doc)
    const changes = result.right.changes
    if (changes.length === 0) return undefined
    return emit((h) => ({ _tag: "Edit", ...h, model: model.name as Operation.ModelName, record: id, field, changes }))
  }

  for (const change of prepared) {
    const model = change.model
    const modelName = model.name as Operation.ModelName
    const alive = RecordState.isAlive(states.get(key(model.name, change.id)) ?? RecordState.empty)
    if (change._tag === "Create" && alive) {
      return Either.left(new MutationError({ reason: "RecordExists", model: model.name, record: change.id, detail: "create of a record that exists; update it instead" }))
    }
    if (change._tag !== "Create" && !alive) {
      return Either.left(new MutationError({ reason: "RecordNotFound", model: model.name, record: change.id, detail: `${change._tag.toLowerCase()} of a record that does not exist` }))
    }
    let error: MutationError | ValidationError | Hlc.ClockDriftError | undefined
    switch (change._tag) {
      case "Create":
      case "Update":
        if (change._tag === "Create" || Object.keys(change.registers).length > 0) {
          error = emit((h) => ({ _tag: change._tag, ...h, model: modelName, record: change.id, fields: change.registers }))
        }
        for (const [field, text] of change.texts) {
          error ??= edit(model, change.id, field, (doc) => RichText.diff(RichText.text(doc), text))
        }
        break
      case "Delete":
        error = emit((h) => ({ _tag: "Delete", ...h, model: modelName, record: change.id }))
        break
      case "Splice":
        error = edit(model, change.id, change.field, () => change.splice)
        break
    }
    if (error !== undefined) return Either.left(error)
  }
  // what was folded here is what the projection writes: it need not fold the operations again
  const folded: Projection.Folded = {
    state: (model, id) => states.get(key(model, id)),
    document: (model, id, field) => docs.get(key(model, id, field))
  }
  return Either.right({ next: { clock }, ops, folded })
}
