import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as fc from "fast-check"
import * as SortedVector from "./SortedVector.js"
import { arbitraryNodeId, arbitraryTimestamp } from "./testing/Arbitraries.js"
import type { Timestamp } from "./Timestamp.js"
import * as VersionVector from "./VersionVector.js"

const origin = fc.oneof(
  arbitraryNodeId,
  fc.constantFrom("__proto__", "constructor", "hasOwnProperty", "toString", "valueOf"),
  // few distinct names: the same origin often on two pages, or set twice
  fc.constantFrom("a", "b", "c", "d")
)
const entry = fc.record({ seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), ts: arbitraryTimestamp })
const uniqueEntries = fc.uniqueArray(fc.tuple(origin, entry), { maxLength: 40, selector: ([o]) => o })

/** What a vector holds, order aside. */
const contents = (vector: ReadonlyMap<string, VersionVector.Entry>) =>
  [...vector].map(([o, e]) => `${o} ${e.seq} ${e.ts}`).sort()

const decoded = (list: ReadonlyArray<readonly [string, VersionVector.Entry]>): SortedVector.SortedVector =>
  Either.getOrThrow(VersionVector.decodePage(VersionVector.encodePage(list), VersionVector.PAGE_ENTRIES))

/** The old semantics: pages merged into a `Map` one after another. */
const mapUnion = (pages: ReadonlyArray<ReadonlyArray<readonly [string, VersionVector.Entry]>>) => {
  const out = new Map<string, VersionVector.Entry>()
  for (const page of pages) VersionVector.mergeInPlace(out, new Map(page))
  return out
}

