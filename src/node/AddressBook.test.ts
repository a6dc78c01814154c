import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as TestClock from "effect/TestClock"
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as PeerAddress from "../transport/PeerAddress.js"
import type { PeerId } from "../transport/Transport.js"
import * as AddressBook from "./AddressBook.js"

const alice = "12D3KooWAlice" as PeerId
const bob = "12D3KooWBob" as PeerId

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "weft-book-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const open = (path: string) => Effect.provide(AddressBook.AddressBook, AddressBook.layerFile(path))

describe("AddressBook", () => {
  it.effect("keeps a peer's addresses newest first, without duplicates or /p2p suffixes, and ignores what is not a multiaddr", () =>
    Effect.gen(function*() {
      const book = yield* Effect.provide(AddressBook.AddressBook, AddressBook.layerMemory())
      yield* book.remember(alice, ["/ip4/10.0.0.1/tcp/4001"])
      yield* book.remember(alice, ["/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWAlice", "not an address", "/ip4/10.0.0.1/tcp/4001"])
      expect(yield* book.get(alice)).toEqual(["/ip4/10.0.0.2/tcp/4001", "/ip4/10.0.0.1/tcp/4001"])
      expect(yield* book.get(bob)).toEqual([])
      // only the most recent few are kept
      for (let i = 0; i < 20; i++) yield* book.remember(alice, [`/ip4/10.0.1.${i}/tcp/4001`])
      const kept = yield* book.get(alice)
      expect(kept).toHaveLength(AddressBook.MAX_ADDRESSES)
      expect(kept[0]).toBe("/ip4/10.0.1.19/tcp/4001")
      expect(PeerAddress.withPeer("/ip4/10.0.0.2/tcp/4001/p2p/other", bob)).toBe(`/ip4/10.0.0.2/tcp/4001/p2p/${bob}`)
    }))

  it.scoped("persists across reopening; an unchanged entry is not written again", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "peers.json")
      const first = yield* open(path)
      yield* first.remember(alice, ["/ip4/127.0.0.1/tcp/4001"])
      yield* first.remember(bob, ["/dns4/bob.local/tcp/4002"])
      const written = statSync(path)
      expect(written.mode & 0o777).toBe(0o600)
      yield* first.remember(alice, ["/ip4/127.0.0.1/tcp/4001"])
      expect(statSync(path).mtimeMs).toBe(written.mtimeMs)
      const second = yield* open(path)
      expect(yield* second.get(alice)).toEqual(["/ip4/127.0.0.1/tcp/4001"])
      expect((yield* second.list).map((e) => e.peer)).toEqual([bob, alice])
    }))

  it.scoped("a file that is not an address book is a typed error, and is left as it was", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      for (const [name, text] of [
        ["garbage", "{not json"],
        ["wrong shape", JSON.stringify({ version: 1, peers: [{ peer: alice, addresses: ["no slash"], seen: 0 }] })],
        ["too many addresses", JSON.stringify({ version: 1, peers: [{ peer: alice, addresses: Array.from({ length: 9 }, (_, i) => `/ip4/10.0.0.${i}/tcp/1`), seen: 0 }] })],
        ["another version", JSON.stringify({ version: 2, peers: [] })]
      ] as const) {
        const path = join(dir, `${name}.json`)
        writeFileSync(path, text)
        const result = yield* Effect.either(open(path))
        expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "AddressBookError", reason: "Corrupt" })
        expect(readFileSync(path, "utf8")).toBe(text)
      }
    }))

  it.scopedLive("a book full to its bounds, with the longest addresses JSON can spell, loads again", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "peers.json")
      // control characters take 6 bytes each as JSON
      const address = (i: number, j: number) => `/${i}/${j}/`.padEnd(AddressBook.MAX_ADDRESS_LENGTH, "\u0001")
      const peers = Array.from({ length: AddressBook.MAX_PEERS }, (_, i) => ({
        peer: `peer-${i}`,
        addresses: Array.from({ length: AddressBook.MAX_ADDRESSES }, (_, j) => address(i, j)),
        seen: Date.now()
      }))
      writeFileSync(path, JSON.stringify({ version: 1, peers }, null, 2))
      expect(statSync(path).size).toBeGreaterThan(20 * 1024 * 1024)
      const book = yield* open(path)
      expect(yield* Effect.map(book.list, (entries) => entries.length)).toBe(AddressBook.MAX_PEERS)
    }), 30_000)

  it.effect("keeps the MAX_PEERS peers seen most recently: a peer seen again (same address) is not evicted before peers seen earlier", () =>
    Effect.gen(function*() {
      const book = yield* Effect.provide(AddressBook.AddressBook, AddressBook.layerMemory())
      const at = (i: number) => [`/ip4/10.0.${Math.floor(i / 256)}.${i % 256}/tcp/4001`]
      yield* book.remember("p0" as PeerId, at(0))
      for (let i = 1; i < AddressBook.MAX_PEERS; i++) {
        yield* TestClock.adjust(1000)
        yield* book.remember(`p${i}` as PeerId, at(i))
      }
      // p0 reconnects: seen now, most recently of all
      yield* TestClock.adjust(1000)
      yield* book.remember("p0" as PeerId, at(0))
      // one new peer: the one seen longest ago (p1) should go, not p0
      yield* TestClock.adjust(1000)
      yield* book.remember("new" as PeerId, ["/ip4/10.9.9.9/tcp/1"])
      const peers = (yield* book.list).map((e) => e.peer)
      expect(peers).toContain("p0")
      expect(peers).not.toContain("p1")
    }))
})
