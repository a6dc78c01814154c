import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import * as Framing from "../../transport/Framing.js"
import type { MemoryNetwork, NetworkEvent } from "../../transport/MemoryTransport.js"
import * as Plugin from "../Plugin.js"
import type * as Media from "./Media.js"
import * as Models from "./Models.js"
import * as Mounts from "./Mounts.js"
import * as Presence from "./Presence.js"
import * as Protocol from "./Protocol.js"
import { digest, joined, pattern, sha256, tempDir, write } from "./testing/Files.js"
import * as Nodes from "./testing/Nodes.js"

const L = Nodes.LIBRARY
const members = ["alice", "bob", "carol"]
const SIZE = 300_000
const content = pattern(SIZE)
const id = Models.fileId("loc1", "videos/clip.mp4")



/** The bytes `node` reads, or its error. */
const read = (node: Nodes.Node, file: Media.FileRef, options?: Media.ReadOptions) =>
  Effect.either(Effect.flatMap(node.media.read(L, file, options), (reading) => Effect.map(Stream.runCollect(reading.bytes), (c) => digest(joined(c)))))

const reason = <A>(outcome: Either.Either<A, Media.MediaError>) => (Either.isLeft(outcome) ? outcome.left.reason : "read")

/** Media bytes delivered on the network from each peer (to `to`, when given), from now on, counted as they come. */
const mediaSenders = (network: MemoryNetwork, to?: string) =>
  Effect.gen(function*() {
    const events = yield* network.subscribe
    const senders = yield* Ref.make(new Map<string, number>())
    yield* Effect.forkScoped(Stream.runForEach(Stream.fromQueue(events), (e: NetworkEvent) =>
      e._tag === "Delivered" && e.protocol === Protocol.MEDIA_ID && e.bytes > 0 && (to === undefined || e.to === to)
        ? Ref.update(senders, (all) => new Map(all).set(e.from, (all.get(e.from) ?? 0) + e.bytes))
        : Effect.void))
    // what was published before this runs has been counted once the queue is drained
    return Effect.zipRight(Effect.repeat(Queue.size(events), { until: (n) => n === 0 }), Ref.get(senders))
  })

/** Waits until `node` sees `location` online (or offline) on `peer`. */
const online = (node: Nodes.Node, location: string, peer: string, tag: "Online" | "Offline" = "Online") =>
  Effect.scoped(Effect.gen(function*() {
    const changes = yield* node.presence.changes
    if ((yield* node.presence.peers(L, location)).some((h) => h.peer === peer) === (tag === "Online")) return
    yield* Stream.runDrain(Stream.take(Stream.filter(changes, (c) => c._tag === tag && c.location === location && c.peer === peer), 1))
  }))

/** alice holds loc1 (a clip and a note), indexed and shared with bob (and carol); bob is connected to alice. */
const setup = Effect.gen(function*() {
  const net = yield* Nodes.network()
  const alice = yield* net.node("alice", members)
  const bob = yield* net.node("bob", members)
  const root = yield* tempDir()
  yield* write(nodePath.join(root, "videos/clip.mp4"), content)
  yield* write(nodePath.join(root, "note.txt"), "hello")
  // whole seconds, so a test can set the same time again (a Date has no sub-millisecond part)
  yield* Effect.promise(() => fs.utimes(nodePath.join(root, "note.txt"), 1_700_000_000, 1_700_000_000))
  yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Alice's videos" }, root))
  yield* Nodes.share(alice, [bob])
  yield* alice.connect(bob)
  yield* online(bob, "loc1", "alice")
  return { net, alice, bob, root }
})

