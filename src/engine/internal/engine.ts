import { randomUUID } from "node:crypto"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Kysely } from "kysely"
import * as Hlc from "../../crdt/Hlc.js"
import * as Operation from "../../crdt/Operation.js"
import * as RecordState from "../../crdt/RecordState.js"
import * as RichText from "../../crdt/RichText.js"
import * as Timestamp from "../../crdt/Timestamp.js"
import * as VersionVector from "../../crdt/VersionVector.js"
import { Database, StorageError } from "../Database.js"
import type { Bulk } from "./bulk.js"
import type * as Engine from "../Engine.js"
import { IngestError, MutationError, ValidationError } from "../EngineError.js"
import * as Migrations from "../Migrations.js"
import * as Model from "../Model.js"
import * as OperationLog from "../OperationLog.js"
import * as Projection from "../Projection.js"
import * as ParseError from "../../internal/parseError.js"
import { describe } from "../../internal/describe.js"
import { isWellFormed } from "../../internal/wellFormed.js"

const decodeNode = Schema.decodeUnknownEither(Timestamp.NodeId)

interface WriterState {
  readonly clock: Hlc.Hlc
  readonly vector: VersionVector.VersionVector
}

/** @internal */
export const make = (options: Engine.Options) =>
  Effect.gen(function*() {
    const database = yield* Database
    const { bulk, capabilities, kysely } = database
    const maxBatchSize = options.maxBatchSize ?? Operation.MAX_BATCH_SIZE
    const maxOperationBytes = options.maxOperationBytes ?? Operation.MAX_OPERATION_BYTES

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
    if (stored === undefined) yield* database.transaction((trx) => OperationLog.writeMeta(trx, OperationLog.META_NODE, node))

    // the clock restarts after everything it issued or saw, whatever the wall clock says now
    const vector = yield* OperationLog.readVector(kysely)
    const storedClock = yield* OperationLog.readMeta(kysely, OperationLog.META_CLOCK)
    let last = Schema.is(Timestamp.Timestamp)(storedClock) ? storedClock : Timestamp.zero
    for (const entry of Object.values(vector)) last = Timestamp.max(last, entry.ts)
    const state = yield* Ref.make<WriterState>({
      clock: Hlc.make(node, { last, ...(options.maxDriftMillis === undefined ? {} : { maxDriftMillis: options.maxDriftMillis }) }),
      vector
    })

    const writer = yield* Effect.makeSemaphore(1)
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<Engine.Commit>(), PubSub.shutdown)

    /** Runs one write: a transaction, then the in-memory state and subscribers follow the commit. */
    const commit = <E>(
      source: Engine.Commit["source"],
      body: (
        trx: Kysely<any>,
        current: WriterState,
        loaded: Projection.Loaded
      ) => Effect.Effect<{ readonly next: WriterState; readonly ops: ReadonlyArray<Operation.Operation>; readonly folded?: Projection.Folded }, E>
    ) =>
      // uninterruptible once it holds the writer: an interruption while the COMMIT is on its way would
      // leave the database committed and the engine's vector and clock behind it (and every later write
      // reusing their numbers); the write is bounded, so the interruption only waits for it
      writer.withPermits(1)(Effect.uninterruptible(
        Effect.gen(function*() {
          const current = yield* Ref.get(state)
          const { changes, next, ops } = yield* database.transaction((trx) =>
            Effect.gen(function*() {
              const loaded: Projection.Loaded = new Map()
              const { folded, next, ops } = yield* body(trx, current, loaded)
              if (ops.length === 0) return { changes: [], next, ops }
              yield* OperationLog.append(trx, bulk, ops, maxOperationBytes)
              const changes = yield* Projection.apply(trx, bulk, models, node, ops, loaded, folded)
              yield* OperationLog.writeVector(trx, bulk, current.vector, next.vector)
              if (next.clock.last !== current.clock.last) {
                yield* OperationLog.writeMeta(trx, OperationLog.META_CLOCK, next.clock.last)
              }
              return { changes, next, ops }
            })
          )
          yield* Ref.set(state, next)
          const done: Engine.Commit = { source, ops, changes, vector: next.vector }
          if (ops.length > 0) yield* PubSub.publish(pubsub, done)
          return done
        })
      ))

    const mutate = (changes: ReadonlyArray<Model.Change>) =>
      Effect.gen(function*() {
        if (changes.length > maxBatchSize) {
          const first = changes[0]!
          return yield* new MutationError({ reason: "TooManyChanges", model: first.model, record: first.id, detail: `${changes.length} changes in one mutate; the limit is ${maxBatchSize}` })
        }
        const prepared: Array<Prepared> = []
        for (const change of changes) {
          const result = prepare(models, change)
          if (Either.isLeft(result)) return yield* result.left
          prepared.push(result.right)
        }
        const now = yield* Clock.currentTimeMillis
        return yield* commit("local", (trx, current, loaded) => localOps(trx, bulk, node, current, loaded, prepared, now))
      })

    const ingest = (incoming: ReadonlyArray<Operation.Operation>) =>
      Effect.gen(function*() {
        if (incoming.length > maxBatchSize) {
          const first = incoming[0]!
          return yield* new IngestError({ reason: "TooManyOperations", origin: first.origin, seq: first.seq, detail: `${incoming.length} operations in one batch; the limit is ${maxBatchSize}` })
        }
        for (const op of incoming) yield* Model.validateOperation(models, op)
        const now = yield* Clock.currentTimeMillis
        let duplicates = 0
        const result = yield* commit("remote", (_trx, current) =>
          Effect.gen(function*() {
            const sorted = [...incoming].sort((a, b) => (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : a.seq - b.seq))
            const accepted: Array<Operation.Operation> = []
            let vector = current.vector
            let newest = Timestamp.zero
            duplicates = 0
            for (const op of sorted) {
              const held = vector[op.origin]
              const heldSeq = held?.seq ?? 0
              if (op.seq <= heldSeq) {
                duplicates++
                continue
              }
              if (op.seq !== heldSeq + 1) {
                return yield* new IngestError({ reason: "Gap", origin: op.origin, seq: op.seq, detail: `holds ${op.origin} up to ${heldSeq}; ${op.seq} would leave a gap` })
              }
              if (held !== undefined && op.ts <= held.ts) {
                return yield* new IngestError({ reason: "TimestampNotIncreasing", origin: op.origin, seq: op.seq, detail: `timestamp ${op.ts} is not after ${held.ts}` })
              }
              yield* Hlc.checkDrift(current.clock, op.ts, now)
              vector = VersionVector.advance(vector, [op])
              newest = Timestamp.max(newest, op.ts)
              accepted.push(op)
            }
            const clock = accepted.length === 0 ? current.clock : (yield* Hlc.receive(current.clock, newest, now))[1]
            return { next: { clock, vector }, ops: accepted }
          })
        )
        return { applied: result.ops.length, duplicates }
      })

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
      mutate,
      ingest,
      query,
      get: (model, id) =>
        Effect.map(query(model, (q) => q.where("id" as any, "=", id)), (rows) => Option.fromNullable(rows[0])),
      subscribe: (filter) =>
        Stream.fromPubSub(pubsub).pipe(
          Stream.mapConcat((c) => c.changes.map((change) => ({ ...change, source: c.source }))),
          Stream.filter((change) =>
            (filter?.model === undefined || change.model === filter.model) &&
            (filter?.record === undefined || change.record === filter.record)
          )
        ),
      commits: PubSub.subscribe(pubsub),
      versionVector: Effect.map(Ref.get(state), (s) => s.vector),
      opsSince: (theirs, limit) =>
        Effect.flatMap(Ref.get(state), (s) => OperationLog.since(kysely, s.vector, theirs, Math.max(1, Math.min(limit, maxBatchSize)))),
      rebuild: writer.withPermits(1)(
        database.transaction((trx) =>
          Effect.gen(function*() {
            yield* Projection.clear(trx, models.values())
            yield* OperationLog.scan(trx, 5_000, (ops) => Effect.asVoid(Projection.apply(trx, bulk, models, node, ops)))
          })
        )
      )
    }
    return service
  })

