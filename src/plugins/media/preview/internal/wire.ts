/**
 * Both ends of `/weft/preview/2.0.0` (see `Protocol.ts`): `get` asks one
 * peer for many thumbnails on one stream (pipelined `Get`s) and checks each
 * answer, `serve` answers the `Get`s of one stream.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as ParseError from "../../../../internal/parseError.js"
import * as Framing from "../../../../transport/Framing.js"
import { ProtocolError } from "../../../../transport/ProtocolError.js"
import type { Duplex, PeerId } from "../../../../transport/Transport.js"
import * as Messages from "../../../Messages.js"
import type * as Plugin from "../../../Plugin.js"
import type { PluginHost } from "../../../PluginHost.js"
import * as Protocol from "../Protocol.js"

/** One peer did not deliver: gone, silent, or broke the protocol (then it was reported). */
export class PeerFailure extends Data.TaggedError("PeerFailure")<{ readonly peer: PeerId; readonly detail: string }> {}

const encoder = new TextEncoder()
const json = (message: object) => encoder.encode(JSON.stringify({ version: Protocol.VERSION, ...message }))
const encodeGet = Schema.encodeSync(Protocol.Get)
const decodeGet = ParseError.decodeUnknownEither(Protocol.Get)
/** About how many bytes the server writes at once. */
const WRITE_BYTES = 64 * 1024

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** One answer's framed size (length prefix included). */
const framedSize = (bytes: Uint8Array | undefined) => 4 + Protocol.ANSWER_HEADER + (bytes?.length ?? 0)

/** Writes one answer, framed, into `out` at `at`: a `Thumbnail` of `bytes`, or `Missing` without them; returns where it ends. */
const writeAnswer = (out: Buffer, at: number, hash: string, bytes: Uint8Array | undefined): number => {
  out.writeUInt32BE(Protocol.ANSWER_HEADER + (bytes?.length ?? 0), at)
  out[at + 4] = Protocol.VERSION
  out[at + 5] = bytes === undefined ? Protocol.MISSING : Protocol.THUMBNAIL
  out.write(hash, at + 6, 32, "hex")
  if (bytes !== undefined) out.set(bytes, at + 4 + Protocol.ANSWER_HEADER)
  return at + framedSize(bytes)
}

/** One answer, framed (length prefix included): a `Thumbnail` of `bytes`, or `Missing` without them. */
export const answerFrame = (hash: string, bytes: Uint8Array | undefined): Uint8Array => {
  const out = Buffer.allocUnsafe(framedSize(bytes))
  writeAnswer(out, 0, hash, bytes)
  return out
}

/** How a reader pipelines its `Get`s on one stream. */
export interface Pipeline {
  /** Hashes per `Get` (at most `MAX_BATCH`). */
  readonly chunk: number
  /** Most `Get`s sent and not yet fully answered: bounds what is in flight (`window × chunk` thumbnails). */
  readonly window: number
}

/** Default pipeline: 32 hashes a `Get`, 4 `Get`s in flight (about 128 thumbnails, ≤ 5 MB here). */
export const PIPELINE: Pipeline = { chunk: 32, window: 4 }

/**
 * Asks `peer` for `hashes` in `library` on one stream, handing each
 * thumbnail whose bytes hash to what was asked to `keep`, in order. The
 * hashes go in `Get`s of `pipeline.chunk`, up to `pipeline.window` of them
 * unanswered at once (so the peer is never idle waiting for the next
 * request, and what is in flight is bounded); the answers come in the
 * order asked, which is how each is matched to its hash. Fails
 * `PeerFailure` when the peer goes or breaks the protocol (wrong bytes
 * included: it is reported to the host, which disconnects it); what was
 * kept before stays kept.
 */
