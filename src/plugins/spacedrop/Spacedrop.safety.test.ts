/**
 * What a receiver refuses: every path that would leave the target or is
 * not portable, names that collide, links in the offer or in the target,
 * offers over its bounds, offers it has no room for. Each refusal is typed
 * for the sender, and nothing is written outside the target: the target's
 * parent is compared before and after.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import * as Wire from "./internal/wire.js"
import * as Paths from "./Paths.js"
import * as Protocol from "./Protocol.js"
import type * as Spacedrop from "./Spacedrop.js"
import * as Peers from "./testing/Peers.js"


const ZERO_HASH = "0".repeat(64)
const file = (path: string, size = 1): Protocol.Entry => ({ path, kind: "file", size, mtime: 0, hash: ZERO_HASH })
const dir = (path: string): Protocol.Entry => ({ path, kind: "directory", size: 0, mtime: 0 })

/** Offers `entries` from a raw stream (as a hostile sender would) and reads the answer. */
const offerRaw = (sender: Peers.Peer, receiver: Peers.Peer, entries: ReadonlyArray<Protocol.Entry>, offer: Partial<typeof Protocol.Offer.Type> = {}) =>
  Effect.scoped(Effect.gen(function*() {
    const stream = yield* sender.host.open(receiver.id, Protocol.protocol)
    const wire = yield* Wire.make(stream, 1024 * 1024)
    yield* wire.send({
      type: "Offer",
      transfer: "raw" as Protocol.TransferId,
      sender: "raw",
      count: entries.length,
      totalBytes: entries.reduce((n, e) => n + (e.kind === "file" ? e.size : 0), 0),
      chunkBytes: 65536,
      ...offer
    })
    yield* wire.send({ type: "Entries", entries })
    const answer = yield* wire.next
    return Option.getOrThrow(answer)
  }))

/** A receiver that accepts every offer into `target`, recording what it saw and how each answer went. */
const watching = (receiver: Peers.Peer, target: string) =>
  Effect.gen(function*() {
    const seen = yield* Ref.make<ReadonlyArray<string>>([])
    const outcomes = yield* Queue.unbounded<Either.Either<Spacedrop.Transfer, unknown>>()
    const offers = yield* receiver.spacedrop.offers
    yield* Effect.forkScoped(Stream.runForEach(offers, (offer) =>
      Effect.zipRight(Ref.update(seen, (all) => [...all, offer.id]), Effect.flatMap(Effect.either(offer.accept(target)), (o) => Queue.offer(outcomes, o)))))
    return { seen: Ref.get(seen), outcomes }
  })

/** A root with `target` (where files are received) and `outside` (a neighbour that must stay as it is) in it. */
const layout = Effect.gen(function*() {
  const root = yield* Peers.tempDir()
  const target = nodePath.join(root, "target")
  const outside = nodePath.join(root, "outside")
  yield* Effect.promise(async () => {
    await fs.mkdir(target)
    await fs.mkdir(outside)
    await fs.writeFile(nodePath.join(outside, "secret.txt"), "keep me")
  })
  return { root, target, outside }
})

const UNSAFE: ReadonlyArray<readonly [string, ReadonlyArray<Protocol.Entry>]> = [
  ["a parent component", [file("../evil.txt")]],
  ["a parent component deeper down", [file("a/../../evil.txt")]],
  ["a parent component at the end", [dir("a/..")]],
  ["a `.` component", [file("./a.txt")]],
  ["an absolute path", [file("/etc/evil.txt")]],
  ["a drive letter", [file("C:/evil.txt")]],
  ["a drive-relative path", [file("C:evil.txt")]],
  ["backslashes", [file("a\\..\\..\\evil.txt")]],
  ["a NUL", [file("evil\u0000.txt")]],
  ["a control character", [file("bell\u0007.txt")]],
  ["a newline", [file("two\nlines.txt")]],
  ["a reserved device name", [file("CON")]],
  ["a reserved device name with an extension", [file("sub/nul.txt")]],
  ["COM1", [file("com1")]],
  ["LPT9 in any case", [file("Lpt9.log")]],
  ["a name ending in a dot", [file("trailing.")]],
  ["a name ending in a space", [file("trailing ")]],
  ["an empty component", [file("a//b.txt")]],
  ["an empty path", [file("")]],
  ["a colon (an NTFS stream)", [file("a.txt:stream")]],
  ["a symbolic link in the offer", [{ path: "link", kind: "symlink", size: 0, mtime: 0 }]],
  ["names equal after NFC", [file("caf\u00e9.txt"), file("cafe\u0301.txt")]],
  ["names equal after case folding", [file("README.md"), file("Readme.md")]],
  ["ß and SS", [file("straße.txt"), file("STRASSE.txt")]],
  ["a directory colliding by case with a file's parent", [dir("Photos"), file("photos/a.jpg")]],
  ["a file that is another entry's parent", [file("a"), file("a/b.txt")]],
  ["the same path twice", [file("a.txt"), file("a.txt")]]
]

