/**
 * The engine against interruptions at awkward moments and against remote
 * operations that are well-formed bytes but bad content: each gets a typed
 * error, and what the engine holds stays readable and writable.
 */
import * as Automerge from "@automerge/automerge"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { deflateRawSync } from "node:zlib"
import * as Binary from "../crdt/Binary.js"
import * as Operation from "../crdt/Operation.js"
import * as RichText from "../crdt/RichText.js"
import * as Timestamp from "../crdt/Timestamp.js"
import * as Model from "./Model.js"
import * as Engines from "./testing/Engines.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, rank: Schema.Number, body: Model.RichText }))
const stranger = "peer-z" as Timestamp.NodeId

/** The first operation of a stranger: what a remote peer could send. */
const remote = (op: { readonly _tag: Operation.Operation["_tag"]; readonly record: string } & Record<string, unknown>): Operation.Operation =>
  ({ origin: stranger, seq: 1, ts: Timestamp.make(1, 0), model: "notes", ...op }) as unknown as Operation.Operation

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  expect(Option.isSome(failure), `expected a typed failure, got ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "success"}`).toBe(true)
  return Option.getOrUndefined(failure) as E
}

describe("Engine: interrupted writes", () => {
  it.scopedLive("a mutate interrupted at any point commits with the engine's state, or not at all; later writes work", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      const logged = Effect.map(
        Effect.promise(() =>
          engine.kysely.selectFrom("weft_log").select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow()
        ),
        (row) => Number(row.n)
      )
      // the k-th write is interrupted after k scheduler turns: before, inside and after its transaction
      for (let k = 0; k < 150; k++) {
        const writing = yield* Effect.fork(engine.mutate([notes.create(`n${k}`, { title: "t", rank: k, body: "" })]))
        for (let i = 0; i < k; i++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(writing)
        const held = (yield* engine.versionVector).get("peer-a")?.seq ?? 0
        expect(yield* logged).toBe(held)
      }
      yield* engine.mutate([notes.create("after", { title: "t", rank: 0, body: "" })])
      expect(Option.isSome(yield* engine.get(notes, "after"))).toBe(true)
    }))
})

describe("Engine: remote operations with bad content", () => {
  it.scoped("a Create without a required field is refused (MissingField); the model stays readable", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      yield* engine.mutate([notes.create("n1", { title: "mine", rank: 1, body: "" })])
      const refused = failureOf(yield* Effect.exit(engine.ingest([remote({ _tag: "Create", record: "z1", fields: { title: "no rank" } })])))
      expect(refused).toMatchObject({ _tag: "ValidationError", reason: "MissingField", field: "rank" })
      expect((yield* engine.query(notes)).map((note) => note.id)).toEqual(["n1"])
    }))

  it.scoped("a field of an app's discriminated union holding {toString: 1} as its tag is refused (a ValidationError, not a defect)", () =>
    Effect.gen(function*() {
      // Schema's union parser turns the tag into a string to pick a member: String({toString: 1}) throws
      const shapes = Model.make("shapes", Schema.Struct({
        shape: Schema.Union(
          Schema.Struct({ kind: Schema.Literal("circle"), r: Schema.Number }),
          Schema.Struct({ kind: Schema.Literal("square"), side: Schema.Number })
        )
      }))
      const engine = yield* Engines.open({ models: [shapes], node: "peer-a" })
      const op = { ...remote({ _tag: "Create", record: "s1", fields: { shape: { kind: { toString: 1 }, r: 1 } } }), model: "shapes" } as Operation.Operation
      const refused = failureOf(yield* Effect.exit(engine.ingest([op])))
      expect(refused).toMatchObject({ _tag: "ValidationError" })
      yield* engine.mutate([shapes.create("s2", { shape: { kind: "circle", r: 2 } })])
      expect((yield* engine.query(shapes)).map((s) => s.id)).toEqual(["s2"])
    }))

  for (
    const [name, mutate] of [
      ["removes the text", (doc: any) => {
        delete doc.text
      }],
      ["replaces the text with a number", (doc: any) => {
        doc.text = 5
      }],
      ["adds a field beside the text", (doc: any) => {
        doc.other = "x"
      }]
    ] as const
  ) {
    it.scoped(`an Automerge change that ${name} is refused (MalformedChange); the field stays editable`, () =>
      Effect.gen(function*() {
        const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
        yield* engine.mutate([notes.create("n1", { title: "t", rank: 1, body: "hello" })])
        const change = Automerge.getLastLocalChange(Automerge.change(RichText.make(stranger), mutate))!
        const refused = failureOf(yield* Effect.exit(engine.ingest([remote({ _tag: "Edit", record: "n1", field: "body", changes: [change] })])))
        expect(refused).toMatchObject({ _tag: "ValidationError", reason: "MalformedChange" })
        yield* engine.mutate([notes.splice("n1", "body", { index: 5, deleteCount: 0, insert: "!" })])
        expect(Option.map(yield* engine.get(notes, "n1"), (note) => note.body)).toEqual(Option.some("hello!"))
      }))
  }

  it.scoped("a compressed Automerge chunk is refused before it is inflated", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      // 64 MiB of zeros deflated to a few KiB (a real bomb would fit one 4 MiB frame and inflate to GiBs)
      const deflated = deflateRawSync(Buffer.alloc(64 * 1024 * 1024))
      const uleb = (n: number): Array<number> => n < 128 ? [n] : [(n % 128) | 0x80, ...uleb(Math.floor(n / 128))]
      const chunk = new Uint8Array([0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2, ...uleb(deflated.length), ...deflated])
      const op = remote({ _tag: "Edit", record: "n1", field: "body", changes: [chunk] })
      // it is well-formed on the wire: what sync would carry
      const wire = Either.getOrThrow(Binary.decode(Binary.encode(Operation.toBatchWire([op]))))
      expect(Either.isRight(Schema.decodeUnknownEither(Operation.BatchFromWire)(wire))).toBe(true)
      const refused = failureOf(yield* Effect.exit(engine.ingest([op])))
      expect(refused).toMatchObject({ _tag: "ValidationError", reason: "MalformedChange" })
      expect((refused as { readonly detail: string }).detail).toContain("not an uncompressed change")
    }))
})

