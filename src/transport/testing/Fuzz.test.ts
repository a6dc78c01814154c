import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import { Packr } from "msgpackr"
import * as Fuzz from "./Fuzz.js"

// The kit against decoders broken on purpose: each must make it fail, or the fuzz tests
// that rely on it could not fail either

class Refused extends Schema.TaggedError<Refused>()("Refused", { reason: Schema.String }) {}

const packr = new Packr({ useRecords: false, mapsAsObjects: true })
const valid = fc.record({ type: fc.constantFrom("Hello", "Bye"), name: fc.string({ maxLength: 8 }), tags: fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }) })
const jsonCases = Fuzz.json(valid.map((v) => new TextEncoder().encode(JSON.stringify(v))), { poolSize: 50 })

/** A decoder that validates what it reads (the kind the kit must pass). */
const careful = (u: unknown): Either.Either<unknown, Refused> =>
  typeof u === "object" && u !== null && !Array.isArray(u) && typeof (u as { type?: unknown }).type === "string"
    ? Either.right(u)
    : Either.left(new Refused({ reason: "not a message" }))

const safeUnpack = (bytes: Uint8Array) => {
  // the checks a bounded decoder makes: a container header no larger than the bytes left
  for (let i = 0; i < bytes.length; i++) {
    if ((bytes[i] === 0xdd || bytes[i] === 0xdf) && i + 4 < bytes.length) {
      const n = new DataView(bytes.buffer, bytes.byteOffset + i + 1, 4).getUint32(0)
      if (n > bytes.length) return Either.left(new Refused({ reason: "length" }))
    }
  }
  try {
    return Either.right(packr.unpack(bytes) as unknown)
  } catch {
    return Either.left(new Refused({ reason: "malformed" }))
  }
}

/** fast-check's failure carries the property's own error as its cause. */
const fails = async (run: Promise<void>, message: RegExp) => {
  const error = await run.then(() => undefined, (e: unknown) => e)
  expect(error, "the kit passed a broken decoder").toBeInstanceOf(Error)
  expect(String((error as Error).cause)).toMatch(message)
}

describe("Fuzz kit", () => {
  it("passes a decoder that ends every case in a value or a typed error", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.json(valid.map((v) => new TextEncoder().encode(JSON.stringify(v))), { poolSize: 50, mutations: ["wrongType", "prototypeKey", "illFormed", "drop", "swap"] }),
      decode: (c) => {
        try {
          const text = new TextDecoder("utf-8", { fatal: true }).decode(c.bytes)
          return Fuzz.findIllFormed(JSON.parse(text)) === undefined ? careful(JSON.parse(text)) : Either.left(new Refused({ reason: "lone surrogate" }))
        } catch {
          return Either.left(new Refused({ reason: "not JSON" }))
        }
      },
      runs: 300
    }))

  it("fails a decoder that throws", () =>
    fails(Fuzz.assertDecoder({ cases: jsonCases, decode: (c) => careful(JSON.parse(new TextDecoder().decode(c.bytes))), runs: 500 }), /threw/))

  it("fails a decoder that throws on {toString: …} in an error message", () =>
    fails(Fuzz.assertDecoder({
      cases: Fuzz.msgpack(valid.map((v) => packr.pack(v) as Uint8Array), { poolSize: 50, mutations: ["prototypeValue"] }),
      decode: (c) =>
        Either.flatMap(safeUnpack(c.bytes), (u) => {
          const type = (u as { type?: unknown } | null)?.type
          return type === "Hello" || type === "Bye" ? Either.right(u) : Either.left(new Refused({ reason: `unknown type ${String(type)}` }))
        }),
      runs: 2000
    }), /threw: TypeError/))

  it("fails a decoder that accepts a lone surrogate", () =>
    fails(Fuzz.assertDecoder({
      cases: Fuzz.json(valid.map((v) => new TextEncoder().encode(JSON.stringify(v))), { poolSize: 50, mutations: ["illFormed"] }),
      decode: (c) => Either.try({ try: () => JSON.parse(new TextDecoder().decode(c.bytes)) as unknown, catch: () => new Refused({ reason: "not JSON" }) }),
      runs: 2000
    }), /ill-formed string/))

  it("fails a decoder that fails with an untyped error, or dies", async () => {
    await fails(Fuzz.assertDecoder({ cases: jsonCases, decode: () => Either.left(new Error("plain")), runs: 50 }), /untyped/)
    await fails(Fuzz.assertDecoder({ cases: jsonCases, decode: () => Effect.die("boom"), runs: 50 }), /died/)
  })

  it("fails a decoder that trusts a container's header (time or heap bound)", () =>
    fails(Fuzz.assertDecoder({
      cases: Fuzz.msgpack(valid.map((v) => packr.pack(v) as Uint8Array), { poolSize: 50, mutations: ["huge"] }),
      decode: (c) => {
        // what msgpackr does: allocate the announced count before reading an element
        const b = c.bytes
        if (b[0] === 0xdd && b.length >= 5) {
          const n = new DataView(b.buffer, b.byteOffset + 1, 4).getUint32(0)
          const items = new Array<number>(Math.min(n, 2 ** 25)).fill(0)
          return Either.left(new Refused({ reason: `${items.length} elements announced` }))
        }
        return Either.left(new Refused({ reason: "other" }))
      },
      runs: 3000,
      shrinkBudgetMillis: 500
    }), /heap grew|took/))

  it("reads MessagePack and JSON into structures that write back the same value", () => {
    fc.assert(fc.property(valid, (v) => {
      const bytes = packr.pack(v) as Uint8Array
      // (container headers come out in their shortest form, leaves byte for byte)
      expect(packr.unpack(Fuzz.rewrite(Fuzz.MsgPack, bytes))).toEqual(v)
      const text = new TextEncoder().encode(JSON.stringify(v))
      expect(Fuzz.rewrite(Fuzz.JSON_, text)).toEqual(text)
    }), { numRuns: 100 })
  })
})
