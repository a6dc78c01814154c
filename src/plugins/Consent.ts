/**
 * Consent: plugins ask the node's user before doing what a remote peer asks
 * (pairing into a library; receiving files next), and whoever fronts the
 * node answers: the CLI's prompt, `--yes`, an app's dialog, several at once.
 *
 * - A plugin calls `ask` with the question; it waits for the decision.
 *   Interrupting it withdraws the question (the requester gave up).
 * - Front ends `attend` while someone can answer (a prompt with a person at
 *   it, a dialog), follow `questions` (each question as it is asked, and
 *   when it is settled) or `pending`, and call `answer`. The first answer
 *   decides; any later one fails with `AlreadyDecided`, so a question is
 *   decided exactly once however many front ends watch the node.
 * - With no front end attending there is nobody to ask: a question is
 *   `Unattended` at once, and the questions waiting when the last front
 *   end leaves (it closed, or crashed) are settled so.
 * - Bounds: at most `maxPending` questions wait for the user at once; at
 *   most one of each kind per peer; at most `maxPendingPerSource` from one
 *   source (the host a request came from, see `PeerAddress.host`). A
 *   question beyond is `Busy` without asking: throwaway identities are free
 *   to make, addresses are not, so those of one host hold a small share of
 *   the queue and a request from elsewhere is still asked (the transport
 *   bounds strangers' connections below `maxPending`, so by default they
 *   cannot fill it). A question nobody answers within its timeout is
 *   `Timeout`; a peer whose question of a kind the user declined is
 *   `CoolingDown` for that kind during `askAgainAfter`, without asking.
 *
 * Time is the `Clock`'s (timeouts and cool-downs), so `TestClock` drives it.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { PeerId } from "../transport/Transport.js"

/** What a plugin asks. */
export interface Question {
  /** What kind of request this is (`pair`, `spacedrop`): cool-downs are per kind and peer. */
  readonly kind: string
  /** The authenticated peer that asks. */
  readonly peer: PeerId
  /** The question as a person reads it, without the "approve?" (e.g. `peer … asks to share library "Photos" (…)`). */
  readonly text: string
  /** What a front end may show or act on, by name (e.g. `library`, `libraryName`). */
  readonly details?: Readonly<Record<string, string>>
  /**
   * Where the request came from: the requester's host (`PeerAddress.host` of
   * its connection's address). Questions of one source are bounded apart.
   */
  readonly source?: string | undefined
}

