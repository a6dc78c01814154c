import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import * as Binary from "./Binary.js"
import * as Operation from "./Operation.js"
import * as Histories from "./testing/Histories.js"

const histories = Histories.arbitraryHistory({ peers: 3, maxSteps: 20 })

describe("Operation codec", () => {
  it("round-trips every operation and every batch", () => {
    fc.assert(
      fc.property(histories, (h) => {
        for (const op of h.ops) expect(Either.getOrThrow(Operation.decode(Operation.encode(op)))).toEqual(op)
        expect(Either.getOrThrow(Operation.decodeBatch(Operation.encodeBatch(h.ops)))).toEqual(h.ops)
      }),
      { numRuns: 500 }
    )
  })

  it("writes each origin of a batch once", () => {
    const h = Histories.simulate(1, Array.from({ length: 50 }, () => ({
      kind: "update" as const, peer: 0, model: "notes" as Operation.ModelName, record: "r0", fields: { title: 1 }
    })))
    const occurrences = Buffer.from(Operation.encodeBatch(h.ops)).toString("latin1").split("peer-a").length - 1
    expect(occurrences).toBe(1)
  })

  it("never throws on arbitrary bytes: a typed error or a valid operation", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const result = Operation.decode(bytes)
        if (Either.isLeft(result)) expect(result.left._tag).toBe("OperationDecodeError")
        const batch = Operation.decodeBatch(bytes)
        if (Either.isLeft(batch)) expect(batch.left._tag).toBe("OperationDecodeError")
      }),
      { numRuns: 2000 }
    )
  })

  it("refuses well-formed MessagePack that is not an operation, saying why", () => {
    const valid = [0, "peer-a", 1, "018bcfe568000000", "notes", "r1", { title: "x" }]
    const cases: ReadonlyArray<[string, unknown]> = [
      ["unknown kind", [9, ...valid.slice(1)]],
      ["bad origin", [0, "peer a/..", ...valid.slice(2)]],
      ["seq 0", [0, "peer-a", 0, ...valid.slice(3)]],
      ["bad timestamp", [0, "peer-a", 1, "2024-01-01", ...valid.slice(4)]],
      ["reserved model name", [...valid.slice(0, 4), "weft_ops", ...valid.slice(5)]],
      ["reserved field name", [...valid.slice(0, 6), { id: "x" }]],
      ["field named like Object.prototype's constructor", [...valid.slice(0, 6), { constructor: "x" }]],
      ["field named like Object.prototype's toString", [...valid.slice(0, 6), { toString: "x" }]],
      ["an origin named __proto__ is fine, a field named __proto__ is not", [0, "__proto__", ...valid.slice(2, 6), JSON.parse(`{"__proto__": "x"}`)]],
      ["non-finite value", [...valid.slice(0, 6), { title: Number.POSITIVE_INFINITY }]],
      ["delete with fields", [2, ...valid.slice(1)]],
      ["create without fields", [0, ...valid.slice(1, 6), null]],
      ["edit without changes", [3, ...valid.slice(1, 6), ["body", []]]],
      ["truncated tuple", valid.slice(0, 4)]
    ]
    expect(Either.isRight(Operation.decode(Binary.encode(valid)))).toBe(true)
    for (const [name, value] of cases) {
      const result = Operation.decode(Binary.encode(value))
      expect(Either.isLeft(result), name).toBe(true)
      if (Either.isLeft(result)) expect(result.left.reason, name).toBe("InvalidOperation")
    }
    const truncated = Operation.decode(Binary.encode(valid).subarray(0, 10))
    expect(Either.isLeft(truncated) && truncated.left.reason).toBe("MalformedBytes")
  })

  it("the fast check (isOperation) agrees with the Operation schema, on valid and on damaged operations", () => {
    const validate = Schema.is(Operation.Operation, { onExcessProperty: "error" })
    const damage = fc.oneof(
      fc.constantFrom("origin", "seq", "ts", "model", "record", "fields", "field", "changes", "_tag"),
      fc.constant("fields.id"),
      fc.constant("fields.weftX")
    )
    const badValue = fc.constantFrom<unknown>(undefined, null, "", "x y", -1, 0, 1.5, Number.NaN, "WEFT_x", "weft_x", {}, [], new Uint8Array(1), "a".repeat(300), { id: 1 }, [new Uint8Array(1)])
    fc.assert(
      fc.property(histories, fc.array(fc.tuple(fc.nat(), damage, badValue), { maxLength: 3 }), (h, damages) => {
        for (const op of h.ops) {
          expect(Operation.isOperation(op)).toBe(true)
          const copy: Record<string, any> = JSON.parse(JSON.stringify(op, (_, v) => (v instanceof Uint8Array ? { __bytes: [...v] } : v)), (_, v) => (v?.__bytes ? new Uint8Array(v.__bytes) : v))
          for (const [, key, value] of damages) {
            if (key.startsWith("fields.")) {
              if (typeof copy.fields === "object" && copy.fields !== null) copy.fields[key.slice(7)] = value
            } else if (key in copy) copy[key] = value // decoding builds each kind's own keys: no extra ones
          }
          expect(Operation.isOperation(copy)).toBe(validate(copy))
        }
      }),
      { numRuns: 500 }
    )
  })

  it("refuses a batch that points at a missing origin", () => {
    const bytes = Binary.encode([["peer-a"], [[2, 1, 1, "018bcfe568000000", "notes", "r1", null]]])
    const result = Operation.decodeBatch(bytes)
    expect(Either.isLeft(result) && result.left.detail).toMatch(/no origin at index 1/)
  })

  it("refuses a batch of more than MAX_BATCH_SIZE rows, and a row that is not an array", () => {
    const row = [2, 0, 1, "018bcfe568000000", "notes", "r1", null]
    const rows = (n: number) => Array.from({ length: n }, (_, i) => [...row.slice(0, 2), i + 1, ...row.slice(3)])
    expect(Either.isRight(Operation.decodeBatch(Binary.encode([["peer-a"], rows(Operation.MAX_BATCH_SIZE)])))).toBe(true)
    for (const bad of [rows(Operation.MAX_BATCH_SIZE + 1), [row, "2,0,1,x"], [row, { 0: 2, length: 7 }], "rows"]) {
      const result = Operation.decodeBatch(Binary.encode([["peer-a"], bad]))
      expect(Either.isLeft(result) && result.left.reason).toBe("InvalidOperation")
    }
  })
})
