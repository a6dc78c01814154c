/**
 * The pair plugin: adds a peer to a library on both sides once the
 * responder's user approves (protocol in `Protocol.ts`).
 *
 * - The responder asks its user through the node's `Consent` service (kind
 *   `pair`); a peer already a member of the library is accepted without
 *   asking. A library the responder does not have yet is created there (with
 *   the requester's id and name), so pairing is also how a peer joins a
 *   library. The question is withdrawn when the requester gives up.
 *   `Consent` bounds the questions waiting, overall, one per peer, and per
 *   requester's host (a request beyond is refused `Busy`), and refuses a
 *   peer the user just declined without asking. A
 *   requester that breaks the protocol fails the handler with a
 *   `ProtocolError`, so the host disconnects it.
 * - The requester (`Pair.pair`) names one of its libraries and gets the
 *   library with the new member, or a typed error: `PairError` with reason
 *   `Refused` when the user said no, `Timeout` when no answer came in time,
 *   `Busy` when the user has too many requests to decide, `Unattended` when
 *   nobody there could be asked.
 *
 * Both sides persist through `Libraries`; a side that sees the exchange fail
 * removes the membership that exchange added, and only that (a membership
 * another pairing recorded meanwhile stays; a library it created stays,
 * with itself as its only member). Two pairings of the same peer and library
 * at once that end differently can still leave the membership as the failed
 * one found it.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { type Library, LibraryError, Libraries } from "../../library/Libraries.js"
import * as PeerAddress from "../../transport/PeerAddress.js"
import { ProtocolError } from "../../transport/ProtocolError.js"
import type { Duplex, PeerId, TransportError } from "../../transport/Transport.js"
import { Consent, type Decision } from "../Consent.js"
import * as Messages from "../Messages.js"
import * as Plugin from "../Plugin.js"
import { type PermissionError, PluginHost } from "../PluginHost.js"
import * as Control from "./Control.js"
import * as Protocol from "./Protocol.js"

/** A pairing did not complete. */
export const PairError = Protocol.PairError
export type PairError = Protocol.PairError

/** Options of the plugin (the responder's side). */
export interface Options {
  /** How long the user has to decide (default `Protocol.APPROVAL_TIMEOUT`). */
  readonly approvalTimeout?: Duration.DurationInput
}

/** The kind of the questions pairing puts to the user through `Consent`. */
export const CONSENT_KIND = "pair"

/** The question for a request, as a person reads it. */
export const question = (peer: PeerId, library: Protocol.LibraryRef): string =>
  `peer ${peer} asks to share library "${library.name}" (${library.id})`

/** Options of one request. */
export interface PairOptions {
  /** How long to wait for the remote user's answer (default `Protocol.ANSWER_TIMEOUT`). */
  readonly timeout?: Duration.DurationInput
}

/** Asks peers to pair. */
export class Pair extends Context.Tag("weft/plugins/Pair")<Pair, {
  /**
   * Asks `peer` to share the local library `library`; on approval it is a
   * member on both sides. Succeeds with the library as stored here.
   */
  readonly pair: (
    peer: PeerId,
    library: string,
    options?: PairOptions
  ) => Effect.Effect<Library, PairError | ProtocolError | LibraryError | TransportError | PermissionError>
}>() {}

/** The remote broke the protocol: a violation, so the host disconnects it. */
const violation = (reason: ProtocolError["reason"], where: { readonly peer: string; readonly library?: string }, detail: string) =>
  new ProtocolError({
    reason,
    peer: where.peer,
    protocol: Protocol.PROTOCOL_ID,
    detail: where.library === undefined ? detail : `${detail} (library ${where.library})`
  })

/** A message exchange that went wrong without a violation, as the pairing error it is. */
const asPairError = (where: { readonly peer: string; readonly library?: string }) =>
<A, E, R>(effect: Effect.Effect<A, E | Messages.MessageError, R>): Effect.Effect<A, E | PairError, R> =>
  Effect.catchIf(effect, (error): error is Messages.MessageError => error instanceof Messages.MessageError, (error) =>
    Effect.fail(new PairError({ reason: error.reason, ...where, detail: error.detail })))


/**
 * Serves one pairing request (the responder's side). A protocol violation
 * fails the handler (so the host disconnects the peer); anything else is
 * logged.
 */
export const respond = (options: Options) =>
(stream: Duplex, context: Plugin.StreamContext): Effect.Effect<
  void,
  ProtocolError,
  Libraries | PluginHost | Consent | Scope.Scope
