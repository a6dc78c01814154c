import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "fast-check"
import * as Convergence from "../src/plugins/sync/testing/Convergence.js"
import { models } from "./models.js"

const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? 200)

describe("convergence (property)", () => {
  it("peers converge to the reference model whatever the network does", async () => {
    await Convergence.check({ models, numRuns: runs })
  }, 900_000)
})

describe("convergence: fixed schedules", () => {
  it("a partition with concurrent edits on both sides, a crash and a restart", async () => {
    const plan: Convergence.Plan = {
      peers: 3,
      seed: 42,
      steps: [
        { _tag: "Connect", a: 0, b: 1 },
        { _tag: "Connect", a: 1, b: 2 },
        { _tag: "Edit", peer: 0, edit: { model: "notes", record: "r0", kind: "update", values: { title: "a", done: false, tags: [], body: "hello" }, splice: undefined } },
        { _tag: "Wait", millis: 100 },
        { _tag: "Partition", side: [0] },
        { _tag: "Edit", peer: 0, edit: { model: "notes", record: "r0", kind: "splice", values: {}, splice: { field: "body", at: 0, deleteCount: 0, insert: ">> " } } },
        { _tag: "Edit", peer: 2, edit: { model: "notes", record: "r0", kind: "update", values: { done: true, body: "hello world" }, splice: undefined } },
        { _tag: "Crash", peer: 1 },
        { _tag: "Edit", peer: 2, edit: { model: "tasks", record: "r1", kind: "update", values: { label: "todo", estimate: null }, splice: undefined } },
        { _tag: "Restart", peer: 1 },
        { _tag: "Edit", peer: 1, edit: { model: "tasks", record: "r1", kind: "delete", values: {}, splice: undefined } }
      ]
    }
    await Effect.runPromise(Convergence.run(plan, { models }))
  }, 60_000)

  it("prints a schedule readably", () => {
    const plan = fc.sample(Convergence.arbitraryPlan({ models, maxSteps: 5 }), { numRuns: 1, seed: 7 })[0]!
    const text = fc.stringify(plan)
    expect(text.split("\n")[0]).toMatch(/^\d peers \([^)]*\), network seed \d+:$/)
    expect(text.split("\n").length).toBe(plan.steps.length + 1)
  })
})
