/**
 * What `weft serve` adds for rspc: the node's grants (`grants.json` in its
 * data directory), its notes, status and transfers served to the peers
 * granted them (`RemoteNotes` and `RemoteNode` on rspc), and the control
 * procedures that grant, revoke, list, and call another node's procedures
 * (`RspcControl`).
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
import { Node } from "../node/Node.js"
import * as RemoteNode from "./RemoteNode.js"
import * as RemoteNotes from "./RemoteNotes.js"
import * as RspcControl from "./RspcControl.js"
import { Transfers } from "./Transfers.js"

/** Every procedure `weft serve` offers over rspc: the notes, the status and the transfers. */
export const group = RemoteNotes.group.merge(RemoteNode.group)

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
        const client = yield* Rspc.client(group, { peer, library: id })
        const procedure = (client as unknown as Record<string, (payload: unknown) => Effect.Effect<unknown, any>>)[tag]!
        return yield* procedure(payload)
      })).pipe(Effect.provide(context))
  }
}))

/** The node's status and transfers, as `RemoteNode` serves them, from the node and the transfers in context. */
export const nodeProcedures = Effect.gen(function*() {
  const node = yield* Node
  const transfers = yield* Transfers
  return {
    Status: () => node.status,
    Transfers: () => transfers.list,
    TransferPause: ({ id }) => transfers.pause(id),
    TransferResume: ({ id }) => transfers.resume(id),
    TransferCancel: ({ id }) => transfers.cancel(id)
  } satisfies RemoteNode.Procedures
})

/**
 * Serves the notes (`procedures`, the control endpoint's handlers), the
 * node's status and its transfers (with `Node` and `Transfers` in context)
 * on rspc to the peers granted them.
 */
export const serveNotes = <E, R>(procedures: Effect.Effect<RemoteNotes.Procedures, E, R>) =>
  Rspc.layer({ group }).pipe(Layer.provide(Layer.merge(RemoteNotes.handlers(procedures), RemoteNode.handlers(nodeProcedures))))
