/**
 * `weft --peer <id> notes …`, `weft --peer <id> status` and `weft --peer <id>
 * transfers [pause|resume|cancel <id>]`: the commands run on another node,
 * through this node (its control endpoint's `Remote` procedure) and rspc,
 * as far as that node granted this one. Nothing falls back to this node:
 * an unreachable peer is `Unavailable`, an ungranted call `Forbidden`.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as ParseError from "../internal/parseError.js"
import { RpcError } from "../plugins/RpcPlugin.js"
import type { PeerId } from "../transport/Transport.js"
import * as Control from "./Control.js"
import * as NotesControl from "./NotesControl.js"
import * as RemoteNode from "./RemoteNode.js"

/** A notes request, as the notes commands make them. */
export type NotesRequest = { readonly _tag: "NotesList" | "NotesGet" | "NotesAdd" | "NotesSet" | "NotesRemove"; readonly library?: string }

/** A request of the status and transfers commands, which run on another node with `--peer`. */
export type NodeRequest = { readonly _tag: RemoteNode.Tag; readonly library?: string }

/** Whether a control request can run on another node (`--peer`). */
export const isRemote = (request: { readonly _tag: string }): request is NotesRequest | NodeRequest =>
  NotesControl.Control.requests.has(request._tag) || RemoteNode.group.requests.has(request._tag)

/** `--peer` given to a command that does not run on another node. */
export class PeerOptionError extends Data.TaggedError("PeerOptionError")<{ readonly reason: "Unsupported"; readonly command: string }> {
  override get message(): string {
    return `--peer works with \`weft notes …\`, \`weft status\` and \`weft transfers …\` only, not with ${this.command}; nothing was done`
  }
}

/** Fails: `--peer` does not apply to the request `tag`. */
export const unsupported = (tag: string) => Effect.fail(new PeerOptionError({ reason: "Unsupported", command: tag }))

/** Sends the request `body` to `peer`'s procedure of its tag through the node at `path`; its answer, decoded. */
export const call = <R extends NotesRequest | NodeRequest>(path: string, peer: PeerId, body: R) =>
  Effect.gen(function*() {
    const { _tag, library, ...payload } = body
    const answer = yield* Control.call(path, { _tag: "Remote", peer, tag: _tag, payload, ...(library === undefined ? {} : { library }) })
    const rpc = (NotesControl.Control.requests.get(_tag) ?? RemoteNode.group.requests.get(_tag))!
    return yield* ParseError.decodeUnknown(rpc.successSchema as Schema.Schema<unknown>)(answer).pipe(
      Effect.mapError((error) => new RpcError({ reason: "Malformed", detail: `the answer of ${_tag} from ${peer}: ${ParseError.describe(error)}` }))
    )
  })

/** Every note of `peer` in `library` (default: this node's default library), page by page. */
export const listNotes = (path: string, peer: PeerId, library?: string) =>
  NotesControl.allNotes(
    (after) =>
      call(path, peer, {
        _tag: "NotesList",
        ...(library === undefined ? {} : { library }),
        ...(after === undefined ? {} : { after })
      }) as Effect.Effect<NotesControl.NotesPage, Effect.Effect.Error<ReturnType<typeof call>>>,
    () => new RpcError({ reason: "Malformed", detail: "a page of notes with a next cursor but no notes" })
  )
