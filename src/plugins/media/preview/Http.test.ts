/**
 * Thumbnails over HTTP: alice holds the pictures and made their
 * thumbnails; bob, who holds neither originals nor thumbnails, serves
 * `/thumbnail` and `/gallery` on an ephemeral loopback port, fetching each
 * thumbnail from alice as it is asked for.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as nodePath from "node:path"
import sharp from "sharp"
import * as Http from "../Http.js"
import * as Media from "../Media.js"
import * as MediaModels from "../Models.js"
import { sha256, tempDir, write } from "../testing/Files.js"
import { request } from "../testing/Http.js"
import * as PreviewHttp from "./Http.js"
import * as Nodes from "./testing/Nodes.js"

const L = Nodes.LIBRARY
const TOKEN = "test-token-0123456789abcdef"
const fileOf = (path: string) => MediaModels.fileId("loc1", path)

const png = (shade: number, width: number, height: number) =>
  Effect.promise(() => sharp({ create: { width, height, channels: 3, background: { r: shade, g: 90, b: 200 } } }).png().toBuffer())

/** alice holds loc1 (two pictures, a corrupt one) and made the thumbnails; bob has the records and serves HTTP. */
const setup = Effect.gen(function*() {
  const members = ["alice", "bob"]
  const net = yield* Nodes.network()
  const aliceScope = yield* Scope.make()
  const alice = yield* net.node("alice", members, { scope: aliceScope })
  const bob = yield* net.node("bob", members)
  const root = yield* tempDir()
  yield* write(nodePath.join(root, "wide.png"), yield* png(10, 1024, 256))
  yield* write(nodePath.join(root, "a/tall <&>.png"), yield* png(120, 100, 400))
  yield* write(nodePath.join(root, "broken.jpg"), new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]))
  yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Pictures" }, root))
  yield* Stream.runDrain(alice.preview.generate(L))
  yield* alice.connect(bob)
  yield* Nodes.thumbnailRecords(bob, 3)
  yield* Nodes.fileRecords(bob, 3)
  const http = yield* Http.make({ token: TOKEN, routes: PreviewHttp.routes(bob.preview) }).pipe(Effect.provideService(Media.Media, bob.media))
  const port = http.address.port
  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    request(port, path, { method, headers: { authorization: `Bearer ${TOKEN}`, ...headers } })
  return { alice, aliceScope, bob, http, port, get }
})

