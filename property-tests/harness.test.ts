import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import type * as Engine from "../src/engine/Engine.js"
import * as Convergence from "../src/plugins/sync/testing/Convergence.js"
import { models } from "./models.js"

/** A peer that applies remote deletes as empty updates: its projection keeps records everyone else deleted. */
const ignoresRemoteDeletes = (engine: Engine.Service): Engine.Service => ({
  ...engine,
  ingest: (ops) => engine.ingest(ops.map((op) => (op._tag === "Delete" ? { ...op, _tag: "Update", fields: {} } : op)))
})

describe("the convergence harness itself", () => {
  it("finds a peer that diverges, shrinks the schedule, prints it readably and replays it from the seed", async () => {
    const options: Convergence.Options = { models, peers: [2, 3], maxSteps: 20, wrapEngine: ignoresRemoteDeletes }
    const first = await fc.check(Convergence.property(options), { numRuns: 100, seed: 20261125 })
    expect(first.failed).toBe(true)
    const schedule = fc.stringify(first.counterexample?.[0])
    // shrunk to the essence: a write, a delete, peers that exchange them
    expect(schedule).toContain("delete")
    expect(schedule.split("\n").length).toBeLessThanOrEqual(8)
    expect(String(first.errorInstance)).toMatch(/differs from the reference model|holds/)
    // the same seed and path replay the same counterexample
    const replay = await fc.check(Convergence.property(options), { seed: first.seed, path: first.counterexamplePath!, numRuns: 1, endOnFailure: true })
    expect(replay.failed).toBe(true)
    expect(fc.stringify(replay.counterexample?.[0])).toBe(schedule)
  }, 300_000)
})