> =>
  Effect.gen(function*() {
    const libraries = yield* Libraries
    const consent = yield* Consent
    const self = (yield* PluginHost).peerId
    const peer = context.peer
    const channel = yield* Messages.make(stream, Protocol.messages)
    const refuse = (reason: Protocol.RefusalReason, detail: string) =>
      Effect.zipRight(channel.send({ type: "Refused", reason, detail: detail.slice(0, 512) }), channel.end)

    const first = yield* channel.receive.pipe(
      Effect.timeoutFail({
        duration: Protocol.REQUEST_TIMEOUT,
        onTimeout: () => new PairError({ reason: "Timeout", peer, detail: "no request arrived" })
      }),
      Effect.tapErrorTag("MessageError", (error) => (error.reason === "VersionMismatch" ? refuse("Unsupported", error.detail) : Effect.void)),
      asPairError({ peer })
    )
    if (Option.isNone(first)) return
    if (first.value.type !== "Request") {
      return yield* violation("Unexpected", { peer }, `expected a Request, got ${first.value.type}`)
    }
    // a library this peer has is asked about (and joined) under its own name here, whatever the request calls it
    const requested = first.value.library
    const library = Option.match(yield* libraries.get(requested.id), {
      onNone: () => requested,
      onSome: (local): Protocol.LibraryRef => ({ id: local.id, name: local.name })
    })
    const where = { peer, library: library.id }

    // the requester sends nothing more until it is answered: whatever comes next (its end, a reset,
    // a stray frame) means it gave up, and withdraws the question; otherwise it is its Confirmed
    const after = yield* Effect.forkScoped(channel.receive)
    const decision: Decision | "withdrawn" = (yield* libraries.isMember(library.id, peer))
      ? "approved"
      : yield* Effect.raceFirst(
        consent.ask(
          {
            kind: CONSENT_KIND,
            peer,
            text: question(peer, library),
            details: { library: library.id, libraryName: library.name },
            // requests from one host hold a bounded share of the questions: identities cost nothing, addresses do
            source: PeerAddress.host(stream.remoteAddress)
          },
          { timeout: options.approvalTimeout ?? Protocol.APPROVAL_TIMEOUT }
        ),
        Effect.as(Fiber.await(after), "withdrawn" as const)
      )
    switch (decision) {
      case "busy":
        yield* Effect.logInfo(`refused to pair library ${library.id} with ${peer} without asking: the user has too many requests to decide`)
        return yield* refuse("Busy", "the user has too many pairing requests to decide; ask again later")
      case "coolingDown":
        yield* Effect.logInfo(`refused to pair library ${library.id} with ${peer} without asking: declined moments ago`)
        return yield* refuse("Declined", "the user declined this peer moments ago; ask again later")
      case "unattended":
        yield* Effect.logWarning(`refused to pair library ${library.id} with ${peer}: nobody is there to approve it`)
        return yield* refuse("Unattended", "nobody is there to approve it")
      case "declined":
        yield* Effect.logInfo(`refused to pair library ${library.id} with ${peer}`)
        return yield* refuse("Declined", "the user declined")
      case "timeout":
        yield* Effect.logInfo(`no decision on pairing library ${library.id} with ${peer} in time`)
        return yield* refuse("Timeout", "the user did not answer in time")
      case "withdrawn":
        return yield* Effect.logInfo(`${peer} withdrew its request to pair library ${library.id}`)
      case "approved":
        break
    }

    // record the membership, then complete the exchange; the record is undone if the exchange does not
    // complete, interrupted (its connection dropped) included, and is never left half-made by one
    const record = Effect.gen(function*() {
      if (Option.isNone(yield* libraries.get(library.id))) {
        yield* libraries.create(library.name, self, library.id).pipe(
          // created meanwhile (another pairing of the same library): fine, add to it
          Effect.catchIf((error) => error.reason === "Exists", () => Effect.void)
        )
      }
      return yield* libraries.recordMember(library.id, peer)
    })
    const exchange = Effect.gen(function*() {
      yield* channel.send({ type: "Accepted" })
      const confirmed = yield* Fiber.join(after).pipe(
        Effect.timeoutFail({
          duration: Protocol.CONFIRM_TIMEOUT,
          onTimeout: () => new PairError({ reason: "Timeout", ...where, detail: "no confirmation" })
        }),
        asPairError(where)
      )
      if (Option.isNone(confirmed)) return yield* new PairError({ reason: "Closed", ...where, detail: "the requester ended before confirming" })
      if (confirmed.value.type !== "Confirmed") {
        return yield* violation("Unexpected", where, `expected Confirmed, got ${confirmed.value.type}`)
      }
      yield* channel.end
    })
    yield* Effect.acquireUseRelease(
      Effect.either(record),
      (recorded): Effect.Effect<void, PairError | ProtocolError | LibraryError | TransportError> =>
        Either.isLeft(recorded)
          ? Effect.zipRight(refuse("Failed", "could not record the membership"), Effect.fail(recorded.left))
          : exchange,
      // only what this exchange added is undone: a membership another pairing recorded meanwhile stays
      (recorded, exit) =>
        Either.isRight(recorded) && recorded.right.added && !Exit.isSuccess(exit) ? undo(libraries, library.id, peer) : Effect.void
    )
    yield* Effect.logInfo(`paired library ${library.id} with ${peer}`)
  }).pipe(
    Effect.catchAll((error) =>
      Effect.zipRight(
        Effect.logWarning(`pairing request from ${context.peer} failed: ${error.message}`),
        Plugin.isViolation(error) ? Effect.fail(error as ProtocolError) : Effect.void
      )
    ),
    Effect.annotateLogs({ plugin: "pair", peer: context.peer })
  )

