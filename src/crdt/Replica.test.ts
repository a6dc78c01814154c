import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as fc from "fast-check"
import type * as Operation from "./Operation.js"
import * as Replica from "./Replica.js"
import * as RichText from "./RichText.js"
import * as Histories from "./testing/Histories.js"
import * as Reference from "./testing/Reference.js"
import type { NodeId } from "./Timestamp.js"

const observer = "observer" as NodeId
const fold = (ops: ReadonlyArray<Operation.Operation>) => Either.getOrThrow(Replica.applyAll(Replica.empty, ops, observer))

/** Full state, hidden registers and document heads included: equal states merge identically later. */
const fullState = (replica: Replica.Replica) =>
  [...replica].map(([model, records]) =>
    [model, [...records].map(([id, entry]) => [
      id,
      entry.state,
      [...entry.documents].map(([field, doc]) => [field, RichText.text(doc), RichText.heads(doc)]).sort()
    ]).sort()]
  ).sort()

/** Arbitrary delivery: a permutation of the ops with some delivered more than once. */
const delivery = (ops: ReadonlyArray<Operation.Operation>) =>
  fc.tuple(
    fc.shuffledSubarray([...ops.keys()], { minLength: ops.length, maxLength: ops.length }),
    fc.array(fc.nat({ max: Math.max(0, ops.length - 1) }), { maxLength: 5 })
  ).map(([order, extra]) => [...order, ...(ops.length === 0 ? [] : extra)].map((i) => ops[i]!))

const histories = Histories.arbitraryHistory({ peers: 3, maxSteps: 30 })

describe("Replica merge (property)", () => {
  it("converges whatever the order and duplication of delivery (commutative, idempotent)", () => {
    fc.assert(
      fc.property(histories.chain((h) => fc.tuple(fc.constant(h), delivery(h.ops), delivery(h.ops))), ([h, a, b]) => {
        const inOrder = fold(h.ops)
        expect(fullState(fold(a))).toEqual(fullState(inOrder))
        expect(fullState(fold(b))).toEqual(fullState(inOrder))
      }),
      { numRuns: 500 }
    )
  })

  it("groups freely: merging two halves separately then together is the same (associative)", () => {
    fc.assert(
      fc.property(histories.chain((h) => fc.tuple(fc.constant(h), fc.nat({ max: h.ops.length }))), ([h, cut]) => {
        const left = fold(h.ops.slice(0, cut))
        const both = Either.getOrThrow(Replica.applyAll(left, h.ops.slice(cut), observer))
        const rightFirst = Either.getOrThrow(Replica.applyAll(fold(h.ops.slice(cut)), h.ops.slice(0, cut), observer))
        expect(fullState(both)).toEqual(fullState(rightFirst))
      }),
      { numRuns: 500 }
    )
  })

  it("equals the reference model (sequential replay in timestamp order)", () => {
    fc.assert(
      fc.property(histories.chain((h) => fc.tuple(fc.constant(h), delivery(h.ops))), ([h, shuffled]) => {
        expect(Replica.view(fold(shuffled))).toEqual(Reference.view(h.ops))
      }),
      { numRuns: 500 }
    )
  })

  it("keeps both of two concurrent text edits", () => {
    const a = "peer-a" as NodeId
    const b = "peer-b" as NodeId
    const edit = (node: NodeId, insert: string) =>
      Either.getOrThrow(RichText.splice(RichText.make(node), { index: 0, deleteCount: 0, insert }, 0)).changes[0]!
    const merged = Either.getOrThrow(RichText.applyChanges(RichText.make(observer), [edit(a, "hello"), edit(b, "world")]))
    const text = RichText.text(merged)
    expect(text).toHaveLength(10)
    expect(text).toContain("hello")
    expect(text).toContain("world")
  })

  it("refuses malformed change bytes with a typed error", () => {
    const result = RichText.applyChanges(RichText.make(observer), [new Uint8Array([1, 2, 3])])
    expect(Either.isLeft(result) && result.left._tag).toBe("RichTextError")
  })
})