/** A change checked against its model, values encoded. */
type Prepared =
  | { readonly _tag: "Create" | "Update"; readonly model: Model.Any; readonly id: string; readonly registers: Operation.Fields; readonly texts: ReadonlyArray<readonly [string, string]> }
  | { readonly _tag: "Delete"; readonly model: Model.Any; readonly id: string }
  | { readonly _tag: "Splice"; readonly model: Model.Any; readonly id: string; readonly field: string; readonly splice: RichText.Splice }

const decodeRecordId = Schema.decodeUnknownEither(Operation.RecordId)

const checkId = (model: string, id: string) =>
  Either.mapLeft(
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
  bulk: Bulk,
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
      yield* Projection.load(trx, bulk, model, ids, loaded)
      for (const id of ids) states.set(key(model.name, id), Projection.stateOf(loaded, model.name, id))
      if (rich.size > 0) {
        for (const [id, fields] of yield* Projection.loadDocuments(trx, bulk, model.name, [...rich], node)) {
          for (const [field, doc] of fields) docs.set(key(model.name, id, field), doc)
        }
      }
    }
    return yield* buildOps(node, current, prepared, states, docs, now)
  })

/** The operations of a batch of local changes, against preloaded states: plain code, one pass. */
const buildOps = (
  node: Timestamp.NodeId,
  current: WriterState,
  prepared: ReadonlyArray<Prepared>,
  states: Map<string, RecordState.RecordState>,
  docs: Map<string, RichText.Doc>,
  now: number
): Either.Either<
  { readonly next: WriterState; readonly ops: ReadonlyArray<Operation.Operation>; readonly folded: Projection.Folded },
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
  const edit = (model: Model.Any, id: string, field: string, splice: (doc: RichText.Doc) => RichText.Splice) => {
    const k = key(model.name, id, field)
    const doc = docs.get(k) ?? RichText.make(node)
    const result = RichText.splice(doc, splice(doc), now)
    if (Either.isLeft(result)) {
      return new ValidationError({ reason: "InvalidValue", model: model.name, record: id, field, detail: result.left.detail })
    }
    docs.set(k, result.right.doc)
    const change = result.right.change
    if (change === undefined) return undefined
    return emit((h) => ({ _tag: "Edit", ...h, model: model.name as Operation.ModelName, record: id, field, changes: [change] }))
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
  return Either.right({ next: { clock, vector: VersionVector.advance(current.vector, ops) }, ops, folded })
}