describe("Thumbnails over HTTP", () => {
  it.scopedLive("a thumbnail bob never held, fetched from alice: its bytes, ETag (its hash), type and caching, by file and by content hash", () =>
    Effect.gen(function*() {
      const { bob, get } = yield* setup
      const record = Option.getOrThrow(yield* bob.preview.record(L, fileOf("wide.png")))
      expect(yield* (yield* bob.preview.cache(L)).hashes).toEqual([])

      const byFile = yield* get(`/thumbnail/${L}/${fileOf("wide.png")}`)
      expect(byFile.status).toBe(200)
      expect(sha256(byFile.body)).toBe(record.hash)
      expect(byFile.headers).toMatchObject({
        "content-type": "image/webp",
        "etag": `"${record.hash}"`,
        "cache-control": PreviewHttp.REVALIDATE,
        "x-content-type-options": "nosniff",
        "content-length": String(record.bytes)
      })
      const meta = yield* Effect.promise(() => sharp(byFile.body).metadata())
      expect([meta.format, meta.width, meta.height]).toEqual(["webp", 512, 128])
      // now in bob's cache
      expect(yield* (yield* bob.preview.cache(L)).hashes).toEqual([record.hash])

      const byHash = yield* get(`/thumbnail/${L}/hash/${record.source}`)
      expect([byHash.status, sha256(byHash.body), byHash.headers["cache-control"]]).toEqual([200, record.hash, "private, max-age=31536000, immutable"])

      const head = yield* get(`/thumbnail/${L}/hash/${record.source}`, {}, "HEAD")
      expect([head.status, head.headers["content-length"], head.headers["etag"], head.body.length]).toEqual([200, String(record.bytes), `"${record.hash}"`, 0])
    }), { timeout: 30_000 })

  it.scopedLive("If-None-Match with the ETag is 304, answered from the record with alice gone", () =>
    Effect.gen(function*() {
      const { aliceScope, bob, get } = yield* setup
      const record = Option.getOrThrow(yield* bob.preview.record(L, fileOf("wide.png")))
      yield* Scope.close(aliceScope, Exit.void)
      const path = `/thumbnail/${L}/${fileOf("wide.png")}`
      const fresh = yield* get(path, { "if-none-match": `"${record.hash}"` })
      expect([fresh.status, fresh.headers["etag"], fresh.body.length]).toEqual([304, `"${record.hash}"`, 0])
      // another tag: the bytes are wanted, and nobody holds them now
      const stale = yield* get(path, { "if-none-match": `"${"0".repeat(64)}"` })
      expect([stale.status, stale.headers["cache-control"]]).toEqual([503, "no-store"])
      expect(stale.body.toString()).toMatch(/^Unavailable/)
    }), { timeout: 30_000 })

  it.scopedLive("errors: unknown file 404, a picture that could not be made 422, a malformed hash 400; the server's checks apply", () =>
    Effect.gen(function*() {
      const { get, port } = yield* setup
      const status = (path: string, headers: Record<string, string> = {}) => Effect.map(get(path, headers), (a) => a.status)
      expect(yield* status(`/thumbnail/${L}/${fileOf("nothing.png")}`)).toBe(404)
      expect(yield* status(`/thumbnail/${L}/hash/${"a".repeat(64)}`)).toBe(404)
      const broken = yield* get(`/thumbnail/${L}/${fileOf("broken.jpg")}`)
      expect([broken.status, broken.body.toString()]).toEqual([422, expect.stringMatching(/^Failed: Undecodable/)])
      expect(yield* status(`/thumbnail/${L}/hash/XYZ`)).toBe(400)
      expect(yield* status(`/gallery/${L}?limit=0`)).toBe(400)
      // no token; another Host; another Origin
      expect((yield* request(port, `/thumbnail/${L}/${fileOf("wide.png")}`)).status).toBe(401)
      expect(yield* status(`/thumbnail/${L}/${fileOf("wide.png")}`, { host: "evil.example:80" })).toBe(403)
      expect(yield* status(`/gallery/${L}`, { origin: "http://evil.example" })).toBe(403)
    }), { timeout: 30_000 })

  it.scopedLive("the gallery lists the library's thumbnails by path, names escaped, each an <img> of its content hash", () =>
    Effect.gen(function*() {
      const { bob, get } = yield* setup
      const page = yield* get(`/gallery/${L}`)
      expect(page.status).toBe(200)
      expect(page.headers["content-type"]).toMatch(/^text\/html/)
      expect(page.headers["content-security-policy"]).toContain("img-src 'self'")
      const html = page.body.toString()
      const sources = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1])
      const tall = Option.getOrThrow(yield* bob.preview.record(L, fileOf("a/tall <&>.png")))
      const wide = Option.getOrThrow(yield* bob.preview.record(L, fileOf("wide.png")))
      // by path: a/… before wide.png; the broken picture has no thumbnail and is not listed
      expect(sources).toEqual([`/thumbnail/${L}/hash/${tall.source}`, `/thumbnail/${L}/hash/${wide.source}`])
      expect(html).toContain("alt=\"a/tall &lt;&amp;&gt;.png\"")
      expect(html).not.toContain("<&>")
      const one = yield* get(`/gallery/${L}?limit=1`)
      expect([...one.body.toString().matchAll(/<img /g)].length).toBe(1)
    }), { timeout: 30_000 })
})
