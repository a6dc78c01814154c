import { describe, expect, it } from "@effect/vitest"
import * as Penalties from "./penalties.js"

const MINUTE = 60_000
const HOUR = 60 * MINUTE

describe("redial penalties", () => {
  it("a peer that never broke a protocol is redialled at once and never held", () => {
    const penalties = Penalties.make()
    expect(penalties.take("p", 0)).toBe(0)
    expect(penalties.held("p", 0)).toBe(false)
  })

  it("the drop after a violation waits a minute, doubled with each violation, up to an hour; a later ordinary drop does not wait", () => {
    const penalties = Penalties.make()
    const waits: Array<number> = []
    let now = 0
    for (let i = 0; i < 8; i++) {
      penalties.violated("p")
      expect(penalties.pending("p")).toBe(true)
      const wait = penalties.take("p", now)
      waits.push(wait / MINUTE)
      // held while the wait runs (a discovery dial is refused), free once it is over
      expect(penalties.held("p", now + wait - 1)).toBe(true)
      expect(penalties.held("p", now + wait)).toBe(false)
      // an ordinary drop after it: no wait
      expect(penalties.take("p", now + wait)).toBe(0)
      now += wait
    }
    expect(waits).toEqual([1, 2, 4, 8, 16, 32, 60, 60])
  })

  it("a connection that stays up an hour clears the count; a shorter one does not", () => {
    const penalties = Penalties.make()
    penalties.violated("p")
    expect(penalties.take("p", 0)).toBe(MINUTE)
    penalties.connected("p", MINUTE)
    penalties.disconnected("p", MINUTE + HOUR - 1)
    penalties.violated("p")
    expect(penalties.take("p", 2 * HOUR)).toBe(2 * MINUTE)
    penalties.connected("p", 3 * HOUR)
    penalties.disconnected("p", 4 * HOUR)
    penalties.violated("p")
    expect(penalties.take("p", 4 * HOUR)).toBe(MINUTE)
  })

  it("a violation not yet waited out survives a long connection; peers are counted apart", () => {
    const penalties = Penalties.make()
    penalties.violated("p")
    penalties.connected("p", 0)
    penalties.disconnected("p", 2 * HOUR)
    expect(penalties.pending("p")).toBe(true)
    expect(penalties.take("p", 2 * HOUR)).toBe(MINUTE)
    expect(penalties.pending("q")).toBe(false)
    expect(penalties.take("q", 2 * HOUR)).toBe(0)
  })

  it("a forgotten peer owes nothing and starts counting afresh", () => {
    const penalties = Penalties.make()
    penalties.violated("p")
    penalties.violated("p")
    expect(penalties.take("p", 0)).toBe(2 * MINUTE)
    penalties.violated("p")
    penalties.forget("p")
    expect(penalties.pending("p")).toBe(false)
    expect(penalties.held("p", 1)).toBe(false)
    expect(penalties.take("p", 1)).toBe(0)
    penalties.violated("p")
    expect(penalties.take("p", 2)).toBe(MINUTE)
  })
})