/** A question waiting for an answer, as front ends see it. */
export const Pending = Schema.Struct({
  id: Schema.String,
  kind: Schema.String,
  peer: PeerId,
  text: Schema.String,
  details: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** When it was asked and when it times out, in ms since the epoch (the `Clock`'s). */
  askedAt: Schema.Number,
  expiresAt: Schema.Number
})
export type Pending = typeof Pending.Type

/** How a question ended. */
export type Decision =
  | "approved"
  | "declined"
  /** Nobody answered in time. */
  | "timeout"
  /**
   * Not asked: `maxPending` questions were waiting already, or
   * `maxPendingPerSource` from the same source, or one of the same kind from
   * the same peer.
   */
  | "busy"
  /** The user declined this peer's question of this kind moments ago: not asked. */
  | "coolingDown"
  /** No front end attends: nobody could be asked. */
  | "unattended"

/** How a question that was asked was settled. */
export const Settlement = Schema.Literal("approved", "declined", "timeout", "withdrawn", "unattended")
export type Settlement = typeof Settlement.Type

/** What front ends follow: a question asked, or settled (answered here or elsewhere, timed out, withdrawn). */
export const QuestionEvent = Schema.Union(
  Schema.TaggedStruct("Asked", { question: Pending }),
  Schema.TaggedStruct("Settled", { id: Schema.String, outcome: Settlement })
)
export type QuestionEvent = typeof QuestionEvent.Type

/** An answer that could not be taken. */
export class ConsentError extends Schema.TaggedError<ConsentError>("weft/ConsentError")("ConsentError", {
  reason: Schema.Literal(
    "NotFound", // no question with this id is waiting (never asked, or settled and forgotten)
    "AlreadyDecided" // another answer, a timeout, a withdrawal or the last front end leaving settled it first
  ),
  id: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `consent ${this.reason} (${this.id}): ${this.detail}`
  }
}

/** Options of the service. */
export interface Options {
  /** Questions waiting for the user at once (default `MAX_PENDING`). */
  readonly maxPending?: number
  /** Questions from one source (host) waiting at once (default `MAX_PENDING_PER_SOURCE`). */
  readonly maxPendingPerSource?: number
  /** How long a question waits for an answer (default `DEFAULT_TIMEOUT`). */
  readonly timeout?: Duration.DurationInput
  /** How long a declined peer's questions of that kind are refused without asking (default `ASK_AGAIN_AFTER`). */
  readonly askAgainAfter?: Duration.DurationInput
}

/**
 * Questions waiting at once, by default: more than the transport lets
 * strangers hold connections (`Libp2pTransport.DEFAULT_MAX_STRANGER_CONNECTIONS`,
 * each peer asking one question of a kind at a time), so they cannot fill it.
 */
export const MAX_PENDING = 32
/** Questions from one source waiting at once, by default. */
export const MAX_PENDING_PER_SOURCE = 2
/** How long a question waits for an answer, by default. */
export const DEFAULT_TIMEOUT = Duration.seconds(60)
/** How long a declined peer waits before the user is asked again, by default. */
export const ASK_AGAIN_AFTER = Duration.seconds(30)
/** Declined peers remembered at most (the oldest are forgotten first). */
const MAX_DECLINED = 1024
/** Settled questions remembered, so a late answer gets `AlreadyDecided` rather than `NotFound`. */
const MAX_SETTLED = 256

/** The consent service. */
export interface Service {
  /** Asks the user and waits for the decision; interrupting it withdraws the question. */
  readonly ask: (question: Question, options?: { readonly timeout?: Duration.DurationInput }) => Effect.Effect<Decision>
  /** Questions waiting now, oldest first. */
  readonly pending: Effect.Effect<ReadonlyArray<Pending>>
  /** Questions asked and settled from now on (subscribed at once: none after this returns is missed). */
  readonly questions: Effect.Effect<Stream.Stream<QuestionEvent>, never, Scope.Scope>
  /** Answers a waiting question; the first answer decides. */
  readonly answer: (id: string, approve: boolean) => Effect.Effect<void, ConsentError>
  /** A front end attends, able to answer, until the scope closes. */
  readonly attend: Effect.Effect<void, never, Scope.Scope>
  /**
   * A front end's view: the questions waiting now (as `Asked`), then every
   * question asked or settled, attending for as long as it is read. A
   * question asked while it starts can come twice: front ends go by id.
   */
  readonly watch: Stream.Stream<QuestionEvent>
  /** How many front ends attend now. */
  readonly attending: Effect.Effect<number>
}

/** The consent service. */
export class Consent extends Context.Tag("weft/plugins/Consent")<Consent, Service>() {}

/** Makes the service. */
export const make = (options: Options = {}): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const maxPending = options.maxPending ?? MAX_PENDING
    const maxPendingPerSource = options.maxPendingPerSource ?? MAX_PENDING_PER_SOURCE
    const defaultTimeout = options.timeout ?? DEFAULT_TIMEOUT
    const askAgainAfter = Duration.toMillis(Duration.decode(options.askAgainAfter ?? ASK_AGAIN_AFTER))
    const events = yield* Effect.acquireRelease(PubSub.unbounded<QuestionEvent>(), PubSub.shutdown)
    // waiting questions, in the order asked; each settled exactly once through its deferred
    const waiting = new Map<string, {
      readonly question: Pending
      readonly source: string | undefined
      readonly settled: Deferred.Deferred<Settlement>
    }>()
    const settled = new Map<string, Settlement>()
    // declined (kind, peer), and until when they are not asked again (insertion order: oldest first)
    const declined = new Map<string, number>()
    let next = 0
    let attending = 0

    const settle = (id: string, outcome: Settlement): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const entry = waiting.get(id)
        if (entry === undefined) return Effect.succeed(false)
        return Effect.flatMap(Deferred.succeed(entry.settled, outcome), (first) => {
          if (!first) return Effect.succeed(false)
          waiting.delete(id)
          settled.set(id, outcome)
          for (const old of settled.keys()) {
            if (settled.size <= MAX_SETTLED) break
            settled.delete(old)
          }
          return Effect.as(PubSub.publish(events, { _tag: "Settled", id, outcome }), true)
        })
      })

    const ask = (question: Question, askOptions: { readonly timeout?: Duration.DurationInput } = {}): Effect.Effect<Decision> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const key = `${question.kind}\u0000${question.peer}`
          const timeout = Duration.decode(askOptions.timeout ?? defaultTimeout)
          const settledBy = yield* Deferred.make<Settlement>()
          // checked and taken in one step: questions arriving together cannot all pass the check first
          const taken = yield* Effect.sync(() => {
            if (attending === 0) return "unattended" as const
            if ((declined.get(key) ?? 0) > now) return "coolingDown" as const
            if (waiting.size >= maxPending) return "busy" as const
            let fromSource = 0
            for (const { question: other, source } of waiting.values()) {
              if (other.kind === question.kind && other.peer === question.peer) return "busy" as const
              if (question.source !== undefined && source === question.source) fromSource++
            }
            if (fromSource >= maxPendingPerSource) return "busy" as const
            const pending: Pending = {
              id: `q${++next}`,
              kind: question.kind,
              peer: question.peer,
              text: question.text,
              details: question.details ?? {},
              askedAt: now,
              expiresAt: now + Duration.toMillis(timeout)
            }
            const entry = { question: pending, source: question.source, settled: settledBy }
            waiting.set(pending.id, entry)
            return entry
          })
          if (typeof taken === "string") return taken
          const entry = taken
          const id = entry.question.id
          const pending = entry.question
          yield* PubSub.publish(events, { _tag: "Asked", question: pending })
          const outcome = yield* restore(Deferred.await(entry.settled).pipe(
            Effect.timeoutTo({
              duration: timeout,
              onSuccess: (outcome): Option.Option<Settlement> => Option.some(outcome),
              onTimeout: (): Option.Option<Settlement> => Option.none()
            })
          )).pipe(
            Effect.onInterrupt(() => settle(id, "withdrawn")),
            Effect.flatMap(Option.match({
              onSome: (outcome) => Effect.succeed(outcome),
              // an answer that raced the timeout wins if it came first
              onNone: () => Effect.zipRight(settle(id, "timeout"), Deferred.await(entry.settled))
            }))
          )
          if (outcome === "declined") {
            declined.delete(key)
            declined.set(key, (yield* Clock.currentTimeMillis) + askAgainAfter)
            const at = yield* Clock.currentTimeMillis
            for (const [oldest, until] of declined) {
              if (declined.size <= MAX_DECLINED && until > at) break
              declined.delete(oldest)
            }
          }
          return outcome === "withdrawn" ? "timeout" as const : outcome
        })
      )

    const answer = (id: string, approve: boolean) =>
      Effect.flatMap(settle(id, approve ? "approved" : "declined"), (decided) => {
        if (decided) return Effect.void
        const before = settled.get(id)
        return Effect.fail(
          before === undefined && !waiting.has(id)
            ? new ConsentError({ reason: "NotFound", id, detail: "no question with this id is waiting" })
            : new ConsentError({ reason: "AlreadyDecided", id, detail: `it was settled already: ${before ?? "being settled"}` })
        )
      })

    const attend = Effect.asVoid(Effect.acquireRelease(
      Effect.sync(() => {
        attending++
      }),
      () =>
        Effect.suspend(() => {
          attending--
          return attending > 0 ? Effect.void : Effect.forEach([...waiting.keys()], (id) => settle(id, "unattended"), { discard: true })
        })
    ))

    const pending = Effect.sync(() => [...waiting.values()].map((entry) => entry.question))
    const questions = Effect.map(PubSub.subscribe(events), Stream.fromQueue)
    const watch = Stream.unwrapScoped(Effect.gen(function*() {
      const later = yield* questions
      yield* attend
      const now = yield* pending
      return Stream.concat(Stream.fromIterable(now.map((question): QuestionEvent => ({ _tag: "Asked", question }))), later)
    }))

    return {
      ask,
      pending,
      questions,
      answer,
      attend,
      attending: Effect.sync(() => attending),
      watch
    }
  })

