import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { PassThrough } from "node:stream"
import type { PeerId } from "../transport/Transport.js"
import * as Approval from "./Approval.js"

const request = { peer: "12D3KooWpeer" as PeerId, library: { id: "lib", name: "Family" } }

/** Runs `effect` with `input` as standard input. */
const withStdin = <A, E, R>(input: PassThrough, effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const original = Object.getOwnPropertyDescriptor(process, "stdin")!
      Object.defineProperty(process, "stdin", { value: input, configurable: true, writable: true })
      return original
    }),
    () => effect,
    (original) => Effect.sync(() => Object.defineProperty(process, "stdin", original))
  )

/** The answer to one question, given `typed` once it is asked. */
const answerTo = (typed: string) => {
  const input = new PassThrough()
  return withStdin(input, Effect.scoped(Effect.gen(function*() {
    const approve = yield* Approval.terminal
    const asked = yield* Effect.fork(approve(request))
    yield* Effect.sleep(Duration.millis(50))
    input.write(typed)
    return yield* Fiber.join(asked).pipe(Effect.timeout(Duration.seconds(2)))
  })))
}

describe("the pairing prompt", () => {
  it.scopedLive("y approves; Enter alone, anything else, or a line over the bound refuses at once", () =>
    Effect.gen(function*() {
      expect(yield* answerTo("y\n")).toBe(true)
      expect(yield* answerTo(" Yes \n")).toBe(true)
      expect(yield* answerTo("\n")).toBe(false)
      expect(yield* answerTo("no\n")).toBe(false)
      expect(yield* answerTo("y".repeat(10_000) + "\n")).toBe(false)
    }))
})
