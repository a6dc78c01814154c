import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import type { MemoryNetwork, NetworkEvent } from "../../transport/MemoryTransport.js"
import type * as Media from "./Media.js"
import * as Models from "./Models.js"
import * as Protocol from "./Protocol.js"
import { digest, joined, pattern, tempDir, write } from "./testing/Files.js"
import * as Nodes from "./testing/Nodes.js"

const L = Nodes.LIBRARY
const members = ["alice", "bob"]
const SIZE = 300_000
const content = pattern(SIZE)
const id = Models.fileId("loc1", "videos/clip.mp4")

const read = (node: Nodes.Node, options?: Media.ReadOptions) =>
  Effect.either(Effect.flatMap(node.media.read(L, { id }, options), (reading) => Effect.map(Stream.runCollect(reading.bytes), (c) => digest(joined(c)))))

/** Media streams seen on the network from now on (distinct ids), and the ones seen ended by `from`. */
const mediaStreams = (network: MemoryNetwork) =>
  Effect.gen(function*() {
    const events = yield* network.subscribe
    const seen = yield* Ref.make({ opened: new Set<number>(), ended: new Set<string>() })
    yield* Effect.forkScoped(Stream.runForEach(Stream.fromQueue(events), (e: NetworkEvent) =>
      e._tag === "Delivered" && e.protocol === Protocol.MEDIA_ID
        ? Ref.update(seen, ({ opened, ended }) => ({
          opened: new Set(opened).add(e.stream),
          ended: e.end ? new Set(ended).add(`${e.from}:${e.stream}`) : ended
        }))
        : Effect.void))
    return Effect.zipRight(Effect.repeat(Queue.size(events), { until: (n) => n === 0 }), Ref.get(seen))
  })

/** Media streams `node` holds open to its peers. */
const held = (node: Nodes.Node) =>
  Effect.map(node.host.streams, (all) => all.filter((s) => s.protocol === Protocol.MEDIA_ID).reduce((n, s) => n + s.outbound, 0))

const setup = (media?: Omit<Media.Options, "engine">, engine?: Nodes.Options["engine"]) =>
  Effect.gen(function*() {
    const net = yield* Nodes.network({ ...(media === undefined ? {} : { media }), ...(engine === undefined ? {} : { engine }) })
    const alice = yield* net.node("alice", members)
    const bob = yield* net.node("bob", members)
    const root = yield* tempDir()
    yield* write(nodePath.join(root, "videos/clip.mp4"), content)
    yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Alice's videos" }, root))
    yield* Nodes.share(alice, [bob])
    yield* alice.connect(bob)
    const changes = yield* Effect.scoped(Effect.gen(function*() {
      const changes = yield* bob.presence.changes
      if ((yield* bob.presence.peers(L, "loc1")).length > 0) return
      yield* Stream.runDrain(Stream.take(Stream.filter(changes, (c) => c._tag === "Online" && c.peer === "alice"), 1))
    }))
    void changes
    return { net, alice, bob, root }
  })

