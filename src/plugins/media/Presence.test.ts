import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import type * as Presence from "./Presence.js"
import { tempDir } from "./testing/Files.js"
import * as Nodes from "./testing/Nodes.js"

const L = Nodes.LIBRARY
const members = ["alice", "bob", "carol"]

/** The next `n` changes seen by `node` (subscribed before `cause` runs). */
const changesDuring = <E>(node: Nodes.Node, n: number, cause: Effect.Effect<unknown, E>) =>
  Effect.scoped(Effect.gen(function*() {
    const changes = yield* node.presence.changes
    yield* cause
    return Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(changes, n)))
  }))

const change = (tag: Presence.Change["_tag"], location: string, peer: string) => ({ _tag: tag, library: L, location, peer })

describe("Presence", () => {
  it.scopedLive("on connect, a node learns the locations online on the other, and not those whose root is missing", () =>
    Effect.gen(function*() {
      const net = yield* Nodes.network()
      const alice = yield* net.node("alice", members)
      const bob = yield* net.node("bob", members)
      const root = yield* tempDir()
      yield* alice.mounts.mount(L, "loc1", root)
      yield* alice.mounts.mount(L, "loc2", nodePath.join(root, "not-there"))
      expect(yield* changesDuring(bob, 1, alice.connect(bob))).toEqual([change("Online", "loc1", "alice")])
      expect(yield* bob.presence.table).toEqual(new Map([[L, new Map([["loc1", ["alice"]]])]]))
      const holders = yield* bob.presence.peers(L, "loc1")
      expect(holders.map((h) => h.peer)).toEqual(["alice"])
      expect(yield* bob.presence.peers(L, "loc2")).toEqual([])
    }))

  it.scopedLive("a location unmounted, or whose directory goes and comes back, is announced at once", () =>
    Effect.gen(function*() {
      const net = yield* Nodes.network()
      const alice = yield* net.node("alice", members)
      const bob = yield* net.node("bob", members)
      const root = yield* tempDir()
      const drive = nodePath.join(root, "drive")
      yield* Effect.promise(() => fs.mkdir(drive))
      yield* alice.mounts.mount(L, "loc1", root)
      yield* alice.mounts.mount(L, "usb", drive)
      yield* changesDuring(bob, 2, alice.connect(bob))

      expect(yield* changesDuring(bob, 1, alice.mounts.unmount(L, "loc1"))).toEqual([change("Offline", "loc1", "alice")])
      const unplug = Effect.zipRight(Effect.promise(() => fs.rename(drive, `${drive}-away`)), alice.mounts.check)
      expect(yield* changesDuring(bob, 1, unplug)).toEqual([change("Offline", "usb", "alice")])
      const plugBack = Effect.zipRight(Effect.promise(() => fs.rename(`${drive}-away`, drive)), alice.mounts.check)
      expect(yield* changesDuring(bob, 1, plugBack)).toEqual([change("Online", "usb", "alice")])
      expect(yield* bob.presence.table).toEqual(new Map([[L, new Map([["usb", ["alice"]]])]]))
    }))

  it.scopedLive("on disconnect, and when a node stops, its locations are forgotten", () =>
    Effect.gen(function*() {
      const net = yield* Nodes.network()
      const alice = yield* net.node("alice", members)
      const bob = yield* net.node("bob", members)
      const carolScope = yield* Scope.make()
      const carol = yield* net.node("carol", members, carolScope)
      const root = yield* tempDir()
      yield* alice.mounts.mount(L, "a", root)
      yield* carol.mounts.mount(L, "c", root)
      yield* changesDuring(bob, 1, alice.connect(bob))
      yield* changesDuring(bob, 1, carol.connect(bob))

      expect(yield* changesDuring(bob, 1, net.network.disconnect("alice", "bob"))).toEqual([change("Offline", "a", "alice")])
      expect(yield* changesDuring(bob, 1, Scope.close(carolScope, Exit.void))).toEqual([change("Offline", "c", "carol")])
      expect(yield* bob.presence.table).toEqual(new Map())
    }))

  it.scopedLive("a location that moves to another node is online there, with no write to the library", () =>
    Effect.gen(function*() {
      const net = yield* Nodes.network()
      const alice = yield* net.node("alice", members)
      const bob = yield* net.node("bob", members)
      const carol = yield* net.node("carol", members)
      const root = yield* tempDir()
      yield* alice.mounts.mount(L, "usb", root)
      yield* changesDuring(bob, 1, alice.connect(bob))
      yield* carol.connect(bob)
      const before = yield* bob.engine.versionVector
      const moved = yield* changesDuring(bob, 2, Effect.zipRight(alice.mounts.unmount(L, "usb"), carol.mounts.mount(L, "usb", root)))
      expect(moved).toEqual([change("Offline", "usb", "alice"), change("Online", "usb", "carol")])
      expect((yield* bob.presence.peers(L, "usb")).map((h) => h.peer)).toEqual(["carol"])
      expect(yield* bob.engine.versionVector).toEqual(before)
      expect(yield* alice.engine.versionVector).toEqual(before)
    }))

  it.scopedLive("only members of the library are told: a connected stranger learns nothing", () =>
    Effect.gen(function*() {
      const net = yield* Nodes.network()
      const alice = yield* net.node("alice", ["alice", "bob"])
      const bob = yield* net.node("bob", ["alice", "bob"])
      const mallory = yield* net.node("mallory", ["alice", "bob", "mallory"])
      const root = yield* tempDir()
      yield* alice.mounts.mount(L, "loc1", root)
      yield* alice.connect(mallory)
      // bob, a member connected after mallory, is told: so alice has announced to whoever she would
      yield* changesDuring(bob, 1, alice.connect(bob))
      expect(yield* mallory.presence.table).toEqual(new Map())
    }))
})
