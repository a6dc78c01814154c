/**
 * Convergence properties for any app's models: peers on a simulated network
 * make random changes while connections come and go, partitions split the
 * network, peers crash and restart (keeping their SQLite files). At the end
 * everything heals and syncs to quiescence; then every peer must hold every
 * operation ever made, and every peer's projection must equal every other's
 * and the reference model (a plain fold of all operations).
 *
 * ```ts
 * import { Convergence } from "weft/testing"
 * it("my models converge", () => Convergence.check({ models: [files, folders] }), 120_000)
 * ```
 *
 * The generators reach for what breaks engines: peers and records named like
 * `Object.prototype` members (`__proto__`, `constructor`), edits holding
 * ill-formed strings (lone UTF-16 surrogates: every peer must refuse them,
 * and nothing of them may be written), and foreign origins in numbers that
 * make vectors wide and span several pages on the wire.
 *
 * Runs use virtual time (`TestClock`) and a seeded network, so a failing
 * schedule replays exactly; fast-check shrinks it and prints it step by step.
 * `WEFT_PROPERTY_RUNS` sets the number of schedules (default 200).
 *
 * @since 0.1.0
 */
import * as Arbitrary from "effect/Arbitrary"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import * as fc from "fast-check"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Operation from "../../../crdt/Operation.js"
import * as Reference from "../../../crdt/testing/Reference.js"
import * as Timestamp from "../../../crdt/Timestamp.js"
import * as VersionVector from "../../../crdt/VersionVector.js"
import type * as Engine from "../../../engine/Engine.js"
import type * as Model from "../../../engine/Model.js"
import * as Engines from "../../../engine/testing/Engines.js"
import * as Snapshot from "../../../engine/testing/Snapshot.js"
import * as MemoryTransport from "../../../transport/MemoryTransport.js"
import { Transport } from "../../../transport/Transport.js"
import * as Libraries from "../../../library/Libraries.js"
import * as PluginHost from "../../PluginHost.js"
import * as Sync from "../Sync.js"

/** What the harness generates and checks. */
export interface Options {
  /** The app's models. */
  readonly models: ReadonlyArray<Model.Any>
  /** Fewest and most peers (default 2 to 6). */
  readonly peers?: readonly [number, number]
  /** Most steps per schedule (default 40). */
  readonly maxSteps?: number
  /** Record ids per model: few, so peers edit the same records (default 3). */
  readonly records?: number
  /** Values for a field; by default derived from the field's Schema. */
  readonly values?: (model: Model.Any, field: Model.Field) => fc.Arbitrary<unknown>
  /** Network faults: per-chunk latency and reset probability (default 0–5 ms, 0.002). */
  readonly faults?: { readonly latency?: { readonly minMillis: number; readonly maxMillis: number }; readonly resetProbability?: number }
  /** Schedules to run (default `WEFT_PROPERTY_RUNS` or 200). */
  readonly numRuns?: number
  /** fast-check seed, to replay a run. */
  readonly seed?: number
  /** Replays one counterexample: the path fast-check printed with its seed. */
  readonly path?: string
  /** Wraps each peer's engine, to test the harness itself with a deliberately broken peer. */
  readonly wrapEngine?: (engine: Engine.Service) => Engine.Service
}

/** A change a peer tries to make; turned into a create, update, delete or splice against its current state. */
export interface Edit {
  readonly model: string
  readonly record: string
  /** Preferred kind when the record exists (a missing record is created). */
  readonly kind: "update" | "delete" | "splice"
  readonly values: Readonly<Record<string, unknown>>
  readonly splice: { readonly field: string; readonly at: number; readonly deleteCount: number; readonly insert: string } | undefined
  /** Where the edit carries a lone surrogate, which every engine must refuse with a `ValidationError`. */
  readonly illFormed?: "id" | "value" | "splice" | undefined
}

/** One step of a schedule. */
export type Step =
  | { readonly _tag: "Edit"; readonly peer: number; readonly edit: Edit }
  | { readonly _tag: "Connect"; readonly a: number; readonly b: number }
  | { readonly _tag: "Disconnect"; readonly a: number; readonly b: number }
  | { readonly _tag: "Partition"; readonly side: ReadonlyArray<number> }
  | { readonly _tag: "Heal" }
  | { readonly _tag: "Crash"; readonly peer: number }
  | { readonly _tag: "Restart"; readonly peer: number }
  | { readonly _tag: "Wait"; readonly millis: number }
  /** The peer ingests one operation from each of `origins` new origins (as if relayed from peers not in the run). */
  | { readonly _tag: "Foreign"; readonly peer: number; readonly origins: number }

