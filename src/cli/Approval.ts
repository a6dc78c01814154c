/**
 * How `weft serve` answers pairing requests: by asking on the terminal, or
 * approving everything (`--yes`, for scripts and tests).
 *
 * The terminal prompt reads answers as lines from standard input, so it
 * works on a TTY and on a pipe alike; a line is held up to 1 KiB (a longer
 * one is a no). Questions are asked one at a time;
 * answers typed before a question are dropped; a question the requester
 * withdraws (or that times out) is marked so on the terminal. Once standard
 * input is closed there is nobody to ask, and every request is refused.
 *
 * @since 0.1.0
 */
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Pair from "../plugins/pair/Pair.js"
import * as Lines from "./internal/lines.js"
import * as Output from "./Output.js"

/** Most bytes of an answer line: a longer line is dropped as it arrives (and counts as a no). */
const MAX_ANSWER_BYTES = 1024

/** Decides a pairing request. */
export type Approve = (request: Pair.Request) => Effect.Effect<boolean>

/** Approves every request, saying so in the log. */
export const always: Approve = (request) =>
  Effect.as(Effect.logInfo(`approving the pairing of library ${request.library.name} (${request.library.id}) with ${request.peer} (--yes)`), true)

/** The question for one request. */
export const question = (request: Pair.Request): string =>
  `pair request: peer ${request.peer} asks to share library "${Output.printable(request.library.name)}" (${Output.printable(request.library.id)}). Approve? [y/N] `

/** Asks on the terminal until the scope closes. */
export const terminal: Effect.Effect<Approve, never, Scope.Scope> = Effect.gen(function*() {
  // only the latest line counts (lines typed while nothing is asked are dropped anyway): piping
  // endless input (`yes | weft serve`) holds one line, not all of them
  const answers = yield* Effect.acquireRelease(Queue.sliding<string>(1), Queue.shutdown)
  const closed = yield* Deferred.make<void>()
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      const input = process.stdin
      const onData = Lines.split(MAX_ANSWER_BYTES, {
        onLine: (line) => Queue.unsafeOffer(answers, line),
        // an answer that long is no answer: it refuses, and the input is read on
        onOversize: () => {
          Queue.unsafeOffer(answers, "")
          return "skip"
        }
      })
      const onEnd = () => Deferred.unsafeDone(closed, Exit.void)
      input.on("data", onData)
      input.once("end", onEnd)
      input.once("close", onEnd)
      input.once("error", onEnd)
      return { input, onData, onEnd }
    }),
    ({ input, onData, onEnd }) =>
      Effect.sync(() => {
        input.removeListener("data", onData)
        input.removeListener("end", onEnd)
        input.removeListener("close", onEnd)
        input.removeListener("error", onEnd)
        input.pause()
      })
  )
  const lock = yield* Effect.makeSemaphore(1)
  return (request) =>
    lock.withPermits(1)(Effect.gen(function*() {
      yield* Queue.takeAll(answers)
      if (yield* Deferred.isDone(closed)) {
        yield* Effect.logWarning(`refusing the pairing request of ${request.peer}: standard input is closed, so nobody can approve it (use --yes to approve all)`)
        return false
      }
      yield* Console.log(question(request))
      const answer = yield* Effect.raceFirst(Queue.take(answers), Effect.as(Deferred.await(closed), ""))
      const approved = /^\s*y(es)?\s*$/i.test(answer)
      yield* Console.log(approved ? "approved" : "refused")
      return approved
    }).pipe(Effect.onInterrupt(() => Console.log("(the request was withdrawn or timed out)"))))
})
