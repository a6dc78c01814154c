/**
 * A running Weft node, as `weft serve` starts it from a data directory:
 * the identity, a libp2p transport, the plugin host, the libraries (file
 * backed), one engine per library (SQLite, the CLI's `Notes` models), and
 * the sync, ping and pair plugins; it answers the control endpoint.
 *
 * Everything lives in the scope of `make`: closing it unregisters the
 * plugins, interrupts every session and handler, closes the connections, the
 * engines and the control socket.
 *
 * Libraries appear while the node runs (pairing joins this node to a peer's
 * library): their engine is opened then, and the sync plugin, whose library
 * set is fixed when it starts, is restarted with the new set. Membership
 * changes need no restart: the sync plugin follows them.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { StorageError } from "../engine/Database.js"
import type { ValidationError } from "../engine/EngineError.js"
import type { AddressBookError } from "../node/AddressBook.js"
import type { Library, LibraryError } from "../library/Libraries.js"
import type { IdentityError } from "../transport/Identity.js"
import type { PeerId, TransportError } from "../transport/Transport.js"
import type { Consent } from "../plugins/Consent.js"
import type * as Control from "./Control.js"
import type * as ControlProtocol from "./ControlProtocol.js"
import type * as DataDir from "./DataDir.js"
import * as internal from "./internal/node.js"

/** How the node starts. */
export interface Options {
  readonly dir: string
  /** Multiaddrs to listen on. */
  readonly listen: ReadonlyArray<string>
  /** Discover and advertise on the local network. */
  readonly mdns: boolean
  /** Addresses of peers to connect to, and to reconnect to whenever the connection drops. */
  readonly peers: ReadonlyArray<string>
  /** Answers the node's questions (pairing requests) until the node stops: `Approval.terminal`, `Consent.approveAll`. */
  readonly frontEnd: Effect.Effect<void, never, Consent | Scope.Scope>
  /** Most time a ping waits for its echo (default 10 s). */
  readonly pingTimeout?: Duration.DurationInput
}

/** A request the node cannot serve as asked (a bad peer id, a missing library or note). */
export const NodeError = internal.NodeError
export type NodeError = internal.NodeError

/** The running node. */
export interface Node {
  readonly peerId: PeerId
  readonly addresses: Effect.Effect<ReadonlyArray<string>>
  readonly libraries: Effect.Effect<ReadonlyArray<Library>>
  /** Answers one control request. */
  readonly handle: (request: ControlProtocol.Request) => Effect.Effect<unknown, unknown>
}

/** Why a node could not start. */
export type StartError =
  | DataDir.DataDirError
  | IdentityError
  | LibraryError
  | AddressBookError
  | TransportError
  | StorageError
  | ValidationError
  | Control.ControlError

/** Starts the node from its data directory (which `weft init` prepared); it runs until the scope closes. */
export const make: (options: Options) => Effect.Effect<Node, StartError, Scope.Scope> = internal.make
