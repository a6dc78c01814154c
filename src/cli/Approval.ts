/**
 * The terminal as a front end of a node's `Consent` (pairing requests
 * today): `weft serve` asks on its own terminal (`terminal`), or approves
 * everything with `--yes` (`Consent.approveAll`); `weft requests watch`
 * asks on another terminal, through the control socket (`prompt`).
 *
 * The prompt reads answers as lines from standard input, so it works on a
 * TTY and on a pipe alike; a line is held up to 1 KiB (a longer one is a
 * no). Questions are asked one at a time, in order; answers typed before a
 * question are dropped; a question settled meanwhile (the requester
 * withdrew it, it timed out, another front end answered it) is marked so on
 * the terminal. The prompt attends for as long as standard input is open:
 * once it is closed there is nobody to ask, and (with no other front end
 * attending) requests are refused at once as `Unattended`.
 *
 * @since 0.1.0
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Consent, type Pending, type QuestionEvent } from "../plugins/Consent.js"
import * as Framing from "../transport/Framing.js"
import * as Output from "./Output.js"

/** Most bytes of an answer line: a longer line is dropped as it arrives (and counts as a no). */
const MAX_ANSWER_BYTES = 1024

/** The question for one request, on one line (what a remote peer wrote is escaped). */
export const question = (pending: Pick<Pending, "kind" | "text">): string =>
  `${Output.printable(pending.kind)} request: ${Output.printable(pending.text)}. Approve? [y/N] `

/** Whether an answer approves. */
const approves = (answer: string) => /^\s*y(es)?\s*$/i.test(answer)

/** Where questions come from, and where answers go. */
export interface Source<E> {
  /** The questions waiting, then each one asked or settled; read for as long as the prompt attends. */
  readonly events: Stream.Stream<QuestionEvent, E>
  /** Answers a question (an answer that comes too late fails: somebody else settled it). */
  readonly answer: (id: string, approve: boolean) => Effect.Effect<void, unknown>
}

/**
 * Asks each question of `source` on this terminal, until standard input is
 * closed (the events stop being read then) or `source` ends; it fails with
 * the error of `source`.
 */
export const prompt = <E>(source: Source<E>): Effect.Effect<void, E, Scope.Scope> =>
  Effect.gen(function*() {
    // only the latest line counts (lines typed while nothing is asked are dropped anyway): piping
    // endless input (`yes | weft serve`) holds one line, not all of them
    const answers = yield* Effect.acquireRelease(Queue.sliding<string>(1), Queue.shutdown)
    const closed = yield* Deferred.make<void>()
    // standard input, line by line; once it is closed nobody can answer
    const input = NodeStream.fromReadable<Error, Uint8Array>(() => process.stdin, (error) => error as Error, { closeOnDone: false })
    yield* Effect.forkScoped(Effect.scoped(Effect.gen(function*() {
      const reader = yield* Framing.reader(input)
      while (true) {
        const line = yield* reader.line(MAX_ANSWER_BYTES)
        if (Option.isNone(line)) return
        // an answer that long is no answer: it refuses
        yield* Queue.offer(answers, line.value._tag === "Line" ? line.value.text : "")
      }
    }).pipe(Effect.ignore, Effect.ensuring(Deferred.succeed(closed, undefined)))))

    // questions in the order asked; a question settled before its turn is skipped (each is known by id)
    const asked = yield* Queue.unbounded<Pending>()
    const settled = new Map<string, Deferred.Deferred<string>>()
    const settlement = (id: string) => {
      let done = settled.get(id)
      if (done === undefined) {
        done = Deferred.unsafeMake<string>(FiberId.none)
        settled.set(id, done)
      }
      return done
    }
    const follow = Stream.runForEach(source.events, (event) =>
      event._tag === "Asked"
        ? settled.has(event.question.id) ? Effect.void : Effect.zipRight(Effect.sync(() => settlement(event.question.id)), Queue.offer(asked, event.question))
        : Deferred.succeed(settlement(event.id), event.outcome))

    const one = (pending: Pending) =>
      Effect.gen(function*() {
        const done = settlement(pending.id)
        if (yield* Deferred.isDone(done)) return
        yield* Queue.takeAll(answers)
        yield* Console.log(question(pending))
        const answer = yield* Effect.raceFirst(
          Effect.map(Queue.take(answers), Option.some),
          Effect.as(Effect.raceFirst(Deferred.await(done), Deferred.await(closed)), Option.none<string>())
        )
        if (Option.isNone(answer)) {
          return yield* Console.log(
            (yield* Deferred.isDone(done))
              ? "(the request was withdrawn, timed out, or was answered elsewhere)"
              : "(standard input is closed: nobody can answer)"
          )
        }
        const approved = approves(answer.value)
        const taken = yield* Effect.either(source.answer(pending.id, approved))
        yield* Console.log(taken._tag === "Right" ? (approved ? "approved" : "refused") : "(the request was settled before this answer)")
      })
    const asking = Effect.forever(Effect.flatMap(Queue.take(asked), one))

    // attending while input is open: once it closes the events stop being read (the node stops
    // counting on this prompt), and the question being asked is let go
    yield* Effect.raceFirst(Effect.zipRight(follow, Effect.never), Deferred.await(closed)).pipe(
      Effect.raceFirst(Effect.zipRight(asking, Effect.never))
    )
  })

/** Asks the node's questions on this terminal (`weft serve`) until the scope closes or standard input does. */
export const terminal: Effect.Effect<void, never, Consent | Scope.Scope> = Effect.gen(function*() {
  const consent = yield* Consent
  // attending before this returns (a request that comes right after is asked), until the prompt ends
  const attendance = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
  yield* consent.attend.pipe(Scope.extend(attendance))
  yield* Effect.forkScoped(prompt({ events: consent.watch, answer: consent.answer }).pipe(Effect.ensuring(Scope.close(attendance, Exit.void))))
})
