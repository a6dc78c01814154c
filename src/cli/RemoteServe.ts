/**
 * What `weft serve` adds for rspc: the node's grants (`grants.json` in its
 * data directory), its notes served to the peers granted them
 * (`RemoteNotes` on rspc), and the control procedures that grant, revoke,
 * list, and call another node's notes (`RspcControl`).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { join } from "node:path"
import { Libraries } from "../library/Libraries.js"
import { NodeError } from "../node/Control.js"
import type { PluginHost } from "../plugins/PluginHost.js"
import * as Grants from "../plugins/rspc/Grants.js"
import * as Rspc from "../plugins/rspc/Rspc.js"
import * as RemoteNotes from "./RemoteNotes.js"
import * as RspcControl from "./RspcControl.js"

/** The grants file of a data directory. */
export const grantsPath = (dataDir: string): string => join(dataDir, "grants.json")

/** The library `id` names, or the node's default one. */
const libraryOf = (id: string | undefined) =>
  Effect.flatMap(Libraries, (libraries) =>
    Effect.flatMap(id === undefined ? libraries.defaultLibrary : libraries.get(id), Option.match({
      onNone: () => Effect.fail(new NodeError({ reason: "NoLibrary", detail: id === undefined ? "this node has no library" : `no library ${id} here` })),
      onSome: (library) => Effect.succeed(library.id)
    })))

/** The rspc control procedures, with the grants, libraries and plugin host in context. */
export const controlHandlers = RspcControl.Control.toLayer(Effect.gen(function*() {
  const grants = yield* Grants.Grants
  const context = yield* Effect.context<Libraries | PluginHost>()
  return {
    Grant: ({ capabilities, library, peer }) =>
      Effect.flatMap(libraryOf(library), (id) => grants.grant(peer, id, capabilities)).pipe(Effect.provide(context)),
    Revoke: ({ capabilities, library, peer }) =>
      Effect.flatMap(libraryOf(library), (id) => grants.revoke(peer, id, capabilities)).pipe(Effect.provide(context)),
    Grants: ({ library }) =>
      (library === undefined ? grants.list() : Effect.flatMap(libraryOf(library), (id) => grants.list(id))).pipe(Effect.provide(context)),
    Remote: ({ library, payload, peer, tag }) =>
      Effect.scoped(Effect.gen(function*() {
        const id = yield* libraryOf(library)
        const client = yield* Rspc.client(RemoteNotes.group, { peer, library: id })
        const procedure = (client as unknown as Record<string, (payload: unknown) => Effect.Effect<unknown, any>>)[tag]!
        return yield* procedure(payload)
      })).pipe(Effect.provide(context))
  }
}))

/** Serves the notes (`procedures`, the control endpoint's handlers) on rspc to the peers granted them. */
export const serveNotes = <E, R>(procedures: Effect.Effect<RemoteNotes.Procedures, E, R>) =>
  Rspc.layer({ group: RemoteNotes.group }).pipe(Layer.provide(RemoteNotes.handlers(procedures)))
