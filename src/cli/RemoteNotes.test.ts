import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schedule from "effect/Schedule"
import * as Grants from "../plugins/rspc/Grants.js"
import * as Rspc from "../plugins/rspc/Rspc.js"
import * as Hosts from "../plugins/testing/Hosts.js"
import type { PeerId } from "../transport/Transport.js"
import * as RemoteNotes from "./RemoteNotes.js"

const note = (library: string | undefined, id: string) => ({ library: library ?? "(none)", id, title: id, body: "", done: false })

/** Handlers that answer with the library they were asked about, and count what ran. */
const procedures = (ran: Array<string>) =>
  Effect.succeed({
    NotesList: (request: { readonly library?: string | undefined }) => Effect.sync(() => (ran.push("NotesList"), { notes: [note(request.library, "listed")] })),
    NotesGet: (request: { readonly library?: string | undefined; readonly id: string }) => Effect.sync(() => (ran.push("NotesGet"), note(request.library, request.id))),
    NotesAdd: (request: { readonly library?: string | undefined; readonly title: string }) => Effect.sync(() => (ran.push("NotesAdd"), note(request.library, request.title))),
    NotesSet: (request: { readonly library?: string | undefined; readonly id: string }) => Effect.sync(() => (ran.push("NotesSet"), note(request.library, request.id))),
    NotesRemove: (request: { readonly id: string }) => Effect.sync(() => (ran.push("NotesRemove"), { id: request.id }))
  } as unknown as RemoteNotes.Procedures)

describe("RemoteNotes", () => {
  it.scopedLive("a remote call works on its stream's library, whatever library its payload names; notes.read does not allow writes", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 5 })
      const libraries = [
        { id: "l", name: "l", members: ["alice", "bob"] as Array<PeerId> },
        { id: "m", name: "m", members: ["alice", "bob"] as Array<PeerId> }
      ]
      const alice = yield* network.host("alice", { libraries })
      const bob = yield* network.host("bob", { libraries })
      const ran: Array<string> = []
      const grants = yield* Effect.provide(Grants.Grants, Grants.layerMemory())
      yield* bob.provide(Rspc.serve({ group: RemoteNotes.group })).pipe(
        Effect.provide(RemoteNotes.handlers(procedures(ran))),
        Effect.provideService(Grants.Grants, grants)
      )
      yield* alice.connect(bob)
      yield* Effect.repeat(alice.host.available, { until: (peers) => peers.includes(bob.id), schedule: Schedule.spaced("5 millis") })
      yield* grants.grant(alice.id, "l", ["notes.read"])
      const notes = yield* alice.provide(Rspc.client(RemoteNotes.group, { peer: bob.id, library: "l" }))
      const page = yield* notes.NotesList({ library: "m" })
      expect(page.notes.map((n) => n.library)).toEqual(["l"])
      expect((yield* notes.NotesGet({ id: "n1", library: "m" })).library).toBe("l")
      const add = yield* Effect.either(notes.NotesAdd({ title: "t", body: "", done: false }))
      expect(Either.isLeft(add) && add.left).toMatchObject({ _tag: "Forbidden", reason: "NotGranted", procedure: "NotesAdd" })
      expect(ran).toEqual(["NotesList", "NotesGet"])
    }))
})
