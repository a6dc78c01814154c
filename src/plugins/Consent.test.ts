import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type { PeerId } from "../transport/Transport.js"
import * as Consent from "./Consent.js"

const question = (peer: string, kind = "pair"): Consent.Question => ({ kind, peer: peer as PeerId, text: `${peer} asks` })

/** A consent service with one front end attending (the test answers for it), and its questions as a queue. */
const attended = (options: Consent.Options = {}) =>
  Effect.gen(function*() {
    const consent = yield* Consent.make(options)
    yield* consent.attend
    const events = yield* Queue.unbounded<Consent.QuestionEvent>()
    yield* Effect.forkScoped(Stream.runForEach(yield* consent.questions, (event) => Queue.offer(events, event)))
    // the next question asked (settlements on the way are skipped)
    const asked: Effect.Effect<Consent.Pending> = Effect.flatMap(Queue.take(events), (event) => (event._tag === "Asked" ? Effect.succeed(event.question) : asked))
    return { consent, events, asked }
  })

describe("Consent", () => {
  it.scoped("the first answer decides; a later one, from any front end, is AlreadyDecided; an unknown id NotFound", () =>
    Effect.gen(function*() {
      const { consent, asked } = yield* attended()
      const decision = yield* Effect.fork(consent.ask(question("alice")))
      const pending = yield* asked
      expect(yield* consent.pending).toEqual([pending])
      // two front ends answer at once
      const answers = yield* Effect.all([Effect.either(consent.answer(pending.id, true)), Effect.either(consent.answer(pending.id, false))], {
        concurrency: "unbounded"
      })
      expect(answers.filter(Either.isRight)).toHaveLength(1)
      expect(answers.filter(Either.isLeft).map((a) => a.left.reason)).toEqual(["AlreadyDecided"])
      expect(yield* Fiber.join(decision)).toBe("approved")
      expect(yield* consent.pending).toEqual([])
      expect(yield* Effect.flip(consent.answer("q-none", true))).toMatchObject({ _tag: "ConsentError", reason: "NotFound" })
    }))

  it.scoped("unanswered, a question times out on the Clock, exactly at its timeout; a late answer is AlreadyDecided", () =>
    Effect.gen(function*() {
      const { consent, events, asked } = yield* attended({ timeout: "60 seconds" })
      const decision = yield* Effect.fork(consent.ask(question("alice")))
      const pending = yield* asked
      expect(pending.expiresAt - pending.askedAt).toBe(60_000)
      yield* TestClock.adjust("59999 millis")
      expect(Option.isNone(yield* Fiber.poll(decision))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(decision)).toBe("timeout")
      expect(yield* Queue.take(events)).toEqual({ _tag: "Settled", id: pending.id, outcome: "timeout" })
      expect(yield* Effect.flip(consent.answer(pending.id, true))).toMatchObject({ reason: "AlreadyDecided" })
    }))

  it.scoped("a question whose asker gives up is withdrawn: front ends see it settled, and it no longer waits", () =>
    Effect.gen(function*() {
      const { consent, events, asked } = yield* attended()
      const decision = yield* Effect.fork(consent.ask(question("alice")))
      const pending = yield* asked
      yield* Fiber.interrupt(decision)
      expect(yield* Queue.take(events)).toEqual({ _tag: "Settled", id: pending.id, outcome: "withdrawn" })
      expect(yield* consent.pending).toEqual([])
    }))

  it.scoped("one question of a kind waits per peer, and at most maxPendingPerSource per source: a crowd from one host leaves the queue to others", () =>
    Effect.gen(function*() {
      const { consent, asked } = yield* attended({ maxPending: 8, maxPendingPerSource: 2 })
      const from = (peer: string, source: string, kind = "pair") => ({ ...question(peer, kind), source })
      // fifty identities from one host: two are asked, the rest Busy without asking
      const crowd = yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => i), (i) => Effect.fork(consent.ask(from(`sybil${i}`, "ip4/192.0.2.7"))))
      yield* asked
      yield* asked
      const outcomes = yield* Effect.forEach(crowd.slice(2), Fiber.join)
      expect(outcomes.every((outcome) => outcome === "busy")).toBe(true)
      expect((yield* consent.pending).length).toBe(2)
      // the same peer again (from anywhere): Busy
      const first = (yield* consent.pending)[0]!
      expect(yield* consent.ask(from(first.peer, "ip4/198.51.100.1"))).toBe("busy")
      // an honest request from another host is asked
      const honest = yield* Effect.fork(consent.ask(from("honest", "ip4/203.0.113.9")))
      const pending = yield* asked
      expect(pending.peer).toBe("honest")
      yield* consent.answer(pending.id, true)
      expect(yield* Fiber.join(honest)).toBe("approved")
    }))

  it.scoped("at most maxPending questions wait; more are Busy at once, without asking", () =>
    Effect.gen(function*() {
      const { consent, asked } = yield* attended({ maxPending: 2 })
      const waiting = yield* Effect.forEach(["a", "b"], (peer) => Effect.fork(consent.ask(question(peer))))
      yield* asked
      yield* asked
      expect(yield* consent.ask(question("c"))).toBe("busy")
      // a slot frees as a question is settled
      yield* Fiber.interrupt(waiting[0]!)
      const third = yield* Effect.fork(consent.ask(question("c")))
      expect((yield* asked).peer).toBe("c")
      yield* Fiber.interrupt(third)
    }))

  it.scoped("a declined peer is not asked again about that kind for askAgainAfter (Clock time); other kinds and peers are", () =>
    Effect.gen(function*() {
      const { consent, asked } = yield* attended({ askAgainAfter: "30 seconds" })
      const first = yield* Effect.fork(consent.ask(question("mallory")))
      yield* consent.answer((yield* asked).id, false)
      expect(yield* Fiber.join(first)).toBe("declined")
      expect(yield* consent.ask(question("mallory"))).toBe("coolingDown")
      // another kind, another peer: asked
      const other = yield* Effect.fork(consent.ask(question("mallory", "spacedrop")))
      expect((yield* asked).kind).toBe("spacedrop")
      yield* Fiber.interrupt(other)
      yield* TestClock.adjust("30 seconds")
      const again = yield* Effect.fork(consent.ask(question("mallory")))
      expect((yield* asked).peer).toBe("mallory")
      yield* Fiber.interrupt(again)
    }))

  it.scoped("with nobody attending a question is unattended at once; the last front end leaving settles what waits", () =>
    Effect.gen(function*() {
      const consent = yield* Consent.make()
      expect(yield* consent.ask(question("alice"))).toBe("unattended")
      const decision = yield* Effect.scoped(Effect.gen(function*() {
        yield* consent.attend
        const asking = yield* Effect.fork(consent.ask(question("alice")))
        yield* Effect.repeat(consent.pending, { until: (pending) => pending.length === 1 })
        return asking
      }))
      expect(yield* Fiber.join(decision)).toBe("unattended")
    }))

  it.scoped("answerWith: a front end's decision per question; one that dies stops attending, and its questions are unattended", () =>
    Effect.gen(function*() {
      const consent = yield* Consent.make()
      yield* Consent.answerWith((pending) => Effect.succeed(pending.peer === "friend")).pipe(Effect.provideService(Consent.Consent, consent))
      yield* Effect.repeat(consent.attending, { until: (n) => n === 1 })
      expect(yield* consent.ask(question("friend"))).toBe("approved")
      expect(yield* consent.ask(question("stranger"))).toBe("declined")

      const crashing = yield* Consent.make()
      yield* Consent.answerWith(() => Effect.die("the dialog crashed")).pipe(Effect.provideService(Consent.Consent, crashing))
      yield* Effect.repeat(crashing.attending, { until: (n) => n === 1 })
      expect(yield* crashing.ask(question("friend"))).toBe("unattended")
      expect(yield* crashing.attending).toBe(0)
    }))
})
