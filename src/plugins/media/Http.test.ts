/**
 * Media over HTTP: node alice holds the files, node bob serves them over
 * HTTP on an ephemeral loopback port, so every byte answered comes from
 * alice over the (memory) transport.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import * as NodeHttp from "node:http"
import * as net from "node:net"
import * as nodePath from "node:path"
import * as Http from "./Http.js"
import * as Headers from "./http/headers.js"
import * as Media from "./Media.js"
import * as Models from "./Models.js"
import { digest, pattern, sha256, tempDir, write } from "./testing/Files.js"
import * as HttpTesting from "./testing/Http.js"
import * as Nodes from "./testing/Nodes.js"

const L = Nodes.LIBRARY
const members = ["alice", "bob"]
const SIZE = 300_000
const content = pattern(SIZE)
const id = Models.fileId("loc1", "videos/clip.mp4")
const note = Models.fileId("loc1", "note.txt")
const TOKEN = "test-token-0123456789abcdef"


interface Answer {
  readonly status: number
  readonly headers: NodeHttp.IncomingHttpHeaders
  readonly body: string
}

/** One request to 127.0.0.1:`port` (see `testing/Http`); a text body as text, any other as its digest. */
const request = (port: number, path: string, options: { readonly method?: string; readonly headers?: Record<string, string> } = {}) =>
  Effect.map(HttpTesting.request(port, path, options), (answer): Answer => ({
    ...answer,
    body: (answer.headers["content-type"] ?? "").startsWith("text/") ? answer.body.toString("utf8") : digest(answer.body)
  }))

/**
 * alice holds loc1 (a clip, a note and `more` files); bob has the records, is connected to alice, and serves HTTP
 * over his `Media` (seen through `wrap`, when given).
 */
const setupWith = (more: Record<string, Uint8Array> = {}, wrap: (media: Media.Service) => Media.Service = (media) => media) =>
  Effect.gen(function*() {
    const net = yield* Nodes.network()
    const alice = yield* net.node("alice", members)
    const bob = yield* net.node("bob", members)
    const root = yield* tempDir()
    yield* write(nodePath.join(root, "videos/clip.mp4"), content)
    yield* write(nodePath.join(root, "note.txt"), "hello")
    for (const [name, bytes] of Object.entries(more)) yield* write(nodePath.join(root, name), bytes)
    yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Alice's videos" }, root))
    yield* Nodes.share(alice, [bob])
    const changes = yield* bob.presence.changes
    yield* alice.connect(bob)
    yield* Stream.runDrain(Stream.take(Stream.filter(changes, (c) => c._tag === "Online" && c.peer === "alice"), 1))
    const http = yield* Http.make({ token: TOKEN }).pipe(Effect.provideService(Media.Media, wrap(bob.media)))
    const port = http.address.port
    const auth = { authorization: `Bearer ${TOKEN}` }
    /** An authorised request to bob's server. */
    const get = (path: string, headers: Record<string, string> = {}, method = "GET") => request(port, path, { method, headers: { ...auth, ...headers } })
    return { alice, bob, root, http, port, get }
  })
const setup = setupWith()

