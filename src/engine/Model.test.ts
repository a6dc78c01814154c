import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { isValue } from "../crdt/Value.js"
import * as Model from "./Model.js"

const things = Model.make("things", Schema.Struct({ name: Schema.String, size: Schema.Number, done: Schema.Boolean }))

describe("Model: validating remote values", () => {
  it("a bare string, number or boolean field accepts exactly what its Schema accepts and an operation can carry", () =>
    fc.assert(fc.property(
      fc.oneof(fc.anything(), fc.constantFrom(Number.NaN, Infinity, -Infinity, -0, "\ud800", "a\udc00b", "ok", 1.5, true)),
      (value) => {
        for (const field of things.fields.values()) {
          const expected = Either.isRight(Schema.decodeUnknownEither(field.schema)(value)) && isValue(value)
          expect(Either.isRight(field.validate(value))).toBe(expected)
        }
      }
    ), { numRuns: 5_000 }))
})
