/**
 * The procedures ping adds to its node's control endpoint (schemas only:
 * front ends load this without the plugin; `Ping.controlHandlers` serves
 * them).
 *
 *   Ping  peer, count  → PingResult | PingError | TransportError | PermissionError | ProtocolError
 *
 * @since 0.1.0
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import { ProtocolError } from "../../transport/ProtocolError.js"
import { PeerId, TransportError } from "../../transport/Transport.js"
import { PermissionError } from "../PluginHost.js"
import { PingError } from "./Protocol.js"

/** Round trips of a series of pings, in milliseconds. */
export const PingResult = Schema.Struct({
  peer: PeerId,
  rtts: Schema.Array(Schema.Number),
  min: Schema.Number,
  median: Schema.Number,
  max: Schema.Number
})
export type PingResult = typeof PingResult.Type

/** Ping's control procedures. */
export class Control extends RpcGroup.make(
  Rpc.make("Ping", {
    payload: { peer: PeerId, count: Schema.Int.pipe(Schema.between(1, 1000)) },
    success: PingResult,
    error: Schema.Union(PingError, TransportError, PermissionError, ProtocolError)
  })
) {}
