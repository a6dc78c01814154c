/**
 * The procedures the CLI adds to its node's control endpoint for rspc
 * (schemas only; `Serve` serves them):
 *
 *   Grant    peer, capabilities, library?        → Grant (what the peer holds after)
 *   Revoke   peer, capabilities?, library?       → Grant (what it still holds)
 *   Grants   library?                            → Grant[]
 *   Remote   peer, library?, tag, payload        → the answer of the peer's procedure `tag`: a notes
 *                                                  one (`RemoteNotes`), `Status` or a transfers one (`RemoteNode`)
 *
 * `library` defaults to the node's default library. `Remote` calls a
 * procedure of `RemoteNotes` or `RemoteNode` on another peer through rspc: it fails
 * with `Forbidden` for what that peer did not grant, `Unavailable` when it
 * cannot be reached (never a local call instead), and the procedure's own
 * errors. Its answer travels as JSON, decoded by the caller with the
 * procedure's success schema.
 *
 * @since 0.1.0
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import { ClockDriftError } from "../crdt/Hlc.js"
import { MutationError, StorageError, ValidationError } from "../engine/EngineError.js"
import { LibraryId } from "../library/LibraryId.js"
import { NodeError } from "../node/Control.js"
import { RpcError } from "../plugins/RpcPlugin.js"
import { Grant, GrantsError } from "../plugins/rspc/Grants.js"
import { CallTimeout, Forbidden, Unavailable } from "../plugins/rspc/Protocol.js"
import { PeerId } from "../transport/Transport.js"
import { NoteError } from "./NotesControl.js"
import { SpacedropError } from "../plugins/spacedrop/Protocol.js"
import { TransfersError } from "./TransfersControl.js"

const library = Schema.optional(LibraryId)
const Capabilities = Schema.Array(Schema.String.pipe(Schema.maxLength(128))).pipe(Schema.maxItems(256))

/** The procedures a remote call may name: the notes ones, the node's status, and its transfers. */
export const RemoteTag = Schema.Literal(
  "NotesList",
  "NotesGet",
  "NotesAdd",
  "NotesSet",
  "NotesRemove",
  "Status",
  "Transfers",
  "TransferPause",
  "TransferResume",
  "TransferCancel"
)

/** The rspc procedures of the CLI's control endpoint. */
export class Control extends RpcGroup.make(
  Rpc.make("Grant", { payload: { peer: PeerId, capabilities: Capabilities.pipe(Schema.minItems(1)), library }, success: Grant, error: Schema.Union(GrantsError, NodeError) }),
  Rpc.make("Revoke", { payload: { peer: PeerId, capabilities: Schema.optional(Capabilities), library }, success: Grant, error: Schema.Union(GrantsError, NodeError) }),
  Rpc.make("Grants", { payload: { library }, success: Schema.Array(Grant), error: NodeError }),
  Rpc.make("Remote", {
    payload: { peer: PeerId, library, tag: RemoteTag, payload: Schema.Unknown },
    success: Schema.Unknown,
    error: Schema.Union(
      Forbidden,
      Unavailable,
      CallTimeout,
      RpcError,
      NodeError,
      NoteError,
      StorageError,
      ValidationError,
      MutationError,
      ClockDriftError,
      TransfersError,
      SpacedropError
    )
  })
) {}