export const get = <E>(
  host: PluginHost["Type"],
  peer: PeerId,
  library: string,
  hashes: ReadonlyArray<string>,
  keep: (hash: string, bytes: Uint8Array) => Effect.Effect<void, E>,
  pipeline: Pipeline = PIPELINE
): Effect.Effect<void, E | PeerFailure> =>
  Effect.scoped(Effect.gen(function*() {
    if (hashes.length === 0) return
    const where = { peer, protocol: Protocol.PREVIEW_ID }
    const failed = (detail: string) => new PeerFailure({ peer, detail })
    const violation = (detail: string) => {
      const e = new ProtocolError({ reason: "Unexpected", ...where, detail })
      return Effect.zipRight(host.violation(peer, Protocol.PREVIEW_ID, e), Effect.fail(failed(detail)))
    }
    const size = Math.max(1, Math.min(Protocol.MAX_BATCH, Math.floor(pipeline.chunk)))
    const chunks: Array<ReadonlyArray<string>> = []
    for (let i = 0; i < hashes.length; i += size) chunks.push(hashes.slice(i, i + size))
    const stream = yield* Effect.mapError(host.open(peer, Protocol.preview, library), (e) => failed(e.message))
    const framed = Framing.make(stream, Protocol.MAX_MESSAGE_BYTES)
    const window = yield* Effect.makeSemaphore(Math.max(1, Math.floor(pipeline.window)))
    // requests run ahead of answers by at most `window` Gets; the last one ends our side
    const send = Effect.gen(function*() {
      for (const chunk of chunks) {
        yield* window.take(1)
        yield* Effect.mapError(framed.send(json(encodeGet({ type: "Get", hashes: chunk }))), (e) => failed(e.message))
      }
      yield* stream.end
    })
    const reader = yield* Framing.reader(stream.source, { ...where, maxFrameBytes: Protocol.MAX_ANSWER_BYTES })
    // the wait for each frame is bounded by one watchdog for the stream rather than a timeout per frame
    // (a timer and two fibers for each of thousands of frames): it fails the fetch once a whole
    // `TIMEOUT` passed within one wait for a frame (so after `TIMEOUT` to twice that); `steps` counts
    // the starts and ends of waits, so a wait that began since the last look is not taken for a long one
    let steps = 0
    let awaiting = false
    // three steps per frame (a failed wait fails the fetch, which ends the watchdog too: no `ensuring` needed)
    const frame = Effect.suspend(() => {
      awaiting = true
      steps++
      return reader.frame
    }).pipe(Effect.matchEffect({
      onFailure: (e) => Effect.fail(failed(e.message)),
      onSuccess: (got) => {
        awaiting = false
        steps++
        return Option.isSome(got) ? Effect.succeed(got.value) : Effect.fail(failed("the peer ended the stream early"))
      }
    }))
    const watchdog = Effect.gen(function*() {
      let seen = steps
      while (true) {
        yield* Effect.sleep(Protocol.TIMEOUT)
        if (awaiting && steps === seen) return yield* Effect.fail(failed("no answer in time"))
        seen = steps
      }
    })
    const receive = Effect.gen(function*() {
      for (const chunk of chunks) {
        for (const asked of chunk) {
          const answer = yield* frame
          if (answer.length < Protocol.ANSWER_HEADER) return yield* violation(`an answer of ${answer.length} bytes`)
          if (answer[0] !== Protocol.VERSION) return yield* violation(`an answer of version ${answer[0]}, we speak ${Protocol.VERSION}`)
          const hash = Buffer.from(answer.buffer, answer.byteOffset + 2, 32).toString("hex")
          if (hash !== asked) return yield* violation(`an answer for ${hash} where ${asked} was asked`)
          if (answer[1] === Protocol.MISSING && answer.length === Protocol.ANSWER_HEADER) continue
          if (answer[1] !== Protocol.THUMBNAIL) return yield* violation(`an answer of kind ${answer[1]} and ${answer.length} bytes`)
          const bytes = answer.subarray(Protocol.ANSWER_HEADER)
          if (sha256(bytes) !== asked) return yield* violation(`bytes that do not hash to ${asked}`)
          yield* keep(asked, bytes)
        }
        yield* window.release(1)
      }
    })
    // either failing stops the other; the watchdog lasts as long as the receiving
    yield* Effect.all([send, Effect.raceFirst(receive, watchdog)], { concurrency: 2, discard: true })
  }))

