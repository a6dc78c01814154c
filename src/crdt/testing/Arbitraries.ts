/**
 * fast-check arbitraries of single well-formed operations, drawn directly
 * (no simulated peers, no Automerge): for codec tests and fuzzing, where
 * what matters is every shape the wire form can take, not a history that
 * makes sense. `Edit` changes are opaque bytes to the codec.
 *
 * @since 0.1.0
 */
import * as fc from "fast-check"
import type * as Operation from "../Operation.js"
import type { NodeId, Timestamp } from "../Timestamp.js"
import type { Value } from "../Value.js"

/** Node ids, a few that repeat (so batches share origins). */
export const arbitraryNodeId: fc.Arbitrary<NodeId> = fc.oneof(
  { arbitrary: fc.constantFrom("peer-a", "peer-b", "12D3KooWQmZ8cW", "o.r~i_g-n", "x".repeat(128)), weight: 4 },
  { arbitrary: fc.string({ unit: fc.constantFrom(..."Az09._~-"), minLength: 1, maxLength: 16 }), weight: 1 }
) as fc.Arbitrary<NodeId>

/** Any timestamp (16 hex digits). */
export const arbitraryTimestamp: fc.Arbitrary<Timestamp> = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
  .map((n) => n.toString(16).padStart(16, "0") as Timestamp)

/** Field values of every kind. */
export const arbitraryValue: fc.Arbitrary<Value> = fc.oneof(
  fc.constantFrom<Value>(null, true, false, 0, -1, 1.5, "", "text"),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 12 }),
  fc.uint8Array({ maxLength: 8 }),
  fc.array(fc.string({ maxLength: 3 }), { maxLength: 3 }),
  fc.dictionary(fc.constantFrom("a", "b"), fc.integer(), { maxKeys: 2 })
)

const header = {
  origin: arbitraryNodeId,
  seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  ts: arbitraryTimestamp,
  model: fc.constantFrom("notes", "tasks", "a_b9") as fc.Arbitrary<Operation.ModelName>,
  record: fc.string({ minLength: 1, maxLength: 12 })
}
const fields = fc.dictionary(fc.constantFrom("title", "done", "tags", "body", "Z_9"), arbitraryValue, { maxKeys: 4 })

/** Operations of every kind. */
export const arbitraryOperation: fc.Arbitrary<Operation.Operation> = fc.oneof(
  fc.record({ _tag: fc.constant("Create" as const), ...header, fields }),
  fc.record({ _tag: fc.constant("Update" as const), ...header, fields }),
  fc.record({ _tag: fc.constant("Delete" as const), ...header }),
  fc.record({
    _tag: fc.constant("Edit" as const),
    ...header,
    field: fc.constantFrom("body", "text"),
    changes: fc.array(fc.uint8Array({ minLength: 1, maxLength: 24 }), { minLength: 1, maxLength: 3 })
  })
)
