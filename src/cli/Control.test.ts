import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schedule from "effect/Schedule"
import { mkdtempSync, rmSync } from "node:fs"
import { connect, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Control from "./Control.js"
import type * as ControlProtocol from "./ControlProtocol.js"

const socketPath = Effect.map(
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "weft-control-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  ),
  (dir) => join(dir, "weft.sock")
)

const rawClient = (path: string) =>
  Effect.acquireRelease(
    Effect.async<Socket>((resume) => {
      const socket = connect({ path }, () => resume(Effect.succeed(socket)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

const peers = { available: [], discovered: [] }

describe("the control endpoint", () => {
  it.scopedLive("a line of deeply nested JSON is answered Malformed, not left unanswered", () =>
    Effect.gen(function*() {
      const path = yield* socketPath
      yield* Control.serve(path, () => Effect.succeed(peers))
      const socket = yield* rawClient(path)
      const nested = "[".repeat(5000) + "]".repeat(5000)
      socket.write(`{"version":1,"id":7,"request":{"_tag":"Connect","address":${nested}}}\n`)
      const answer = yield* Effect.async<string>((resume) => {
        let received = ""
        socket.on("data", (data) => {
          received += data
          if (received.includes("\n")) resume(Effect.succeed(received))
        })
      }).pipe(Effect.timeout(Duration.seconds(5)))
      expect(JSON.parse(answer)).toMatchObject({ id: 7, ok: false, error: { tag: "ControlError", reason: "Malformed" } })
    }))

  it.scopedLive("multi-byte characters arrive intact whichever read boundary splits them, both ways", () =>
    Effect.gen(function*() {
      const path = yield* socketPath
      let received = ""
      yield* Control.serve(path, (request) =>
        Effect.sync(() => {
          if (request._tag !== "NotesAdd") throw new Error("unexpected request")
          received = request.body
          return { library: "l", id: "n", title: request.title, body: request.body, done: false }
        }))
      // 90 KB of 3-byte characters: the line crosses 64 KiB reads; three titles shift the boundary
      const body = "€".repeat(30_000)
      for (const title of ["", "x", "xy"]) {
        const answer = yield* Control.call(path, { _tag: "NotesAdd", title, body, done: false })
        expect(received).toBe(body)
        expect(answer.body).toBe(body)
      }
    }))

  it.scopedLive("a client that sends requests and never reads the answers stops being read", () =>
    Effect.gen(function*() {
      const path = yield* socketPath
      let answered = 0
      // about 1 KB per answer
      yield* Control.serve(path, () =>
        Effect.sync(() => {
          answered++
          return { available: [], discovered: [{ peer: "p".repeat(1000), addresses: [] }] }
        }))
      const socket = yield* rawClient(path)
      socket.pause()
      socket.write((JSON.stringify({ version: 1, id: 1, request: { _tag: "Peers" } }) + "\n").repeat(50_000))
      yield* Effect.sleep(Duration.seconds(2))
      const early = answered
      yield* Effect.sleep(Duration.seconds(1))
      // a few socket buffers' worth of answers, then nothing more until the client reads
      expect(answered).toBe(early)
      expect(answered).toBeLessThan(5_000)
      socket.resume()
      yield* Effect.repeat(Effect.sync(() => answered), { until: (n) => n === 50_000, schedule: Schedule.spaced("10 millis") }).pipe(Effect.timeout(Duration.seconds(30)))
    }), 60_000)

  it.scopedLive("an answer over the line bound is a typed TooLarge failure, not a line the client must refuse", () =>
    Effect.gen(function*() {
      const path = yield* socketPath
      // a handler that ignores the page bound
      const notes: Array<ControlProtocol.NotesPage["notes"][number]> = []
      for (let i = 0; i < 20; i++) notes.push({ library: "l", id: `n${i}`, title: "t", body: "b".repeat(64 * 1024), done: false })
      yield* Control.serve(path, () => Effect.succeed({ notes } satisfies ControlProtocol.NotesPage))
      const result = yield* Effect.either(Control.call(path, { _tag: "NotesList" }))
      expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "RemoteError", tag: "ControlError", reason: "TooLarge" })
    }))

  it.scopedLive("listNotes follows the pages, and lists a note renamed between two of them once, as last seen", () =>
    Effect.gen(function*() {
      const path = yield* socketPath
      const note = (id: string, title: string) => ({ library: "l", id, title, body: "", done: false })
      yield* Control.serve(path, (request) =>
        Effect.succeed(
          request._tag === "NotesList" && request.after === undefined
            ? { notes: [note("1", "a"), note("2", "b")], next: { title: "b", id: "2" } }
            : { notes: [note("3", "c"), note("1", "z")] }
        ))
      const all = yield* Control.listNotes(path)
      expect(all.map((n) => `${n.id}:${n.title}`)).toEqual(["2:b", "3:c", "1:z"])
    }))

  it.scopedLive("a node that never answers: the call fails with Timeout instead of waiting forever", () =>
    Effect.gen(function*() {
      const path = yield* socketPath
      yield* Control.serve(path, () => Effect.never)
      const result = yield* Effect.either(Control.call(path, { _tag: "Status" }, { timeout: Duration.millis(200) }))
      expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "ControlError", reason: "Timeout" })
    }))
})
