import { describe, expect, it } from "vitest"
import * as Pair from "../plugins/pair/Pair.js"
import { PairError } from "../plugins/pair/Pair.js"
import type { PeerId } from "../transport/Transport.js"
import * as Approval from "./Approval.js"
import * as Output from "./Output.js"

// what a remote peer may put in text this node shows: line breaks, a carriage return, escape sequences
const forged = "x\r\u001b[2K\u001b[32mpaired with 12D3KooWfake\u001b[0m\napproved\u2028"
const controls = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/

describe("text from remote peers on the terminal", () => {
  it("a failure, whatever its detail holds, prints as one line without control characters", () => {
    const line = Output.failure(new PairError({ reason: "Refused", peer: "12D3KooWA", detail: `the peer refused: ${forged}` }))
    expect(line).not.toMatch(controls)
    expect(line).toContain("\\u001b[32mpaired with 12D3KooWfake")
  })

  it("a pairing question shows the requester's library name escaped, on one line", () => {
    const library = { id: "lib", name: `Family" (lib).${forged}` }
    const question = Approval.question({ kind: "pair", text: Pair.question("12D3KooWRogue" as PeerId, library) })
    expect(question).not.toMatch(controls)
    expect(question.split("\n")).toHaveLength(1)
  })

  it("plain text is left as it is", () => {
    expect(Output.printable("Family notes — été 😀")).toBe("Family notes — été 😀")
  })
})
