import { beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "fast-check"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import * as Libraries from "../library/Libraries.js"
import * as AddressBook from "../node/AddressBook.js"
import * as Identity from "../transport/Identity.js"
import * as Fuzz from "../transport/testing/Fuzz.js"

// The state files a node loads at start (libraries.json, the address book, the identity):
// each written with mutated contents, then loaded as the node loads it

const encoder = new TextEncoder()
const jsonBytes = (value: unknown) => encoder.encode(JSON.stringify(value, null, 2))
const peer = fc.constantFrom("12D3KooWQmZ8cWBjX3", "peer-b", "x".repeat(128))
const libraryId = fc.constantFrom("lib-1", "notes", "a.b~c_d-e")

const librariesFiles = fc.record({
  version: fc.constant(1),
  libraries: fc.array(fc.record({ id: libraryId, name: fc.string({ maxLength: 40 }), members: fc.array(peer, { maxLength: 3 }) }), { maxLength: 3 }),
  default: libraryId
}, { requiredKeys: ["version", "libraries"] }).map(jsonBytes)

const addressBookFiles = fc.record({
  version: fc.constant(1),
  peers: fc.array(fc.record({
    peer,
    addresses: fc.array(fc.constantFrom("/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/1", "/dns4/example.org/tcp/443/wss"), { maxLength: 3 }),
    seen: fc.integer({ min: 0, max: 2 ** 45 })
  }), { maxLength: 4 })
}).map(jsonBytes)

let dir: string
let identityTexts: ReadonlyArray<string> = []
beforeAll(async () => {
  // in memory where the system has it: 30 000 files written and read on a disk take minutes
  dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "weft-fuzz-files-"))
  identityTexts = await Effect.runPromise(Effect.all(Array.from({ length: 8 }, () => Effect.map(Identity.generate(), Identity.encode))))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let n = 0
/** Writes the case's bytes as an owner-only file and returns its path. */
const fileOf = (c: Fuzz.Case): string => {
  const path = join(dir, `f${n++ % 64}.json`)
  writeFileSync(path, c.bytes, { mode: 0o600 })
  return path
}

describe("state files under structure-aware fuzzing", () => {
  it("libraries.json: every mutated file loads or fails with a LibraryError", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.json(librariesFiles),
      decode: (c) => Libraries.load(fileOf(c)),
      isTypedError: (e) => e instanceof Libraries.LibraryError
    }), Fuzz.testTimeout())

  it("the address book: every mutated file loads or fails with an AddressBookError", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.json(addressBookFiles),
      decode: (c) => Effect.flatMap(AddressBook.AddressBook, (book) => book.list).pipe(Effect.provide(AddressBook.layerFile(fileOf(c)))),
      isTypedError: (e) => e instanceof AddressBook.AddressBookError
    }), Fuzz.testTimeout())

  it("the identity file: every mutated file loads or fails with an IdentityError", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.json(fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7).map((i) => encoder.encode(identityTexts[i]!)), { poolSize: 8 }),
      decode: (c) => Identity.load(fileOf(c)),
      isTypedError: (e) => e instanceof Identity.IdentityError
    }), Fuzz.testTimeout())
})
