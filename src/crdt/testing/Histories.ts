/**
 * fast-check arbitraries of operation histories: several peers with their own
 * hybrid logical clocks make creates, updates, deletes and rich-text edits,
 * and now and then learn each other's operations (so edits depend on edits
 * of other peers, as they do in real use). The result is every operation
 * ever made, each well-formed: per-origin sequence numbers from 1, increasing
 * timestamps, Automerge changes made against the peer's current document.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as fc from "fast-check"
import * as Hlc from "../Hlc.js"
import type * as Operation from "../Operation.js"
import * as Replica from "../Replica.js"
import * as RichText from "../RichText.js"
import type { NodeId } from "../Timestamp.js"
import type { Value } from "../Value.js"

/** Shape of the generated data. */
export interface HistoryOptions {
  readonly peers?: number
  readonly models?: ReadonlyArray<string>
  readonly records?: number
  readonly fields?: ReadonlyArray<string>
  readonly richFields?: ReadonlyArray<string>
  readonly maxSteps?: number
}

/** One thing a peer does. */
export type Step =
  | { readonly kind: "create" | "update"; readonly peer: number; readonly model: Operation.ModelName; readonly record: string; readonly fields: Record<string, Value> }
  | { readonly kind: "delete"; readonly peer: number; readonly model: Operation.ModelName; readonly record: string }
  | { readonly kind: "edit"; readonly peer: number; readonly model: Operation.ModelName; readonly record: string; readonly field: string; readonly at: number; readonly deleteCount: number; readonly insert: string }
  | { readonly kind: "learn"; readonly peer: number; readonly from: number }
  | { readonly kind: "wait"; readonly peer: number; readonly millis: number }

/** A generated history: the steps and the operations they produced, in creation order. */
export interface History {
  readonly peers: ReadonlyArray<NodeId>
  readonly steps: ReadonlyArray<Step>
  readonly ops: ReadonlyArray<Operation.Operation>
}

/** Small values that collide often, so last-writer-wins is exercised. */
export const arbitraryValue: fc.Arbitrary<Value> = fc.oneof(
  fc.constantFrom<Value>(null, true, false, 0, 1, "a", "b"),
  fc.integer({ min: -1000, max: 1000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }).map((n) => (Object.is(n, -0) ? 0 : n)),
  fc.string({ maxLength: 8 }),
  fc.array(fc.string({ maxLength: 3 }), { maxLength: 3 })
)

/** Generates a list of steps; `simulate` turns them into operations. */
export const arbitrarySteps = (options: HistoryOptions = {}): fc.Arbitrary<ReadonlyArray<Step>> => {
  const peers = options.peers ?? 3
  const models = options.models ?? ["notes", "tasks"]
  const fields = options.fields ?? ["title", "done", "tags"]
  const richFields = options.richFields ?? ["body"]
  const peer = fc.integer({ min: 0, max: peers - 1 })
  const model = fc.constantFrom(...models) as fc.Arbitrary<Operation.ModelName>
  const record = fc.integer({ min: 0, max: (options.records ?? 4) - 1 }).map((i) => `r${i}`)
  const someFields = fc.dictionary(fc.constantFrom(...fields), arbitraryValue, { minKeys: 1, maxKeys: fields.length })
  const write = fc.record({ kind: fc.constantFrom("create" as const, "update" as const), peer, model, record, fields: someFields })
  const steps: Array<fc.Arbitrary<Step>> = [
    write,
    write,
    fc.record({ kind: fc.constant("delete" as const), peer, model, record }),
    fc.record({ kind: fc.constant("learn" as const), peer, from: peer }),
    fc.record({ kind: fc.constant("wait" as const), peer, millis: fc.integer({ min: 0, max: 50 }) })
  ]
  if (richFields.length > 0) {
    steps.push(
      fc.record({
        kind: fc.constant("edit" as const),
        peer,
        model,
        record,
        field: fc.constantFrom(...richFields),
        at: fc.double({ min: 0, max: 1, noNaN: true }),
        deleteCount: fc.integer({ min: 0, max: 3 }),
        insert: fc.string({ maxLength: 4 })
      })
    )
  }
  return fc.array(fc.oneof(...steps), { minLength: 1, maxLength: options.maxSteps ?? 40 })
}

