import { describe, expect, it } from "@effect/vitest"
import type * as Operation from "./Operation.js"
import * as RecordState from "./RecordState.js"
import * as Timestamp from "./Timestamp.js"

const header = (millis: number, origin = "peer-a") => ({
  origin: origin as Timestamp.NodeId,
  seq: 1,
  ts: Timestamp.make(millis, 0),
  model: "notes" as Operation.ModelName,
  record: "r1"
})
const create = (millis: number, fields: Operation.Fields, origin?: string): Operation.Create => ({ _tag: "Create", ...header(millis, origin), fields })
const update = (millis: number, fields: Operation.Fields, origin?: string): Operation.Update => ({ _tag: "Update", ...header(millis, origin), fields })
const del = (millis: number, origin?: string): Operation.Delete => ({ _tag: "Delete", ...header(millis, origin) })
const fold = (...ops: Array<Operation.Create | Operation.Update | Operation.Delete>) => ops.reduce(RecordState.apply, RecordState.empty)

describe("RecordState", () => {
  it("resolves concurrent writes by timestamp, then by origin", () => {
    expect(RecordState.values(fold(create(1, { t: "a" }), update(3, { t: "late" }), update(2, { t: "early" })))).toEqual({ t: "late" })
    const tie = fold(create(1, {}), update(5, { t: "from b" }, "peer-b"), update(5, { t: "from a" }, "peer-a"))
    expect(RecordState.values(tie)).toEqual({ t: "from b" })
  })

  it("a create never overwrites newer field values", () => {
    const state = fold(update(5, { t: "newer" }), create(3, { t: "older", n: 1 }))
    expect(RecordState.values(state)).toEqual({ t: "newer", n: 1 })
    expect(RecordState.isAlive(state)).toBe(true)
  })

  it("an update newer than a delete does not bring the record back", () => {
    const state = fold(create(1, { t: "a" }), del(2), update(3, { t: "b" }))
    expect(RecordState.isAlive(state)).toBe(false)
  })

  it("an update older than a delete is dropped", () => {
    const state = fold(create(1, { t: "a" }), del(3), update(2, { t: "b" }))
    expect(state.fields).toEqual({})
  })

  it("re-create after delete starts fresh, keeping only writes newer than the delete", () => {
    const state = fold(create(1, { t: "a", n: 1 }), del(2), update(3, { n: 2 }), create(4, { t: "again" }))
    expect(RecordState.isAlive(state)).toBe(true)
    expect(RecordState.values(state)).toEqual({ t: "again", n: 2 })
  })

  it("a create older than the delete stays deleted", () => {
    expect(RecordState.isAlive(fold(del(5), create(4, { t: "x" })))).toBe(false)
  })

  it("an update alone does not make a record visible", () => {
    expect(RecordState.isAlive(fold(update(1, { t: "x" })))).toBe(false)
  })

  it("fields named like Object.prototype members are registers like any other (never the inherited member)", () => {
    const names = ["constructor", "toString", "valueOf", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable", "toLocaleString", "__proto__"]
    const fields = Object.fromEntries(names.map((name, i) => [name, `v${i}`])) as Operation.Fields
    const state = fold(create(1, fields), update(2, { toString: "newer" }))
    expect(Object.keys(state.fields).sort()).toEqual([...names].sort())
    expect(RecordState.values(state)["toString"]).toBe("newer")
    expect(RecordState.values(state)["constructor"]).toBe("v0")
    expect(Object.getOwnPropertyDescriptor(RecordState.values(state), "__proto__")?.value).toBe("v7")
    // an update older than the register keeps the register; a delete clears them all
    expect(RecordState.values(fold(create(1, fields), update(2, { valueOf: "b" }), update(1, { valueOf: "a" })))["valueOf"]).toBe("b")
    expect(fold(create(1, fields), del(2)).fields).toEqual({})
  })
})
