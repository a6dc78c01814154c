import { describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as Fuzz from "../transport/testing/Fuzz.js"
import * as Operation from "./Operation.js"
import { arbitraryOperation } from "./testing/Arbitraries.js"

const isDecodeError = (e: unknown) => e instanceof Operation.OperationDecodeError

describe("Operation codec under structure-aware fuzzing", () => {
  it("decode: every mutated operation is an operation or an OperationDecodeError", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.msgpack(arbitraryOperation.map(Operation.encode)),
      decode: (c) => Operation.decode(c.bytes),
      isTypedError: isDecodeError
    }), Fuzz.testTimeout())

  it("decodeBatch: every mutated batch is operations or an OperationDecodeError", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.msgpack(fc.array(arbitraryOperation, { minLength: 1, maxLength: 6 }).map(Operation.encodeBatch)),
      decode: (c) => Operation.decodeBatch(c.bytes),
      isTypedError: isDecodeError
    }), Fuzz.testTimeout())
})
