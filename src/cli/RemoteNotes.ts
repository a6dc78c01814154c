/**
 * The CLI's notes as rspc procedures, so a paired node can read or change
 * this node's notes as far as this node granted it: `notes.read` for
 * `NotesList` and `NotesGet`, `notes.write` for `NotesAdd`, `NotesSet` and
 * `NotesRemove`. The procedures are the control endpoint's
 * (`NotesControl`), each annotated with its capability; a remote call always
 * works on the library of the rspc stream it came on, whatever library its
 * payload names.
 *
 * @since 0.1.0
 */
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Caller } from "../plugins/RpcPlugin.js"
import * as Protocol from "../plugins/rspc/Protocol.js"
import * as NotesControl from "./NotesControl.js"

/** The capability each notes procedure needs. */
export const capabilities: Readonly<Record<string, string>> = {
  NotesList: "notes.read",
  NotesGet: "notes.read",
  NotesAdd: "notes.write",
  NotesSet: "notes.write",
  NotesRemove: "notes.write"
}

/** The notes procedures as served over rspc. */
export const group = RpcGroup.make(
  ...[...NotesControl.Control.requests.values()].map((rpc) => rpc.annotate(Protocol.Needs, capabilities[rpc._tag] ?? ""))
).middleware(Protocol.Guard)

/** The tags of the notes procedures. */
export type Tag = keyof typeof capabilities

/** The notes procedures' handlers of the control endpoint. */
export type Procedures = RpcGroup.HandlersFrom<RpcGroup.Rpcs<typeof NotesControl.Control>>

/** Serves `group` with the control endpoint's handlers, each on the library of the caller's stream. */
export const handlers = <E, R>(procedures: Effect.Effect<Procedures, E, R>) =>
  group.toLayer(Effect.map(procedures, (local) => {
    // (the handlers are typed by their own group's; the payloads are the same)
    const inLibrary = (handle: (payload: any, options: any) => any) => (payload: object, options: unknown) =>
      Effect.flatMap(Caller, (caller) => handle({ ...payload, library: caller.library }, options) as Effect.Effect<unknown, unknown>)
    return {
      NotesList: inLibrary(local.NotesList),
      NotesGet: inLibrary(local.NotesGet),
      NotesAdd: inLibrary(local.NotesAdd),
      NotesSet: inLibrary(local.NotesSet),
      NotesRemove: inLibrary(local.NotesRemove)
    } as any
  })) as Layer.Layer<any, E, Exclude<R, never>>
