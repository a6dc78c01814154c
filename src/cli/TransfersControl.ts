/**
 * The procedures `weft send` and `weft transfers` call on the running node
 * (schemas only, so a client loads them without the node; `Transfers`
 * serves them): Spacedrop through the control socket.
 *
 *   SpacedropSend  peer, paths   → stream of SendEvent (Progress…, then Done)
 *                                  | SpacedropError | ProtocolError | TransportError
 *   Transfers                    → the node's transfers, running and recently ended
 *   TransferPause id             → void | TransfersError (NotFound, Ended) | SpacedropError
 *   TransferResume id            → void | TransfersError | SpacedropError (an interrupted one: the
 *                                  other side could not be reached, or refused)
 *   TransferCancel id            → void | TransfersError | SpacedropError
 *
 * A `SpacedropSend` runs as long as its caller reads it: a caller that goes
 * away (Ctrl-C) cancels the transfer, and the receiver learns it
 * (`Cancelled` by the sender).
 *
 * @since 0.1.0
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import { isAbsolute } from "node:path"
import { SpacedropError } from "../plugins/spacedrop/Protocol.js"
import { ProtocolError } from "../transport/ProtocolError.js"
import { PeerId, TransportError } from "../transport/Transport.js"

const Count = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))

/** Most paths one `weft send` names (each may be a folder of any size). */
export const MAX_PATHS = 1024

/** A path to send: absolute (the node does not share the command's working directory). */
export const SourcePath = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(4096),
  Schema.filter((path) => isAbsolute(path) || `${path} is not an absolute path`)
)

/** A transfer's progress, as the node reports it (see `Spacedrop.Progress`). */
export const Progress = Schema.Struct({
  transfer: Schema.String,
  direction: Schema.Literal("send", "receive"),
  peer: Schema.String,
  /** `interrupted`: its connection dropped or a process stopped; `weft transfers resume` goes on from the last verified chunk. */
  state: Schema.Literal("waiting", "transferring", "paused", "reconnecting", "done", "failed", "cancelled", "interrupted"),
  bytes: Count,
  totalBytes: Count,
  files: Count,
  totalFiles: Count,
  /** The file under way (its path in the offer). */
  current: Schema.optionalWith(Schema.String, { exact: true }),
  bytesPerSecond: Schema.Number,
  etaSeconds: Schema.optionalWith(Schema.Number, { exact: true }),
  /** Which sides hold it paused. */
  pausedBy: Schema.optionalWith(Schema.Array(Schema.Literal("sender", "receiver")), { exact: true })
})
export type Progress = typeof Progress.Type

/** A transfer as `weft transfers` lists it: its progress, and for one received, who sent it and where it goes. */
export const TransferInfo = Schema.Struct({
  ...Progress.fields,
  /** The sender's display name (received transfers: the sender's words, shown escaped). */
  sender: Schema.optionalWith(Schema.String, { exact: true }),
  /** Where it is received. */
  target: Schema.optionalWith(Schema.String, { exact: true }),
  /** Why it failed, when it did. */
  error: Schema.optionalWith(Schema.String, { exact: true })
})
export type TransferInfo = typeof TransferInfo.Type

/** What a completed send moved. */
export const Sent = Schema.Struct({
  transfer: Schema.String,
  peer: Schema.String,
  files: Count,
  directories: Count,
  bytes: Count
})
export type Sent = typeof Sent.Type

/** What a `SpacedropSend` streams: progress as it goes (at most a few a second), then the outcome. */
export const SendEvent = Schema.Union(
  Schema.TaggedStruct("Progress", { progress: Progress }),
  Schema.TaggedStruct("Done", { sent: Sent })
)
export type SendEvent = typeof SendEvent.Type

/** A transfer could not be acted on. */
export class TransfersError extends Schema.TaggedError<TransfersError>("weft/cli/TransfersError")("TransfersError", {
  reason: Schema.Literal(
    "NotFound", // no transfer of this id on this node
    "Ended" // it ended already (done, failed or cancelled)
  ),
  id: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `transfer ${this.reason} (${this.id}): ${this.detail}`
  }
}

const Id = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(64))

/** The transfer procedures. */
export class Control extends RpcGroup.make(
  Rpc.make("SpacedropSend", {
    payload: { peer: PeerId, paths: Schema.Array(SourcePath).pipe(Schema.minItems(1), Schema.maxItems(MAX_PATHS)) },
    success: SendEvent,
    error: Schema.Union(SpacedropError, ProtocolError, TransportError),
    stream: true
  }),
  Rpc.make("Transfers", { success: Schema.Array(TransferInfo) }),
  Rpc.make("TransferPause", { payload: { id: Id }, error: Schema.Union(TransfersError, SpacedropError) }),
  Rpc.make("TransferResume", { payload: { id: Id }, error: Schema.Union(TransfersError, SpacedropError) }),
  Rpc.make("TransferCancel", { payload: { id: Id }, error: Schema.Union(TransfersError, SpacedropError) })
) {}