describe("Media over HTTP", () => {
  it.scopedLive("a file held only by the other node: whole, and by ranges at the start, middle and end, with its headers; past the end is 416", () =>
    Effect.gen(function*() {
      const { get } = yield* setup
      const path = `/files/${L}/${id}`
      const whole = yield* get(path)
      expect([whole.status, whole.body]).toEqual([200, digest(content)])
      expect(whole.headers).toMatchObject({
        "content-type": "video/mp4",
        "content-length": String(SIZE),
        "accept-ranges": "bytes",
        "etag": `"${sha256(content)}"`,
        "content-security-policy": "sandbox"
      })
      const part = (range: string) => Effect.map(get(path, { range }), (a) => [a.status, a.headers["content-range"], a.headers["content-length"], a.body])
      expect(yield* part("bytes=0-999")).toEqual([206, `bytes 0-999/${SIZE}`, "1000", digest(content.slice(0, 1000))])
      expect(yield* part("bytes=100000-165535")).toEqual([206, `bytes 100000-165535/${SIZE}`, "65536", digest(content.slice(100_000, 165_536))])
      expect(yield* part(`bytes=${SIZE - 10}-`)).toEqual([206, `bytes ${SIZE - 10}-${SIZE - 1}/${SIZE}`, "10", digest(content.slice(SIZE - 10))])
      expect(yield* part("bytes=-10")).toEqual([206, `bytes ${SIZE - 10}-${SIZE - 1}/${SIZE}`, "10", digest(content.slice(SIZE - 10))])
      // a last byte past the end is cut to it
      expect(yield* part(`bytes=${SIZE - 5}-${SIZE + 100}`)).toEqual([206, `bytes ${SIZE - 5}-${SIZE - 1}/${SIZE}`, "5", digest(content.slice(SIZE - 5))])
      const past = yield* get(path, { range: `bytes=${SIZE}-` })
      expect([past.status, past.headers["content-range"]]).toEqual([416, `bytes */${SIZE}`])
      // several ranges, or a malformed one: the whole file
      expect((yield* part("bytes=0-9,20-29")).slice(0, 1).concat((yield* part("bytes=x-y")).slice(0, 1))).toEqual([200, 200])
      expect((yield* get(path, { range: "bytes=0-9,20-29" })).body).toBe(digest(content))
    }))

  it.scopedLive("a client that stops reading stops the read from the other node: backpressure, never the whole file in memory", () =>
    Effect.gen(function*() {
      const big = pattern(32 * 1024 * 1024)
      let pulled = 0
      const counting = (media: Media.Service): Media.Service => ({
        ...media,
        read: (library, file, options) =>
          Effect.map(media.read(library, file, options), (reading) => ({
            ...reading,
            bytes: Stream.tap(reading.bytes, (chunk) => Effect.sync(() => { pulled += chunk.length }))
          }))
      })
      const { port } = yield* setupWith({ "big.bin": big }, counting)
      const response = yield* Effect.async<NodeHttp.IncomingMessage, Error>((resume) => {
        const req = NodeHttp.get({ host: "127.0.0.1", port, path: `/files/${L}/${Models.fileId("loc1", "big.bin")}`, headers: { authorization: `Bearer ${TOKEN}` }, agent: false }, (res) => resume(Effect.succeed(res)))
        req.on("error", (e) => resume(Effect.fail(e)))
      })
      expect(response.statusCode).toBe(200)
      // nobody reads the body: once the socket's buffers are full, the server must stop pulling from alice
      let last = -1
      let still = 0
      // until the count has stood still for half a second (bounded: a server that never stops fails below)
      for (let tick = 0; still < 5 && tick < 200; tick++) {
        yield* Effect.sleep(Duration.millis(100))
        still = pulled === last ? still + 1 : 0
        last = pulled
      }
      expect(pulled).toBeLessThan(big.length / 2)
      // and once read, the rest comes, whole
      const body = yield* Effect.async<Buffer, Error>((resume) => {
        const chunks: Array<Buffer> = []
        response.on("data", (c: Buffer) => chunks.push(c))
        response.on("end", () => resume(Effect.succeed(Buffer.concat(chunks))))
        response.on("error", (e) => resume(Effect.fail(e)))
      })
      expect(digest(body)).toBe(digest(big))
    }))

  it.scopedLive("HEAD answers the headers alone, ignoring Range; If-None-Match with the ETag is 304; a stale If-Range gets the whole file", () =>
    Effect.gen(function*() {
      const { get } = yield* setup
      const path = `/files/${L}/${id}`
      const head = yield* get(path, {}, "HEAD")
      expect([head.status, head.headers["content-length"], head.headers["etag"], head.body]).toEqual([200, String(SIZE), `"${sha256(content)}"`, digest(new Uint8Array())])
      expect((yield* get(path, { range: "bytes=0-9" }, "HEAD")).status).toBe(200)
      const etag = `"${sha256(content)}"`
      const cached = yield* get(path, { "if-none-match": `"other", ${etag}` })
      expect([cached.status, cached.headers["etag"], cached.body]).toEqual([304, etag, digest(new Uint8Array())])
      expect((yield* get(path, { "if-none-match": `"${sha256("other")}"` })).status).toBe(200)
      expect((yield* get(path, { range: "bytes=0-9", "if-range": etag })).status).toBe(206)
      const stale = yield* get(path, { range: "bytes=0-9", "if-range": `"${sha256("older")}"` })
      expect([stale.status, stale.body]).toEqual([200, digest(content)])
    }))

  it.scopedLive("a file by its content hash; unknown files and hashes are 404", () =>
    Effect.gen(function*() {
      const { get } = yield* setup
      const byHash = yield* get(`/hash/${L}/${sha256("hello")}`)
      expect([byHash.status, byHash.headers["content-type"], byHash.body]).toEqual([200, "text/plain", "hello"])
      expect((yield* get(`/files/${L}/no-such-file`)).status).toBe(404)
      expect((yield* get(`/hash/${L}/${sha256("nothing")}`)).status).toBe(404)
      expect((yield* get(`/files/${L}`)).status).toBe(404)
    }))

  it.scopedLive("a file changed on the node that holds it is 409; a location online nowhere is 503", () =>
    Effect.gen(function*() {
      const { alice, bob, get, root } = yield* setup
      yield* write(nodePath.join(root, "note.txt"), "hello, longer")
      const changed = yield* get(`/files/${L}/${note}`)
      expect([changed.status, changed.body.split(":")[0]]).toEqual([409, "Changed"])
      const offline = Effect.scoped(Effect.gen(function*() {
        const changes = yield* bob.presence.changes
        yield* alice.mounts.unmount(L, "loc1")
        yield* Stream.runDrain(Stream.take(Stream.filter(changes, (c) => c._tag === "Offline"), 1))
      }))
      yield* offline
      expect((yield* get(`/files/${L}/${id}`)).status).toBe(503)
      expect((yield* get(`/files/${L}/${id}`, {}, "HEAD")).status).toBe(503)
    }))

  it.scopedLive("HEAD is answered as GET would be: a file changed on the node that holds it is 409", () =>
    Effect.gen(function*() {
      const { get, root } = yield* setup
      expect((yield* get(`/files/${L}/${note}`, {}, "HEAD")).status).toBe(200)
      yield* write(nodePath.join(root, "note.txt"), "hello, longer")
      expect((yield* get(`/files/${L}/${note}`, {}, "HEAD")).status).toBe(409)
    }))

  it.scopedLive("a read that fails after the status was sent cuts the connection: the client sees it cut, not a short body that looks complete (nor the next answer on the connection)", () =>
    Effect.gen(function*() {
      // every source fails after the first bytes (as when the last holder drops mid-stream)
      const failing = (media: Media.Service): Media.Service => ({
        ...media,
        read: (library, file, options) =>
          Effect.map(media.read(library, file, options), (reading) => ({
            ...reading,
            bytes: Stream.concat(
              Stream.take(reading.bytes, 1),
              Stream.fail(new Media.MediaError({ reason: "Failed", library, file: "id" in file ? file.id : file.hash, detail: "every source failed" }))
            )
          }))
      })
      const { port } = yield* setupWith({}, failing)
      // two requests pipelined on one keep-alive connection, the second for a small file that reads fine: a server that
      // ended the first response short would go on with the second on the same connection, its bytes read by the client
      // as the rest of the first body; cut, the connection carries the start of the first answer and nothing more
      const auth = `authorization: Bearer ${TOKEN}\r\nhost: 127.0.0.1:${port}`
      const sent = `GET /files/${L}/${id} HTTP/1.1\r\n${auth}\r\n\r\nGET /files/${L}/${note} HTTP/1.1\r\n${auth}\r\nconnection: close\r\n\r\n`
      const received = yield* Effect.async<string, Error>((resume) => {
        const chunks: Array<Buffer> = []
        const socket = net.connect(port, "127.0.0.1", () => socket.write(sent))
        socket.on("data", (c: Buffer) => chunks.push(c))
        socket.on("error", () => {}) // a reset is a cut too: what arrived is checked
        socket.on("close", () => resume(Effect.succeed(Buffer.concat(chunks).toString("latin1"))))
      })
      expect(received.startsWith("HTTP/1.1 200 OK")).toBe(true)
      expect(received.split("HTTP/1.1 ").length - 1).toBe(1)
      expect(received.length).toBeLessThan(SIZE)
    }))

  it.scopedLive("without the token 401; the token as Bearer, in the URL (which sets an HttpOnly SameSite=Strict cookie) or as that cookie", () =>
    Effect.gen(function*() {
      const { port } = yield* setup
      const path = `/files/${L}/${note}`
      expect((yield* request(port, path)).status).toBe(401)
      expect((yield* request(port, path, { headers: { authorization: "Bearer wrong" } })).status).toBe(401)
      expect((yield* request(port, `${path}?token=wrong`)).status).toBe(401)
      expect((yield* request(port, path, { headers: { cookie: `${Headers.cookieName(port)}=wrong` } })).status).toBe(401)
      // another node's cookie (another port) is not this one's
      expect((yield* request(port, path, { headers: { cookie: `${Headers.cookieName(port + 1)}=${TOKEN}` } })).status).toBe(401)
      expect((yield* request(port, path, { headers: { authorization: `Bearer ${TOKEN}` } })).body).toBe("hello")
      const byQuery = yield* request(port, `${path}?token=${TOKEN}`)
      expect(byQuery.body).toBe("hello")
      const cookie = byQuery.headers["set-cookie"]?.[0] ?? ""
      expect(cookie.split("; ")).toEqual(expect.arrayContaining([`${Headers.cookieName(port)}=${TOKEN}`, "HttpOnly", "SameSite=Strict", "Path=/"]))
      expect((yield* request(port, path, { headers: { cookie: cookie.split(";")[0]! } })).body).toBe("hello")
    }))

  it.scopedLive("a Host other than the bound address is 403, token or not (DNS rebinding), and so is another Origin; other methods are 405", () =>
    Effect.gen(function*() {
      const { get, port } = yield* setup
      const path = `/files/${L}/${note}`
      for (const host of [`evil.example:${port}`, "127.0.0.1", `127.0.0.1:${port + 1}`, `localhost.evil.example:${port}`]) {
        expect([host, (yield* get(path, { host })).status]).toEqual([host, 403])
      }
      expect((yield* request(port, path, { headers: { host: `evil.example:${port}` } })).status).toBe(403)
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) {
        expect([host, (yield* get(path, { host })).body]).toEqual([host, "hello"])
      }
      // a page of another origin (a cross-origin fetch, a <video crossorigin>) is refused even with the token
      expect((yield* get(path, { origin: "http://evil.example" })).status).toBe(403)
      expect((yield* get(path, { origin: `http://evil.example:${port}` })).status).toBe(403)
      expect((yield* get(path, { origin: `http://localhost:${port}` })).body).toBe("hello")
      expect((yield* get(path, {}, "POST")).status).toBe(405)
      expect((yield* get(path, {}, "DELETE")).status).toBe(405)
    }))

  it.scopedLive("a traversal in the URL is refused, and reads nothing outside the library", () =>
    Effect.gen(function*() {
      const { get } = yield* setup
      for (
        const path of [
          `/files/${L}/..%2F..%2F..%2Fetc%2Fpasswd`,
          `/files/${L}/..`,
          `/files/${L}/%2e%2e`,
          `/files/../${id}`,
          `/files/${L}/../../../etc/passwd`,
          `/files/${L}/${id}/../../../../etc/passwd`,
          `/hash/${L}/..%2F..%2Fetc%2Fpasswd`,
          "/../../../../etc/passwd",
          `/play/${L}/%22%3E%3Cscript%3E`
        ]
      ) {
        const answer = yield* get(path)
        expect([path, [400, 404].includes(answer.status)]).toEqual([path, true])
        expect(answer.body).not.toContain("root:")
      }
    }))

  it.scopedLive("/play serves a page whose <video> plays the file from the same origin, under a strict CSP", () =>
    Effect.gen(function*() {
      const { get } = yield* setup
      const page = yield* get(`/play/${L}/${id}`)
      expect(page.status).toBe(200)
      expect(page.headers["content-type"]).toMatch(/^text\/html/)
      expect(page.body).toContain(`<video id="player" controls preload="metadata" src="/files/${L}/${id}"`)
      expect(page.headers["content-security-policy"]).toContain("default-src 'none'")
    }))
})

