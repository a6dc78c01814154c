/**
 * Media over the real transport: two peers on loopback (libp2p: TCP,
 * Noise, Yamux), presence and a remote read with a range.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as nodePath from "node:path"
import * as Media from "./Media.js"
import * as Models from "./Models.js"
import { digest, joined, pattern, tempDir, write } from "./testing/Files.js"
import * as Libp2pPeers from "./testing/Libp2pPeers.js"
import * as Nodes from "./testing/Nodes.js"

describe("Media over libp2p", () => {
  it.scopedLive("a file held by one peer reads on the other, whole and by a range in the middle", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const content = pattern(3 * 1024 * 1024 + 17)
      yield* write(nodePath.join(root, "film.mp4"), content)
      const { alice, bob } = yield* Libp2pPeers.aliceHolding(root)
      expect((yield* bob.presence.peers(Nodes.LIBRARY, "loc1")).map((h) => h.peer)).toEqual([alice.id])

      const id = Models.fileId("loc1", "film.mp4")
      const bytes = (options?: Media.ReadOptions) =>
        Effect.flatMap(bob.media.read(Nodes.LIBRARY, { id }, options), (reading) => Effect.map(Stream.runCollect(reading.bytes), (chunks) => digest(joined(chunks))))
      expect(yield* bytes()).toBe(digest(content))
      expect(yield* bytes({ offset: 1_000_000, length: 65_536 })).toBe(digest(content.subarray(1_000_000, 1_000_000 + 65_536)))
    }))
})
