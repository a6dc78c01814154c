import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as AddressBook from "../node/AddressBook.js"
import * as Libraries from "../library/Libraries.js"
import * as Identity from "../transport/Identity.js"
import * as BoundedFile from "./boundedFile.js"

const directory = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "weft-file-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A FIFO at `dir/name` (nobody ever writes to it). */
const fifo = (dir: string, name: string) => {
  const path = join(dir, name)
  execFileSync("mkfifo", ["-m", "600", path])
  return path
}

const failureOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.flip(effect).pipe(Effect.timeoutFail({ duration: Duration.seconds(5), onTimeout: () => new Error("hung") }))

describe("reading a state file", () => {
  it.scopedLive("a regular file is read whole; a missing one is undefined", () =>
    Effect.gen(function*() {
      const dir = yield* directory
      writeFileSync(join(dir, "a.json"), "{\"€\":1}")
      expect((yield* Effect.promise(() => BoundedFile.read(join(dir, "a.json"), 64)))?.text).toBe("{\"€\":1}")
      expect(yield* Effect.promise(() => BoundedFile.read(join(dir, "missing.json"), 64))).toBeUndefined()
    }))

  it.scopedLive("a file that is not UTF-8 is refused as such, not read with U+FFFD in place of its bytes", () =>
    Effect.gen(function*() {
      const dir = yield* directory
      writeFileSync(join(dir, "latin1.json"), Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d]))
      const error = yield* Effect.flip(Effect.tryPromise(() => BoundedFile.read(join(dir, "latin1.json"), 64)))
      expect(error.cause).toBeInstanceOf(BoundedFile.UnreadableFileError)
      expect(String((error.cause as Error).message)).toMatch(/not UTF-8/)
    }))

  it.scopedLive("a FIFO, a directory or a file over the bound is refused at once, not waited on or read", () =>
    Effect.gen(function*() {
      const dir = yield* directory
      writeFileSync(join(dir, "big.json"), "x".repeat(65))
      for (const [path, expected] of [[fifo(dir, "pipe.json"), /is not a regular file/], [dir, /is not a regular file/], [join(dir, "big.json"), /has 65 bytes; at most 64/]] as const) {
        const error = yield* failureOf(Effect.tryPromise({ try: () => BoundedFile.read(path, 64), catch: (cause) => cause as Error }))
        expect(error).toBeInstanceOf(BoundedFile.UnreadableFileError)
        expect(error.message).toMatch(expected)
      }
    }))

  it.scopedLive("an identity, libraries or address book path that is a FIFO is a typed error, not a hang", () =>
    Effect.gen(function*() {
      const dir = yield* directory
      expect(yield* failureOf(Identity.load(fifo(dir, "identity.json")))).toMatchObject({ _tag: "IdentityError", reason: "Unreadable" })
      expect(yield* failureOf(Libraries.load(fifo(dir, "libraries.json")))).toMatchObject({ _tag: "LibraryError", reason: "Io" })
      const book = Effect.provide(AddressBook.AddressBook, AddressBook.layerFile(fifo(dir, "peers.json")))
      expect(yield* failureOf(book)).toMatchObject({ _tag: "AddressBookError", reason: "Io" })
    }))
})