/** Layer of the service. */
export const layer = (options: Options = {}): Layer.Layer<Consent> => Layer.scoped(Consent, make(options))

/**
 * A front end that answers each question with `decide`, attending until
 * the scope closes (an app's own policy; `approveAll`). Questions are
 * decided concurrently; a question settled meanwhile (withdrawn, timed out,
 * answered elsewhere) interrupts its `decide`. A `decide` that fails or
 * dies is a crash of this front end: it stops attending, and what it was
 * asked is settled `unattended` unless another front end attends.
 */
export const answerWith = <E, R>(decide: (question: Pending) => Effect.Effect<boolean, E, R>): Effect.Effect<void, never, Consent | R | Scope.Scope> =>
  Effect.gen(function*() {
    const consent = yield* Consent
    const context = yield* Effect.context<R>()
    // subscribed and attending once this returns: a question asked right after is this front end's
    const attendance = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const questions = yield* consent.questions.pipe(Scope.extend(attendance))
    yield* consent.attend.pipe(Scope.extend(attendance))
    yield* Effect.forkScoped(Effect.scoped(Effect.gen(function*() {
      const deciding = yield* FiberMap.make<string, void, E>()
      const start = (question: Pending) =>
        FiberMap.run(deciding, question.id, Effect.flatMap(decide(question), (approve) => Effect.ignore(consent.answer(question.id, approve))), {
          onlyIfMissing: true
        }).pipe(Effect.provide(context))
      // those asked before this front end came are answered too
      for (const question of yield* consent.pending) yield* start(question)
      yield* Effect.raceFirst(
        Stream.runForEach(questions, (event) => (event._tag === "Asked" ? start(event.question) : FiberMap.remove(deciding, event.id))),
        FiberMap.join(deciding)
      )
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logError("a consent front end crashed; it no longer answers", cause)),
      // whatever ends it, it no longer attends
      Effect.ensuring(Scope.close(attendance, Exit.void))
    )))
  })

/** A front end that approves every question at once, logging it (`weft serve --yes`, scripts, tests). */
export const approveAll: Effect.Effect<void, never, Consent | Scope.Scope> = answerWith((question) =>
  Effect.as(Effect.logInfo(`approving without asking: ${question.text}`), true)
)
