import { describe as group, expect, it } from "@effect/vitest"
import { describe } from "./describe.js"

group("describe", () => {
  it("describes any value without calling what it carries, never throwing, in bounded length", () => {
    const hostile: ReadonlyArray<unknown> = [
      { toString: 1 },
      { toString: () => { throw new Error("no") }, valueOf: () => { throw new Error("no") } },
      Object.create(null),
      { [Symbol.toPrimitive]: () => { throw new Error("no") } },
      new Proxy({}, { get: () => { throw new Error("no") } }),
      Symbol("s")
    ]
    for (const u of hostile) expect(() => `${describe(u)}`).not.toThrow()
    expect(() => `${String({ toString: 1 })}`).toThrow(TypeError) // what it replaces
    expect(describe({ toString: 1 })).toBe("an object")
    expect(describe([1, 2])).toBe("an array of 2")
    expect(describe(new Uint8Array(3))).toBe("3 bytes")
    expect(describe(7)).toBe("7")
    expect(describe(null)).toBe("null")
    expect(describe("x".repeat(1000)).length).toBeLessThanOrEqual(64)
    expect(describe("hi")).toBe(`"hi"`)
  })
})
