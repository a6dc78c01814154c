/**
 * The node's status and its Spacedrop transfers as rspc procedures, so a
 * paired node can run `weft --peer <id> status` and `weft --peer <id>
 * transfers [pause|resume|cancel <id>]` on this one, as far as this node
 * granted it: `node.status` for `Status`, `spacedrop.transfers.read` for
 * `Transfers`, `spacedrop.transfers.write` for `TransferPause`,
 * `TransferResume` and `TransferCancel`. The procedures are the control
 * endpoint's (`Control.NodeControl`, `TransfersControl`), each annotated
 * with its capability. Nothing is granted by default.
 *
 * What a grant shows: `Status` answers with the whole node (its libraries,
 * sessions and connections), not only the library the call came on, and
 * `Transfers` lists every transfer of the node; grant them to peers that may
 * see that. Sending files (`SpacedropSend`) is not served remotely.
 *
 * @since 0.1.0
 */
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Control from "../node/Control.js"
import * as Protocol from "../plugins/rspc/Protocol.js"
import * as TransfersControl from "./TransfersControl.js"

/** The capability each procedure needs. */
export const capabilities = {
  Status: "node.status",
  Transfers: "spacedrop.transfers.read",
  TransferPause: "spacedrop.transfers.write",
  TransferResume: "spacedrop.transfers.write",
  TransferCancel: "spacedrop.transfers.write"
} as const

/** The tags of the procedures. */
export type Tag = keyof typeof capabilities

const needs = <R extends { readonly _tag: string }>(rpc: R) =>
  Protocol.capability(capabilities[rpc._tag as Tag])(rpc as any) as unknown as R

/** The status and transfer procedures as served over rspc. */
export const group = RpcGroup.make(
  needs(Control.NodeControl.requests.get("Status")!),
  ...(["Transfers", "TransferPause", "TransferResume", "TransferCancel"] as const).map((tag) => needs(TransfersControl.Control.requests.get(tag)!))
).middleware(Protocol.Guard)

/** The handlers, as the control endpoint has them. */
export interface Procedures {
  readonly Status: () => Effect.Effect<Control.StatusInfo>
  readonly Transfers: () => Effect.Effect<ReadonlyArray<TransfersControl.TransferInfo>>
  readonly TransferPause: (request: { readonly id: string }) => Effect.Effect<void, unknown>
  readonly TransferResume: (request: { readonly id: string }) => Effect.Effect<void, unknown>
  readonly TransferCancel: (request: { readonly id: string }) => Effect.Effect<void, unknown>
}

/** Serves `group` with `procedures`. */
export const handlers = <E, R>(procedures: Effect.Effect<Procedures, E, R>) =>
  group.toLayer(Effect.map(procedures, (local) => ({
    Status: () => local.Status(),
    Transfers: () => local.Transfers(),
    TransferPause: (request: { readonly id: string }) => local.TransferPause(request),
    TransferResume: (request: { readonly id: string }) => local.TransferResume(request),
    TransferCancel: (request: { readonly id: string }) => local.TransferCancel(request)
  }) as any)) as Layer.Layer<any, E, Exclude<R, never>>
