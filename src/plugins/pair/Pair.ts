/**
 * The pair plugin: adds a peer to a library on both sides once the
 * responder's user approves (protocol in `Protocol.ts`).
 *
 * - The responder asks its user through the `approve` callback given to the
 *   layer; a peer already a member of the library is accepted without
 *   asking. A library the responder does not have yet is created there (with
 *   the requester's id and name), so pairing is also how a peer joins a
 *   library. The question is withdrawn (the callback interrupted) when the
 *   requester gives up. At most `maxPendingApprovals` questions wait for the
 *   user at once (a request beyond is refused `Busy`), and a peer the user
 *   declined is refused without asking for `askAgainAfter`. A requester
 *   that breaks the protocol fails the handler, so the host disconnects it.
 * - The requester (`Pair.pair`) names one of its libraries and gets the
 *   library with the new member, or a typed error: `PairError` with reason
 *   `Refused` when the user said no, `Timeout` when no answer came in time,
 *   `Busy` when the user has too many requests to decide.
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
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Framing from "../../transport/Framing.js"
import { ProtocolError } from "../../transport/ProtocolError.js"
import type { Duplex, PeerId, TransportError } from "../../transport/Transport.js"
import { type Library, LibraryError, Libraries } from "../../library/Libraries.js"
import * as Plugin from "../Plugin.js"
import { type PermissionError, PluginHost } from "../PluginHost.js"
import * as Protocol from "./Protocol.js"
import * as ParseError from "../../internal/parseError.js"

/** A pairing did not complete. */
export class PairError extends Schema.TaggedError<PairError>("weft/PairError")("PairError", {
  reason: Schema.Literal(
    "Refused", // the remote user declined
    "Timeout", // no answer in time (ours, or the remote user's)
    "Closed", // the remote ended or broke the exchange early
    "VersionMismatch", // the remote speaks another version of the protocol
    "RemoteFailed", // the remote could not record the membership
    "Busy" // the remote's user has too many requests to decide already: ask again later
  ),
  peer: Schema.String,
  library: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    return `pair ${this.reason} (peer ${this.peer}${this.library === undefined ? "" : `, library ${this.library}`}): ${this.detail}`
  }
}

/** What the responder's user is asked to approve. */
export interface Request {
  /** The authenticated requester. */
  readonly peer: PeerId
  /** The library it wants to share. */
  readonly library: Protocol.LibraryRef
}

/** Options of the plugin (the responder's side). */
export interface Options {
  /** Asks the local user; true approves. Interrupted when the requester gives up. */
  readonly approve: (request: Request) => Effect.Effect<boolean>
  /** How long the user has to decide (default `Protocol.APPROVAL_TIMEOUT`). */
  readonly approvalTimeout?: Duration.DurationInput
  /**
   * Most requests put to the user at once (default `MAX_PENDING_APPROVALS`);
   * more are refused `Busy` without asking, so a crowd of throwaway
   * identities cannot bury a real request.
   */
  readonly maxPendingApprovals?: number
  /**
   * How long a peer whose request the user declined is refused without
   * asking (default `ASK_AGAIN_AFTER`), so a declined peer cannot pester.
   */
  readonly askAgainAfter?: Duration.DurationInput
}

/** Requests put to the user at once, by default. */
export const MAX_PENDING_APPROVALS = 4
/** How long a declined peer waits before the user is asked again, by default. */
export const ASK_AGAIN_AFTER = Duration.seconds(30)
/** Declined peers remembered at most (the oldest are forgotten first). */
const MAX_DECLINED = 1024

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

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const encode = (message: Protocol.Message): Uint8Array => encoder.encode(JSON.stringify(message))

const decodeHeader = Schema.decodeUnknownEither(Protocol.HeaderJson)
const decodeMessage = Schema.decodeUnknownEither(Protocol.MessageJson)

/** The remote broke the protocol: a violation, so the host disconnects it. */
const violation = (reason: ProtocolError["reason"], where: { readonly peer: string; readonly library?: string }, detail: string) =>
  new ProtocolError({
    reason,
    peer: where.peer,
    protocol: Protocol.PROTOCOL_ID,
    detail: where.library === undefined ? detail : `${detail} (library ${where.library})`
  })

/** Decodes one frame: the version first, so another version is told apart from garbage. */
const decode = (
  frame: Uint8Array,
  where: { readonly peer: string; readonly library?: string }
): Either.Either<Protocol.Message, PairError | ProtocolError> => {
  const text = decoder.decode(frame)
  const header = decodeHeader(text)
  if (Either.isLeft(header)) {
    return Either.left(violation("Malformed", where, `not a pairing message: ${ParseError.describe(header.left, 300)}`))
  }
  if (header.right.version !== Protocol.VERSION) {
    return Either.left(new PairError({ reason: "VersionMismatch", ...where, detail: `the peer speaks version ${header.right.version}, we speak ${Protocol.VERSION}` }))
  }
  return Either.mapLeft(decodeMessage(text), (error) => violation("Malformed", where, `malformed message: ${ParseError.describe(error, 300)}`))
}

