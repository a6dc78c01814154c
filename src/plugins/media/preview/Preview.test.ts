import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import sharp, { type Sharp } from "sharp"
import * as Framing from "../../../transport/Framing.js"
import * as Plugin from "../../Plugin.js"
import * as MediaModels from "../Models.js"
import { sha256, tempDir, write } from "../testing/Files.js"
import * as Cache from "./Cache.js"
import * as Wire from "./internal/wire.js"
import * as Models from "./Models.js"
import * as Protocol from "./Protocol.js"
import * as Nodes from "./testing/Nodes.js"

const L = Nodes.LIBRARY

/** One picture per format sharp writes here, each of its own size and colour (so each has its own hash). */
const FORMATS = [
  { name: "photo.jpg", width: 1200, height: 800, write: (s: Sharp) => s.jpeg() },
  { name: "shot.png", width: 300, height: 700, write: (s: Sharp) => s.png() },
  { name: "web.webp", width: 640, height: 640, write: (s: Sharp) => s.webp() },
  { name: "anim.gif", width: 100, height: 50, write: (s: Sharp) => s.gif() },
  { name: "modern.avif", width: 800, height: 200, write: (s: Sharp) => s.avif({ effort: 0 }) },
  { name: "scan.tiff", width: 256, height: 1024, write: (s: Sharp) => s.tiff() }
]

const picture = (i: number, width: number, height: number, write: (s: Sharp) => Sharp) =>
  Effect.promise(() =>
    write(sharp({ create: { width, height, channels: 3, background: { r: 40 * i, g: 255 - 30 * i, b: 90 } } })).toBuffer()
  )

/** A folder of pictures in each format, a corrupt JPEG and a text file. */
const folder = Effect.gen(function*() {
  const root = yield* tempDir()
  for (const [i, f] of FORMATS.entries()) yield* write(nodePath.join(root, "pics", f.name), yield* picture(i, f.width, f.height, f.write))
  yield* write(nodePath.join(root, "broken.jpg"), new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8]))
  yield* write(nodePath.join(root, "notes.txt"), "not a picture")
  return root
})

const drain = <A, E>(stream: Stream.Stream<A, E>) => Effect.map(Stream.runCollect(stream), (c) => [...c])
const last = <A>(items: ReadonlyArray<A>) => items[items.length - 1]
const fileOf = (location: string, path: string) => MediaModels.fileId(location, path)
const dimensions = (bytes: Uint8Array) => Effect.promise(() => sharp(bytes).metadata())

