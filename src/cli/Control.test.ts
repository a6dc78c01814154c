import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { createServer } from "node:net"
import { join } from "node:path"
import * as ControlSocket from "../node/ControlSocket.js"
import * as Processes from "../node/testing/Processes.js"
import * as Control from "./Control.js"
import * as NotesControl from "./NotesControl.js"

const socketPath = Effect.map(Processes.tempDir("weft-cli-control"), (dir) => join(dir, ControlSocket.SOCKET_NAME))
const note = (id: string, title: string): NotesControl.Note => ({ library: "l", id, title, body: "", done: false })
const unused = () => Effect.die("not in this test")

describe("the CLI's control client", () => {
  it.scopedLive("listNotes follows the pages, and lists a note renamed between two of them once, as last seen", () =>
    Effect.gen(function*() {
      const path = yield* socketPath
      yield* ControlSocket.serve(path, NotesControl.Control).pipe(Effect.provide(NotesControl.Control.toLayer({
        NotesList: ({ after }) =>
          Effect.succeed(
            after === undefined
              ? { notes: [note("1", "a"), note("2", "b")], next: { title: "b", id: "2" } }
              : { notes: [note("3", "c"), note("1", "z")] }
          ),
        NotesAdd: unused,
        NotesGet: unused,
        NotesSet: unused,
        NotesRemove: unused
      })))
      const all = yield* Control.listNotes(path)
      expect(all.map((n) => `${n.id}:${n.title}`)).toEqual(["2:b", "3:c", "1:z"])
    }))

  it.scopedLive("a node that never answers: the call fails with Timeout instead of waiting forever", () =>
    Effect.gen(function*() {
      const path = yield* socketPath
      // takes connections and reads calls, never answers
      yield* Effect.acquireRelease(
        Effect.async<ReturnType<typeof createServer>>((resume) => {
          const server = createServer((socket) => socket.resume())
          server.listen(path, () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
        })
      )
      const refused = yield* Effect.flip(Control.call(path, { _tag: "Status" }, { timeout: Duration.millis(200) }))
      expect(refused).toMatchObject({ _tag: "ControlError", reason: "Timeout" })
    }))
})