describe("Media: reading", () => {
  it.scopedLive("a remote file reads whole, and by ranges at the start, in the middle, at the end and past the end", () =>
    Effect.gen(function*() {
      const { bob, net } = yield* setup
      const senders = yield* mediaSenders(net.network)
      expect(yield* read(bob, { id })).toEqual(Either.right(digest(content)))
      expect(yield* read(bob, { id }, { length: 1000 })).toEqual(Either.right(digest(content.slice(0, 1000))))
      expect(yield* read(bob, { id }, { offset: 100_000, length: 65_536 })).toEqual(Either.right(digest(content.slice(100_000, 165_536))))
      expect(yield* read(bob, { id }, { offset: SIZE - 10, length: 10 })).toEqual(Either.right(digest(content.slice(SIZE - 10))))
      expect(yield* read(bob, { id }, { offset: SIZE - 10, length: 4096 })).toEqual(Either.right(digest(content.slice(SIZE - 10))))
      const past = yield* read(bob, { id }, { offset: SIZE })
      expect(Either.isLeft(past) && { reason: past.left.reason, size: past.left.size }).toEqual({ reason: "RangeNotSatisfiable", size: SIZE })
      expect((yield* senders).get("alice")).toBeGreaterThan(SIZE)
    }))

  it.scopedLive("a file named by its content hash reads from a copy; an unknown one is NotFound", () =>
    Effect.gen(function*() {
      const { bob } = yield* setup
      expect(yield* read(bob, { hash: sha256("hello") })).toEqual(Either.right(digest(new TextEncoder().encode("hello"))))
      expect(reason(yield* read(bob, { hash: sha256("nothing") }))).toBe("NotFound")
      expect(reason(yield* read(bob, { id: "no-such-file" }))).toBe("NotFound")
    }))

  it.scopedLive("a file on this node is read locally, with no stream to any peer", () =>
    Effect.gen(function*() {
      const { alice, net } = yield* setup
      const senders = yield* mediaSenders(net.network)
      expect(yield* read(alice, { id }, { offset: 5, length: 50_000 })).toEqual(Either.right(digest(content.slice(5, 50_005))))
      expect(yield* senders).toEqual(new Map())
    }))

  it.scopedLive("a location online nowhere is Offline", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* setup
      yield* alice.mounts.unmount(L, "loc1")
      yield* online(bob, "loc1", "alice", "Offline")
      expect(yield* bob.presence.peers(L, "loc1")).toEqual([])
      expect(reason(yield* read(bob, { id }))).toBe("Offline")
    }))

  it.scopedLive("a location moved to another node is read from there", () =>
    Effect.gen(function*() {
      const { alice, bob, net, root } = yield* setup
      const carol = yield* net.node("carol", members)
      yield* Nodes.share(alice, [carol])
      yield* carol.connect(bob)
      yield* alice.mounts.unmount(L, "loc1")
      yield* carol.mounts.mount(L, "loc1", root)
      yield* online(bob, "loc1", "carol")
      const senders = yield* mediaSenders(net.network, "bob")
      expect(yield* read(bob, { id })).toEqual(Either.right(digest(content)))
      const sent = yield* senders
      expect([...sent.keys()]).toEqual(["carol"])
    }))

  it.scopedLive("a file changed on disk is Changed: its size, its time, or (when verified) its content", () =>
    Effect.gen(function*() {
      const { bob, root } = yield* setup
      const note = Models.fileId("loc1", "note.txt")
      const path = nodePath.join(root, "note.txt")
      // same size and time, other content: only a hash sees it
      yield* write(path, "jello")
      yield* Effect.promise(() => fs.utimes(path, 1_700_000_000, 1_700_000_000))
      expect(yield* read(bob, { id: note })).toEqual(Either.right(digest(new TextEncoder().encode("jello"))))
      expect(reason(yield* read(bob, { id: note }, { verify: true }))).toBe("Changed")
      yield* Effect.promise(() => fs.utimes(path, 1_700_000_000, 1_700_000_005))
      expect(reason(yield* read(bob, { id: note }))).toBe("Changed")
      yield* write(path, "hello, longer")
      expect(reason(yield* read(bob, { id: note }))).toBe("Changed")
      yield* Effect.promise(() => fs.rm(path))
      expect(reason(yield* read(bob, { id: note }))).toBe("Changed")
    }))

  it.scopedLive("a record whose path leads out of the root, by `..` or through a link, is refused Unsafe", () =>
    Effect.gen(function*() {
      const { alice, bob, root } = yield* setup
      const outside = yield* tempDir()
      yield* write(nodePath.join(outside, "secret.txt"), "secret")
      yield* Effect.promise(() => fs.symlink(nodePath.join(outside, "secret.txt"), nodePath.join(root, "link.txt")))
      yield* Effect.promise(() => fs.symlink(outside, nodePath.join(root, "linked-dir")))
      const stat = yield* Effect.promise(() => fs.stat(nodePath.join(outside, "secret.txt")))
      const relative = nodePath.relative(root, nodePath.join(outside, "secret.txt"))
      const forged = (recordId: string, path: string) =>
        Models.files.create(recordId, { location: "loc1", path, size: stat.size, mtime: stat.mtimeMs, mime: "text/plain", hash: sha256("secret") })
      // records any member could write: the server must not trust them
      yield* Nodes.everywhere([alice, bob], [forged("dotdot", relative), forged("link", "link.txt"), forged("viadir", "linked-dir/secret.txt")])
      expect(relative.startsWith("..")).toBe(true)
      for (const recordId of ["dotdot", "link", "viadir"]) {
        const outcome = yield* read(bob, { id: recordId })
        expect(Either.isLeft(outcome) && [outcome.left.reason, outcome.left.peer]).toEqual(["Unsafe", "alice"])
        // and read on the node itself, the same
        expect(reason(yield* read(alice, { id: recordId }))).toBe("Unsafe")
      }
    }))

  it.scopedLive("a peer killed mid-stream is replaced: the read finishes from another, from the byte reached", () =>
    Effect.gen(function*() {
      const net = yield* Nodes.network()
      const bob = yield* net.node("bob", members)
      const aliceScope = yield* Scope.make()
      const alice = yield* net.node("alice", members, aliceScope)
      const carol = yield* net.node("carol", members)
      const root = yield* tempDir()
      const big = pattern(2 * 1024 * 1024)
      yield* write(nodePath.join(root, "big.bin"), big)
      yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Shared" }, root))
      yield* Nodes.share(alice, [bob, carol])
      yield* alice.connect(bob)
      yield* online(bob, "loc1", "alice")
      const senders = yield* mediaSenders(net.network, "bob")

      const reading = yield* bob.media.read(L, { id: Models.fileId("loc1", "big.bin") })
      const pull = yield* Stream.toPull(reading.bytes)
      const first = yield* pull
      // carol comes online with the same location, then alice dies with most of the file unsent
      yield* carol.mounts.mount(L, "loc1", root)
      yield* carol.connect(bob)
      yield* online(bob, "loc1", "carol")
      yield* Scope.close(aliceScope, Exit.void)
      const rest: Array<Uint8Array> = [...Chunk.toReadonlyArray(first)]
      while (true) {
        const next = yield* Effect.option(pull)
        if (Option.isNone(next)) break
        rest.push(...Chunk.toReadonlyArray(next.value))
      }
      expect(digest(joined(Chunk.unsafeFromArray(rest)))).toEqual(digest(big))
      const sent = yield* senders
      expect(sent.get("alice")).toBeLessThan(big.length)
      expect(sent.get("carol")).toBeGreaterThan(0)
      expect(sent.get("carol")).toBeLessThan(big.length)
    }))

  it.scopedLive("a peer that stalls mid-stream, its connection alive, is replaced after the answer timeout", () =>
    Effect.gen(function*() {
      const net = yield* Nodes.network({ media: { answerTimeout: Duration.millis(500) } })
      const all = [...members, "staller"]
      const bob = yield* net.node("bob", all)
      const carol = yield* net.node("carol", all)
      const root = yield* tempDir()
      yield* write(nodePath.join(root, "videos/clip.mp4"), content)
      yield* Stream.runDrain(carol.media.index(L, { id: "loc1", name: "Videos" }, root))
      yield* Nodes.share(carol, [bob])
      // mallet announces loc1 like a holder, answers a Header, then sends nothing more
      const staller = yield* net.bare("staller", all)
      const mounts = yield* Mounts.make({ checkInterval: Duration.days(1) })
      yield* mounts.mount(L, "loc1", root)
      yield* staller.provide(Presence.make().pipe(Effect.provideService(Mounts.Mounts, mounts)))
      const file = Option.getOrThrow(yield* carol.engine.get(Models.files, id))
      yield* staller.host.register(Plugin.make({
        name: "stalling media",
        ...Protocol.media,
        handle: (stream) =>
          Effect.gen(function*() {
            const { id: _, ...header } = { ...file, type: "Header" as const, offset: 0, length: file.size }
            yield* Framing.make(stream).send(new TextEncoder().encode(JSON.stringify({ version: Protocol.VERSION, ...header, id: file.id })))
            yield* stream.write(content.subarray(0, 1000))
            yield* Effect.never
          })
      }))
      yield* staller.connect(bob)
      yield* online(bob, "loc1", "staller")
      const stalled = yield* read(bob, { id })
      expect(Either.isLeft(stalled) && [stalled.left.reason, stalled.left.peer, stalled.left.detail]).toEqual(["Failed", "staller", "no bytes for 500ms"])
      // with carol holding it too, the read finishes from her
      yield* carol.mounts.mount(L, "loc1", root)
      yield* carol.connect(bob)
      yield* online(bob, "loc1", "carol")
      expect(yield* read(bob, { id })).toEqual(Either.right(digest(content)))
    }))

  it.scopedLive("a peer that is not a member of the library is refused before the server reads anything", () =>
    Effect.gen(function*() {
      const { net, alice } = yield* setup
      const mallory = yield* net.node("mallory", [...members, "mallory"])
      yield* mallory.connect(alice)
      const opened = yield* Effect.either(Effect.scoped(mallory.host.open(alice.id, Protocol.media, L)))
      expect(Either.isLeft(opened) && opened.left._tag === "PermissionError" && opened.left.reason).toBe("NotAMember")
    }))
})
