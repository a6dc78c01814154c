import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Binary from "./Binary.js"

const reasonOf = (bytes: ArrayLike<number>, options?: Binary.DecodeOptions) => {
  const result = Binary.decode(Uint8Array.from(bytes), options)
  return Either.isLeft(result) ? result.left.reason : "decoded"
}

/** Twenty nested array32 headers, each announcing 33 554 431 elements, in a sync frame `[1, 1, …, false]`. */
const nestedHeaders = Uint8Array.from([
  0x94, 0x01, 0x01,
  ...Array.from({ length: 20 }, () => [0xdd, 0x01, 0xff, 0xff, 0xff]).flat(),
  0xc0, 0xc2
])

describe("Binary: the bounded decoder", () => {
  it("refuses the 105-byte frame of nested huge array headers before allocating, with a typed error", () => {
    expect(nestedHeaders.length).toBe(105)
    const before = process.memoryUsage().heapUsed
    const result = Binary.decode(nestedHeaders)
    const grown = process.memoryUsage().heapUsed - before
    expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "MalformedBytesError", reason: "TooLong" })
    // one such header alone made msgpackr allocate ~250 MB; a refusal allocates a few objects
    expect(grown).toBeLessThan(16 * 1024 * 1024)
  })

  it("counts what enclosing containers still announce: nested headers each claiming all the bytes left are refused", () => {
    // 60 nested array32 headers each announcing 1 000 000 elements, then 1 000 000 bytes: each count alone fits
    const levels = 60
    const count = 1_000_000
    const bytes = new Uint8Array(levels * 5 + count)
    for (let i = 0; i < levels; i++) bytes.set([0xdd, 0x00, 0x0f, 0x42, 0x40], i * 5)
    const before = process.memoryUsage().heapUsed
    const result = Binary.decode(bytes)
    expect(Either.isLeft(result) && result.left.reason).toBe("TooLong")
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 1024 * 1024)
    // a map32 of 500 000 entries whose first key leads to the next level
    const mapLevel = [0xdf, 0x00, 0x07, 0xa1, 0x20, 0xa1, 0x6b]
    const maps = new Uint8Array(levels * mapLevel.length + count)
    for (let i = 0; i < levels; i++) maps.set(mapLevel, i * mapLevel.length)
    expect(reasonOf(maps)).toBe("TooLong")
    // what does fit is read: an array of arrays that fill the bytes exactly
    expect(Either.getOrThrow(Binary.decode(Uint8Array.from([0x92, 0x92, 0x01, 0x02, 0x91, 0x03])))).toEqual([[1, 2], [3]])
  })

  it("checks every container, string and byte array length against the bytes left", () => {
    expect(reasonOf([0xdc, 0xff, 0xff, 0x01])).toBe("TooLong") // array16 of 65 535 in 1 byte
    expect(reasonOf([0xdf, 0x00, 0x01, 0x00, 0x00, 0xa1, 0x61, 0x01])).toBe("TooLong") // map32 of 65 536 entries
    expect(reasonOf([0x82, 0xa1, 0x61, 0x01])).toBe("TooLong") // fixmap of 2 entries in 3 bytes
    expect(reasonOf([0xdb, 0x7f, 0xff, 0xff, 0xff, 0x61])).toBe("Truncated") // str32 of 2 GiB
    expect(reasonOf([0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00])).toBe("Truncated") // bin32 of 2 GiB
    expect(reasonOf([0xcb, 0x00, 0x00])).toBe("Truncated")
    expect(reasonOf([0x92, 0x01])).toBe("TooLong")
    expect(reasonOf([0x92, 0x01, 0xa3, 0x61])).toBe("Truncated")
    expect(reasonOf([0x01, 0x02])).toBe("TrailingBytes")
    expect(reasonOf([])).toBe("Truncated")
  })

  it("bounds nesting depth, by default and as told", () => {
    const nested = (depth: number) => [...Array.from({ length: depth }, () => 0x91), 0x01]
    expect(reasonOf(nested(Binary.DEFAULT_MAX_DEPTH))).toBe("decoded")
    expect(reasonOf(nested(Binary.DEFAULT_MAX_DEPTH + 1))).toBe("TooDeep")
    expect(reasonOf(nested(100_000))).toBe("TooDeep")
    expect(reasonOf(nested(5), { maxDepth: 4 })).toBe("TooDeep")
    expect(reasonOf(nested(4), { maxDepth: 4 })).toBe("decoded")
    // maps count too
    expect(reasonOf([0x81, 0xa1, 0x61, 0x81, 0xa1, 0x62, 0x01], { maxDepth: 1 })).toBe("TooDeep")
  })

  it("accepts no extension type, nor the never-used byte", () => {
    for (const bytes of [[0xc1], [0xd4, 0x01, 0x00], [0xd6, 0xff, 0, 0, 0, 0], [0xc7, 0x01, 0x05, 0x00], [0xd5, 0x72, 0x00, 0x00]]) {
      expect(reasonOf(bytes)).toBe("Invalid")
    }
  })

  it("refuses strings that are not well-formed UTF-8 instead of substituting U+FFFD", () => {
    const str = (bytes: ReadonlyArray<number>) => [0xa0 + bytes.length, ...bytes]
    expect(reasonOf(str([0xed, 0xa0, 0x80]))).toBe("Invalid") // a lone high surrogate (CESU-8)
    expect(reasonOf(str([0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]))).toBe("Invalid") // a surrogate pair, CESU-8 style
    expect(reasonOf(str([0xc0, 0xaf]))).toBe("Invalid") // overlong
    expect(reasonOf(str([0xf4, 0x90, 0x80, 0x80]))).toBe("Invalid") // beyond U+10FFFF
    expect(reasonOf(str([0x61, 0x80]))).toBe("Invalid") // a stray continuation byte
    expect(reasonOf(str([0xe2, 0x82]))).toBe("Invalid") // cut inside a character
    const long = [0xd9, 100, ...Array.from({ length: 98 }, () => 0x61), 0xed, 0xa0] // the long-string path
    expect(reasonOf(long)).toBe("Invalid")
    // a map key is a string too
    expect(reasonOf([0x81, ...str([0xed, 0xb0, 0x80]), 0x01])).toBe("Invalid")
  })

  it("decodes maps with string keys only, each once, into objects without a prototype", () => {
    expect(reasonOf([0x81, 0x01, 0x02])).toBe("Invalid")
    expect(reasonOf([0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02])).toBe("Invalid")
    const bytes = Binary.encode(JSON.parse(`{"__proto__": {"polluted": 1}, "constructor": 2, "toString": 3}`))
    const decoded = Either.getOrThrow(Binary.decode(bytes)) as Record<string, unknown>
    expect(Object.getPrototypeOf(decoded)).toBe(null)
    expect(Object.keys(decoded)).toEqual(["__proto__", "constructor", "toString"])
    expect(Object.getOwnPropertyDescriptor(decoded, "__proto__")?.value).toEqual({ polluted: 1 })
    expect((decoded as any).polluted).toBeUndefined()
    expect(({} as any).polluted).toBeUndefined()
    const absent = Either.getOrThrow(Binary.decode(Binary.encode({ a: 1 }))) as Record<string, unknown>
    expect(absent["hasOwnProperty"]).toBeUndefined()
  })

  it("reads back what it writes: every scalar width, strings of every length, byte arrays as copies, large maps", () => {
    const values: ReadonlyArray<unknown> = [
      null, true, false, 0, 1, -1, 127, 128, -32, -33, 255, 256, -129, 65535, 65536, -32769,
      2 ** 31, 2 ** 32, -(2 ** 31) - 1, 2 ** 53 - 1, -(2 ** 53 - 1), 0.5, -1.25e300,
      "", "a", "x".repeat(16), "x".repeat(17), "x".repeat(48), "x".repeat(70_000), "héllo", "😀 and ✓", "é".repeat(40), "ü".repeat(1000),
      [1, [2, [3, []]]], { a: { b: ["c", { d: null }] } },
      Array.from({ length: 70_000 }, (_, i) => i),
      Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`origin-${i}`, i]))
    ]
    for (const value of values) {
      expect(Either.getOrThrow(Binary.decode(Binary.encode(value)))).toEqual(value)
    }
    const frame = Binary.encode({ bytes: new Uint8Array([1, 2, 3]) })
    const decoded = Either.getOrThrow(Binary.decode(Buffer.from(frame))) as { bytes: Uint8Array }
    expect(Object.getPrototypeOf(decoded.bytes)).toBe(Uint8Array.prototype)
    expect(decoded.bytes.buffer.byteLength).toBe(3) // a copy, not a view of the frame
    expect([...decoded.bytes]).toEqual([1, 2, 3])
  })

  it("reads every integer encoding, as numbers", () => {
    expect(Either.getOrThrow(Binary.decode(Uint8Array.from([0xcf, 0, 0, 0, 1, 0, 0, 0, 2])))).toBe(2 ** 32 + 2)
    expect(Either.getOrThrow(Binary.decode(Uint8Array.from([0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe])))).toBe(-2)
    expect(Either.getOrThrow(Binary.decode(Uint8Array.from([0xd0, 0x80])))).toBe(-128)
    expect(Either.getOrThrow(Binary.decode(Uint8Array.from([0xca, 0x3f, 0xc0, 0x00, 0x00])))).toBe(1.5)
  })
})
