import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as ParseError from "./parseError.js"

const failureOf = <A, I>(schema: Schema.Schema<A, I>, input: unknown) => {
  const result = Schema.decodeUnknownEither(schema)(input, { errors: "all" })
  if (Either.isRight(result)) throw new Error("expected a parse error")
  return result.left
}

describe("describing a parse error", () => {
  it("names where and what, in one line", () => {
    const schema = Schema.Struct({ request: Schema.Struct({ count: Schema.Int.pipe(Schema.between(1, 10)) }) })
    expect(ParseError.describe(failureOf(schema, { request: { count: 0 } }))).toBe("request.count: Expected a number between 1 and 10, actual 0")
  })

  it("a deeply nested value: a short line, not a stack overflow", () => {
    let nested: unknown = 1
    for (let i = 0; i < 20_000; i++) nested = [nested]
    const schema = Schema.Tuple(Schema.Literal(1), Schema.Record({ key: Schema.String, value: Schema.Number }))
    const error = failureOf(schema, [1, nested])
    const described = ParseError.describe(error)
    expect(described.length).toBeLessThanOrEqual(1024)
    expect(described.length).toBeGreaterThan(0)
  })

  it("a huge value and many issues: bounded, with a count of the rest", () => {
    const schema = Schema.Array(Schema.Number)
    const huge = Array.from({ length: 100_000 }, (_, i) => `not a number ${i}`)
    const described = ParseError.describe(failureOf(schema, huge), 300)
    expect(described.length).toBeLessThanOrEqual(300)
    const all = ParseError.describe(failureOf(schema, ["a", "b", "c", "d", "e"]))
    expect(all).toMatch(/^0: .*; 1: .*; 2: .*; and 2 more$/)
  })
})
