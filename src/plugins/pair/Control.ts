/**
 * The procedures pairing adds to its node's control endpoint (schemas only:
 * front ends load this without the plugin; `Pair.controlHandlers` serves
 * them).
 *
 *   Pair  peer, library?  → { peer, library } | PairError | LibraryError | TransportError | PermissionError | ProtocolError
 *
 * `library` defaults to the node's default library. Answering the responder's
 * side (pairing requests) is `Consent`'s, in the node's own procedures.
 *
 * @since 0.1.0
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import { Library, LibraryError } from "../../library/Libraries.js"
import { LibraryId } from "../../library/LibraryId.js"
import { ProtocolError } from "../../transport/ProtocolError.js"
import { PeerId, TransportError } from "../../transport/Transport.js"
import { PermissionError } from "../PluginHost.js"
import { PairError } from "./Protocol.js"

/** A pairing that completed: the peer, and the library as this node now has it. */
export const Paired = Schema.Struct({ peer: PeerId, library: Library })
export type Paired = typeof Paired.Type

/** Pairing's control procedures. */
export class Control extends RpcGroup.make(
  Rpc.make("Pair", {
    payload: { peer: PeerId, library: Schema.optional(LibraryId) },
    success: Paired,
    error: Schema.Union(PairError, LibraryError, TransportError, PermissionError, ProtocolError)
  })
) {}
