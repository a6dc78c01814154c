import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { arbitraryNodeId, arbitraryTimestamp, arbitraryValue } from "../crdt/testing/Arbitraries.js"
import type * as RecordState from "../crdt/RecordState.js"
import * as Timestamp from "../crdt/Timestamp.js"
import * as Fuzz from "../transport/testing/Fuzz.js"
import { StorageError } from "./Database.js"
import * as Model from "./Model.js"
import * as OperationLog from "./OperationLog.js"
import * as Projection from "./Projection.js"

const stamp = fc.tuple(arbitraryTimestamp, arbitraryNodeId).map(([ts, node]) => Timestamp.stamp(ts, node))

/** Record states as the engine stores them. */
const arbitraryState: fc.Arbitrary<RecordState.RecordState> = fc.record({
  created: fc.option(stamp, { nil: null }),
  deleted: fc.option(stamp, { nil: null }),
  fields: fc.dictionary(fc.constantFrom("title", "done", "tags", "body"), fc.record({ stamp, value: arbitraryValue }), { maxKeys: 4 })
})

// origins are numbered as states are encoded, as the engine's writer numbers them
const origins = OperationLog.emptyOrigins()
// some field names numbered, as the engine numbers declared ones; others left as text, as in older states
origins.words.numbers.set("title", 1).set("tags", 2)
origins.words.names.set(1, "title").set(2, "tags")

describe("stored record state under structure-aware fuzzing", () => {
  it("decodeState: every mutated state is a state or a StorageError", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.msgpack(arbitraryState.map((state) => Projection.encodeState(state, origins))),
      decode: (c) => Projection.decodeState(c.bytes, "notes/r1", origins),
      isTypedError: (e) => e instanceof StorageError
    }), Fuzz.testTimeout())
})

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, done: Schema.Boolean, tags: Schema.Array(Schema.String) }))
/** A live row's columns for a state (values its columns hold are left out of the stored state). */
const rowOf = (state: RecordState.RecordState) => ({
  id: "r1",
  title: state.fields.title?.value ?? null,
  done: typeof state.fields.done?.value === "boolean" ? (state.fields.done.value ? 1 : 0) : null,
  tags: null
})

describe("stored record state: the direct checks agree with the Schema", () => {
  it("decodeState and the Schema's decode give the same state, or both refuse, on valid and damaged states", () =>
    fc.assert(fc.property(
      Fuzz.msgpack(arbitraryState.map((state) => Projection.encodeState(state, origins, notes)), { validShare: 0.2 }),
      arbitraryState,
      (c, state) => {
        for (const columns of [undefined, { model: notes, row: rowOf(state) }]) {
          const direct = Projection.decodeState(c.bytes, "notes/r1", origins, columns)
          const checked = Projection.decodeStateChecked(c.bytes, "notes/r1", origins, columns)
          expect(Either.isRight(direct)).toBe(Either.isRight(checked))
          if (Either.isRight(direct) && Either.isRight(checked)) expect(direct.right).toEqual(checked.right)
        }
      }
    ), { numRuns: 3_000 }))

  it("a state the writer encodes reads back through the direct checks", () =>
    fc.assert(fc.property(arbitraryState, (state) => {
      const direct = Projection.decodeState(Projection.encodeState(state, origins), "notes/r1", origins)
      expect(direct).toEqual(Projection.decodeStateChecked(Projection.encodeState(state, origins), "notes/r1", origins))
      expect(Either.isRight(direct)).toBe(true)
    }), { numRuns: 500 }))
})
