/**
 * Thumbnails in a real browser: headless Chromium (the system's, driven by
 * playwright-core) opens node bob's `/gallery` page, whose `<img>`s show
 * thumbnails of pictures that only node alice holds: alice made them, their
 * records reached bob, and bob fetches each one's bytes from alice over
 * libp2p (TCP, Noise, Yamux on loopback) as the browser asks for it.
 *
 * Skipped, saying so, where `/usr/bin/chromium` is absent (`.ci/run`
 * installs it).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { existsSync } from "node:fs"
import * as nodePath from "node:path"
import { chromium } from "playwright-core"
import sharp, { type Sharp } from "sharp"
import { Libraries } from "../../../library/Libraries.js"
import { PluginHost } from "../../PluginHost.js"
import * as Http from "../Http.js"
import * as Media from "../Media.js"
import * as MediaModels from "../Models.js"
import { Mounts } from "../Mounts.js"
import { Presence } from "../Presence.js"
import { tempDir, write } from "../testing/Files.js"
import * as Libp2pPeers from "../testing/Libp2pPeers.js"
import * as Nodes from "../testing/Nodes.js"
import * as PreviewHttp from "./Http.js"
import * as Models from "./Models.js"
import * as Preview from "./Preview.js"

const CHROMIUM = "/usr/bin/chromium"
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]

const PICTURES = [
  { name: "photo.jpg", width: 1200, height: 800, write: (s: Sharp) => s.jpeg() },
  { name: "shot.png", width: 300, height: 700, write: (s: Sharp) => s.png() },
  { name: "web.webp", width: 640, height: 640, write: (s: Sharp) => s.webp() },
  { name: "anim.gif", width: 100, height: 50, write: (s: Sharp) => s.gif() },
  { name: "scan.tiff", width: 256, height: 1024, write: (s: Sharp) => s.tiff() }
]

/** An `<img>` of the page, as far as the test reads it (the project's tsconfig has no DOM lib). */
interface Image {
  readonly complete: boolean
  readonly naturalWidth: number
  readonly naturalHeight: number
  readonly alt: string
  getAttribute(name: string): string | null
}
// in the page, where the functions given to `evaluate` and `waitForFunction` run
declare const document: { querySelectorAll(selector: "img"): ArrayLike<Image> }

const present = existsSync(CHROMIUM)
if (!present) console.warn(`preview Http.browser.test: skipped, ${CHROMIUM} is absent (apt-get install chromium; .ci/run does)`)

describe.skipIf(!present)(present ? `Thumbnails in Chromium (${CHROMIUM})` : `Thumbnails in Chromium: SKIPPED, ${CHROMIUM} is absent`, () => {
  it.scopedLive("a gallery served by bob shows the thumbnails of pictures only alice holds, each decoded at its recorded size", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      for (const [i, p] of PICTURES.entries()) {
        const bytes = yield* Effect.promise(() =>
          p.write(sharp({ create: { width: p.width, height: p.height, channels: 3, background: { r: 50 * i, g: 200 - 30 * i, b: 90 } } })).toBuffer()
        )
        yield* write(nodePath.join(root, p.name), bytes)
      }
      const { alice, bob } = yield* Libp2pPeers.aliceHolding(root, { models: Models.models })
      const previewOf = (peer: typeof alice) =>
        Effect.gen(function*() {
          const directory = yield* tempDir("weft-preview-")
          return yield* Preview.make({ engine: () => Effect.succeed(peer.engine), directory }).pipe(
            Effect.provideService(PluginHost, peer.host),
            Effect.provideService(Libraries, peer.libraries),
            Effect.provideService(Mounts, peer.mounts),
            Effect.provideService(Presence, peer.presence)
          )
        })
      const alicePreview = yield* previewOf(alice)
      const bobPreview = yield* previewOf(bob)
      yield* Stream.runDrain(alicePreview.generate(Nodes.LIBRARY))
      // the records reach bob as they would through the log; the bytes do not
      const records = yield* alice.engine.query(Models.thumbnails)
      expect(records.length).toBe(PICTURES.length)
      yield* bob.engine.mutate(records.map(({ id, ...values }) => Models.thumbnails.create(id, values)))

      const http = yield* Http.make({ token: Http.makeToken(), routes: PreviewHttp.routes(bobPreview) }).pipe(Effect.provideService(Media.Media, bob.media))
      const context = yield* Effect.acquireRelease(
        Effect.flatMap(tempDir("weft-chromium-"), (profile) =>
          Effect.promise(() => chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS }))),
        (context) => Effect.promise(() => context.close())
      )
      const page = yield* Effect.promise(() => context.newPage())
      const statuses: Array<number> = []
      page.on("response", (response) => {
        if (response.url().includes("/thumbnail/")) statuses.push(response.status())
      })
      yield* Effect.promise(() => page.goto(http.url(`/gallery/${Nodes.LIBRARY}`)))
      // every <img> loaded or failed (complete), then read as decoded
      yield* Effect.promise(() =>
        page.waitForFunction(() => Array.from(document.querySelectorAll("img")).every((img) => img.complete), undefined, { timeout: 30_000, polling: 100 })
      )
      const shown = yield* Effect.promise(() =>
        page.evaluate(() =>
          Array.from(document.querySelectorAll("img")).map((img) => ({
            alt: img.alt,
            file: img.getAttribute("data-file"),
            naturalWidth: img.naturalWidth,
            naturalHeight: img.naturalHeight
          }))
        )
      )
      expect(shown.map((s) => s.alt).sort()).toEqual(PICTURES.map((p) => p.name).sort())
      for (const s of shown) {
        const picture = PICTURES.find((p) => p.name === s.alt)!
        const record = Option.getOrThrow(yield* bobPreview.record(Nodes.LIBRARY, s.file!))
        const scale = Math.min(1, 512 / Math.max(picture.width, picture.height))
        // decoded by the browser at the thumbnail's recorded size, the original's shape at most 512 px
        expect([s.naturalWidth, s.naturalHeight], s.alt).toEqual([record.width, record.height])
        expect([s.naturalWidth, s.naturalHeight], s.alt).toEqual([Math.round(picture.width * scale), Math.round(picture.height * scale)])
        expect(s.file).toBe(MediaModels.fileId("loc1", picture.name))
      }
      expect(statuses.sort()).toEqual(PICTURES.map(() => 200))
      // bob never held the originals: every thumbnail came from alice, and is now in his cache
      expect(Option.isNone(yield* bob.mounts.onlineRoot(Nodes.LIBRARY, "loc1"))).toBe(true)
      expect((yield* (yield* bobPreview.cache(Nodes.LIBRARY)).hashes).length).toBe(PICTURES.length)
    }), { timeout: 90_000 })
})
