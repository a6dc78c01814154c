import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as fc from "fast-check"
import * as Hlc from "./Hlc.js"
import * as Timestamp from "./Timestamp.js"

const node = "peer-a" as Timestamp.NodeId
const send = (clock: Hlc.Hlc, now: number) => Either.getOrThrow(Hlc.send(clock, now))

describe("Hlc", () => {
  it("follows the wall clock when it moves forward", () => {
    const [t1, c1] = send(Hlc.make(node), 1_000)
    const [t2] = send(c1, 2_000)
    expect(Timestamp.millis(t1)).toBe(1_000)
    expect(Timestamp.counter(t1)).toBe(0)
    expect(Timestamp.millis(t2)).toBe(2_000)
  })

  it("counts within a millisecond and when the wall clock goes backwards", () => {
    const [t1, c1] = send(Hlc.make(node), 5_000)
    const [t2, c2] = send(c1, 5_000)
    const [t3] = send(c2, 4_000)
    expect([t1, t2, t3].map(Timestamp.counter)).toEqual([0, 1, 2])
    expect(t1 < t2 && t2 < t3).toBe(true)
  })

  it("borrows the next millisecond when the counter is exhausted", () => {
    const clock = Hlc.make(node, { last: Timestamp.make(7, Timestamp.MAX_COUNTER) })
    const [t] = send(clock, 0)
    expect(Timestamp.millis(t)).toBe(8)
    expect(Timestamp.counter(t)).toBe(0)
  })

  it("orders a received event after the remote one and after everything local", () => {
    const [, local] = send(Hlc.make(node), 10_000)
    const remote = Timestamp.make(10_500, 3)
    const [t] = Either.getOrThrow(Hlc.receive(local, remote, 10_000))
    expect(t > remote).toBe(true)
    expect(Timestamp.counter(t)).toBe(4)
  })

  it("refuses a remote timestamp beyond the drift limit and keeps its state", () => {
    const clock = Hlc.make(node, { maxDriftMillis: 60_000 })
    const remote = Timestamp.make(1_000 + 60_001, 0)
    const result = Hlc.receive(clock, remote, 1_000)
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect(result.left._tag).toBe("ClockDriftError")
      expect(result.left.reason).toBe("AheadOfWallClock")
      expect(result.left.driftMillis).toBe(60_001)
    }
    expect(Either.isRight(Hlc.receive(clock, Timestamp.make(61_000, 0), 1_000))).toBe(true)
  })

  it("never goes backwards whatever the wall clock and remote events do", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ kind: fc.constant("send" as const), now: fc.integer({ min: 0, max: 1e7 }) }),
            fc.record({
              kind: fc.constant("receive" as const),
              now: fc.integer({ min: 0, max: 1e7 }),
              remote: fc.tuple(fc.integer({ min: 0, max: 1e7 }), fc.integer({ min: 0, max: 0xffff }))
            })
          ),
          { maxLength: 60 }
        ),
        (events) => {
          let clock = Hlc.make(node, { maxDriftMillis: 1e7 })
          let previous = Timestamp.zero
          for (const event of events) {
            const result = event.kind === "send"
              ? Hlc.send(clock, event.now)
              : Hlc.receive(clock, Timestamp.make(...event.remote), event.now)
            const [t, next] = Either.getOrThrow(result)
            expect(t > previous).toBe(true)
            if (event.kind === "receive") expect(t > Timestamp.make(...event.remote)).toBe(true)
            previous = t
            clock = next
          }
        }
      ),
      { numRuns: 500 }
    )
  })

  it("encodes timestamps so that string order is numeric order, centuries ahead", () => {
    fc.assert(
      fc.property(
        fc.tuple(fc.integer({ min: 0, max: Timestamp.MAX_MILLIS }), fc.integer({ min: 0, max: 0xffff })),
        fc.tuple(fc.integer({ min: 0, max: Timestamp.MAX_MILLIS }), fc.integer({ min: 0, max: 0xffff })),
        ([m1, c1], [m2, c2]) => {
          const numeric = m1 !== m2 ? Math.sign(m1 - m2) : Math.sign(c1 - c2)
          expect(Timestamp.compare(Timestamp.make(m1, c1), Timestamp.make(m2, c2))).toBe(numeric)
          expect(Timestamp.millis(Timestamp.make(m1, c1))).toBe(m1)
        }
      ),
      { numRuns: 500 }
    )
    const year2500 = Date.UTC(2500, 0, 1)
    expect(Timestamp.make(year2500, 0) > Timestamp.make(Date.UTC(2038, 0, 20), 0)).toBe(true)
  })
})