describe("Range, If-None-Match and Host as RFC 9110 reads them", () => {
  it("ranges", () => {
    const r = (header: string | undefined, size = 100) => Headers.parseRange(header, size)
    expect(r(undefined)).toEqual({ _tag: "Whole" })
    expect(r("bytes=0-0")).toEqual({ _tag: "Part", offset: 0, length: 1 })
    expect(r("bytes = 10-19")).toEqual({ _tag: "Part", offset: 10, length: 10 })
    expect(r("bytes=90-")).toEqual({ _tag: "Part", offset: 90, length: 10 })
    expect(r("bytes=-200")).toEqual({ _tag: "Part", offset: 0, length: 100 })
    expect(r("bytes=99-1000")).toEqual({ _tag: "Part", offset: 99, length: 1 })
    expect(r("bytes=100-")).toEqual({ _tag: "Unsatisfiable" })
    expect(r("bytes=-0")).toEqual({ _tag: "Unsatisfiable" })
    expect(r("bytes=100-,200-300")).toEqual({ _tag: "Unsatisfiable" })
    expect(r("bytes=0-", 0)).toEqual({ _tag: "Unsatisfiable" })
    // invalid or not ours: ignored, so the whole file
    for (const header of ["bytes=5-2", "items=0-1", "bytes=", "bytes=a-b", "bytes=1-2-3", "0-1", "bytes=0-1,5-6", "bytes=0-1,100-"]) {
      expect([header, r(header)]).toEqual([header, { _tag: "Whole" }])
    }
    expect(r(`bytes=${Array.from({ length: Headers.MAX_RANGES + 1 }, () => "200-").join(",")}`)).toEqual({ _tag: "Whole" })
  })

  it("entity tags and hosts", () => {
    const tag = Headers.etag("ab")
    expect([Headers.noneMatch(`"x", W/${tag}`, tag), Headers.noneMatch("*", tag), Headers.noneMatch(`"x"`, tag), Headers.noneMatch(undefined, tag)])
      .toEqual([true, true, false, false])
    expect(Headers.allowedHosts("127.0.0.1", 80)).toEqual(new Set(["127.0.0.1:80", "localhost:80", "[::1]:80"]))
    expect([...Headers.allowedHosts("192.168.1.2", 80)]).toEqual(["192.168.1.2:80"])
    expect(Headers.hostAllowed(undefined, Headers.allowedHosts("127.0.0.1", 80))).toBe(false)
  })
})

// the fixture exists for the browser test, and must stay seekable WebM small enough to commit
it.effect("the committed video fixture is a WebM of at most 1.5 MB", () =>
  Effect.promise(async () => {
    const bytes = await fs.readFile(new URL("./testing/fixtures/clip.webm", import.meta.url))
    expect(bytes.length).toBeLessThanOrEqual(1_500_000)
    expect([...bytes.subarray(0, 4)]).toEqual([0x1a, 0x45, 0xdf, 0xa3])
  }))
