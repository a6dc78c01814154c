import { describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { arbitraryNodeId, arbitraryTimestamp, arbitraryValue } from "../crdt/testing/Arbitraries.js"
import type * as RecordState from "../crdt/RecordState.js"
import * as Timestamp from "../crdt/Timestamp.js"
import * as Fuzz from "../transport/testing/Fuzz.js"
import { StorageError } from "./Database.js"
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