/**
 * Reads thumbnails for `serve`, as `Cache.readMany` does: hands the bytes of `hashes[from]` … (`undefined` for a
 * hash not held or `undefined`) to `each` until it returns `false`; returns the index after the last one handed.
 */
export type Read = (
  hashes: ReadonlyArray<string | undefined>,
  from: number,
  each: (hash: string | undefined, bytes: Uint8Array | undefined) => boolean
) => Effect.Effect<number>

/**
 * Answers the `Get`s on `stream`, in order, until the reader ends its side: `known` says which of the hashes are
 * thumbnails of the stream's library, `read` gives the bytes of those, a write's worth at a time (so a batch
 * never sits in memory whole, and there are a few Effect steps per write, not per thumbnail).
 */
export const serve = (
  stream: Duplex,
  context: Plugin.StreamContext,
  known: (hashes: ReadonlyArray<string>) => Effect.Effect<ReadonlySet<string>>,
  read: Read
) =>
  Effect.gen(function*() {
    const where = { peer: context.peer, protocol: stream.protocol }
    const reader = yield* Framing.reader(stream.source, { ...where, maxFrameBytes: Protocol.MAX_MESSAGE_BYTES })
    // answers are gathered into writes of about `WRITE_BYTES` (each write costs the transport about as much
    // as its bytes, and a header alone would be one), each answer's bytes copied once, into the write
    let hashes: Array<string> = []
    let answers: Array<Uint8Array | undefined> = []
    let pendingBytes = 0
    const flush = Effect.suspend(() => {
      if (hashes.length === 0) return Effect.void
      const out = Buffer.allocUnsafe(pendingBytes)
      let at = 0
      for (let i = 0; i < hashes.length; i++) at = writeAnswer(out, at, hashes[i]!, answers[i])
      hashes = []
      answers = []
      pendingBytes = 0
      return stream.write(out)
    })
    const nextGet = reader.frame.pipe(
      Effect.timeoutFail({
        duration: Protocol.TIMEOUT,
        onTimeout: () => new Messages.MessageError({ reason: "Timeout", ...where, detail: "no Get in time" })
      })
    )
    // one Get after another, each answered in full and in order, until the reader ends its side
    // (a reader pipelines them: the next is usually here before this one is answered)
    while (true) {
      const frame = yield* nextGet
      if (Option.isNone(frame)) break
      const request = Messages.decodeJson(frame.value, Protocol.VERSION, decodeGet, where)
      if (Either.isLeft(request)) return yield* request.left
      const asked = request.right.hashes
      const held = yield* known(asked)
      // each hash asked, in order; `undefined` where it is not one of the library's (answered Missing, not read)
      const wanted = asked.map((hash) => (held.has(hash) ? hash : undefined))
      for (let i = 0; i < asked.length;) {
        let at = i
        const next = yield* read(wanted, i, (_, bytes) => {
          const answer = bytes !== undefined && bytes.length <= Protocol.MAX_THUMBNAIL_BYTES ? bytes : undefined
          hashes.push(asked[at++]!)
          answers.push(answer)
          pendingBytes += framedSize(answer)
          return pendingBytes < WRITE_BYTES
        })
        if (next <= i) return yield* Effect.dieMessage("a Read handed no thumbnail")
        i = next
        yield* flush
      }
    }
    yield* flush
    yield* stream.end
  }).pipe(
    // a reader that goes away or says nothing in time is no violation
    Effect.catchIf((e): e is Messages.MessageError => e instanceof Messages.MessageError && e.reason !== "VersionMismatch", () => stream.reset)
  )
