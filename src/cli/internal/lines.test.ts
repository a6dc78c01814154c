import { describe, expect, it } from "@effect/vitest"
import * as Lines from "./lines.js"

const collect = (maxBytes: number, onOversize: "skip" | "stop") => {
  const lines: Array<string> = []
  let oversize = 0
  const push = Lines.split(maxBytes, {
    onLine: (line) => lines.push(line),
    onOversize: () => {
      oversize++
      return onOversize
    }
  })
  return { lines, oversize: () => oversize, push: (text: string | Buffer) => push(Buffer.isBuffer(text) ? text : Buffer.from(text)) }
}

describe("Lines.split", () => {
  it("cuts on newlines across reads, blank lines included, and decodes a character split between reads whole", () => {
    const input = collect(1024, "stop")
    const euro = Buffer.from("€")
    input.push("first\n\nsec")
    input.push(Buffer.concat([Buffer.from("ond "), euro.subarray(0, 1)]))
    input.push(Buffer.concat([euro.subarray(1), Buffer.from("\n  \nthird")]))
    expect(input.lines).toEqual(["first", "", "second €", "  "])
    input.push("\n")
    expect(input.lines).toEqual(["first", "", "second €", "  ", "third"])
  })

  it("skip: a line over the bound is dropped up to its newline, however many reads it spans, and reading goes on", () => {
    const input = collect(16, "skip")
    input.push("ok\n" + "x".repeat(10))
    for (let i = 0; i < 1000; i++) input.push("x".repeat(64 * 1024))
    input.push("xx\ny\n")
    expect(input.lines).toEqual(["ok", "y"])
    expect(input.oversize()).toBe(1)
    // exactly the bound is a line
    input.push("a".repeat(16) + "\n")
    expect(input.lines.at(-1)).toBe("a".repeat(16))
  })

  it("stop: after a line over the bound nothing more is read, not even lines in the same read", () => {
    const input = collect(4, "stop")
    input.push("ab\ntoo long\nc\n")
    input.push("d\n")
    expect(input.lines).toEqual(["ab"])
    expect(input.oversize()).toBe(1)
  })
})
