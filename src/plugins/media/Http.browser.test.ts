/**
 * Media over HTTP in a real browser: headless Chromium (the system's,
 * driven by playwright-core) opens node bob's `/play` page, whose `<video>`
 * plays a WebM that only node alice holds, fetched over libp2p (TCP, Noise,
 * Yamux on loopback); it seeks to the middle, which Chromium asks for with a
 * `Range` request that bob answers from alice, and plays on.
 *
 * Skipped, saying so, where `/usr/bin/chromium` is absent (`.ci/run`
 * installs it).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import { chromium } from "playwright-core"
import * as Http from "./Http.js"
import * as Media from "./Media.js"
import * as Models from "./Models.js"
import { tempDir } from "./testing/Files.js"
import * as Libp2pPeers from "./testing/Libp2pPeers.js"
import * as Nodes from "./testing/Nodes.js"

const CHROMIUM = "/usr/bin/chromium"
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--autoplay-policy=no-user-gesture-required"
]
/** A 10 s, 320×240, 25 fps VP8 WebM with cues (made once with ffmpeg: see the commit that added it). */
const FIXTURE = new URL("./testing/fixtures/clip.webm", import.meta.url)


/** A browser on a fresh profile, closed with the scope. */
const browser = Effect.gen(function*() {
  const profile = yield* tempDir("weft-chromium-")
  return yield* Effect.acquireRelease(
    Effect.promise(() => chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS })),
    (context) => Effect.promise(() => context.close())
  )
})

/** The page's `<video>`, as far as the test touches it (the project's tsconfig has no DOM lib). */
interface Player {
  currentTime: number
  muted: boolean
  readonly duration: number
  readonly readyState: number
  readonly paused: boolean
  readonly seeking: boolean
  readonly error: { readonly code: number } | null
  play(): Promise<void>
}
// in the page, where the functions given to `evaluate` and `waitForFunction` run
declare const document: { getElementById(id: "player"): Player }

/** The state of the page's `<video>`, as the test reads it. */
interface VideoState {
  readonly currentTime: number
  readonly duration: number
  readonly readyState: number
  readonly paused: boolean
  readonly error: number | null
}

const present = existsSync(CHROMIUM)
if (!present) console.warn(`Http.browser.test: skipped, ${CHROMIUM} is absent (apt-get install chromium; .ci/run does)`)

describe.skipIf(!present)(present ? `Media over HTTP in Chromium (${CHROMIUM})` : `Media over HTTP in Chromium: SKIPPED, ${CHROMIUM} is absent`, () => {
  it.scopedLive("a <video> served by bob plays a file only alice holds, seeks to the middle (a Range answered from alice) and plays on", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const video = yield* Effect.promise(() => fs.readFile(FIXTURE))
      yield* Effect.promise(() => fs.writeFile(nodePath.join(root, "clip.webm"), video))
      const { bob } = yield* Libp2pPeers.aliceHolding(root)

      // bob's reads, as the server asked for them, with the bytes each delivered
      const reads: Array<{ offset: number; length: number; delivered: number }> = []
      const observed: Media.Service = {
        ...bob.media,
        read: (library, file, options) =>
          Effect.map(bob.media.read(library, file, options), (reading) => {
            const read = { offset: reading.range.offset, length: reading.range.length, delivered: 0 }
            reads.push(read)
            const counted = Stream.tap(reading.bytes, (chunk) => Effect.sync(() => { read.delivered += chunk.length }))
            // over loopback Chromium would hold this small file whole before the seek, and seek in its cache: reads that
            // start in the first third come at a slow link's rate (half the video's), so Chromium's read-ahead is far from
            // the middle when the seek asks for it, as it is for any file larger than that read-ahead (≥ 2 MiB)
            return {
              ...reading,
              bytes: reading.range.offset >= video.length * 0.3 ? counted : Stream.throttle(counted, {
                cost: (chunks) => [...chunks].reduce((n, c) => n + c.length, 0),
                units: 48 * 1024,
                duration: Duration.seconds(1),
                strategy: "shape"
              })
            }
          })
      }
      const http = yield* Http.make({ token: Http.makeToken() }).pipe(Effect.provideService(Media.Media, observed))

      const context = yield* browser
      const page = yield* Effect.promise(() => context.newPage())
      // and as the browser saw them: the Content-Range of each 206
      const partial: Array<string> = []
      page.on("response", (response) => {
        if (response.status() === 206) partial.push(response.headers()["content-range"] ?? "")
      })
      const id = Models.fileId("loc1", "clip.webm")
      yield* Effect.promise(() => page.goto(http.url(`/play/${Nodes.LIBRARY}/${id}`)))
      const state = Effect.promise((): Promise<VideoState> =>
        page.evaluate(() => {
          const v = document.getElementById("player")
          return { currentTime: v.currentTime, duration: v.duration, readyState: v.readyState, paused: v.paused, error: v.error?.code ?? null }
        })
      )
      // functions, not strings: the page's CSP allows no eval
      const until = (predicate: (at: number) => boolean, at = 0) =>
        Effect.promise(() => page.waitForFunction(predicate, at, { timeout: 30_000, polling: 100 }))

      yield* until(() => document.getElementById("player").readyState >= 1)
      yield* Effect.promise(() =>
        page.evaluate(() => {
          const v = document.getElementById("player")
          v.muted = true
          return v.play()
        })
      )
      yield* until(() => document.getElementById("player").currentTime > 0.5)
      const before = yield* state
      expect(before).toMatchObject({ paused: false, error: null })
      expect(before.duration).toBeCloseTo(10, 0)

      const middle = before.duration / 2
      yield* Effect.promise(() => page.evaluate((t) => { document.getElementById("player").currentTime = t }, middle))
      yield* until((t) => {
        const v = document.getElementById("player")
        return v.currentTime > t + 1 && !v.seeking
      }, middle)
      const after = yield* state
      expect(after).toMatchObject({ paused: false, error: null })
      expect(after.readyState).toBeGreaterThanOrEqual(2)
      expect(after.currentTime).toBeGreaterThan(middle + 1)

      // the seek was a Range request from the middle of the file, answered with bytes bob read from alice
      const size = video.length
      const fromMiddle = reads.filter((r) => r.offset > size * 0.3 && r.offset < size * 0.7 && r.delivered > 0)
      expect(fromMiddle.length, JSON.stringify(reads)).toBeGreaterThan(0)
      expect(partial).toContain(`bytes ${fromMiddle[0]!.offset}-${size - 1}/${size}`)
      expect(Option.isNone(yield* bob.mounts.onlineRoot(Nodes.LIBRARY, "loc1"))).toBe(true)
    }), { timeout: 60_000 })
})