describe("Spacedrop refuses what would escape or clash", () => {
  for (const [name, entries] of UNSAFE) {
    it.scopedLive(`an offer with ${name} is refused UnsafePath before the app sees it; nothing is written`, () =>
      Effect.gen(function*() {
        const { sender, receiver } = yield* Peers.make()
        const { root, target } = yield* layout
        const before = yield* Peers.snapshot(root)
        const watcher = yield* watching(receiver, target)
        const answer = yield* offerRaw(sender, receiver, entries)
        expect(answer).toMatchObject({ _tag: "Message", message: { type: "Rejected", reason: "UnsafePath" } })
        expect(yield* watcher.seen).toEqual([])
        expect(yield* Peers.snapshot(root)).toEqual(before)
      }))
  }

  it("the path check itself: the unsafe paths above are refused, ordinary ones pass", () => {
    for (const [, entries] of UNSAFE) expect(Option.isSome(Paths.checkManifest(entries))).toBe(true)
    for (const ok of ["a.txt", "photos/2024/IMG 0001.jpg", "日本語/ファイル.txt", "emoji 🎉.md", ".hidden", "a..b", "con-trol.txt", "COM10"]) {
      expect(Paths.checkPath(ok), ok).toEqual(Option.none())
    }
  })

  it.scopedLive("a symbolic link already inside the target is never followed: an offer through it is refused", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const { root, target, outside } = yield* layout
      const source = yield* Peers.tempDir()
      yield* Effect.promise(async () => {
        await fs.symlink(outside, nodePath.join(target, "out"))
        await fs.mkdir(nodePath.join(source, "out"))
        await fs.writeFile(nodePath.join(source, "out", "evil.txt"), "evil")
      })
      const before = yield* Peers.snapshot(root)
      const watcher = yield* watching(receiver, target)
      const error = Peers.failure(yield* Effect.either((yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "out")])).result))
      expect(error).toMatchObject({ _tag: "SpacedropError", reason: "UnsafePath", by: "receiver" })
      expect(Peers.failure(yield* Queue.take(watcher.outcomes))).toMatchObject({ _tag: "SpacedropError", reason: "UnsafePath", path: "out" })
      expect(yield* Peers.snapshot(root)).toEqual(before)
    }))

  it.scopedLive("a file arriving where a link to a file outside sits gets a numbered name; the link and its target stay", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const { target, outside } = yield* layout
      const source = yield* Peers.tempDir()
      yield* Effect.promise(async () => {
        await fs.symlink(nodePath.join(outside, "secret.txt"), nodePath.join(target, "x.txt"))
        await fs.writeFile(nodePath.join(source, "x.txt"), "new")
      })
      const watcher = yield* watching(receiver, target)
      yield* (yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "x.txt")])).result
      const transfer = yield* Effect.flatMap(Queue.take(watcher.outcomes), Either.match({ onLeft: Effect.die, onRight: Effect.succeed }))
      expect((yield* transfer.result).files[0]!.savedAs).toMatch(/x \(1\)\.txt$/)
      expect(yield* Effect.promise(() => fs.readFile(nodePath.join(outside, "secret.txt"), "utf8"))).toBe("keep me")
      expect(yield* Effect.promise(() => fs.readlink(nodePath.join(target, "x.txt")))).toBe(nodePath.join(outside, "secret.txt"))
      expect(yield* Effect.promise(() => fs.readFile(nodePath.join(target, "x (1).txt"), "utf8"))).toBe("new")
    }))

  it.scopedLive("the sender sends no link, alone or inside a folder: Unsupported before anything is offered", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      yield* Effect.promise(async () => {
        await fs.mkdir(nodePath.join(source, "f"))
        await fs.writeFile(nodePath.join(source, "f", "a.txt"), "a")
        await fs.symlink("/etc/passwd", nodePath.join(source, "f", "passwd"))
      })
      for (const path of [nodePath.join(source, "f"), nodePath.join(source, "f", "passwd")]) {
        const error = Peers.failure(yield* Effect.either(sender.spacedrop.send(receiver.id, [path])))
        expect(error).toMatchObject({ _tag: "SpacedropError", reason: "Unsupported" })
      }
    }))

  it.scopedLive("an offer larger than the free space is refused NoSpace at acceptance", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const { root, target } = yield* layout
      const before = yield* Peers.snapshot(root)
      const watcher = yield* watching(receiver, target)
      const answer = yield* offerRaw(sender, receiver, [file("huge.bin", 2 ** 52)])
      expect(answer).toMatchObject({ _tag: "Message", message: { type: "Rejected", reason: "NoSpace" } })
      expect(Peers.failure(yield* Queue.take(watcher.outcomes))).toMatchObject({ _tag: "SpacedropError", reason: "NoSpace" })
      expect(yield* Peers.snapshot(root)).toEqual(before)
    }))

  const BOUNDS: ReadonlyArray<readonly [string, Partial<Spacedrop.Limits>, ReadonlyArray<Protocol.Entry>, Partial<typeof Protocol.Offer.Type>]> = [
    ["more entries than maxEntries", { maxEntries: 3 }, [file("a"), file("b"), file("c"), file("d")], {}],
    ["a manifest over maxManifestBytes", { maxManifestBytes: 400 }, Array.from({ length: 10 }, (_, i) => file(`file-${i}.txt`)), {}],
    ["a path over maxPathBytes", { maxPathBytes: 20 }, [file("a-rather-long-name-for-twenty.txt")], {}],
    ["a path deeper than maxDepth", { maxDepth: 3 }, [file("a/b/c/d.txt")], {}],
    ["chunks over maxChunkBytes", { maxChunkBytes: 1024 }, [file("a")], { chunkBytes: 4096 }]
  ]
  for (const [name, limits, entries, offer] of BOUNDS) {
    it.scopedLive(`an offer with ${name} is refused TooLarge`, () =>
      Effect.gen(function*() {
        const { sender, receiver } = yield* Peers.make({ receiver: { limits } })
        const { target } = yield* layout
        const watcher = yield* watching(receiver, target)
        const answer = yield* offerRaw(sender, receiver, entries, offer)
        expect(answer).toMatchObject({ _tag: "Message", message: { type: "Rejected", reason: "TooLarge" } })
        expect(yield* watcher.seen).toEqual([])
      }))
  }
})
