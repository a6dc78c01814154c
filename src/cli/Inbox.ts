/**
 * Receiving files in `weft serve`: each Spacedrop offer is put to the
 * node's user through `Consent` (kind `spacedrop`), as pairing requests
 * are, so the terminal of `weft serve`, `weft requests watch` or
 * `weft requests approve <id>` answers it, and `--yes` accepts it without
 * asking. The question names the sender, the file count and the total
 * size; an approved offer is received into the accept directory, its
 * progress logged every few seconds, and listed by `weft transfers`.
 *
 * With `acceptFrom` (`--accept-from <peer>`, repeatable), offers from
 * those peers are accepted without asking; the others are still asked, or
 * refused when `refuseOthers` (`--yes` beside `--accept-from`: the peers
 * named are the only ones let in unattended).
 *
 * An offer the user does not approve is refused, and the sender is told
 * why, as its own reason: `Declined` (the user said no, or the peer is not
 * one accepted), `NoListener` (nobody there to answer), `Timeout` (no
 * answer in time), `Busy` (too many offers waiting).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { mkdir } from "node:fs/promises"
import { resolve } from "node:path"
import { Consent, type Decision } from "../plugins/Consent.js"
import * as Spacedrop from "../plugins/spacedrop/Spacedrop.js"
import * as Output from "./Output.js"
import * as TransferOutput from "./TransferOutput.js"
import { Transfers } from "./Transfers.js"

/** The kind of the questions Spacedrop offers put to the user. */
export const CONSENT_KIND = "spacedrop"

/** How often a transfer being received is logged. */
export const LOG_EVERY = Duration.seconds(2)

/** How `weft serve` receives. */
export interface Options {
  /** The directory files are received into (made if missing). */
  readonly acceptDir: string
  /** Peers whose offers are accepted without asking (default: none). */
  readonly acceptFrom?: ReadonlyArray<string>
  /** Refuse the offers of every other peer, without asking (`--yes --accept-from`). */
  readonly refuseOthers?: boolean
}

/** Why an offer from a peer not in `acceptFrom` is refused, with `refuseOthers`. */
export const NOT_ACCEPTED = "this node accepts files only from the peers it names (--accept-from)"

/** The reason a refusal is sent with, as the sender's error. */
const reasonOf = (decision: Exclude<Decision, "approved">): Spacedrop.RefusalReason => {
  switch (decision) {
    case "declined":
    case "coolingDown":
      return "Declined"
    case "busy":
      return "Busy"
    case "timeout":
      return "Timeout"
    case "unattended":
      return "NoListener"
  }
}

/** Why an offer the user did not approve is refused, as the sender reads it. */
const refusal = (decision: Exclude<Decision, "approved">): string => {
  switch (decision) {
    case "declined":
      return "the user declined"
    case "coolingDown":
      return "the user declined this peer moments ago; try again later"
    case "busy":
      return "too many offers wait for the user's answer; try again later"
    case "timeout":
      return "nobody answered in time"
    case "unattended":
      return "nobody is there to accept it: the receiving node's user can answer with `weft requests watch`, or run `weft serve` in a terminal (or with --yes)"
  }
}

/** The question for an offer. */
export const question = (offer: Spacedrop.IncomingOffer, target: string): string => {
  const files = offer.entries.filter((entry) => entry.kind === "file").length
  const folders = offer.entries.filter((entry) => entry.kind === "directory").length
  return `"${offer.sender}" (peer ${offer.peer}) wants to send ${TransferOutput.contents(files, folders, offer.totalBytes)} into ${target}`
}

/** Who decides on an offer: accepted at once, refused at once, or asked through `Consent`. */
type Gate = (peer: string) => "accept" | "refuse" | "ask"

const gateOf = (options: Options): Gate => {
  const accepted = new Set(options.acceptFrom ?? [])
  return (peer) => (accepted.has(peer) ? "accept" : accepted.size > 0 && options.refuseOthers === true ? "refuse" : "ask")
}

const receiveOne = (offer: Spacedrop.IncomingOffer, target: string, gate: Gate) =>
  Effect.gen(function*() {
    const consent = yield* Consent
    const transfers = yield* Transfers
    const who = `"${Output.printable(offer.sender)}" (${offer.peer})`
    const gated = gate(offer.peer)
    if (gated === "refuse") {
      yield* Effect.logInfo(`refused files from ${who}: ${NOT_ACCEPTED}`)
      return yield* offer.reject(NOT_ACCEPTED, "Declined")
    }
    const decision = gated === "accept" ? "approved" : yield* consent.ask({
      kind: CONSENT_KIND,
      peer: offer.peer,
      text: question(offer, target),
      details: { transfer: offer.id, sender: offer.sender, count: String(offer.count), totalBytes: String(offer.totalBytes), target }
    })
    if (decision !== "approved") {
      yield* Effect.logInfo(`refused files from ${who}: ${refusal(decision)}`)
      return yield* offer.reject(refusal(decision), reasonOf(decision))
    }
    const made = yield* Effect.either(Effect.tryPromise(() => mkdir(target, { recursive: true })))
    if (made._tag === "Left") {
      yield* Effect.logWarning(`cannot make ${target}: ${String(made.left.cause)}`)
      return yield* offer.reject("the receiver cannot write into its folder")
    }
    const transfer = yield* offer.accept(target)
    yield* transfers.track(transfer, { sender: offer.sender, target })
    yield* Effect.logInfo(`receiving ${offer.count} entries (${TransferOutput.size(offer.totalBytes)}) from ${who} into ${target}: transfer ${transfer.id}`)
    const logProgress = Effect.flatMap(transfers.progress(transfer.id), Option.match({
      onNone: () => Effect.void,
      onSome: (progress) => (progress.state === "transferring" ? Effect.logInfo(`from ${who}: ${TransferOutput.line(progress)}`) : Effect.void)
    }))
    const outcome = yield* Effect.raceFirst(
      Effect.either(transfer.result),
      Effect.zipRight(Effect.forever(Effect.delay(logProgress, LOG_EVERY)), Effect.never)
    )
    if (outcome._tag === "Right") {
      const summary = outcome.right
      yield* Effect.logInfo(`received ${summary.files.length} file(s), ${TransferOutput.size(summary.bytes)} from ${who} into ${target}`)
    } else {
      yield* Effect.logWarning(`receiving from ${who} failed: ${outcome.left.message}`)
    }
  }).pipe(
    // the offer expired or the sender withdrew it while the user decided
    Effect.catchTag("DecisionError", (error) => Effect.logInfo(`offer from ${offer.peer}: ${error.message}`)),
    Effect.catchTag("SpacedropError", (error) => Effect.logWarning(`files from ${offer.peer} not received: ${error.message}`))
  )

/** Receives offers for as long as the scope lasts, each asked through `Consent`. */
export const receive = (options: Options): Effect.Effect<void, never, Spacedrop.Spacedrop | Consent | Transfers | Scope.Scope> =>
  Effect.gen(function*() {
    const spacedrop = yield* Spacedrop.Spacedrop
    const target = resolve(options.acceptDir)
    const gate = gateOf(options)
    const running = yield* FiberSet.make()
    // subscribed before this returns: an offer that comes right after is asked
    const offers = yield* spacedrop.offers
    const context = yield* Effect.context<Consent | Transfers>()
    yield* Effect.forkScoped(Stream.runForEach(offers, (offer) =>
      FiberSet.run(running, receiveOne(offer, target, gate).pipe(Effect.provide(context)))))
  })
