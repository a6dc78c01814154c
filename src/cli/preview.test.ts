/**
 * Preview in `weft serve`, with two real processes paired in one library
 * (see `testing/Cli`): A holds a folder of pictures and makes their
 * thumbnails with no command; B's `--http` gallery shows them, fetched
 * from A.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import sharp from "sharp"
import * as Cli from "./testing/Cli.js"
import * as Processes from "./testing/Processes.js"

const { serve, tempDir, twoDirs, weft, weftJson } = Cli

describe("weft serve: preview (two real nodes)", () => {
  it.scopedLive("a picture added to a location on A gets its thumbnail with no command; B's gallery shows it, fetched from A", () =>
    Effect.gen(function*() {
      const { a, alpha, b } = yield* twoDirs
      const photos = join(yield* tempDir("photos"), "Photos")
      mkdirSync(photos, { recursive: true })
      yield* Effect.promise(() => sharp({ create: { width: 1000, height: 500, channels: 3, background: { r: 200, g: 30, b: 30 } } }).jpeg().toFile(join(photos, "red.jpg")))
      yield* serve(a)
      const nodeB = yield* serve(b, "--yes", "--http", "127.0.0.1:0")
      yield* weftJson("pair", (yield* nodeB.status).addresses[0]!, "--dir", a)
      expect((yield* weft("location", "add", "Alpha", photos, "--dir", a)).code).toBe(0)

      const banner = yield* Processes.eventually("B's http banner", Effect.sync(() => nodeB.output()), (out) => /^token {5}\S+/m.test(out))
      expect(banner).toContain("/gallery/<library>")
      const origin = /^http {6}(http:\/\/127\.0\.0\.1:\d+)\//m.exec(banner)![1]!
      const token = /^token {5}(\S+)/m.exec(banner)![1]!
      const get = (path: string) => Effect.promise(() => fetch(`${origin}${path}`, { headers: { authorization: `Bearer ${token}` } }))
      // the thumbnail's record reaches B once A made it
      const html = yield* Processes.eventually(
        "the picture in B's gallery",
        Effect.flatMap(get(`/gallery/${alpha}`), (r) => Effect.promise(() => r.text())),
        (page) => page.includes("alt=\"red.jpg\"")
      )
      const src = /<img src="([^"]+)"/.exec(html)![1]!
      const thumbnail = yield* get(src)
      expect([thumbnail.status, thumbnail.headers.get("content-type")]).toEqual([200, "image/webp"])
      const meta = yield* Effect.promise(async () => sharp(Buffer.from(await thumbnail.arrayBuffer())).metadata())
      expect([meta.format, meta.width, meta.height]).toEqual(["webp", 512, 256])
    }), 180_000)
})