/** A schedule: how many peers, the network's seed, and the steps. */
export interface Plan {
  readonly peers: number
  readonly seed: number
  readonly steps: ReadonlyArray<Step>
  /** The peers' node ids (default p0, p1, …). */
  readonly names?: ReadonlyArray<string>
}

/** Node ids and record ids that are also `Object.prototype` member names. */
export const PROTOTYPE_NAMES = ["__proto__", "constructor", "hasOwnProperty", "toString", "valueOf", "isPrototypeOf"] as const

let names: ReadonlyArray<string> = []
const name = (i: number) => names[i] ?? `p${i}`
const namesOf = (plan: Plan) => Array.from({ length: plan.peers }, (_, i) => plan.names?.[i] ?? `p${i}`)

/** A step as one readable line. */
export const formatStep = (step: Step): string => {
  switch (step._tag) {
    case "Edit": {
      const e = step.edit
      const what = e.splice !== undefined && e.kind === "splice"
        ? `splice ${e.splice.field} at ${e.splice.at.toFixed(2)} -${e.splice.deleteCount} +${JSON.stringify(e.splice.insert)}`
        : e.kind === "delete" ? "delete (or create)" : `write ${JSON.stringify(e.values)}`
      return `${name(step.peer)}: ${e.model}/${e.record} ${what}${e.illFormed === undefined ? "" : ` with a lone surrogate in its ${e.illFormed} (refused)`}`
    }
    case "Connect":
      return `connect ${name(step.a)} - ${name(step.b)}`
    case "Disconnect":
      return `disconnect ${name(step.a)} - ${name(step.b)}`
    case "Partition":
      return `partition [${step.side.map(name).join(", ")}] | rest`
    case "Heal":
      return "heal"
    case "Crash":
      return `crash ${name(step.peer)}`
    case "Restart":
      return `restart ${name(step.peer)}`
    case "Wait":
      return `wait ${step.millis} ms`
    case "Foreign":
      return `${name(step.peer)}: ingests ${step.origins} delete(s) from as many new origins`
  }
}

/** A schedule as readable lines. */
export const format = (plan: Plan): string => {
  names = namesOf(plan)
  const named = plan.names === undefined ? "" : ` (${names.join(", ")})`
  return [`${plan.peers} peers${named}, network seed ${plan.seed}:`, ...plan.steps.map((s, i) => `  ${String(i + 1).padStart(2)}. ${formatStep(s)}`)].join("\n")
}

const defaultValues = (_model: Model.Any, field: Model.Field): fc.Arbitrary<unknown> =>
  (Arbitrary.makeLazy(field.schema as Schema.Schema<unknown>)(fc as never) as unknown as fc.Arbitrary<unknown>)

/** Arbitrary schedules for the models. */
export const arbitraryPlan = (options: Options): fc.Arbitrary<Plan> => {
  const [min, max] = options.peers ?? [2, 6]
  const valuesOf = options.values ?? defaultValues
  return fc.integer({ min, max }).chain((peers) => {
    const peer = fc.integer({ min: 0, max: peers - 1 })
    const edits = options.models.map((model) => {
      const fields = [...model.fields.values()]
      const rich = fields.filter((f) => f.column === "rich").map((f) => f.name)
      // one record id in the pool is a prototype member name
      const record = fc.integer({ min: 0, max: (options.records ?? 3) - 1 }).map((i) => (i === 0 ? "__proto__" : `r${i}`))
      const values = fc.record(Object.fromEntries(fields.map((f) => [f.name, valuesOf(model, f)])), { requiredKeys: [] })
      return fc.record({
        model: fc.constant(model.name),
        record,
        kind: fc.constantFrom("update" as const, "update" as const, "delete" as const, ...(rich.length > 0 ? ["splice" as const] : [])),
        values,
        splice: rich.length === 0 ? fc.constant(undefined) : fc.record({
          field: fc.constantFrom(...rich),
          at: fc.double({ min: 0, max: 1, noNaN: true }),
          deleteCount: fc.integer({ min: 0, max: 3 }),
          insert: fc.string({ maxLength: 5 })
        }),
        illFormed: fc.oneof(
          { weight: 12, arbitrary: fc.constant(undefined) },
          { weight: 1, arbitrary: fc.constantFrom("id" as const, "value" as const, ...(rich.length > 0 ? ["splice" as const] : [])) }
        )
      }, { requiredKeys: ["model", "record", "kind", "values", "splice"] })
    })
    const step: fc.Arbitrary<Step> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ _tag: fc.constant("Edit" as const), peer, edit: fc.oneof(...edits) }) },
      { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Connect" as const), a: peer, b: peer }) },
      { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Disconnect" as const), a: peer, b: peer }) },
      { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Partition" as const), side: fc.uniqueArray(peer, { minLength: 1, maxLength: peers - 1 }) }) },
      { weight: 1, arbitrary: fc.constant({ _tag: "Heal" as const }) },
      { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), peer }) },
      { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restart" as const), peer }) },
      { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Wait" as const), millis: fc.integer({ min: 1, max: 200 }) }) },
      { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Foreign" as const), peer, origins: fc.integer({ min: 1, max: 60 }) }) }
    )
    const pool = [...PROTOTYPE_NAMES, ...Array.from({ length: max }, (_, i) => `p${i}`)]
    return fc.record({
      peers: fc.constant(peers),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      steps: fc.array(step, { maxLength: options.maxSteps ?? 40 }),
      names: fc.shuffledSubarray(pool, { minLength: peers, maxLength: peers })
    })
  }).map((plan) => Object.assign(plan, { [fc.toStringMethod]: () => format(plan) }))
}

