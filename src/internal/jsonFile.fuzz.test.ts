import { beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as fc from "fast-check"
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import * as Libraries from "../library/Libraries.js"
import * as AddressBook from "../node/AddressBook.js"
import * as Locations from "../node/Locations.js"
import * as Grants from "../plugins/rspc/Grants.js"
import * as Records from "../plugins/spacedrop/internal/records.js"
import * as Identity from "../transport/Identity.js"
import * as Fuzz from "../transport/testing/Fuzz.js"

// The state files a node loads (libraries.json, the address book, the identity, the media mounts,
// the rspc grants, Spacedrop's resume records): each written with mutated contents, then loaded
// as the node loads it

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

const mountsFiles = fc.record({
  version: fc.constant(1),
  mounts: fc.array(fc.record({
    library: libraryId,
    location: fc.constantFrom("loc-1", "01J9ZQ3C7Y", "x".repeat(128)),
    root: fc.constantFrom("/home/me/Pictures", "/media/usb/DCIM", "/")
  }), { maxLength: 3 })
}).map(jsonBytes)

const grantsFiles = fc.record({
  version: fc.constant(1),
  grants: fc.array(fc.record({
    peer,
    library: libraryId,
    capabilities: fc.array(fc.constantFrom("notes.read", "notes.write", "node.status", "spacedrop.transfers.read"), { maxLength: 3 })
  }), { maxLength: 3 })
}).map(jsonBytes)

const TRANSFER = "t-fuzz"
const hash = fc.constantFrom("0".repeat(64), "ab".repeat(32))
const entry = fc.record({
  path: fc.constantFrom("a.txt", "dir/b.bin", "dir", "über/ü.txt"),
  kind: fc.constantFrom("file", "directory"),
  size: fc.nat({ max: 2 ** 40 }),
  mtime: fc.integer({ min: 0, max: 2 ** 42 }),
  hash
}, { requiredKeys: ["path", "kind", "size", "mtime"] })
const recordFiles = fc.oneof(
  fc.record({
    direction: fc.constant("send"),
    transfer: fc.constant(TRANSFER),
    peer,
    chunkBytes: fc.constantFrom(65_536, 1_048_576),
    sources: fc.array(fc.record({ entry, file: fc.constantFrom("/home/me/a.txt", "/tmp/b.bin") }, { requiredKeys: ["entry"] }), { maxLength: 3 }),
    bytes: fc.nat(),
    files: fc.nat(),
    totalBytes: fc.nat(),
    totalFiles: fc.nat()
  }),
  fc.record({
    direction: fc.constant("receive"),
    transfer: fc.constant(TRANSFER),
    peer,
    sender: fc.string({ maxLength: 20 }),
    manifest: hash,
    root: fc.constantFrom("/home/me/Downloads", "/tmp/in"),
    select: fc.array(fc.constantFrom("a.txt", "dir/b.bin"), { maxLength: 2 }),
    onExisting: fc.constantFrom("rename", "refuse"),
    position: fc.record({ files: fc.nat(), offset: fc.nat() }),
    temp: fc.constantFrom("/tmp/in/.weft-t-fuzz-0.part"),
    scratch: fc.array(fc.constantFrom("/tmp/in", "/tmp/in/dir"), { maxLength: 2 }),
    renamed: fc.array(fc.tuple(fc.nat({ max: 9 }), fc.constantFrom("a (1).txt")), { maxLength: 2 }),
    bytes: fc.nat(),
    totalBytes: fc.nat(),
    totalFiles: fc.nat()
  }, { requiredKeys: ["direction", "transfer", "peer", "sender", "manifest", "root", "onExisting", "position", "renamed", "bytes", "totalBytes", "totalFiles"] })
).map(jsonBytes)

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

  it("the media mounts file: every mutated file loads or fails with a LocationError", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.json(mountsFiles),
      decode: (c) => Locations.loadMounts(fileOf(c)),
      isTypedError: (e) => e instanceof Locations.LocationError
    }), Fuzz.testTimeout())

  it("the rspc grants file: every mutated file loads or fails with a GrantsError", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.json(grantsFiles),
      decode: (c) => Grants.load(fileOf(c)),
      isTypedError: (e) => e instanceof Grants.GrantsError
    }), Fuzz.testTimeout())

  it("a Spacedrop resume record: every mutated file reads as a record or as none (it is removed), never a crash", () => {
    const records = join(dir, "records")
    const store = Records.directory(records, 16)
    return Fuzz.assertDecoder({
      cases: Fuzz.json(recordFiles),
      decode: (c) =>
        Effect.flatMap(
          Effect.sync(() => {
            mkdirSync(records, { recursive: true })
            const direction = new TextDecoder().decode(c.bytes).includes('"receive"') ? "receive" : "send"
            writeFileSync(join(records, `${direction}-${TRANSFER}.json`), c.bytes, { mode: 0o600 })
            return direction
          }),
          (direction) => store.get(direction, TRANSFER)
        ).pipe(Logger.withMinimumLogLevel(LogLevel.None)),
      isTypedError: () => false
    })
  }, Fuzz.testTimeout())
})
