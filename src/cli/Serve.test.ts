import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Engine from "../engine/Engine.js"
import * as Consent from "../plugins/Consent.js"
import * as Control from "./Control.js"
import * as DataDir from "../node/DataDir.js"
import { init } from "./Init.js"
import * as Serve from "./Serve.js"
import * as Notes from "./Notes.js"
import * as NotesControl from "./NotesControl.js"
import * as Processes from "./testing/Processes.js"

const nodeOn = (dir: string) => Serve.run({ dir, listen: ["/ip4/127.0.0.1/tcp/0"], mdns: false, peers: [], frontEnd: Consent.approveAll })

/** A node in this process, on a fresh data directory, reachable on loopback only; its control socket. */
const startedNode = Effect.gen(function*() {
  const dir = yield* Processes.tempDir("weft-node")
  yield* init(dir, "Notes")
  yield* nodeOn(dir)
  return DataDir.layout(dir).socket
})

const add = (socket: string, title: string, body = "") =>
  Control.call(socket, { _tag: "NotesAdd", title, body, done: false })

describe("one node per data directory", () => {
  it.scopedLive("of two nodes started at the same instant on one directory, one runs and the other is refused Busy", () =>
    Effect.gen(function*() {
      const dir = yield* Processes.tempDir("weft-node")
      yield* init(dir, "Notes")
      const [first, second] = yield* Effect.all([Effect.either(nodeOn(dir)), Effect.either(nodeOn(dir))], { concurrency: "unbounded" })
      const refused = [first, second].filter(Either.isLeft).map((result) => result.left)
      expect(refused).toEqual([expect.objectContaining({ _tag: "DataDirError", reason: "Busy" })])
      // the one that runs answers
      expect((yield* Control.call(DataDir.layout(dir).socket, { _tag: "Status" })).libraries).toHaveLength(1)
    }), 30_000)
})

describe("weft notes list", () => {
  it.scopedLive("lists every note, in pages that each fit one control line, however large the notes", () =>
    Effect.gen(function*() {
      const socket = yield* startedNode
      // 20 notes of ~190 KB as JSON (3-byte characters): about 3.8 MB in all, several times one line
      const body = "€".repeat(64 * 1024)
      for (let i = 0; i < 20; i++) yield* add(socket, `note ${String(i).padStart(2, "0")}`, body)

      const first = yield* Control.call(socket, { _tag: "NotesList" })
      expect(first.notes.length).toBeGreaterThan(0)
      expect(first.notes.length).toBeLessThan(20)
      expect(Buffer.byteLength(JSON.stringify(first.notes))).toBeLessThanOrEqual(NotesControl.NOTES_PAGE_BYTES)
      expect(first.next).toEqual({ title: first.notes.at(-1)!.title, id: first.notes.at(-1)!.id })

      const all = yield* Control.listNotes(socket)
      expect(all.map((note) => note.title)).toEqual(Array.from({ length: 20 }, (_, i) => `note ${String(i).padStart(2, "0")}`))
      expect(all.every((note) => note.body === body)).toBe(true)
    }), 60_000)

  it.scopedLive("a page holds at most `limit` notes; the last page has no cursor; notes added meanwhile are never listed twice", () =>
    Effect.gen(function*() {
      const socket = yield* startedNode
      // equal titles: the id orders them
      for (const title of ["b", "b", "b", "d", "f"]) yield* add(socket, title)

      const first = yield* Control.call(socket, { _tag: "NotesList", limit: 2 })
      expect(first.notes.map((n) => n.title)).toEqual(["b", "b"])
      // added between two pages: one before the cursor (not seen now), one after it (seen once)
      yield* add(socket, "a")
      yield* add(socket, "e")
      const second = yield* Control.call(socket, { _tag: "NotesList", limit: 2, after: first.next! })
      const third = yield* Control.call(socket, { _tag: "NotesList", limit: 2, after: second.next! })
      expect(third.next).toBeUndefined()
      const seen = [...first.notes, ...second.notes, ...third.notes]
      expect(seen.map((n) => n.title)).toEqual(["b", "b", "b", "d", "e", "f"])
      expect(new Set(seen.map((n) => n.id)).size).toBe(6)

      const exact = yield* Control.call(socket, { _tag: "NotesList", limit: 7 })
      expect(exact.notes).toHaveLength(7)
      expect(exact.next).toBeUndefined()
    }), 30_000)

  it.scopedLive("notes with any record id (as sync may bring) page, update and delete like the node's own", () =>
    Effect.gen(function*() {
      const dir = yield* Processes.tempDir("weft-node")
      const initialized = yield* init(dir, "Notes")
      const paths = DataDir.layout(dir)
      // written as sync would write them: ids this node would never make
      const ids = ["from a peer", "ü/" + "x".repeat(200)]
      yield* Effect.scoped(Effect.gen(function*() {
        const engine = yield* Engine.makeSqlite({ models: Notes.models, node: initialized.peerId, filename: paths.database(initialized.libraries[0]!.id) })
        yield* engine.mutate(ids.map((id, i) => Notes.notes.create(id, { title: `t${i}`, body: "", done: false })))
      }))
      yield* nodeOn(dir)
      const first = yield* Control.call(paths.socket, { _tag: "NotesList", limit: 1 })
      expect(first.notes.map((n) => n.id)).toEqual([ids[0]])
      const second = yield* Control.call(paths.socket, { _tag: "NotesList", limit: 1, after: first.next! })
      expect(second.notes.map((n) => n.id)).toEqual([ids[1]])
      expect((yield* Control.call(paths.socket, { _tag: "NotesSet", id: ids[1]!, done: true })).done).toBe(true)
      yield* Control.call(paths.socket, { _tag: "NotesRemove", id: ids[0]! })
      expect((yield* Control.listNotes(paths.socket)).map((n) => n.id)).toEqual([ids[1]])
    }), 30_000)

  it.scopedLive("a limit out of range is refused as Malformed, saying where, before it leaves", () =>
    Effect.gen(function*() {
      const socket = yield* startedNode
      const refused = yield* Effect.flip(Control.call(socket, { _tag: "NotesList", limit: 0 }))
      expect(refused).toMatchObject({ _tag: "RpcError", reason: "Malformed" })
      expect(refused.message).toContain("limit: Expected a number between 1 and 1000, actual 0")
    }), 30_000)
})