/** Why a schedule did not converge. */
export class ConvergenceError extends Error {
  readonly _tag = "ConvergenceError"
}

interface Running {
  readonly scope: Scope.CloseableScope
  readonly engine: Engine.Service
  readonly transport: Transport["Type"]
}

const LIBRARY = "convergence"

/** Runs one schedule; fails with a `ConvergenceError` saying what differed. */
export const run = (plan: Plan, options: Options): Effect.Effect<void, unknown> =>
  Effect.gen(function*() {
    const dir = mkdtempSync(join(tmpdir(), "weft-convergence-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
    const network = yield* MemoryTransport.make({
      seed: plan.seed,
      latency: options.faults?.latency ?? { minMillis: 0, maxMillis: 5 },
      resetProbability: options.faults?.resetProbability ?? 0.002
    })
    const nodes = namesOf(plan)
    let foreign = 0
    const libraries = Libraries.layerMemory([{ id: LIBRARY, name: "convergence", members: nodes as Array<never> }])
    const running = new Map<number, Running>()
    const made: Array<Operation.Operation> = []

    const start = (i: number) =>
      Effect.gen(function*() {
        if (running.has(i)) return
        const scope = yield* Scope.make()
        const peer = Effect.gen(function*() {
          const opened = yield* Engines.open({ models: options.models, node: nodes[i]!, filename: join(dir, `${nodes[i]}.db`) })
          const engine = options.wrapEngine === undefined ? opened : options.wrapEngine(opened)
          const transport = yield* network.transport(nodes[i]!)
          const host = yield* PluginHost.make({ connectDiscovered: false }).pipe(
            Effect.provideService(Transport, transport),
            Effect.provide(libraries)
          )
          yield* Sync.make({
            libraries: [{ id: LIBRARY, engine }],
            // pages of 16 entries: a run's vectors span several pages on the wire
            session: { debounce: Duration.millis(5), antiEntropyInterval: Duration.seconds(1), batchSize: 64, window: 2, pageEntries: 16 },
            retry: Schedule.spaced(Duration.millis(50))
          }).pipe(Effect.provideService(PluginHost.PluginHost, host), Effect.provide(libraries))
          return { scope, engine, transport }
        })
        running.set(i, yield* Scope.extend(peer, scope))
      })
    const crash = (i: number) =>
      Effect.gen(function*() {
        const peer = running.get(i)
        if (peer === undefined) return
        running.delete(i)
        yield* Scope.close(peer.scope, Exit.void)
      })
    const connect = (a: number, b: number) => {
      const from = running.get(a)
      // forked: the handshake takes (virtual) time, which only passes while this loop advances the clock
      return from === undefined || a === b || !running.has(b)
        ? Effect.void
        : Effect.asVoid(Effect.forkIn(Effect.ignore(from.transport.connect(`memory://${nodes[b]}`)), from.scope))
    }
    const settle = Effect.gen(function*() {
      for (let k = 0; k < 3; k++) {
        yield* TestClock.adjust(Duration.millis(1))
        yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      }
    })

    const edit = (i: number, e: Edit) =>
      Effect.gen(function*() {
        const peer = running.get(i)
        if (peer === undefined) return
        const model = options.models.find((m) => m.name === e.model)!
        const exists = Option.isSome(yield* peer.engine.get(model, e.record))
        const change = !exists
          ? model.create(e.record, e.values as never)
          : e.kind === "delete" ? model.delete(e.record)
          : e.kind === "splice" && e.splice !== undefined
          ? model.splice(e.record, e.splice.field as never, yield* spliceFor(peer.engine, model, e))
          : model.update(e.record, e.values as never)
        if (e.illFormed !== undefined) {
          const refused = yield* Effect.either(peer.engine.mutate([illFormed(model, e)]))
          // refused for the surrogate, not for something else the generated change lacks
          if (Either.isRight(refused) || refused.left._tag !== "ValidationError" || !/surrogate|well-formed|ill-formed|UTF-16/i.test(refused.left.message)) {
            return yield* Effect.fail(new ConvergenceError(`${nodes[i]} did not refuse a lone surrogate in its ${e.illFormed} with a ValidationError: ${Either.isRight(refused) ? "it was written" : refused.left.message}`))
          }
          return
        }
        // changes the engine refuses (invalid values, a missing required field) are part of the test too
        const commit = yield* Effect.either(peer.engine.mutate([change]))
        if (Either.isRight(commit)) made.push(...commit.right.ops)
      })

    // operations of origins that are not peers of the run: one each, a delete of a shared record
    const ingestForeign = (i: number, origins: number) =>
      Effect.gen(function*() {
        const peer = running.get(i)
        if (peer === undefined) return
        const now = yield* Clock.currentTimeMillis
        const model = options.models[0]!
        const ops: Array<Operation.Operation> = Array.from({ length: origins }, (_, k) => ({
          _tag: "Delete",
          origin: `foreign-${foreign + k}` as Timestamp.NodeId,
          seq: 1,
          ts: Timestamp.make(now, k),
          model: model.name as Operation.ModelName,
          record: `r${k % (options.records ?? 3)}`
        }))
        foreign += origins
        const result = yield* peer.engine.ingest(ops)
        if (result.applied !== origins) return yield* Effect.fail(new ConvergenceError(`${nodes[i]} applied ${result.applied} of ${origins} foreign operations`))
        made.push(...ops)
      })

    for (let i = 0; i < plan.peers; i++) yield* start(i)
    for (const step of plan.steps) {
      if (process.env.WEFT_CONVERGENCE_TRACE) console.log(formatStep(step))
      switch (step._tag) {
        case "Edit":
          yield* edit(step.peer, step.edit)
          break
        case "Connect":
          yield* connect(step.a, step.b)
          break
        case "Disconnect":
          yield* network.disconnect(nodes[step.a]!, nodes[step.b]!)
          break
        case "Partition":
          yield* network.partition(step.side.map((i) => nodes[i]!), nodes.filter((_, i) => !step.side.includes(i)))
          break
        case "Heal":
          yield* network.heal
          break
        case "Crash":
          yield* crash(step.peer)
          break
        case "Restart":
          yield* start(step.peer)
          break
        case "Wait":
          yield* TestClock.adjust(Duration.millis(step.millis))
          break
        case "Foreign":
          yield* ingestForeign(step.peer, step.origins)
          break
      }
      yield* settle
    }

    // heal everything, connect everyone, sync to quiescence
    yield* network.heal
    for (let i = 0; i < plan.peers; i++) yield* start(i)
    for (let a = 0; a < plan.peers; a++) for (let b = a + 1; b < plan.peers; b++) yield* connect(a, b)
    const expected = VersionVector.advance(VersionVector.empty, made)
    const engines = [...running.values()].map((r) => r.engine)
    let quiet = false
    for (let round = 0; round < 600 && !quiet; round++) {
      yield* TestClock.adjust(Duration.millis(50))
      yield* settle
      const vectors = yield* Effect.forEach(engines, (e) => e.versionVector)
      quiet = vectors.every((v) => VersionVector.covers(v, expected) && VersionVector.covers(expected, v))
      // connections dropped by random resets come back
      if (!quiet && round % 10 === 9) for (let a = 0; a < plan.peers; a++) for (let b = a + 1; b < plan.peers; b++) yield* connect(a, b)
    }
    if (!quiet) {
      const vectors = yield* Effect.forEach(engines, (e) => e.versionVector)
      const show = (v: VersionVector.VersionVector) => JSON.stringify([...v].sort())
      return yield* Effect.fail(new ConvergenceError(`no quiescence after 30 s of virtual time: expected ${show(expected)}, have ${vectors.map(show).join(" / ")}`))
    }

    const reference = normalize(Reference.view(made), options.models)
    const madeIds = made.map(Operation.id).sort()
    for (const engine of engines) {
      const snapshot = yield* Snapshot.snapshot(engine)
      // no operation lost, none held twice, and per origin a prefix 1..n (the log is in (origin, seq) order)
      const held = snapshot.log.map(([id]) => id)
      if (JSON.stringify([...held].sort()) !== JSON.stringify(madeIds)) {
        return yield* Effect.fail(new ConvergenceError(`${engine.node} holds ${held.length} operations, ${made.length} were made; missing: ${madeIds.filter((id) => !held.includes(id)).slice(0, 5).join(", ")}`))
      }
      const gap = held.find((id, i) => {
        const [origin, seq] = id.split("/")
        const previous = held[i - 1]?.split("/")
        return Number(seq) !== (previous !== undefined && previous[0] === origin ? Number(previous[1]) + 1 : 1)
      })
      if (gap !== undefined) return yield* Effect.fail(new ConvergenceError(`${engine.node}'s log of an origin is not a prefix at ${gap}`))
      const view = normalize(yield* Snapshot.view(engine), options.models)
      if (JSON.stringify(view) !== JSON.stringify(reference)) {
        return yield* Effect.fail(new ConvergenceError(`${engine.node} differs from the reference model:\n  peer:      ${JSON.stringify(view)}\n  reference: ${JSON.stringify(reference)}`))
      }
    }
  }).pipe(Effect.scoped, Effect.provide(TestContext.TestContext))

/**
 * The edit's change with a lone surrogate where the edit says; built so that nothing but the
 * surrogate is wrong with it (values are checked before the record's existence).
 */
const illFormed = (model: Model.Any, e: Edit): Model.Change => {
  const lone = "a\uD800b"
  const rich = [...model.fields.values()].find((f) => f.column === "rich")
  const text = [...model.fields.values()].find((f) => f.column === "rich" || Schema.is(f.schema as Schema.Schema<unknown>)(lone))
  switch (e.illFormed === "splice" && rich === undefined ? "id" : e.illFormed === "value" && text === undefined ? "id" : e.illFormed) {
    case "splice":
      return model.splice(e.record, rich!.name as never, { index: 0, deleteCount: 0, insert: lone })
    case "value":
      return model.update(e.record, { [text!.name]: lone } as never)
    default:
      return model.delete(`${e.record}${lone}`)
  }
}

const spliceFor = (engine: Engine.Service, model: Model.Any, e: Edit) =>
  Effect.map(engine.get(model, e.record), (row) => {
    const text = Option.match(row, { onNone: () => "", onSome: (r) => String((r as Record<string, unknown>)[e.splice!.field] ?? "") })
    const index = Math.min(text.length, Math.floor(e.splice!.at * (text.length + 1)))
    return { index, deleteCount: Math.min(e.splice!.deleteCount, text.length - index), insert: e.splice!.insert }
  })

/** Views compared as sorted JSON, with never-edited (empty) rich texts left out on both sides. */
const normalize = (view: { readonly [model: string]: { readonly [record: string]: { readonly [field: string]: unknown } } }, models: ReadonlyArray<Model.Any>) => {
  const out: Record<string, Record<string, Record<string, unknown>>> = {}
  for (const model of [...models].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rich = new Set([...model.fields.values()].filter((f) => f.column === "rich").map((f) => f.name))
    const records = view[model.name] ?? {}
    out[model.name] = {}
    for (const id of Object.keys(records).sort()) {
      const fields: Record<string, unknown> = {}
      for (const field of Object.keys(records[id]!).sort()) {
        const value = records[id]![field]
        if (!(rich.has(field) && value === "")) fields[field] = value
      }
      out[model.name]![id] = fields
    }
  }
  return out
}

/** The convergence property, for fast-check's `assert` or `check`. */
export const property = (options: Options) =>
  fc.asyncProperty(arbitraryPlan(options), (plan) => Effect.runPromise(run(plan, options)))

/** Checks the convergence property over many schedules (fast-check), failing with the shrunk schedule. */
export const check = (options: Options): Promise<void> =>
  fc.assert(
    property(options),
    {
      numRuns: options.numRuns ?? Number(process.env.WEFT_PROPERTY_RUNS ?? 200),
      ...(options.seed === undefined ? {} : { seed: options.seed }),
      ...(options.path === undefined ? {} : { path: options.path }),
      endOnFailure: false
    }
  )