describe("Engine: values and sizes", () => {
  it.scoped("an operation larger than maxOperationBytes is refused (TooLarge), local or remote, and nothing is written", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      const big = "x".repeat(2 * 1024 * 1024)
      const local = failureOf(yield* Effect.exit(engine.mutate([notes.create("big", { title: big, rank: 1, body: "" })])))
      expect(local).toMatchObject({ _tag: "ValidationError", reason: "TooLarge", record: "big" })
      const incoming = failureOf(yield* Effect.exit(engine.ingest([remote({ _tag: "Create", record: "z1", fields: { title: big, rank: 1 } })])))
      expect(incoming).toMatchObject({ _tag: "ValidationError", reason: "TooLarge" })
      expect((yield* engine.versionVector).size).toBe(0)
      yield* engine.mutate([notes.create("small", { title: "s", rank: 1, body: "" })])
      expect((yield* engine.query(notes)).map((note) => note.id)).toEqual(["small"])
    }))

  it.scoped("a byte array inside a structured (JSON) value is refused; the model stays readable", () =>
    Effect.gen(function*() {
      const files = Model.make("files", Schema.Struct({ name: Schema.String, chunks: Schema.Array(Schema.Uint8ArrayFromSelf) }))
      const engine = yield* Engines.open({ models: [files], node: "peer-a" })
      const refused = failureOf(yield* Effect.exit(engine.mutate([files.create("f1", { name: "a", chunks: [new Uint8Array([1, 2, 3])] })])))
      expect(refused).toMatchObject({ _tag: "ValidationError", reason: "InvalidValue", field: "chunks" })
      yield* engine.mutate([files.create("f2", { name: "b", chunks: [] })])
      expect((yield* engine.query(files)).map((file) => file.id)).toEqual(["f2"])
    }))

  for (const [from, to] of [["😀", "😁"], ["a😀b", "a😀c"], ["x", "x😀"], ["😀😀", "😀"], ["😀x", "😁x"]] as const) {
    it.scoped(`rich text ${from} updated to ${to} reads back exactly (no half of a surrogate pair is kept)`, () =>
      Effect.gen(function*() {
        const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
        yield* engine.mutate([notes.create("n1", { title: "t", rank: 1, body: from })])
        yield* engine.mutate([notes.update("n1", { body: to })])
        expect(Option.map(yield* engine.get(notes, "n1"), (note) => note.body)).toEqual(Option.some(to))
      }))
  }

  it.scoped("a splice that would cut a surrogate pair is refused", () =>
    Effect.gen(function*() {
      const engine = yield* Engines.open({ models: [notes], node: "peer-a" })
      yield* engine.mutate([notes.create("n1", { title: "t", rank: 1, body: "a😀b" })])
      const refused = failureOf(yield* Effect.exit(engine.mutate([notes.splice("n1", "body", { index: 2, deleteCount: 0, insert: "x" })])))
      expect(refused).toMatchObject({ _tag: "ValidationError", reason: "InvalidValue", field: "body" })
      expect((refused as { readonly detail: string }).detail).toContain("surrogate pair")
      expect(Option.map(yield* engine.get(notes, "n1"), (note) => note.body)).toEqual(Option.some("a😀b"))
    }))
})