/** Node ids used for `n` simulated peers. */
export const peerIds = (n: number): ReadonlyArray<NodeId> =>
  Array.from({ length: n }, (_, i) => `peer-${String.fromCharCode(97 + i)}` as NodeId)

interface PeerState {
  readonly node: NodeId
  clock: Hlc.Hlc
  seq: number
  wall: number
  replica: Replica.Replica
  readonly known: Set<string>
}

/** Runs steps as the given peers would, producing well-formed operations. */
export const simulate = (peerCount: number, steps: ReadonlyArray<Step>): History => {
  const peers = peerIds(peerCount)
  const states: Array<PeerState> = peers.map((node) => ({
    node,
    clock: Hlc.make(node, { maxDriftMillis: Number.MAX_SAFE_INTEGER }),
    seq: 0,
    wall: 1_700_000_000_000,
    replica: Replica.empty,
    known: new Set()
  }))
  const ops: Array<Operation.Operation> = []
  const learn = (state: PeerState, op: Operation.Operation) => {
    state.known.add(`${op.origin}/${op.seq}`)
    state.replica = Either.getOrThrow(Replica.apply(state.replica, op, state.node))
  }
  const emit = (state: PeerState, make: (header: Pick<Operation.Operation, "origin" | "seq" | "ts">) => Operation.Operation) => {
    const [ts, clock] = Either.getOrThrow(Hlc.send(state.clock, state.wall))
    state.clock = clock
    state.seq += 1
    const op = make({ origin: state.node, seq: state.seq, ts })
    ops.push(op)
    learn(state, op)
  }
  for (const step of steps) {
    const state = states[step.peer % peerCount]!
    switch (step.kind) {
      case "wait":
        state.wall += step.millis
        break
      case "learn": {
        const from = states[step.from % peerCount]!
        for (const op of ops) {
          if (op.origin !== from.node && !from.known.has(`${op.origin}/${op.seq}`)) continue
          if (state.known.has(`${op.origin}/${op.seq}`)) continue
          state.clock = Either.getOrThrow(Hlc.receive(state.clock, op.ts, state.wall))[1]
          learn(state, op)
        }
        break
      }
      case "create":
      case "update":
        emit(state, (h) => ({
          _tag: step.kind === "create" ? "Create" : "Update",
          ...h,
          model: step.model,
          record: step.record,
          fields: step.fields
        } as Operation.Operation))
        break
      case "delete":
        emit(state, (h) => ({ _tag: "Delete", ...h, model: step.model, record: step.record } as Operation.Operation))
        break
      case "edit": {
        const doc = state.replica.get(step.model)?.get(step.record)?.documents.get(step.field) ?? RichText.make(state.node)
        const length = RichText.text(doc).length
        const index = Math.min(length, Math.floor(step.at * (length + 1)))
        const deleteCount = Math.min(step.deleteCount, length - index)
        // the replica keeps its document: the splice changes a copy
        const { changes } = Either.getOrThrow(RichText.splice(RichText.copy(doc), { index, deleteCount, insert: step.insert }, state.wall))
        if (changes.length === 0) break
        emit(state, (h) => ({
          _tag: "Edit",
          ...h,
          model: step.model,
          record: step.record,
          field: step.field,
          changes
        } as Operation.Operation))
        break
      }
    }
  }
  return { peers, steps, ops }
}

/** Arbitrary histories of `options.peers` peers. */
export const arbitraryHistory = (options: HistoryOptions = {}): fc.Arbitrary<History> =>
  arbitrarySteps(options).map((steps) => simulate(options.peers ?? 3, steps))
