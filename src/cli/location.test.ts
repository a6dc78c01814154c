/**
 * `weft location add | rescan | list | remove` with two real `weft serve`
 * processes paired in one library (see `testing/Cli`).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createHash } from "node:crypto"
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as Cli from "./testing/Cli.js"
import * as Processes from "./testing/Processes.js"

const { serve, tempDir, twoDirs, weft, weftJson } = Cli

describe("weft location (two real nodes)", () => {
  it.scopedLive("a directory added on A is listed on B as online on A once synced, and B's --http serves its files; rescan finds changes; a missing directory is a typed error; remove takes it away", () =>
    Effect.gen(function*() {
      const { a, alpha, b } = yield* twoDirs
      const photos = join(yield* tempDir("photos"), "Photos")
      mkdirSync(join(photos, "2024"), { recursive: true })
      writeFileSync(join(photos, "a.txt"), "sand and sea\n")
      writeFileSync(join(photos, "2024/b.txt"), "b")
      // one after the other: on a loaded machine two starting at once may not answer in time
      const nodeA = yield* serve(a)
      const nodeB = yield* serve(b, "--yes", "--http", "127.0.0.1:0")
      const peerA = (yield* nodeA.status).peerId
      yield* weftJson("pair", (yield* nodeB.status).addresses[0]!, "--dir", a)

      // by the library's name; standard output is no terminal: plain lines, then the summary
      const added = yield* weft("location", "add", "Alpha", photos, "--name", "Holiday", "--dir", a)
      expect(added.code).toBe(0)
      expect(added.stdout).toContain(`scanning ${photos}: 2 file(s)`)
      expect(added.stdout).toMatch(/files {4}2 recorded, 14 B hashed: 2 added, 0 changed, 0 unchanged, 0 removed/)

      // waited for through the control socket (a process per poll is slow), then shown by the command
      const onB = yield* Processes.eventually(
        "A's location on B, online on A",
        nodeB.call({ _tag: "LocationList", library: "Alpha" }),
        (all) => all.length === 1 && all[0]!.peers.some((p) => p.peer === peerA)
      )
      expect(onB[0]).toMatchObject({ library: alpha, name: "Holiday", online: false })
      expect((yield* nodeA.call({ _tag: "LocationList" }))[0]).toMatchObject({ name: "Holiday", root: photos, online: true })
      // two commands at once: the listing on B, and a typed error on A
      const [text, missing] = yield* Effect.all([
        weft("location", "list", "--dir", b),
        weft("location", "add", "Alpha", join(photos, "nope"), "--dir", a)
      ], { concurrency: 2 })
      expect(text.stdout).toContain("Holiday")
      expect(text.stdout).toContain("not held on this node")
      expect(text.stdout).toContain(`online on ${peerA}`)
      expect(missing.code).toBe(1)
      expect(missing.stderr).toBe(`weft: LocationError: location DirectoryMissing: ${join(photos, "nope")}: no such directory\n`)

      // B's HTTP front serves A's file (B holds no copy), only to whoever shows the token its banner printed
      const banner = yield* Processes.eventually("B's http banner", Effect.sync(() => nodeB.output()), (out) => /^token {5}\S+/m.test(out))
      const origin = /^http {6}(http:\/\/127\.0\.0\.1:\d+)\//m.exec(banner)![1]!
      const token = /^token {5}(\S+)/m.exec(banner)![1]!
      const url = `${origin}/hash/${alpha}/${createHash("sha256").update("sand and sea\n").digest("hex")}`
      const served = yield* Effect.promise(() => fetch(url, { headers: { authorization: `Bearer ${token}`, range: "bytes=5-" } }))
      expect(served.status).toBe(206)
      expect(yield* Effect.promise(() => served.text())).toBe("and sea\n")
      expect((yield* Effect.promise(() => fetch(url))).status).toBe(401)

      // a file added, one changed, one removed
      writeFileSync(join(photos, "c.txt"), "new")
      writeFileSync(join(photos, "a.txt"), "sand, sea and sun\n")
      rmSync(join(photos, "2024/b.txt"))
      const rescanned = yield* weftJson("location", "rescan", alpha, "Holiday", "--dir", a)
      expect(rescanned).toMatchObject({ added: 1, changed: 1, removed: 1, done: true })

      const removed = yield* weft("location", "remove", "Alpha", "Holiday", "--dir", a)
      expect(removed.stdout).toMatch(/^removed: Holiday \(l[0-9a-f]{32}\)\n$/)
      yield* Processes.eventually("removed on B", nodeB.call({ _tag: "LocationList", library: "Alpha" }), (all) => all.length === 0)
    }), 180_000)

  it.scopedLive("weft serve --watch: a file written into a held location is recorded without a rescan, and served", () =>
    Effect.gen(function*() {
      const { a, alpha } = yield* twoDirs
      const photos = join(yield* tempDir("watched"), "Photos")
      mkdirSync(photos, { recursive: true })
      writeFileSync(join(photos, "a.txt"), "first\n")
      const nodeA = yield* serve(a, "--watch", "--http", "127.0.0.1:0")
      const banner = yield* Processes.eventually("A's http banner", Effect.sync(() => nodeA.output()), (out) => /^token {5}\S+/m.test(out))
      expect(banner).toMatch(/^watch {5}the locations held here/m)
      const origin = /^http {6}(http:\/\/127\.0\.0\.1:\d+)\//m.exec(banner)![1]!
      const token = /^token {5}(\S+)/m.exec(banner)![1]!
      expect((yield* weft("location", "add", "Alpha", photos, "--dir", a)).code).toBe(0)
      // written after the add: only the watcher can record it
      writeFileSync(join(photos, "later.txt"), "written while watched\n")
      const url = `${origin}/hash/${alpha}/${createHash("sha256").update("written while watched\n").digest("hex")}`
      const status = Effect.promise(() => fetch(url, { headers: { authorization: `Bearer ${token}` } }).then(async (r) => (await r.text(), r.status)))
      expect(yield* Processes.eventually("the new file served", status, (code) => code === 200)).toBe(200)
    }), 120_000)
})