describe("Media: streams reused between reads", () => {
  it.scopedLive("reads in a row to the same peer, and a refused one between them, go over one stream", () =>
    Effect.gen(function*() {
      const { bob, net } = yield* setup()
      const streams = yield* mediaStreams(net.network)
      expect(yield* read(bob, { offset: 1000, length: 65_536 })).toEqual(Either.right(digest(content.slice(1000, 66_536))))
      const past = yield* read(bob, { offset: SIZE })
      expect(Either.isLeft(past) && past.left.reason).toBe("RangeNotSatisfiable")
      expect(yield* read(bob)).toEqual(Either.right(digest(content)))
      expect(yield* read(bob, { offset: SIZE - 7 })).toEqual(Either.right(digest(content.slice(SIZE - 7))))
      expect((yield* streams).opened.size).toBe(1)
    }))

  it.scopedLive("a read dropped mid-answer closes its stream: the next read gets its own bytes on a new one", () =>
    Effect.gen(function*() {
      const { bob, net } = yield* setup()
      const streams = yield* mediaStreams(net.network)
      const reading = yield* bob.media.read(L, { id })
      // a few bytes of the whole file, then the consumer goes away with most of the answer unread
      const first = yield* Stream.runCollect(Stream.take(reading.bytes, 1))
      expect(joined(first).length).toBeGreaterThan(0)
      expect(yield* read(bob, { offset: 200_000, length: 1234 })).toEqual(Either.right(digest(content.slice(200_000, 201_234))))
      expect(yield* read(bob, { offset: 5, length: 100_000 })).toEqual(Either.right(digest(content.slice(5, 100_005))))
      // the dropped read's stream, then one for both others
      expect((yield* streams).opened.size).toBe(2)
    }))

  it.scopedLive("a file changed on disk between two reads on one stream (the server holds it open) is refused Changed, before any byte", () =>
    Effect.gen(function*() {
      const { bob, net, root } = yield* setup()
      const streams = yield* mediaStreams(net.network)
      const path = nodePath.join(root, "videos/clip.mp4")
      expect(yield* read(bob, { offset: 1000, length: 10 })).toEqual(Either.right(digest(content.slice(1000, 1010))))
      // same size, another time: only the time tells
      yield* Effect.promise(async () => {
        await fs.writeFile(path, pattern(SIZE).reverse())
        const later = new Date(Date.now() + 60_000)
        await fs.utimes(path, later, later)
      })
      const changed = yield* read(bob, { offset: 2000, length: 10 })
      expect(Either.isLeft(changed) && changed.left.reason).toBe("Changed")
      // cut short by a few bytes: the size tells
      yield* Effect.promise(() => fs.truncate(path, SIZE - 3))
      const shorter = yield* read(bob, { offset: 3000, length: 10 })
      expect(Either.isLeft(shorter) && shorter.left.reason).toBe("Changed")
      expect((yield* streams).opened.size).toBe(1)
    }))

  it.scopedLive("reads in a row hold the library's engine between them, on both ends, instead of opening it for each", () =>
    Effect.gen(function*() {
      const opened = new Map<string, number>()
      const counting: Nodes.Options["engine"] = (node, plain) => (library) =>
        Effect.zipRight(Effect.acquireRelease(Effect.sync(() => opened.set(node, (opened.get(node) ?? 0) + 1)), () => Effect.void), plain(library))
      const { bob } = yield* setup(undefined, counting)
      opened.clear() // (alice's indexing opened it once)
      for (let i = 0; i < 5; i++) expect(yield* read(bob, { offset: 1000 * i, length: 10 })).toEqual(Either.right(digest(content.slice(1000 * i, 1000 * i + 10))))
      expect([opened.get("alice"), opened.get("bob")]).toEqual([1, 1])
    }))

  it.scopedLive("reads in a row look the file's record up once on each end, and again after a commit that touched a file", () =>
    Effect.gen(function*() {
      const lookups = new Map<string, number>()
      const count = (node: string) => Effect.sync(() => lookups.set(node, (lookups.get(node) ?? 0) + 1))
      const counting: Nodes.Options["engine"] = (node, plain) => (library) =>
        Effect.map(plain(library), (engine) => ({
          ...engine,
          get: (model, recordId) => Effect.zipRight(count(node), engine.get(model, recordId)),
          query: (model, build) => Effect.zipRight(count(node), engine.query(model, build))
        }))
      const { alice, bob } = yield* setup(undefined, counting)
      lookups.clear()
      for (let i = 0; i < 5; i++) expect(yield* read(bob, { offset: 1000 * i, length: 10 })).toEqual(Either.right(digest(content.slice(1000 * i, 1000 * i + 10))))
      expect([lookups.get("alice"), lookups.get("bob")]).toEqual([1, 1])
      // a commit that touches no file keeps what is held; one that touches a file (on each node) does not
      yield* Nodes.everywhere([alice, bob], [Models.locations.create("loc2", { name: "Other" })])
      expect(yield* read(bob, { length: 10 })).toEqual(Either.right(digest(content.slice(0, 10))))
      expect([lookups.get("alice"), lookups.get("bob")]).toEqual([1, 1])
      yield* Nodes.everywhere([alice, bob], [Models.files.create(Models.fileId("loc2", "x"), { location: "loc2", path: "x", size: 1, mtime: 1, mime: "text/plain", hash: "0".repeat(64) })])
      expect(yield* read(bob, { length: 10 })).toEqual(Either.right(digest(content.slice(0, 10))))
      expect([lookups.get("alice"), lookups.get("bob")]).toEqual([2, 2])
    }))

  it.scopedLive("a file rewritten and its record brought up to date between two reads reads anew on both ends: its new bytes, not Changed", () =>
    Effect.gen(function*() {
      const { alice, bob, root } = yield* setup()
      const path = nodePath.join(root, "videos/clip.mp4")
      expect(yield* read(bob, { offset: 10, length: 100 })).toEqual(Either.right(digest(content.slice(10, 110))))
      const longer = pattern(SIZE + 5000).reverse()
      yield* Effect.promise(() => fs.writeFile(path, longer))
      yield* Stream.runDrain(alice.media.rescan(L, "loc1"))
      // as sync would bring it to bob
      const { id: _, ...updated } = Option.getOrThrow(yield* alice.engine.get(Models.files, id))
      yield* bob.engine.mutate([Models.files.update(id, updated)])
      expect(yield* read(bob, { offset: SIZE, length: 5000 })).toEqual(Either.right(digest(longer.slice(SIZE))))
      expect(yield* read(bob)).toEqual(Either.right(digest(longer)))
      // and removed: NotFound, not the record held
      yield* Nodes.everywhere([alice, bob], [Models.files.delete(id)])
      const gone = yield* read(bob)
      expect(Either.isLeft(gone) && gone.left.reason).toBe("NotFound")
    }))

  it.scopedLive("an idle stream is closed after the idle timeout, and the next read opens a new one", () =>
    Effect.gen(function*() {
      const { bob, net } = yield* setup({ idleTimeout: "200 millis" })
      const streams = yield* mediaStreams(net.network)
      expect(yield* read(bob, { length: 10 })).toEqual(Either.right(digest(content.slice(0, 10))))
      expect(yield* held(bob)).toBe(1)
      yield* Effect.repeat(held(bob), { until: (n) => n === 0, schedule: Schedule.spaced("50 millis") })
      expect(yield* read(bob, { length: 10 })).toEqual(Either.right(digest(content.slice(0, 10))))
      expect((yield* streams).opened.size).toBe(2)
    }))

  it.scopedLive("an idle stream is closed when its connection drops", () =>
    Effect.gen(function*() {
      const { bob, net } = yield* setup()
      expect(yield* read(bob, { length: 10 })).toEqual(Either.right(digest(content.slice(0, 10))))
      expect(yield* held(bob)).toBe(1)
      yield* net.network.disconnect("alice", "bob")
      // (presence announces again only on its refresh after a reconnect: a read after it is the stale-stream case, untested here)
      yield* Effect.repeat(held(bob), { until: (n) => n === 0, schedule: Schedule.spaced("20 millis") })
    }))
})
