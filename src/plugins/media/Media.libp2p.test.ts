/**
 * Media over the real transport: two peers on loopback (libp2p: TCP,
 * Noise, Yamux), presence and a remote read with a range.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as nodePath from "node:path"
import * as Identity from "../../transport/Identity.js"
import * as Media from "./Media.js"
import * as Models from "./Models.js"
import { pattern, sha256, tempDir, write } from "./testing/Files.js"
import * as Libp2pPeers from "./testing/Libp2pPeers.js"
import * as Nodes from "./testing/Nodes.js"



describe("Media over libp2p", () => {
  it.scopedLive("a file held by one peer reads on the other, whole and by a range in the middle", () =>
    Effect.gen(function*() {
      const [aliceId, bobId] = [yield* Identity.generate(), yield* Identity.generate()]
      const members = [aliceId.peerId, bobId.peerId]
      const alice = yield* Libp2pPeers.make(aliceId, members)
      const bob = yield* Libp2pPeers.make(bobId, members)
      const root = yield* tempDir()
      const content = pattern(3 * 1024 * 1024 + 17)
      yield* write(nodePath.join(root, "film.mp4"), content)
      yield* Stream.runDrain(alice.media.index(Nodes.LIBRARY, { id: "loc1", name: "Films" }, root))
      const files = yield* alice.engine.query(Models.files)
      yield* bob.engine.mutate([Models.locations.create("loc1", { name: "Films" }), ...files.map(({ id, ...values }) => Models.files.create(id, values))])
      const changes = yield* bob.presence.changes
      yield* bob.host.connect(alice.address)
      yield* Stream.runDrain(Stream.take(changes, 1))
      expect((yield* bob.presence.peers(Nodes.LIBRARY, "loc1")).map((h) => h.peer)).toEqual([alice.id])

      const id = Models.fileId("loc1", "film.mp4")
      const bytes = (options?: Media.ReadOptions) =>
        Effect.flatMap(bob.media.read(Nodes.LIBRARY, { id }, options), (reading) =>
          Effect.map(Stream.runCollect(reading.bytes), (chunks) => {
            const all = Buffer.concat(Chunk.toReadonlyArray(chunks))
            return `${all.length} ${sha256(all)}`
          }))
      expect(yield* bytes()).toBe(`${content.length} ${sha256(content)}`)
      const middle = content.subarray(1_000_000, 1_000_000 + 65_536)
      expect(yield* bytes({ offset: 1_000_000, length: 65_536 })).toBe(`${middle.length} ${sha256(middle)}`)
    }))
})
