import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { randomBytes } from "node:crypto"
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Libraries } from "../library/Libraries.js"
import * as Consent from "../plugins/Consent.js"
import * as Media from "../plugins/media/Media.js"
import * as Models from "../plugins/media/Models.js"
import * as Mounts from "../plugins/media/Mounts.js"
import { Pair } from "../plugins/pair/Pair.js"
import { Identity } from "../transport/Identity.js"
import { Engines } from "./Engines.js"
import * as Locations from "./Locations.js"
import { Locations as LocationsTag } from "./Locations.js"
import * as Node from "./Node.js"
import { Reconnect } from "./Reconnect.js"
import * as Processes from "./testing/Processes.js"

/** A node with media on `directory`, its mounts checked every 100 ms, in `scope`. */
const startNode = (directory: string, scope: Scope.Scope, watch?: Locations.Watch) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(Node.layerDirectory({
      directory,
      models: [],
      listen: ["/ip4/127.0.0.1/tcp/0"],
      media: { mounts: { checkInterval: Duration.millis(100) }, presence: { refresh: Duration.seconds(1) }, ...(watch === undefined ? {} : { watch }) }
    })).pipe(Scope.extend(scope))
    return { directory, get: <I, S>(tag: Context.Tag<I, S>) => Context.get(context as Context.Context<I>, tag) }
  })

/** A directory of two files. */
const photos = (root: string) => {
  mkdirSync(join(root, "2024"), { recursive: true })
  writeFileSync(join(root, "a.txt"), "sand and sea\n")
  writeFileSync(join(root, "2024/b.bin"), randomBytes(200_000))
  return root
}

const onlineHere = (node: { readonly get: <I, S>(tag: Context.Tag<I, S>) => S }, library: string) =>
  Effect.map(SubscriptionRef.get(node.get(Mounts.Mounts).online), (online) => online.get(library) ?? [])

