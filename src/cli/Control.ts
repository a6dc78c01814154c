/**
 * How `weft` commands talk to the running node (`weft serve`) of a data
 * directory: the node's control procedures (`Control.group` of
 * `src/node`), with the CLI's notes, over the directory's control socket
 * (`ControlSocket`). Loaded by every client command, so it loads nothing
 * of the node itself.
 *
 * `call` sends one request, named by its procedure's `_tag` with its
 * payload, and waits for the answer (or gives up with `ControlError`
 * `Timeout`); the answer and every error are typed by the procedure.
 *
 * @since 0.1.0
 */
import type * as Rpc from "@effect/rpc/Rpc"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as NodeControl from "../node/Control.js"
import * as LocationControl from "../node/LocationControl.js"
import { ControlError, client } from "../node/ControlSocket.js"
import { RpcError } from "../plugins/RpcPlugin.js"
import * as ParseError from "../internal/parseError.js"
import * as NotesControl from "./NotesControl.js"
import * as RspcControl from "./RspcControl.js"
import * as TransfersControl from "./TransfersControl.js"

export { ControlError }

/** Every procedure of the CLI's node: the node's own, its plugins', the notes, rspc's (grants, remote calls), the transfers (`weft send`) and the locations (`weft location`). */
export const group = NodeControl.group.merge(NotesControl.Control, RspcControl.Control, TransfersControl.Control, LocationControl.Control)
type Rpcs = RpcGroup.Rpcs<typeof group>

/** A request: a procedure's `_tag` and its payload's fields. */
export type Request = Rpcs extends infer R ? R extends Rpc.Any ? { readonly _tag: R["_tag"] } & PayloadOf<R> : never : never
type PayloadOf<R extends Rpc.Any> = Rpc.Payload<R> extends void ? {} : Rpc.Payload<R>
type Procedure<Q extends Request> = Rpc.ExtractTag<Rpcs, Q["_tag"]>

/** What a request succeeds with. */
export type Success<Q extends Request> = Rpc.Success<Procedure<Q>>
/** What a request fails with: its procedure's errors, the kit's (`RpcError`) and the socket's (`ControlError`). */
export type Failure<Q extends Request> = Rpc.Error<Procedure<Q>> | RpcError | ControlError

/** Options of a call. */
export interface CallOptions {
  /** Most time to wait for the answer (default: `defaultTimeout` of the request). */
  readonly timeout?: Duration.DurationInput
}

/**
 * How long a request may take by default: longer than the node itself lets
 * it take (a pairing waits up to 75 s for a person, a ping up to 10 s per
 * round trip, a dial 10 s), so that only a node that stopped answering (one
 * suspended with Ctrl-Z, say) runs into it.
 */
export const defaultTimeout = (request: Request): Duration.Duration =>
  request._tag === "Pair" ? Duration.minutes(2)
    : request._tag === "Ping" ? Duration.seconds(30 + 10 * request.count)
    // a location's records are removed a page at a time: a large one takes a while
    : request._tag === "LocationRemove" ? Duration.minutes(10)
    : Duration.seconds(30)

/** Sends one request to the node whose control socket is `path` and waits for its answer. */
export const call = <Q extends Request>(path: string, request: Q, options: CallOptions = {}): Effect.Effect<Success<Q>, Failure<Q>> => {
  const timeout = Duration.decode(options.timeout ?? defaultTimeout(request))
  const { _tag, ...payload } = request
  // checked before anything is sent, even with no node to send it to
  const rpc = group.requests.get(_tag) as Rpc.AnyWithProps
  const checked = Schema.validateEither(Schema.typeSchema(rpc.payloadSchema as Schema.Schema<unknown>))(Object.keys(payload).length === 0 ? undefined : payload)
  if (Either.isLeft(checked) && Object.keys(payload).length > 0) {
    return Effect.fail(new RpcError({ reason: "Malformed", detail: `the call of ${_tag} does not fit its schema: ${ParseError.describe(checked.left)}` }))
  }
  return Effect.scoped(Effect.flatMap(client(path, group), (control) => {
    const procedure = (control as unknown as Record<string, (payload?: unknown) => Effect.Effect<unknown, unknown>>)[_tag]!
    return procedure(Object.keys(payload).length === 0 ? undefined : payload)
  })).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new ControlError({ reason: "Timeout", path, detail: `no answer within ${Duration.format(timeout)}` })
    })
  ) as Effect.Effect<Success<Q>, Failure<Q>>
}

/**
 * Every note of a library (default: the node's default library), following `NotesList`
 * pages until the last one; a note changed meanwhile is listed once, as last
 * seen.
 */
export const listNotes = (
  path: string,
  library?: string,
  options: CallOptions = {}
): Effect.Effect<ReadonlyArray<NotesControl.Note>, Failure<{ readonly _tag: "NotesList" }>> =>
  NotesControl.allNotes(
    (after) =>
      call(path, {
        _tag: "NotesList",
        ...(library === undefined ? {} : { library }),
        ...(after === undefined ? {} : { after })
      }, options),
    () => new ControlError({ reason: "Io", path, detail: "a page of notes with a next cursor but no notes" })
  )
