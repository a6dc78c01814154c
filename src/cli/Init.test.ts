import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { existsSync, readdirSync, rmSync } from "node:fs"
import { join } from "node:path"
import * as DataDir from "../node/DataDir.js"
import { init } from "./Init.js"
import * as Processes from "./testing/Processes.js"

describe("init", () => {
  it.scopedLive("concurrent inits of one directory make one identity, one library and one database", () =>
    Effect.gen(function*() {
      const dir = yield* Processes.tempDir("weft-init")
      const outcomes = yield* Effect.all(Array.from({ length: 4 }, () => init(dir)), { concurrency: "unbounded" })
      expect(outcomes.filter((outcome) => outcome.created)).toHaveLength(1)
      expect(new Set(outcomes.map((outcome) => outcome.peerId)).size).toBe(1)
      expect(new Set(outcomes.map((outcome) => JSON.stringify(outcome.libraries))).size).toBe(1)
      const [library] = outcomes[0]!.libraries
      expect(readdirSync(join(dir, "libraries")).filter((file) => file.endsWith(".db"))).toEqual([`${library!.id}.db`])
      // and once more, later: nothing changes
      expect(yield* init(dir)).toEqual({ ...outcomes[0], created: false })
    }))

  it.scopedLive("an init that finds another one half done waits for it, then completes what is missing", () =>
    Effect.gen(function*() {
      const dir = yield* Processes.tempDir("weft-init")
      const first = yield* init(dir)
      const paths = DataDir.layout(dir)
      const database = paths.database(first.libraries[0]!.id)
      // as if another init had written the identity and libraries but not yet the database, and holds the lock
      rmSync(database)
      yield* Processes.lockHolder(paths.lock, 300)
      const second = yield* init(dir)
      expect(second).toEqual({ ...first, created: false })
      expect(existsSync(database)).toBe(true)
    }), 30_000)
})
