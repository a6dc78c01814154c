import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs"
import { join } from "node:path"
import sharp from "sharp"
import { Libraries } from "../library/Libraries.js"
import * as Consent from "../plugins/Consent.js"
import * as PreviewModels from "../plugins/media/preview/Models.js"
import { Preview } from "../plugins/media/preview/Preview.js"
import { Pair } from "../plugins/pair/Pair.js"
import { Identity } from "../transport/Identity.js"
import { Locations } from "./Locations.js"
import * as Node from "./Node.js"
import { Reconnect } from "./Reconnect.js"
import * as Processes from "./testing/Processes.js"

/** A node with media and preview on a fresh directory, in `scope`. */
const startNode = (name: string, scope: Scope.Scope, prefetch: boolean) =>
  Effect.gen(function*() {
    const directory = yield* Processes.tempDir(`weft-preview-node-${name}`)
    const context = yield* Layer.build(Node.layerDirectory({
      directory,
      models: [],
      listen: ["/ip4/127.0.0.1/tcp/0"],
      media: { mounts: { checkInterval: Duration.millis(100) } },
      preview: { prefetch, debounce: Duration.millis(50), orphanGrace: Duration.millis(200), collectEvery: Duration.millis(500) }
    })).pipe(Scope.extend(scope))
    return { directory, get: <I, S>(tag: Context.Tag<I, S>) => Context.get(context as Context.Context<I>, tag) }
  })

const PICTURES = [["one.png", 800, 600], ["two.png", 100, 300], ["three.png", 64, 64]] as const

describe("preview in an embedded node", () => {
  it.scoped("the preview option without media is refused when the node starts, saying why", () =>
    Effect.gen(function*() {
      const directory = yield* Processes.tempDir("weft-preview-node-nomedia")
      const exit = yield* Effect.exit(Layer.build(Node.layerDirectory({ directory, models: [], listen: [], preview: {} })))
      expect(exit._tag).toBe("Failure")
      expect(String(exit._tag === "Failure" ? exit.cause : "")).toContain("the preview option needs the media option")
    }))

  it.scopedLive("alice's node makes the thumbnails of a location in the background; bob's, paired in later, prefetches them into its directory; a picture removed loses its thumbnail and its record", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const alice = yield* startNode("alice", scope, false)
      const bob = yield* startNode("bob", scope, true)
      yield* Consent.approveAll.pipe(Effect.provideService(Consent.Consent, bob.get(Consent.Consent)))

      const root = join(yield* Processes.tempDir("weft-preview-pictures"), "Pictures")
      mkdirSync(root)
      for (const [i, [name, width, height]] of PICTURES.entries()) {
        yield* Effect.promise(() => sharp({ create: { width, height, channels: 3, background: { r: 80 * i, g: 100, b: 30 } } }).png().toFile(join(root, name)))
      }
      const library = yield* alice.get(Libraries).create("Pictures", alice.get(Identity).peerId)
      yield* Stream.runDrain(alice.get(Locations).add(library.id, root))

      // nobody asked: the node made them, as the location was indexed
      const records = yield* Effect.scoped(Effect.flatMap(alice.get(Node.Node).library(library.id), ({ engine }) =>
        Processes.eventually("alice's thumbnails", engine.query(PreviewModels.thumbnails), (rows) => rows.length === PICTURES.length)))
      expect(records.map((r) => [r.state, r.width, r.height]).sort()).toEqual([["ready", 100, 300], ["ready", 512, 384], ["ready", 64, 64]])
      const aliceCache = yield* alice.get(Preview).cache(library.id)
      expect((yield* aliceCache.hashes).length).toBe(PICTURES.length)
      expect(existsSync(join(alice.directory, "media", "previews"))).toBe(true)

      const [address] = yield* bob.get(Node.Node).addresses
      yield* alice.get(Reconnect).dial(address!)
      yield* alice.get(Pair).pair(bob.get(Identity).peerId, library.id)

      // bob holds no originals; his node fetched every thumbnail in the background, into his own directory
      const bobCache = yield* bob.get(Preview).cache(library.id)
      const held = yield* Processes.eventually("bob's cache", bobCache.hashes, (hashes) => hashes.length === PICTURES.length)
      expect(new Set(held)).toEqual(new Set(records.map((r) => r.hash)))
      for (const record of records) {
        const shown = yield* bob.get(Preview).thumbnail(library.id, { hash: record.source })
        expect([shown.from, shown.record.hash]).toEqual(["cache", record.hash])
      }
      expect(readdirSync(join(bob.directory, "media", "previews"), { recursive: true }).length).toBeGreaterThan(PICTURES.length)

      // a picture removed from the location: its thumbnail leaves alice's cache, then its record the library (bob's copy too)
      rmSync(join(root, "one.png"))
      const location = (yield* alice.get(Locations).list(library.id))[0]!.id
      yield* Stream.runDrain(alice.get(Locations).rescan(library.id, location))
      const one = records.find((r) => r.width === 512)!
      const left = (node: typeof alice) =>
        Effect.scoped(Effect.flatMap(node.get(Node.Node).library(library.id), ({ engine }) => engine.query(PreviewModels.thumbnails)))
      yield* Processes.eventually("the record gone on alice", left(alice), (rows) => rows.length === PICTURES.length - 1)
      yield* Processes.eventually("and on bob", left(bob), (rows) => rows.length === PICTURES.length - 1)
      expect((yield* left(bob)).some((r) => r.id === one.id)).toBe(false)
      expect(yield* aliceCache.hashes).not.toContain(one.hash)
    }), 60_000)
})
