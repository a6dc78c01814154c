import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { arbitraryNodeId, arbitraryTimestamp } from "./testing/Arbitraries.js"
import * as VersionVector from "./VersionVector.js"

type Entries = ReadonlyArray<readonly [string, VersionVector.Entry]>

/** Whether two lists of pages hold the same bytes (compared natively: pages of thousands of entries). */
const sameBytes = (a: ReadonlyArray<Uint8Array>, b: ReadonlyArray<Uint8Array>): boolean =>
  a.length === b.length && a.every((page, i) => Buffer.compare(page, b[i]!) === 0)

/** A page as the module's comment lays it out, written field by field (the encoder gathers columns in reused scratch). */
const referencePage = (entries: Entries): Uint8Array => {
  const originBytes = entries.reduce((n, [origin]) => n + origin.length, 0)
  const n = entries.length
  const page = new Uint8Array(4 + n + originBytes + 16 * n)
  const view = new DataView(page.buffer)
  view.setUint32(0, n)
  let at = 4 + n
  entries.forEach(([origin], k) => {
    page[4 + k] = origin.length
    for (let i = 0; i < origin.length; i++) page[at++] = origin.charCodeAt(i)
  })
  entries.forEach(([, entry]) => {
    view.setFloat64(at, entry.seq)
    at += 8
  })
  for (const [, entry] of entries) {
    view.setUint32(at, parseInt(entry.ts.slice(0, 8), 16))
    view.setUint32(at + 4, parseInt(entry.ts.slice(8), 16))
    at += 8
  }
  return page
}

const entries = (maxLength: number) =>
  fc.uniqueArray(
    fc.tuple(arbitraryNodeId, fc.record({ seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), ts: arbitraryTimestamp })),
    { maxLength, selector: ([origin]) => origin }
  )

describe("VersionVector pages on the wire", () => {
  it("encodePages writes each page as the documented columns, whatever was encoded before it (scratch columns reused)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(entries(60), fc.integer({ min: 1, max: 25 })), { minLength: 1, maxLength: 4 }), (vectors) => {
        // several vectors in a row: a smaller page after a larger one must hold none of its bytes
        for (const [list, size] of vectors) {
          const pages = VersionVector.encodePages(new Map(list), size)
          const expected = list.length === 0 ? [[]] : Array.from({ length: Math.ceil(list.length / size) }, (_, i) => list.slice(i * size, (i + 1) * size))
          expect(sameBytes(pages, expected.map(referencePage))).toBe(true)
        }
      }),
      { numRuns: 200 }
    )
  })

  it("encodePage writes a page of more entries than its scratch columns first hold (they grow), then a small one", () => {
    const ts = "0000018c2b3a4d5e" as VersionVector.Entry["ts"]
    const many: Entries = Array.from({ length: 5000 }, (_, i) => [`origin-${i}-${"x".repeat(i % 100)}`, { seq: i + 1, ts }])
    expect(sameBytes([VersionVector.encodePage(many)], [referencePage(many)])).toBe(true)
    // past four pages' worth the scratch is let go after the vector: the next vector starts afresh
    const more: Entries = Array.from({ length: 4 * VersionVector.PAGE_ENTRIES + 1 }, (_, i) => [`o${i}`, { seq: 1, ts }])
    expect(sameBytes([VersionVector.encodePage(more)], [referencePage(more)])).toBe(true)
    const few = many.slice(0, 3)
    expect(sameBytes([VersionVector.encodePage(few)], [referencePage(few)])).toBe(true)
    expect(sameBytes(VersionVector.encodePages(new Map(many), 2048), [0, 1, 2].map((i) => referencePage(many.slice(i * 2048, (i + 1) * 2048))))).toBe(true)
  })
})
