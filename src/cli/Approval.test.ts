import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { PassThrough } from "node:stream"
import * as Consent from "../plugins/Consent.js"
import type { PeerId } from "../transport/Transport.js"
import * as Approval from "./Approval.js"

const question: Consent.Question = { kind: "pair", peer: "12D3KooWpeer" as PeerId, text: `peer 12D3KooWpeer asks to share library "Family" (lib)` }

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

/** The decision on one question, given `typed` on the terminal once it is asked. */
const answerTo = (typed: string) => {
  const input = new PassThrough()
  return withStdin(input, Effect.scoped(Effect.gen(function*() {
    const consent = yield* Consent.make()
    yield* Approval.terminal.pipe(Effect.provideService(Consent.Consent, consent))
    const asked = yield* Effect.fork(consent.ask(question))
    yield* Effect.sleep(Duration.millis(50))
    input.write(typed)
    return yield* Fiber.join(asked).pipe(Effect.timeout(Duration.seconds(2)))
  })))
}

describe("the pairing prompt", () => {
  it.scopedLive("y approves; Enter alone, anything else, or a line over the bound refuses at once", () =>
    Effect.gen(function*() {
      expect(yield* answerTo("y\n")).toBe("approved")
      expect(yield* answerTo(" Yes \n")).toBe("approved")
      expect(yield* answerTo("\n")).toBe("declined")
      expect(yield* answerTo("no\n")).toBe("declined")
      // refused before the line's end arrives
      expect(yield* answerTo("y".repeat(10_000))).toBe("declined")
    }))

  it.scopedLive("once standard input is closed nobody can answer: questions are refused at once as unattended", () =>
    Effect.gen(function*() {
      const input = new PassThrough()
      const decision = yield* withStdin(input, Effect.scoped(Effect.gen(function*() {
        const consent = yield* Consent.make()
        yield* Approval.terminal.pipe(Effect.provideService(Consent.Consent, consent))
        input.end()
        yield* Effect.sleep(Duration.millis(50))
        return yield* consent.ask(question).pipe(Effect.timeout(Duration.seconds(1)))
      })))
      expect(decision).toBe("unattended")
    }))
})