describe("Preview", () => {
  it.scopedLive("B shows every thumbnail A made, fetched from A; with A gone, C (which fetched them) serves them to D", () =>
    Effect.gen(function*() {
      const members = ["alice", "bob", "carol", "dave"]
      const net = yield* Nodes.network()
      const aliceScope = yield* Scope.make()
      const alice = yield* net.node("alice", members, { scope: aliceScope })
      const bob = yield* net.node("bob", members)
      const carol = yield* net.node("carol", members)
      yield* alice.connect(bob)
      yield* alice.connect(carol)

      const root = yield* folder
      const copy = yield* tempDir()
      // the same picture in a second location, under another name
      yield* Effect.promise(() => fs.copyFile(nodePath.join(root, "pics/photo.jpg"), nodePath.join(copy, "same.jpg")))
      yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Pictures" }, root))
      yield* Stream.runDrain(alice.media.index(L, { id: "loc2", name: "Copy" }, copy))

      const progress = yield* drain(alice.preview.generate(L))
      // six pictures and the corrupt one: the copy is the same content, so no second thumbnail
      expect(last(progress)).toEqual({ total: 7, made: 6, failed: 1, skipped: 0 })
      const records = yield* Effect.orDie(alice.engine.query(Models.thumbnails))
      expect(records.length).toBe(7)
      const photoHash = (yield* Effect.orDie(alice.engine.get(MediaModels.files, fileOf("loc1", "pics/photo.jpg")))).pipe(Option.getOrThrow).hash
      const copyHash = (yield* Effect.orDie(alice.engine.get(MediaModels.files, fileOf("loc2", "same.jpg")))).pipe(Option.getOrThrow).hash
      expect(copyHash).toBe(photoHash)
      // a second pass makes nothing: the failure is recorded, not retried
      expect(last(yield* drain(alice.preview.generate(L)))).toEqual({ total: 0, made: 0, failed: 0, skipped: 0 })

      // bob holds no originals: he makes nothing, and shows every thumbnail from alice
      yield* Nodes.thumbnailRecords(bob, 7)
      yield* Nodes.thumbnailRecords(carol, 7)
      yield* Nodes.fileRecords(bob, 9)
      expect(last(yield* drain(bob.preview.generate(L)))).toEqual({ total: 0, made: 0, failed: 0, skipped: 0 })
      for (const f of FORMATS) {
        const shown = yield* bob.preview.thumbnail(L, fileOf("loc1", `pics/${f.name}`))
        expect(shown.from).toBe("alice")
        expect(sha256(shown.bytes)).toBe(shown.record.hash)
        const meta = yield* dimensions(shown.bytes)
        expect(meta.format).toBe("webp")
        expect([meta.width, meta.height]).toEqual([shown.record.width, shown.record.height])
        const scale = Math.min(1, 512 / Math.max(f.width, f.height))
        expect([meta.width, meta.height]).toEqual([Math.round(f.width * scale), Math.round(f.height * scale)])
      }
      // the moved copy names the same thumbnail, now in bob's cache
      const same = yield* bob.preview.thumbnail(L, fileOf("loc2", "same.jpg"))
      expect(same.from).toBe("cache")
      expect(same.record.source).toBe(photoHash)
      const broken = yield* Effect.either(bob.preview.thumbnail(L, fileOf("loc1", "broken.jpg")))
      expect(Either.isLeft(broken) && broken.left.reason).toBe("Failed")
      const brokenRecord = Option.getOrThrow(yield* bob.preview.record(L, fileOf("loc1", "broken.jpg")))
      expect([brokenRecord.state, brokenRecord.reason]).toEqual(["failed", "Undecodable"])

      // carol fetches everything in the background, as records arrive
      yield* Effect.forkScoped(Stream.runDrain(carol.preview.watch(L, { prefetch: true, debounce: Duration.millis(20) })))
      const carolCache = yield* carol.preview.cache(L)
      yield* Effect.repeat(carolCache.hashes, { schedule: Schedule.spaced(Duration.millis(20)), until: (held) => held.length === 6 })
      expect(last(yield* drain(carol.preview.fetchAll(L)))).toEqual({ total: 0, fetched: 0, unavailable: 0 })

      // alice goes; dave, new, reaches only carol
      yield* Scope.close(aliceScope, Exit.void)
      const dave = yield* net.node("dave", members)
      yield* dave.connect(carol)
      yield* Nodes.thumbnailRecords(dave, 7)
      yield* Nodes.fileRecords(dave, 9)
      for (const f of FORMATS) {
        const shown = yield* dave.preview.thumbnail(L, fileOf("loc1", `pics/${f.name}`))
        expect(shown.from).toBe("carol")
        expect(sha256(shown.bytes)).toBe(shown.record.hash)
      }
    }), { timeout: 60_000 })

  it.scopedLive("a peer that answers wrong bytes is refused, and the next one asked", () =>
    Effect.gen(function*() {
      // "abel" sorts before "alice": with no location online on either, he is asked first
      const members = ["abel", "alice", "dave"]
      const net = yield* Nodes.network()
      const alice = yield* net.node("alice", members)
      const dave = yield* net.node("dave", members)
      const abel = yield* net.bare("abel", members)
      let lied = 0
      yield* abel.host.register(Plugin.make({
        name: "liar",
        ...Protocol.preview,
        handle: (stream) =>
          Effect.gen(function*() {
            lied++
            const reader = yield* Framing.reader(stream.source, { maxFrameBytes: Protocol.MAX_MESSAGE_BYTES })
            const get = JSON.parse(new TextDecoder().decode(Option.getOrThrow(yield* reader.frame))) as { hashes: Array<string> }
            for (const hash of get.hashes) {
              yield* stream.write(Wire.answerFrame(hash, new Uint8Array([1, 2, 3, 4])))
            }
            yield* stream.end
          })
      }))
      const root = yield* tempDir()
      yield* write(nodePath.join(root, "a.png"), yield* picture(1, 64, 64, (s) => s.png()))
      yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Pictures" }, root))
      yield* Stream.runDrain(alice.preview.generate(L))
      // alice's location offline: she is not preferred as a holder of originals, and abel is asked first
      yield* alice.mounts.unmount(L, "loc1")
      yield* dave.connect(alice)
      yield* Nodes.thumbnailRecords(dave, 1)
      yield* Nodes.fileRecords(dave, 1)
      yield* dave.connect(abel)

      const shown = yield* dave.preview.thumbnail(L, fileOf("loc1", "a.png"))
      expect(shown.from).toBe("alice")
      expect(lied).toBe(1)
      expect(sha256(shown.bytes)).toBe(shown.record.hash)
      const cache = yield* dave.preview.cache(L)
      expect(yield* cache.hashes).toEqual([shown.record.hash])

      // with the liar the only one left, nothing is taken from him
      const alone = yield* net.node("erin", [...members, "erin"])
      yield* alone.engine.mutate([
        ...(yield* Effect.orDie(alice.engine.query(MediaModels.files))).map(({ id, ...v }) => MediaModels.files.create(id, v)),
        ...(yield* Effect.orDie(alice.engine.query(Models.thumbnails))).map(({ id, ...v }) => Models.thumbnails.create(id, v))
      ]).pipe(Effect.orDie)
      yield* alone.connect(abel)
      const refused = yield* Effect.either(alone.preview.thumbnail(L, fileOf("loc1", "a.png")))
      expect(Either.isLeft(refused) && refused.left.reason).toBe("Unavailable")
      expect(yield* (yield* alone.preview.cache(L)).hashes).toEqual([])
    }), { timeout: 60_000 })

  it.scopedLive("a member with a location of the library online is asked before the others, whatever their ids", () =>
    Effect.gen(function*() {
      const members = ["abel", "alice", "dave"]
      const net = yield* Nodes.network()
      const alice = yield* net.node("alice", members)
      const dave = yield* net.node("dave", members)
      // abel holds no location and no thumbnail: he answers Missing, and counts how often he is asked
      const abel = yield* net.bare("abel", members)
      let asked = 0
      yield* abel.host.register(Plugin.make({
        name: "empty",
        ...Protocol.preview,
        handle: (stream) =>
          Effect.gen(function*() {
            asked++
            const reader = yield* Framing.reader(stream.source, { maxFrameBytes: Protocol.MAX_MESSAGE_BYTES })
            while (true) {
              const frame = yield* reader.frame
              if (Option.isNone(frame)) break
              const get = JSON.parse(new TextDecoder().decode(frame.value)) as { hashes: Array<string> }
              for (const hash of get.hashes) yield* stream.write(Wire.answerFrame(hash, undefined))
            }
            yield* stream.end
          })
      }))
      const root = yield* tempDir()
      yield* write(nodePath.join(root, "a.png"), yield* picture(1, 64, 64, (s) => s.png()))
      yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Pictures" }, root))
      yield* Stream.runDrain(alice.preview.generate(L))
      const changes = yield* dave.presence.changes
      yield* dave.connect(abel)
      yield* dave.connect(alice)
      yield* Stream.runDrain(Stream.take(Stream.filter(changes, (c) => c._tag === "Online" && c.peer === "alice"), 1))
      yield* Nodes.thumbnailRecords(dave, 1)
      yield* Nodes.fileRecords(dave, 1)

      const shown = yield* dave.preview.thumbnail(L, fileOf("loc1", "a.png"))
      expect(shown.from).toBe("alice")
      expect(asked).toBe(0)
    }), { timeout: 60_000 })

  it.scopedLive("a deleted file's thumbnail is collected: from the cache at once, its record once an orphan for orphanGrace; a kept one stays", () =>
    Effect.gen(function*() {
      const net = yield* Nodes.network()
      const alice = yield* net.node("alice", ["alice"], { preview: { orphanGrace: Duration.millis(300) } })
      const root = yield* tempDir()
      yield* write(nodePath.join(root, "keep.png"), yield* picture(1, 64, 64, (s) => s.png()))
      yield* write(nodePath.join(root, "gone.png"), yield* picture(2, 64, 64, (s) => s.png()))
      yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Pictures" }, root))
      yield* Stream.runDrain(alice.preview.generate(L))
      const keep = Option.getOrThrow(yield* alice.preview.record(L, fileOf("loc1", "keep.png")))
      const gone = Option.getOrThrow(yield* alice.preview.record(L, fileOf("loc1", "gone.png")))
      const cache = yield* alice.preview.cache(L)
      expect((yield* cache.hashes).length).toBe(2)

      yield* Effect.promise(() => fs.rm(nodePath.join(root, "gone.png")))
      yield* Stream.runDrain(alice.media.rescan(L, "loc1"))
      expect(yield* alice.preview.collect(L)).toEqual({ cached: 1, records: 0 })
      expect(yield* cache.hashes).toEqual([keep.hash])
      // the record stays until it has been an orphan for the grace (its file's record might be on its way)
      expect(Option.isSome(yield* alice.preview.record(L, { hash: gone.source }))).toBe(true)
      yield* Effect.sleep(Duration.millis(400))
      expect(yield* alice.preview.collect(L)).toEqual({ cached: 0, records: 1 })
      expect(yield* alice.preview.record(L, { hash: gone.source })).toEqual(Option.none())
      expect((yield* Effect.orDie(alice.engine.query(Models.thumbnails))).map((t) => t.id)).toEqual([keep.id])
      expect((yield* alice.preview.thumbnail(L, fileOf("loc1", "keep.png"))).from).toBe("cache")
      expect(yield* alice.preview.collect(L)).toEqual({ cached: 0, records: 0 })

      // bytes no record names (yet: a thumbnail just made, its record not committed) are kept for the grace, then removed
      const stray = new Uint8Array([1, 2, 3])
      yield* cache.put(sha256(stray), stray)
      expect(yield* alice.preview.collect(L)).toEqual({ cached: 0, records: 0 })
      expect(yield* cache.hashes).toContain(sha256(stray))
      yield* Effect.sleep(Duration.millis(400))
      expect(yield* alice.preview.collect(L)).toEqual({ cached: 1, records: 0 })
      expect(yield* cache.hashes).toEqual([keep.hash])
    }))
})