/** Removes a membership added by an exchange that did not complete. */
const undo = (libraries: Libraries["Type"], library: string, peer: PeerId) =>
  libraries.removeMember(library, peer).pipe(
    Effect.catchAll((error) => Effect.logWarning(`could not undo the membership of ${peer} in ${library}: ${error.message}`))
  )

/** The plugin (the responder's side); any authenticated peer may ask, one request per peer at a time. */
export const plugin = (options: Options = {}) =>
  Plugin.make({
    name: "pair",
    ...Protocol.protocol,
    maxInboundStreams: 1,
    // a backstop: every step has its own bound
    timeout: Duration.sum(
      Duration.decode(options.approvalTimeout ?? Protocol.APPROVAL_TIMEOUT),
      Duration.sum(Protocol.REQUEST_TIMEOUT, Duration.sum(Protocol.CONFIRM_TIMEOUT, Duration.seconds(5)))
    ),
    handle: respond(options)
  })

/** Asks `peer` to share the local `library` over the host in context (the requester's side). */
export const pair = (peer: PeerId, libraryId: string, options: PairOptions = {}) =>
  Effect.scoped(Effect.gen(function*() {
    const host = yield* PluginHost
    const libraries = yield* Libraries
    const where = { peer, library: libraryId }
    const library = yield* libraries.get(libraryId).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(new LibraryError({ reason: "NotFound", library: libraryId, detail: "no such library here" })),
        onSome: Effect.succeed
      }))
    )
    const timeout = options.timeout ?? Protocol.ANSWER_TIMEOUT
    // the responder records the membership first and may open sync before we have: let it in meanwhile
    yield* libraries.pairing(library.id, peer)
    const stream = yield* host.open(peer, Protocol.protocol)
    const channel = yield* Messages.make(stream, Protocol.messages)
    yield* channel.send({ type: "Request", library: { id: library.id, name: library.name } })

    const answer = yield* channel.receive.pipe(
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () => new PairError({ reason: "Timeout", ...where, detail: `no answer within ${Duration.format(timeout)}` })
      }),
      asPairError(where)
    )
    if (Option.isNone(answer)) return yield* new PairError({ reason: "Closed", ...where, detail: "the peer ended the exchange without answering" })
    const message = answer.value
    switch (message.type) {
      case "Refused":
        return yield* new PairError({
          reason: message.reason === "Declined" ? "Refused"
            : message.reason === "Timeout" ? "Timeout"
            : message.reason === "Unsupported" ? "VersionMismatch"
            : message.reason === "Busy" ? "Busy"
            : message.reason === "Unattended" ? "Unattended"
            : "RemoteFailed",
          ...where,
          detail: `the peer refused: ${message.detail}`
        })
      case "Accepted":
        break
      default:
        return yield* violation("Unexpected", where, `expected an answer, got ${message.type}`)
    }

    // recorded, then confirmed; undone if the exchange does not complete, interrupted included (only
    // what this exchange added: a membership recorded or removed meanwhile by others is theirs)
    return yield* Effect.acquireUseRelease(
      libraries.recordMember(library.id, peer),
      ({ library: updated }) =>
        Effect.gen(function*() {
          yield* channel.send({ type: "Confirmed" })
          // the responder ends the stream once it has our confirmation
          const end = yield* channel.receive.pipe(
            Effect.timeoutFail({
              duration: Protocol.CONFIRM_TIMEOUT,
              onTimeout: () => new PairError({ reason: "Timeout", ...where, detail: "the peer did not end the exchange" })
            }),
            asPairError(where)
          )
          if (Option.isSome(end)) return yield* violation("Unexpected", where, "a message after Accepted")
          yield* channel.end
          return updated
        }),
      (recorded, exit) => (Exit.isSuccess(exit) || !recorded.added ? Effect.void : undo(libraries, library.id, peer))
    )
  }))

/** Registers the plugin on the host in context and provides the client; unregistered with the scope. */
export const make = (options: Options = {}): Effect.Effect<Pair["Type"], TransportError, PluginHost | Libraries | Consent | Scope.Scope> =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const libraries = yield* Libraries
    yield* host.register(plugin(options))
    return {
      pair: (peer, library, pairOptions) =>
        pair(peer, library, pairOptions).pipe(
          Effect.provideService(PluginHost, host),
          Effect.provideService(Libraries, libraries)
        )
    }
  })

/** Layer of the plugin and its client. */
export const layer = (options: Options = {}): Layer.Layer<Pair, TransportError, PluginHost | Libraries | Consent> =>
  Layer.scoped(Pair, make(options))

/** Serves pairing's control procedures (`Control`) with the `Pair` client and the libraries in context. */
export const controlHandlers = Control.Control.toLayer(Effect.gen(function*() {
  const client = yield* Pair
  const libraries = yield* Libraries
  return {
    Pair: ({ library, peer }) =>
      Effect.gen(function*() {
        const id = library ?? Option.getOrUndefined(yield* libraries.defaultLibrary)?.id
        if (id === undefined) return yield* new LibraryError({ reason: "NotFound", detail: "this node has no library to share" })
        return { peer, library: yield* client.pair(peer, id) }
      })
  }
}))
