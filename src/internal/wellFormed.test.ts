import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Value from "../crdt/Value.js"
import * as Libraries from "../library/Libraries.js"
import * as AddressBook from "../node/AddressBook.js"
import * as Messages from "../plugins/Messages.js"
import * as RpcPlugin from "../plugins/RpcPlugin.js"
import * as Framing from "../transport/Framing.js"
import type { Duplex, PeerId } from "../transport/Transport.js"
import { isWellFormed, isWellFormedJson, isWellFormedValue } from "./wellFormed.js"

/** A stream from a peer that sends `frames` (raw JSON texts, each framed) and then ends. */
const from = (texts: ReadonlyArray<string>): Duplex => ({
  protocol: "/weft-test/strings/1.0.0",
  remote: "mallory" as PeerId,
  source: Stream.fromIterable(texts.map((text) => Framing.encode(new TextEncoder().encode(text)))),
  write: () => Effect.void,
  end: Effect.void,
  reset: Effect.void
})

describe("well-formed strings", () => {
  it("tells lone surrogates from pairs, at any depth, keys too", () => {
    expect(isWellFormed("a😀b")).toBe(true)
    expect(isWellFormed("a\ud83db")).toBe(false)
    expect(isWellFormed("\ude00")).toBe(false)
    expect(isWellFormedValue({ a: ["x", { b: "😀" }] })).toBe(true)
    expect(isWellFormedValue({ a: ["x", { b: "\ud800" }] })).toBe(false)
    expect(isWellFormedValue({ ["k\udc00"]: 1 })).toBe(false)
    let deep: unknown = "\ud800"
    for (let i = 0; i < 200_000; i++) deep = [deep]
    expect(isWellFormedValue(deep)).toBe(false) // iterative: deeper than a stack reaches
    const escaped = `{"a":"\\ud83d\\ude00","b":"\\\\ud800"}`
    expect(isWellFormedJson(escaped, JSON.parse(escaped))).toBe(true)
    const lone = `{"a":["\\uD800"]}`
    expect(isWellFormedJson(lone, JSON.parse(lone))).toBe(false)
    expect(Value.isValue("ok\ud800")).toBe(false)
    expect(Value.isValue({ ["\udfff"]: 1 })).toBe(false)
  })

  it.scoped("a plugin message holding an escaped lone surrogate is a Malformed violation", () =>
    Effect.gen(function*() {
      const protocol = Messages.protocol({ version: 1, maxFrameBytes: 1024, schema: Schema.Struct({ name: Schema.String }) })
      const good = yield* Messages.make(from([`{"version":1,"name":"\\ud83d\\ude00"}`]), protocol)
      expect(yield* good.next("a name", "1 second")).toEqual({ name: "😀" })
      const bad = yield* Messages.make(from([`{"version":1,"name":"a\\ud800"}`]), protocol)
      expect(yield* Effect.flip(bad.next("a name", "1 second"))).toMatchObject({ _tag: "ProtocolError", reason: "Malformed" })
    }))

  it.scoped("an RPC call holding an escaped lone surrogate is a Malformed violation", () =>
    Effect.gen(function*() {
      class Echo extends RpcGroup.make(Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String })) {}
      const server = yield* RpcPlugin.makeServer(Echo).pipe(Effect.provide(Echo.toLayer({ Echo: ({ text }) => Effect.succeed(text) })))
      const call = `{"_tag":"Request","id":"1","tag":"Echo","payload":{"text":"x\\udfff"}}`
      const exit = yield* Effect.exit(server.serve(from([call]), { peer: "mallory" as PeerId, library: undefined }))
      expect(exit).toMatchObject({ _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "ProtocolError", reason: "Malformed" } } })
    }))

  it.scoped("state files (libraries, address book) holding an escaped lone surrogate are Corrupt", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.promise(() => mkdtemp(join(tmpdir(), "weft-strings-"))),
        (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
      )
      const libraries = join(dir, "libraries.json")
      yield* Effect.promise(() => writeFile(libraries, `{"version":1,"libraries":[{"id":"lib-1","name":"\\ud800","members":[]}]}`))
      expect(yield* Effect.flip(Libraries.load(libraries))).toMatchObject({ _tag: "LibraryError", reason: "Corrupt" })
      const book = join(dir, "addresses.json")
      yield* Effect.promise(() => writeFile(book, `{"version":1,"peers":[{"peer":"peer-a","addresses":["/dns4/a\\udc00/tcp/1"],"seen":0}]}`))
      const opened = yield* Effect.flip(Layer.build(AddressBook.layerFile(book)))
      expect(opened).toMatchObject({ _tag: "AddressBookError", reason: "Corrupt" })
    }))
})