describe("SortedVector", () => {
  it("a page decodes to what was encoded: every entry found by lookup, and nothing else", () =>
    fc.assert(fc.property(uniqueEntries, fc.array(origin, { maxLength: 10 }), (list, probes) => {
      const vector = decoded(list)
      const map = new Map(list)
      expect(vector.size).toBe(map.size)
      expect(contents(vector)).toEqual(contents(map))
      for (const o of [...map.keys(), ...probes]) {
        expect(vector.get(o)).toEqual(map.get(o))
        expect(VersionVector.seqOf(vector, o)).toBe(VersionVector.seqOf(map, o))
        expect(vector.has(o)).toBe(map.has(o))
      }
      // and encodes back to a page that decodes the same
      expect(contents(decoded([...vector]))).toEqual(contents(map))
    }), { numRuns: 500 }))

  it("a page naming an origin twice is refused, whatever the seqs", () =>
    fc.assert(fc.property(uniqueEntries, origin, entry, entry, (list, twice, first, second) => {
      const page = VersionVector.encodePage([...list.filter(([o]) => o !== twice), [twice, first], [twice, second]])
      expect(VersionVector.decodePage(page, VersionVector.PAGE_ENTRIES)).toStrictEqual(Either.left(`origin ${twice} named twice`))
    }), { numRuns: 300 }))

  it("the pages of one vector joined (union) hold what merging them into a Map held: each origin at its largest seq", () =>
    fc.assert(fc.property(fc.array(uniqueEntries, { minLength: 1, maxLength: 5 }), (pages) => {
      const joined = VersionVector.union(pages.map(decoded))
      expect(contents(joined)).toEqual(contents(mapUnion(pages)))
    }), { numRuns: 300 }))

  it("equals is false when one vector is ahead on an origin both hold, whichever is asked first", () => {
    const ts = 1 as unknown as Timestamp
    const ahead = VersionVector.fromEntries([["alice", { seq: 5, ts }], ["bob", { seq: 5, ts }]])
    const behind = VersionVector.fromEntries([["alice", { seq: 3, ts }], ["bob", { seq: 5, ts }]])
    expect(VersionVector.equals(ahead, behind)).toBe(false)
    expect(VersionVector.equals(behind, ahead)).toBe(false)
    expect(VersionVector.equals(ahead, VersionVector.fromEntries(ahead))).toBe(true)
  })

  it("merge, covers and equals give the same answers on sorted columns as on Maps", () =>
    fc.assert(fc.property(uniqueEntries, uniqueEntries, (x, y) => {
      const [a, b] = [decoded(x), decoded(y)]
      const [ma, mb] = [new Map(x), new Map(y)]
      expect(contents(VersionVector.merge(a, b))).toEqual(contents(VersionVector.merge(ma, mb)))
      expect(VersionVector.covers(a, b)).toBe(VersionVector.covers(ma, mb))
      expect(VersionVector.covers(b, a)).toBe(VersionVector.covers(mb, ma))
      expect(VersionVector.covers(VersionVector.merge(a, b), b)).toBe(true)
      expect(VersionVector.equals(a, b)).toBe(VersionVector.equals(ma, mb))
      expect(VersionVector.equals(a, ma)).toBe(true)
      // in place, one sort of both: as merging into a Map
      const target = decoded(x)
      VersionVector.mergeInPlace(target, b)
      const mapTarget = new Map(x)
      VersionVector.mergeInPlace(mapTarget, mb)
      expect(contents(target)).toEqual(contents(mapTarget))
      expect(VersionVector.covers(target, b) && VersionVector.covers(target, a)).toBe(true)
    }), { numRuns: 300 }))

  it("merging in place many entries (one sort of both), as a session merges an announced vector, holds what a Map holds", () =>
    fc.assert(fc.property(
      fc.uniqueArray(fc.tuple(origin, entry), { minLength: 65, maxLength: 200, selector: ([o]) => o }),
      fc.uniqueArray(fc.tuple(origin, entry), { minLength: 65, maxLength: 200, selector: ([o]) => o }),
      (x, y) => {
        const target = decoded(x)
        VersionVector.mergeInPlace(target, decoded(y))
        const mapTarget = new Map(x)
        VersionVector.mergeInPlace(mapTarget, new Map(y))
        expect(contents(target)).toEqual(contents(mapTarget))
        for (const [o, e] of mapTarget) expect(target.get(o)).toEqual(e)
      }
    ), { numRuns: 100 }))

  it("a vector merged with many others keeps its own origins' bytes, not every vector merged in (a session merges one per Ack)", () => {
    const ts = "0000000000000001" as Timestamp
    const list = (from: number, n: number, seq: number) => Array.from({ length: n }, (_, i) => [`peer-${from + i}`, { seq, ts }] as const)
    const target = decoded(list(0, 100, 1))
    // small ones (Acks) and large ones (announced vectors), each decoded from its own frame
    for (let round = 1; round <= 200; round++) VersionVector.mergeInPlace(target, decoded(list(round % 100, round % 2 === 0 ? 3 : 100, round)))
    expect(target.columns().buffers.length).toBeLessThanOrEqual(8)
    expect(target.size).toBe(199)
    expect(VersionVector.seqOf(target, "peer-0")).toBe(200)
    expect(VersionVector.seqOf(target, "peer-198")).toBe(199)
  })

  const command = fc.oneof(
    fc.tuple(fc.constant("set" as const), origin, entry),
    fc.tuple(fc.constant("delete" as const), origin),
    fc.tuple(fc.constant("clear" as const)),
    fc.tuple(fc.constant("merge" as const), uniqueEntries),
    // values a vector never holds, that a Map would still keep as given
    fc.tuple(fc.constant("set" as const), origin, fc.record({ seq: fc.constant(0), ts: fc.constant("not hex" as Timestamp) }))
  )

  it("as a mutable map (set, delete, clear, merge of another, then lookups and iteration), it behaves as a Map of the same entries", () =>
    fc.assert(fc.property(uniqueEntries, fc.array(command, { maxLength: 60 }), (start, commands) => {
      const vector = decoded(start)
      const map = new Map(start)
      for (const c of commands) {
        if (c[0] === "set") {
          vector.set(c[1], c[2])
          map.set(c[1], c[2])
        } else if (c[0] === "merge") {
          VersionVector.mergeInPlace(vector, decoded(c[1]))
          VersionVector.mergeInPlace(map, new Map(c[1]))
        } else if (c[0] === "delete") {
          expect(vector.delete(c[1])).toBe(map.delete(c[1]))
        } else {
          vector.clear()
          map.clear()
        }
        expect(vector.size).toBe(map.size)
      }
      expect(contents(vector)).toEqual(contents(map))
      for (const o of map.keys()) expect(vector.get(o)).toEqual(map.get(o))
    }), { numRuns: 500 }))

  it("an origin set many times past the columns is folded into them, and still found", () => {
    const ts = "0000000000000001" as Timestamp
    const vector = decoded([["peer-a", { seq: 1, ts }]])
    for (let i = 0; i < 5000; i++) vector.set(`o${i}`, { seq: i + 1, ts })
    vector.set("peer-a", { seq: 7, ts })
    expect(vector.size).toBe(5001)
    expect(VersionVector.seqOf(vector, "o4999")).toBe(5000)
    expect(VersionVector.seqOf(vector, "peer-a")).toBe(7)
    expect(VersionVector.seqOf(vector, "o5000")).toBe(0)
  })

  it("many lookups (answered by a hash table once they are many) find what a Map finds, before and after changes", () =>
    fc.assert(fc.property(fc.uniqueArray(fc.tuple(arbitraryNodeId, entry), { minLength: 100, maxLength: 400, selector: ([o]) => o }), fc.array(fc.tuple(origin, entry), { maxLength: 50 }), (list, changes) => {
      const vector = decoded(list)
      const map = new Map<string, VersionVector.Entry>(list)
      const probes: Array<string> = [...map.keys(), "__proto__", "absent", "a"]
      for (let round = 0; round < 2; round++) {
        for (const o of probes) expect(VersionVector.seqOf(vector, o)).toBe(VersionVector.seqOf(map, o))
      }
      for (const [o, e] of changes) {
        vector.set(o, e)
        map.set(o, e)
        probes.push(o)
      }
      vector.delete(list[0]![0])
      map.delete(list[0]![0])
      for (const o of probes) expect(vector.get(o)).toEqual(map.get(o))
      expect(contents(vector)).toEqual(contents(map))
    }), { numRuns: 50 }))

  it("origins with equal hashes (as a peer could choose them) are ordered by origin, and a repeat among them is refused", () => {
    const names = ["m", "a", "z", "__proto__", "b", "constructor", "y"]
    const bytes = Buffer.from(names.join(""), "latin1")
    const columns = (list: ReadonlyArray<string>): SortedVector.Columns => {
      const starts: Array<number> = []
      let at = 0
      for (const name of list) {
        starts.push(bytes.indexOf(name, at, "latin1"))
        at = 0
      }
      return {
        length: list.length,
        hashes: new Uint32Array(list.length), // every hash 0
        seqs: Float64Array.from(list, (_, i) => i + 1),
        tsHigh: new Uint32Array(list.length),
        tsLow: new Uint32Array(list.length),
        sources: new Uint32Array(list.length),
        starts: Uint32Array.from(starts),
        lengths: Uint8Array.from(list, (name) => name.length),
        buffers: [bytes]
      }
    }
    const vector = SortedVector.fromColumns(columns(names), "refuse")
    if (!(vector instanceof SortedVector.SortedVector)) throw new Error("refused")
    expect([...vector.keys()]).toEqual([...names].sort())
    expect(SortedVector.fromColumns(columns([...names, "b"]), "refuse")).toEqual({ repeated: "b" })
  })
})