describe("a node's media locations", () => {
  it.scopedLive("a location added stays mounted across a restart; its directory gone is offline, and back is online", () =>
    Effect.gen(function*() {
      const directory = yield* Processes.tempDir("weft-loc-node")
      const root = photos(join(yield* Processes.tempDir("weft-loc-photos"), "Photos"))
      const first = yield* Scope.make()
      const node = yield* startNode(directory, first)
      const library = yield* node.get(Libraries).create("Pictures", node.get(Identity).peerId)
      const events = yield* Stream.runCollect(node.get(LocationsTag).add("Pictures", root))
      const [started, ...progress] = Chunk.toReadonlyArray(events)
      expect(started).toMatchObject({ _tag: "Started", library: library.id, name: "Photos", root, files: 2 })
      expect(progress.at(-1)).toMatchObject({ _tag: "Progress", progress: { seen: 2, added: 2, done: true } })
      const location = (started as { readonly location: string }).location
      expect(yield* node.get(LocationsTag).list()).toEqual([{ library: library.id, id: location, name: "Photos", root, online: true, peers: [] }])
      yield* Scope.close(first, Exit.void)

      // restarted from its directory: the location is mounted again, online, with no command
      const restarted = yield* startNode(directory, yield* Effect.scope)
      expect(yield* onlineHere(restarted, library.id)).toEqual([location])
      expect(yield* restarted.get(LocationsTag).list(library.id)).toMatchObject([{ id: location, root, online: true }])

      // the directory goes (a drive unplugged): offline, found by the periodic check alone
      renameSync(root, `${root}.away`)
      yield* Processes.eventually("offline", onlineHere(restarted, library.id), (online) => online.length === 0)
      expect(yield* restarted.get(LocationsTag).list(library.id)).toMatchObject([{ id: location, root, online: false }])
      const rescan = yield* Effect.flip(Stream.runDrain(restarted.get(LocationsTag).rescan(library.id, "Photos")))
      expect(rescan).toMatchObject({ _tag: "LocationError", reason: "DirectoryMissing" })
      // and back
      renameSync(`${root}.away`, root)
      yield* Processes.eventually("online again", onlineHere(restarted, library.id), (online) => online.length === 1)
    }), 60_000)

  it.scopedLive("watched, a location's files added, changed and removed on disk come into its records with no command, across a restart too", () =>
    Effect.gen(function*() {
      const directory = yield* Processes.tempDir("weft-loc-watch")
      const root = photos(join(yield* Processes.tempDir("weft-loc-watched"), "Photos"))
      const watch = { debounce: Duration.millis(200) }
      const first = yield* Scope.make()
      const node = yield* startNode(directory, first, watch)
      const library = yield* node.get(Libraries).create("Pictures", node.get(Identity).peerId)
      yield* Stream.runDrain(node.get(LocationsTag).add("Pictures", root))
      const files = (on: typeof node) =>
        Effect.scoped(Effect.flatMap(on.get(Engines).get(library.id), (engine) =>
          Effect.map(engine.query(Models.files, (q) => q.orderBy("path")), (rows) => rows.map((f) => `${f.path}:${f.size}`))))
      expect(yield* files(node)).toEqual(["2024/b.bin:200000", "a.txt:13"])
      // a burst of changes: a new folder with two files, one file longer, one gone
      mkdirSync(join(root, "2025"))
      writeFileSync(join(root, "2025/c.txt"), "waves\n")
      writeFileSync(join(root, "2025/d.txt"), "dunes and wind\n")
      writeFileSync(join(root, "a.txt"), "sand and sea, and sky\n")
      rmSync(join(root, "2024/b.bin"))
      const expected = ["2025/c.txt:6", "2025/d.txt:15", "a.txt:22"]
      yield* Processes.eventually("the changes recorded", files(node), (f) => f.join() === expected.join(), () => "", Duration.seconds(10))
      yield* Scope.close(first, Exit.void)

      // what changed while the node was down is caught up at start, and the location is watched again
      writeFileSync(join(root, "e.txt"), "tide\n")
      const restarted = yield* startNode(directory, yield* Effect.scope, watch)
      yield* Processes.eventually("a file added while stopped recorded", files(restarted), (f) => f.includes("e.txt:5"), () => "", Duration.seconds(10))
      writeFileSync(join(root, "f.txt"), "shells\n")
      yield* Processes.eventually("a file added after the restart recorded", files(restarted), (f) => f.includes("f.txt:7"), () => "", Duration.seconds(10))
    }), 60_000)

  it.scopedLive("typed errors: an unknown library or location, a missing directory, a file; a mounts file that does not decode stops the start", () =>
    Effect.gen(function*() {
      const directory = yield* Processes.tempDir("weft-loc-errors")
      const scope = yield* Scope.make()
      const node = yield* startNode(directory, scope)
      yield* node.get(Libraries).create("Pictures", node.get(Identity).peerId)
      const scratch = yield* Processes.tempDir("weft-loc-scratch")
      writeFileSync(join(scratch, "file.txt"), "not a directory")
      const locations = node.get(LocationsTag)
      const reason = (stream: Stream.Stream<unknown, unknown>) => Effect.map(Effect.flip(Stream.runDrain(stream)), (e) => (e as { reason: string }).reason)
      expect(yield* reason(locations.add("Nope", scratch))).toBe("UnknownLibrary")
      expect(yield* reason(locations.add("Pictures", join(scratch, "missing")))).toBe("DirectoryMissing")
      expect(yield* reason(locations.add("Pictures", join(scratch, "file.txt")))).toBe("NotADirectory")
      expect(yield* reason(locations.rescan("Pictures", "nowhere"))).toBe("UnknownLocation")
      expect(yield* Effect.flip(locations.remove("Pictures", "nowhere"))).toMatchObject({ reason: "UnknownLocation" })
      yield* Scope.close(scope, Exit.void)

      mkdirSync(join(directory, "media"), { recursive: true })
      writeFileSync(join(directory, "media", "mounts.json"), JSON.stringify({ version: 1, mounts: [{ library: "x", location: "", root: "relative" }] }))
      const refused = yield* Effect.flip(Effect.scoped(startNode(directory, yield* Effect.scope)))
      expect(refused).toMatchObject({ _tag: "LocationError", reason: "Corrupt" })
    }), 60_000)

  it.scopedLive("two paired nodes: B lists A's location as online on A and reads its file; A's directory gone takes it off B's list, and back puts it on", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const a = yield* startNode(yield* Processes.tempDir("weft-loc-a"), scope)
      const b = yield* startNode(yield* Processes.tempDir("weft-loc-b"), scope)
      yield* Consent.approveAll.pipe(Effect.provideService(Consent.Consent, b.get(Consent.Consent)))
      const [peerA, peerB] = [a.get(Identity).peerId, b.get(Identity).peerId]
      const library = yield* a.get(Libraries).create("Shared", peerA)
      const [address] = yield* b.get(Node.Node).addresses
      yield* a.get(Reconnect).dial(address!)
      yield* a.get(Pair).pair(peerB, library.id)

      const root = photos(join(yield* Processes.tempDir("weft-loc-a-photos"), "Photos"))
      const events = yield* Stream.runCollect(a.get(LocationsTag).add(library.id, root, { name: "Holiday" }))
      const location = (Chunk.unsafeHead(events) as { readonly location: string }).location

      const onB = (peers: number) =>
        Processes.eventually(`B lists the location on ${peers} peer(s)`, b.get(LocationsTag).list(library.id), (all) =>
          all.length === 1 && all[0]!.peers.length === peers)
      const [listed] = yield* onB(1)
      expect(listed).toMatchObject({ id: location, name: "Holiday", online: false, peers: [{ peer: peerA }] })
      expect(listed!.root).toBeUndefined()
      // B does not hold it: no rescan there, and it says who does
      const notHere = yield* Effect.flip(Stream.runDrain(b.get(LocationsTag).rescan(library.id, "Holiday")))
      expect(notHere).toMatchObject({ _tag: "LocationError", reason: "NotHere" })
      expect(notHere.message).toContain(`it is online on ${peerA}`)

      // B reads A's file through the node's media
      const fileId = Models.fileId(location, "a.txt")
      yield* Processes.eventually("the file's record on B", Effect.scoped(Effect.flatMap(b.get(Node.Node).library(library.id), ({ engine }) =>
        engine.get(Models.files, fileId))), (row) => row._tag === "Some")
      const reading = yield* b.get(Media.Media).read(library.id, { id: fileId })
      const bytes = yield* Stream.runCollect(reading.bytes)
      expect(Buffer.concat(Chunk.toReadonlyArray(bytes)).toString()).toBe("sand and sea\n")

      renameSync(root, `${root}.away`)
      yield* onB(0)
      renameSync(`${root}.away`, root)
      yield* onB(1)

      // removed on A: gone from the library on both, and no longer announced
      yield* a.get(LocationsTag).remove(library.id, "Holiday")
      yield* Processes.eventually("removed on B", b.get(LocationsTag).list(library.id), (all) => all.length === 0)
    }), 90_000)
})