/** Reads a stream's frames one at a time: `None` once the remote ended its side. */
const reader = (frames: Stream.Stream<Uint8Array, TransportError | ProtocolError>) =>
  Effect.map(Stream.toPull(frames), (pull) => {
    let pending: Array<Uint8Array> = []
    const next: Effect.Effect<Option.Option<Uint8Array>, TransportError | ProtocolError> = Effect.suspend(() => {
      const head = pending.shift()
      if (head !== undefined) return Effect.succeed(Option.some(head))
      return pull.pipe(
        Effect.map((chunk) => Option.some(chunk)),
        Effect.catchAll((e) => (Option.isNone(e) ? Effect.succeed(Option.none<Chunk.Chunk<Uint8Array>>()) : Effect.fail(e.value))),
        Effect.flatMap((chunk) => {
          if (Option.isNone(chunk)) return Effect.succeed(Option.none<Uint8Array>())
          pending = Chunk.toArray(chunk.value)
          return next
        })
      )
    })
    return next
  })

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

type Outcome = "approved" | "declined" | "timeout" | "withdrawn"

/**
 * Serves pairing requests (the responder's side): one call per plugin, whose
 * result serves each request's stream. A protocol violation fails the
 * handler (so the host disconnects the peer); anything else is logged.
 */
export const respond = (options: Options) => {
  const maxPending = options.maxPendingApprovals ?? MAX_PENDING_APPROVALS
  const askAgainAfter = Duration.toMillis(Duration.decode(options.askAgainAfter ?? ASK_AGAIN_AFTER))
  let pending = 0
  // declined peers, and until when they are not asked about again (insertion order: oldest first)
  const declined = new Map<PeerId, number>()
  const decline = (peer: PeerId, now: number) => {
    declined.delete(peer)
    declined.set(peer, now + askAgainAfter)
    for (const [oldest, until] of declined) {
      if (declined.size <= MAX_DECLINED && until > now) break
      declined.delete(oldest)
    }
  }
  return (stream: Duplex, context: Plugin.StreamContext): Effect.Effect<void, PairError | ProtocolError | LibraryError | TransportError, Libraries | PluginHost | Scope.Scope> =>
    Effect.gen(function*() {
      const libraries = yield* Libraries
      const self = (yield* PluginHost).peerId
      const peer = context.peer
      const framed = Framing.make(stream, Protocol.MAX_FRAME_BYTES)
      const next = yield* reader(framed.frames)
      const send = (message: Protocol.Message) => framed.send(encode(message))
      const refuse = (reason: Protocol.RefusalReason, detail: string) =>
        Effect.zipRight(send({ version: Protocol.VERSION, type: "Refused", reason, detail: detail.slice(0, 512) }), stream.end)

      const first = yield* next.pipe(
        Effect.timeoutFail({
          duration: Protocol.REQUEST_TIMEOUT,
          onTimeout: () => new PairError({ reason: "Timeout", peer, detail: "no request arrived" })
        })
      )
      if (Option.isNone(first)) return
      const request = decode(first.value, { peer })
      if (Either.isLeft(request)) {
        if (request.left._tag === "PairError" && request.left.reason === "VersionMismatch") yield* refuse("Unsupported", request.left.detail)
        return yield* request.left
      }
      if (request.right.type !== "Request") {
        return yield* violation("Unexpected", { peer }, `expected a Request, got ${request.right.type}`)
      }
      // a library this peer has is asked about (and joined) under its own name here, whatever the request calls it
      const requested = request.right.library
      const library = Option.match(yield* libraries.get(requested.id), {
        onNone: () => requested,
        onSome: (local): Protocol.LibraryRef => ({ id: local.id, name: local.name })
      })
      const where = { peer, library: library.id }

      // the requester sends nothing more until it is answered: whatever comes next (its end, a reset,
      // a stray frame) means it gave up, and withdraws the question; otherwise it is its Confirmed
      const after = yield* Effect.forkScoped(next)
      const already = yield* libraries.isMember(library.id, peer)
      if (!already) {
        const until = declined.get(peer) ?? 0
        if (until > Date.now()) {
          yield* Effect.logInfo(`refused to pair library ${library.id} with ${peer} without asking: declined moments ago`)
          return yield* refuse("Declined", `the user declined this peer moments ago; ask again in ${Math.ceil((until - Date.now()) / 1000)} s`)
        }
      }
      const ask = options.approve({ peer, library }).pipe(
        Effect.map((approved): Outcome => (approved ? "approved" : "declined")),
        Effect.timeoutTo({
          duration: options.approvalTimeout ?? Protocol.APPROVAL_TIMEOUT,
          onSuccess: (outcome) => outcome,
          onTimeout: (): Outcome => "timeout"
        })
      )
      // the slot is taken where it is checked, with no step in between: requests arriving together
      // cannot all pass the check first
      const outcome: Outcome | "busy" = already ? "approved" : yield* Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => {
          if (pending >= maxPending) return Effect.succeed("busy" as const)
          pending++
          return restore(Effect.raceFirst(ask, Effect.as(Fiber.await(after), "withdrawn" as const))).pipe(
            Effect.ensuring(Effect.sync(() => pending--))
          )
        }))
      switch (outcome) {
        case "busy":
          yield* Effect.logInfo(`refused to pair library ${library.id} with ${peer} without asking: ${maxPending} requests wait for the user`)
          return yield* refuse("Busy", `the user has ${maxPending} pairing requests to decide; ask again later`)
        case "declined":
          decline(peer, Date.now())
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
        yield* send({ version: Protocol.VERSION, type: "Accepted" })
        const confirmed = yield* Fiber.join(after).pipe(
          Effect.timeoutFail({
            duration: Protocol.CONFIRM_TIMEOUT,
            onTimeout: () => new PairError({ reason: "Timeout", ...where, detail: "no confirmation" })
          })
        )
        if (Option.isNone(confirmed)) return yield* new PairError({ reason: "Closed", ...where, detail: "the requester ended before confirming" })
        const message = yield* decode(confirmed.value, where)
        if (message.type !== "Confirmed") {
          return yield* violation("Unexpected", where, `expected Confirmed, got ${message.type}`)
        }
        yield* stream.end
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
          Effect.logWarning(`pairing request from ${context.peer} failed: ${describe(error)}`),
          Plugin.isViolation(error) ? Effect.fail(error) : Effect.void
        )
      ),
      Effect.annotateLogs({ plugin: "pair", peer: context.peer })
    )
}