describe("Cache", () => {
  const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill)

  it.scopedLive("keeps to its budget by evicting the least recently used, and reopens with what it held", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir()
      const [a, b, c, d] = [bytes(100, 1), bytes(100, 2), bytes(100, 3), bytes(100, 4)]
      const cache = yield* Cache.make({ directory, budget: 300 })
      for (const x of [a, b, c]) yield* cache.put(sha256(x), x)
      // a is used again: b is now the least recently used
      expect(Option.isSome(yield* cache.get(sha256(a)))).toBe(true)
      yield* cache.put(sha256(d), d)
      expect(new Set(yield* cache.hashes)).toEqual(new Set([a, c, d].map(sha256)))
      expect(yield* cache.get(sha256(b))).toEqual(Option.none())
      expect(yield* cache.size).toBe(300)

      const reopened = yield* Cache.make({ directory, budget: 300 })
      expect(new Set(yield* reopened.hashes)).toEqual(new Set([a, c, d].map(sha256)))
    }))

  it.scopedLive("write (through the thread pool, several at once) keeps what put keeps; after a crash that renamed a file before its bytes reached the disk, the file is dropped on read, never returned, and a leftover temporary is removed", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir()
      const cache = yield* Cache.make({ directory, budget: 250 })
      const [a, b, c] = [bytes(100, 1), bytes(100, 2), bytes(100, 3)]
      yield* Effect.all([a, b].map((x) => cache.write(sha256(x), x)), { concurrency: "unbounded", discard: true })
      expect(yield* cache.size).toBe(200)
      expect(Option.getOrThrow(yield* cache.get(sha256(a)))).toEqual(a)
      const wrong = yield* Effect.either(cache.write(sha256(c), a))
      expect(Either.isLeft(wrong) && wrong.left.reason).toBe("HashMismatch")
      // over the budget: b (least recently used) goes
      yield* cache.write(sha256(c), c, { hashed: true })
      expect(new Set(yield* cache.hashes)).toEqual(new Set([a, c].map(sha256)))

      // the crash: a's file holds only part of its bytes, and a write was cut before its rename
      yield* Effect.promise(() => fs.writeFile(nodePath.join(directory, sha256(a)), a.subarray(0, 40)))
      const leftover = nodePath.join(directory, `${sha256(b)}.0123456789ab.tmp`)
      yield* Effect.promise(() => fs.writeFile(leftover, b))
      const reopened = yield* Cache.make({ directory, budget: 250 })
      expect(yield* Effect.promise(() => fs.readdir(directory))).not.toContain(nodePath.basename(leftover))
      expect(yield* reopened.get(sha256(a))).toEqual(Option.none())
      expect(yield* Effect.promise(() => fs.readdir(directory))).toEqual([sha256(c)])
      expect(Option.getOrThrow(yield* reopened.get(sha256(c)))).toEqual(c)
      // written again (as a fetch would, checked against its hash), it is served again
      yield* reopened.write(sha256(a), a)
      expect(Option.getOrThrow(yield* reopened.get(sha256(a)))).toEqual(a)
    }))

  const packsIn = (directory: string) => Effect.promise(async () => (await fs.readdir(directory)).filter((n) => n.endsWith(".pack")).sort())

  it.scopedLive("putMany of UNPACK_LIMIT or more appends to one pack (fewer are loose files); evicts the least recently used across packs; what was removed stays removed after a reopen", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir()
      const cache = yield* Cache.make({ directory, budget: 1400 })
      const many = Array.from({ length: Cache.UNPACK_LIMIT }, (_, i) => bytes(100, 10 + i))
      const few = [bytes(100, 1), bytes(100, 2)]
      yield* cache.putMany(many.map((x) => ({ hash: sha256(x), bytes: x })))
      yield* cache.putMany(few.map((x) => ({ hash: sha256(x), bytes: x })))
      const names = yield* Effect.promise(() => fs.readdir(directory))
      expect(yield* packsIn(directory)).toEqual(["000001.pack"])
      expect(names.filter((n) => !n.endsWith(".pack")).sort()).toEqual(few.map(sha256).sort())
      expect(yield* cache.size).toBe(100 * (many.length + few.length))
      for (const x of many) expect(Option.getOrThrow(yield* cache.get(sha256(x)))).toEqual(x)
      // `many` least recently used now, in order (each was read above, then `few` are read again)
      yield* cache.get(sha256(few[0]!))
      yield* cache.get(sha256(few[1]!))
      const more = Array.from({ length: Cache.UNPACK_LIMIT }, (_, i) => bytes(100, 50 + i))
      yield* cache.putMany(more.map((x) => ({ hash: sha256(x), bytes: x })))
      // 1400 bytes hold 14 of the 18 entries: the 4 least recently used went, `many`'s first 4
      expect(new Set(yield* cache.hashes)).toEqual(new Set([...many.slice(4), ...few, ...more].map(sha256)))
      const reopened = yield* Cache.make({ directory, budget: 1400 })
      expect(new Set(yield* reopened.hashes)).toEqual(new Set([...many.slice(4), ...few, ...more].map(sha256)))
      for (const x of [...many.slice(4), ...more]) expect(Option.getOrThrow(yield* reopened.get(sha256(x)))).toEqual(x)
      expect(yield* reopened.get(sha256(many[0]!))).toEqual(Option.none())
    }))

  it.scopedLive("a pack mostly removed is compacted: its live entries move to the open pack, in their place of recency, and it is deleted; an emptied pack is deleted", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir()
      const cache = yield* Cache.make({ directory, packBytes: 1000 })
      const first = Array.from({ length: 10 }, (_, i) => bytes(100, i))
      const second = Array.from({ length: 10 }, (_, i) => bytes(100, 20 + i))
      yield* cache.putMany(first.map((x) => ({ hash: sha256(x), bytes: x })))
      yield* cache.putMany(second.map((x) => ({ hash: sha256(x), bytes: x })))
      expect(yield* packsIn(directory)).toEqual(["000001.pack", "000002.pack"])
      // 6 of the first pack's 10 gone: less than half of it is live
      const keep = new Set([first[2], first[5], first[7], first[9], ...second].map((x) => sha256(x!)))
      expect(yield* cache.retain((h) => keep.has(h))).toBe(6)
      // moved to a third pack: the second is full (past packBytes)
      expect(yield* packsIn(directory)).toEqual(["000002.pack", "000003.pack"])
      expect(yield* cache.hashes).toEqual([first[2], first[5], first[7], first[9], ...second].map((x) => sha256(x!)))
      for (const h of keep) expect(sha256(Option.getOrThrow(yield* cache.get(h)))).toBe(h)
      const reopened = yield* Cache.make({ directory, packBytes: 1000 })
      expect(new Set(yield* reopened.hashes)).toEqual(keep)
      expect(yield* reopened.retain(() => false)).toBe(14)
      expect(yield* packsIn(directory)).toEqual([])
      expect(yield* reopened.size).toBe(0)
    }))

  it.scopedLive("a pack whose tail a crash cut or left with other bytes loses that tail when the cache opens; a record corrupted in the middle is dropped on read; putMany with one wrong hash stores none", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir()
      const cache = yield* Cache.make({ directory })
      const xs = Array.from({ length: 10 }, (_, i) => bytes(100, i))
      const wrong = yield* Effect.either(cache.putMany(xs.map((x, i) => ({ hash: sha256(i === 9 ? xs[0]! : x), bytes: x }))))
      expect(Either.isLeft(wrong) && wrong.left.reason).toBe("HashMismatch")
      expect(yield* cache.size).toBe(0)
      yield* cache.putMany(xs.map((x) => ({ hash: sha256(x), bytes: x })))
      const pack = nodePath.join(directory, "000001.pack")
      const record = Cache.RECORD_HEADER + 100
      // the last record's bytes not those of its hash (a crash after the append, before its data reached the disk)
      const handle = yield* Effect.promise(() => fs.open(pack, "r+"))
      yield* Effect.promise(() => handle.write(new Uint8Array(100).fill(99), 0, 100, 9 * record + Cache.RECORD_HEADER))
      // a record in the middle tampered with
      yield* Effect.promise(() => handle.write(new Uint8Array(10).fill(99), 0, 10, 3 * record + Cache.RECORD_HEADER))
      yield* Effect.promise(() => handle.close())
      const reopened = yield* Cache.make({ directory })
      expect((yield* Effect.promise(() => fs.stat(pack))).size).toBe(9 * record)
      expect(yield* reopened.size).toBe(900)
      expect(yield* reopened.get(sha256(xs[3]!))).toEqual(Option.none())
      expect(yield* reopened.size).toBe(800)
      // a header cut short: dropped too
      yield* Effect.promise(() => fs.truncate(pack, 8 * record + 20))
      const again = yield* Cache.make({ directory })
      expect((yield* Effect.promise(() => fs.stat(pack))).size).toBe(8 * record)
      expect(new Set(yield* again.hashes)).toEqual(new Set([0, 1, 2, 4, 5, 6, 7].map((i) => sha256(xs[i]!))))
      for (const i of [0, 1, 2, 4, 5, 6, 7]) expect(Option.getOrThrow(yield* again.get(sha256(xs[i]!)))).toEqual(xs[i])
    }))

  it.scopedLive("a write that cannot be made fails with Storage and leaves nothing behind", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir()
      const cache = yield* Cache.make({ directory })
      const a = bytes(100, 1)
      yield* Effect.promise(() => fs.rm(directory, { recursive: true }))
      const failed = yield* Effect.either(cache.write(sha256(a), a))
      expect(Either.isLeft(failed) && failed.left.reason).toBe("Storage")
      expect(yield* cache.hashes).toEqual([])
      expect(yield* cache.size).toBe(0)
    }))

  it.scopedLive("refuses bytes that do not match their hash, and drops an entry corrupted on disk", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir()
      const cache = yield* Cache.make({ directory })
      const a = bytes(50, 7)
      const wrong = yield* Effect.either(cache.put(sha256(bytes(50, 8)), a))
      expect(Either.isLeft(wrong) && wrong.left.reason).toBe("HashMismatch")
      yield* cache.put(sha256(a), a)
      yield* Effect.promise(() => fs.writeFile(nodePath.join(directory, sha256(a)), "tampered"))
      expect(yield* cache.get(sha256(a))).toEqual(Option.none())
      expect(yield* cache.hashes).toEqual([])
    }))

  it.scopedLive("readMany hands the bytes in order (undefined where not held or not asked) until told to stop; an entry found on disk is hashed at its first read, and dropped if it does not match", () =>
    Effect.gen(function*() {
      const directory = yield* tempDir()
      const [a, b, c] = [bytes(60, 1), bytes(70, 2), bytes(80, 3)]
      const first = yield* Cache.make({ directory })
      for (const x of [a, b, c]) yield* first.put(sha256(x), x)
      const readAll = (cache: Cache.Cache, hashes: ReadonlyArray<string | undefined>, from = 0, stopAfter = Infinity) =>
        Effect.gen(function*() {
          const handed: Array<[string | undefined, Uint8Array | undefined]> = []
          const next = yield* cache.readMany(hashes, from, (hash, got) => (handed.push([hash, got]), handed.length < stopAfter))
          return { next, handed }
        })
      const missing = sha256(bytes(10, 9))
      expect(yield* readAll(first, [sha256(a), undefined, missing, sha256(c)])).toEqual({
        next: 4,
        handed: [[sha256(a), a], [undefined, undefined], [missing, undefined], [sha256(c), c]]
      })
      // stopped after two, from the second: the index after the last handed
      expect(yield* readAll(first, [sha256(a), sha256(b), sha256(c)], 1, 2)).toEqual({ next: 3, handed: [[sha256(b), b], [sha256(c), c]] })
      expect(yield* readAll(first, [sha256(a), sha256(b), sha256(c)], 0, 1)).toEqual({ next: 1, handed: [[sha256(a), a]] })
      // each read marks its entry most recently used (least recently used first)
      expect(yield* first.hashes).toEqual([b, c, a].map(sha256))

      // reopened: b tampered with on disk while closed is not handed, and is dropped
      yield* Effect.promise(() => fs.writeFile(nodePath.join(directory, sha256(b)), bytes(70, 5)))
      const reopened = yield* Cache.make({ directory })
      expect((yield* readAll(reopened, [sha256(a), sha256(b)])).handed).toEqual([[sha256(a), a], [sha256(b), undefined]])
      expect(new Set(yield* reopened.hashes)).toEqual(new Set([a, c].map(sha256)))
      // what a peer is sent is hashed until seen to match, what this node shows always: c tampered with now
      // is dropped by get (here c was never read since it reopened, so readMany drops it too)
      yield* Effect.promise(() => fs.writeFile(nodePath.join(directory, sha256(c)), bytes(80, 6)))
      expect((yield* readAll(reopened, [sha256(c)])).handed).toEqual([[sha256(c), undefined]])
      yield* Effect.promise(() => fs.writeFile(nodePath.join(directory, sha256(a)), bytes(60, 6)))
      expect(yield* reopened.get(sha256(a))).toEqual(Option.none())
      expect(yield* reopened.hashes).toEqual([])
    }))
})