/** Removes a membership added by an exchange that did not complete. */
const undo = (libraries: Libraries["Type"], library: string, peer: PeerId) =>
  libraries.removeMember(library, peer).pipe(
    Effect.catchAll((error) => Effect.logWarning(`could not undo the membership of ${peer} in ${library}: ${error.message}`))
  )

/** The plugin (the responder's side); any authenticated peer may ask, one request per peer at a time. */
export const plugin = (options: Options) =>
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
    const framed = Framing.make(stream, Protocol.MAX_FRAME_BYTES)
    const next = yield* reader(framed.frames)
    yield* framed.send(encode({ version: Protocol.VERSION, type: "Request", library: { id: library.id, name: library.name } }))

    const answer = yield* next.pipe(
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () => new PairError({ reason: "Timeout", ...where, detail: `no answer within ${Duration.format(timeout)}` })
      })
    )
    if (Option.isNone(answer)) return yield* new PairError({ reason: "Closed", ...where, detail: "the peer ended the exchange without answering" })
    const message = yield* decode(answer.value, where)
    switch (message.type) {
      case "Refused":
        return yield* new PairError({
          reason: message.reason === "Declined" ? "Refused"
            : message.reason === "Timeout" ? "Timeout"
            : message.reason === "Unsupported" ? "VersionMismatch"
            : message.reason === "Busy" ? "Busy"
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
          yield* framed.send(encode({ version: Protocol.VERSION, type: "Confirmed" }))
          // the responder ends the stream once it has our confirmation
          const end = yield* next.pipe(
            Effect.timeoutFail({
              duration: Protocol.CONFIRM_TIMEOUT,
              onTimeout: () => new PairError({ reason: "Timeout", ...where, detail: "the peer did not end the exchange" })
            })
          )
          if (Option.isSome(end)) return yield* violation("Unexpected", where, "a message after Accepted")
          yield* stream.end
          return updated
        }),
      (recorded, exit) => (Exit.isSuccess(exit) || !recorded.added ? Effect.void : undo(libraries, library.id, peer))
    )
  }))

/** Registers the plugin on the host in context and provides the client; unregistered with the scope. */
export const make = (options: Options): Effect.Effect<Pair["Type"], TransportError, PluginHost | Libraries | Scope.Scope> =>
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
export const layer = (options: Options): Layer.Layer<Pair, TransportError, PluginHost | Libraries> =>
  Layer.scoped(Pair, make(options))
