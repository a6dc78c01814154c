/**
 * A read: the file's record in this node's library, the range checked
 * against it, then its bytes from one source after another (this node
 * first, then the peers presence names, fastest first), each going on from
 * the byte the last one reached. See `Media`.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { StorageError } from "../../../engine/Database.js"
import type { ValidationError } from "../../../engine/EngineError.js"
import * as ParseError from "../../../internal/parseError.js"
import * as Framing from "../../../transport/Framing.js"
import { ProtocolError } from "../../../transport/ProtocolError.js"
import { type PeerId, TransportError } from "../../../transport/Transport.js"
import * as Messages from "../../Messages.js"
import type { PluginHost } from "../../PluginHost.js"
import type * as Models from "../Models.js"
import type { Mounts } from "../Mounts.js"
import type { Presence } from "../Presence.js"
import * as Protocol from "../Protocol.js"
import * as Files from "./files.js"
import type * as Library from "./library.js"
import type * as Pool from "./pool.js"

const MediaError = Protocol.MediaError
type MediaError = Protocol.MediaError
type FileRef = Protocol.FileRef
type Range = Files.Range

/** What to read. */
export interface ReadOptions {
  /** The first byte (default 0). */
  readonly offset?: number
  /** How many bytes (default: to the end; cut at the end). */
  readonly length?: number
  /** Have the source hash the whole file before serving it, and refuse it `Changed` if it differs. */
  readonly verify?: boolean
}

/** A read under way. */
export interface Reading {
  /** The file's record, as this node has it. */
  readonly file: Models.File
  /** The bytes the stream will carry. */
  readonly range: Range
  /** The bytes, from whichever sources serve them. */
  readonly bytes: Stream.Stream<Uint8Array, MediaError>
}

/** What a read needs. */
export interface Deps {
  readonly host: PluginHost["Type"]
  /** Idle streams to peers, reused by reads. */
  readonly pool: Pool.Pool
  readonly mounts: Mounts["Type"]
  readonly presence: Presence["Type"]
  /** The library's engine and records, held for as long as the scope. */
  readonly library: (library: string) => Effect.Effect<Library.Library, StorageError | ValidationError, Scope.Scope>
  readonly chunkBytes: number
}

const decodeAnswer = ParseError.decodeUnknownEither(Protocol.Answers.schema)

// which error a failed read reports when every source failed: the most telling
export const RANK: ReadonlyArray<Protocol.Reason> = ["Changed", "Unsafe", "RangeNotSatisfiable", "NotFound", "Failed", "Offline"]

/** The next bytes of a source: `None` at its end. */
type Pull = Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<MediaError>>

type Source =
  | { readonly _tag: "Local"; readonly record: Models.File }
  | { readonly _tag: "Remote"; readonly record: Models.File; readonly peer: PeerId }

/** How telling a reason is (lower: more), to report the most telling of several failures. */
export const rank = (reason: Protocol.Reason): number => RANK.indexOf(reason)

/** Most libraries whose records reads look up in place (`Library.held`); past it, all are forgotten. */
const MAX_RECENT = 64

/** The next bytes of one source, or `undefined` at its end (all its bytes came); closed once done with. */
interface Opened {
  readonly pull: Effect.Effect<Chunk.Chunk<Uint8Array> | undefined, MediaError>
  readonly close: Effect.Effect<void>
}

/** Reads over `deps`. */
export const make = ({ host, pool, mounts, presence, chunkBytes, library: libraryOf }: Deps) => {
  // the libraries reads looked records up in: a file read again (a player seeking) is found in place,
  // with no lookup of the library (an RcMap get and release, a third of a small read's Effect steps);
  // one let go since (`ENGINE_IDLE` after the lookup that got it) holds nothing, and is looked up again
  const recent = new Map<string, Library.Library>()

  return (library: string, ref: FileRef, readOptions: ReadOptions = {}): Effect.Effect<Reading, MediaError> => {
    const fileName = "id" in ref ? ref.id : ref.hash
    const fail = (reason: Protocol.Reason, detail: string, extra: { readonly peer?: string; readonly size?: number } = {}) =>
      new MediaError({ reason, library, file: fileName, detail, ...extra })
    const fromRefusal = (peer: string | undefined) => (r: Files.Refusal) =>
      fail(r.reason, r.detail, { ...(peer === undefined ? {} : { peer }), ...(r.size === undefined ? {} : { size: r.size }) })
    const verify = readOptions.verify ?? false
    const lookup = Effect.suspend(() => {
      const held = recent.get(library)?.held(ref)
      if (held !== undefined) return Effect.succeed(held)
      return Effect.scoped(Effect.flatMap(
        Effect.mapError(libraryOf(library), (e) => fail("Failed", `the library could not be opened: ${e.message}`)),
        (got) => {
          if (recent.size >= MAX_RECENT) recent.clear()
          recent.set(library, got)
          return Effect.mapError(got.records(ref), fromRefusal(undefined))
        }
      ))
    })
    return Effect.flatMap(lookup, (candidates) => {
      const file = candidates[0]
      if (file === undefined) return Effect.fail(fail("NotFound", "no such file in the library"))
      const resolved = Files.resolveRange(file.size, readOptions.offset ?? 0, readOptions.length)
      if (Option.isNone(resolved)) return Effect.fail(fail("RangeNotSatisfiable", `the file has ${file.size} bytes`, { size: file.size }))
      const range = resolved.value
      const end = range.offset + range.length

      // this node's copy, opened by the first pull in a scope of its own (recorded before anything can
      // interrupt it: the source's close closes it whatever happens)
      const local = (record: Models.File, part: Range): Opened => {
        let scope: Scope.CloseableScope | undefined = undefined
        let pull: Effect.Effect<Chunk.Chunk<Uint8Array> | undefined, MediaError> | undefined = undefined
        const open = Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(Scope.make(), (made) => {
            scope = made
            return restore(Scope.extend(openLocal(record, part), made))
          })
        )
        return {
          pull: Effect.suspend(() =>
            pull ?? Effect.flatMap(open, (opened) => {
              pull = opened
              return opened
            })
          ),
          close: Effect.suspend(() => {
            const made = scope
            scope = undefined
            return made === undefined ? Effect.void : Scope.close(made, Exit.void)
          })
        }
      }
      const openLocal = (record: Models.File, part: Range) =>
        Effect.gen(function*() {
          const opened = yield* Effect.mapError(Files.open(mounts, library, record, verify), fromRefusal(undefined))
          const pull = yield* Stream.toPull(Stream.mapError(Files.chunks(opened.handle, part, chunkBytes), fromRefusal(undefined)))
          return Effect.catchAll(pull, (error) => {
            if (Option.isSome(error)) return Effect.fail(error.value)
            // the end: the file checked again, so a change while it was read shows
            return Files.stillSameNow(opened) ? Effect.succeed(undefined) : Effect.fail(fail("Changed", "the file changed while it was read"))
          })
        })

      // a peer's copy, over a stream from the pool: the Read written, the Header read, then exactly
      // `part.length` bytes, the first of them (sent with the Header) in the same pull
      const remote = (peer: PeerId, record: Models.File, part: Range): Opened => {
        const failed = (detail: string) => fail("Failed", detail, { peer })
        const where = { peer, protocol: Protocol.MEDIA_ID }
        const request = Framing.encodeText(
          // a plain record whose encoded form is itself (typed as such): no Schema encode
          JSON.stringify({
            version: Protocol.VERSION,
            ...({ type: "Read", file: { id: record.id }, offset: part.offset, length: Math.max(1, part.length), verify } satisfies typeof Protocol.Read.Encoded)
          })
        )
        const violation = (error: ProtocolError) => Effect.zipRight(host.violation(peer, Protocol.MEDIA_ID, error), Effect.fail(failed(error.message)))
        // the stream taken, released (given back once its answer was read whole) when the source closes
        let conn: Pool.Conn | undefined = undefined
        let delivered = 0
        let asked = false
        const ask = (taken: Pool.Conn) => Effect.zipRight(taken.stream.write(request), taken.frame(Protocol.Answers.maxFrameBytes))
        // a new stream, opened and recorded uninterruptibly (as an acquire is), so the source's close releases it
        const fresh = Effect.uninterruptible(Effect.mapBoth(pool.open(peer, library), {
          onFailure: (e) => failed(e.message),
          onSuccess: (opened) => (conn = opened)
        }))
        const header = Effect.gen(function*() {
          asked = true
          let taken = conn = pool.reuse(peer, library)
          let answer = taken === undefined ? undefined : yield* Effect.either(ask(taken))
          // none idle, or an idle stream the peer closed meanwhile (or a server that answers one read per stream): a new one
          if (
            taken === undefined || answer === undefined ||
            (Either.isLeft(answer) ? answer.left instanceof TransportError && answer.left.reason !== "Timeout" : Option.isNone(answer.right))
          ) {
            if (taken !== undefined) {
              conn = undefined
              yield* taken.discard
            }
            taken = yield* fresh
            answer = yield* Effect.either(ask(taken))
          }
          const frame = yield* answer.pipe(
            Effect.catchIf((e): e is ProtocolError => e instanceof ProtocolError, violation),
            Effect.mapError((e) => (e instanceof MediaError ? e : failed(e.reason === "Timeout" ? "no answer in time" : e.message)))
          )
          if (Option.isNone(frame)) return yield* failed("the peer ended the stream before answering")
          const decoded = Messages.decodeJson(frame.value, Protocol.VERSION, decodeAnswer, where)
          if (Either.isLeft(decoded)) {
            return yield* (decoded.left instanceof ProtocolError ? violation(decoded.left) : Effect.fail(failed(decoded.left.message)))
          }
          const answered = decoded.right
          if (answered.type === "Error") {
            // the stream is ready for the next read
            yield* taken.done
            return yield* fail(answered.reason, answered.detail, { peer })
          }
          if (answered.offset !== part.offset || answered.length !== Math.min(part.length, answered.size - part.offset)) {
            return yield* violation(new ProtocolError({ reason: "Unexpected", ...where, detail: "a Header for another range than asked" }))
          }
          if (answered.id !== record.id || answered.size !== record.size || answered.mtime !== record.mtime || answered.hash !== record.hash) {
            return yield* fail("Changed", "the peer's record of the file differs from this node's", { peer })
          }
          return yield* body
        })
        // the next bytes: each pull timed by the pool (a peer alive but stalled is replaced like a dead one;
        // a slow consumer is not); the stream goes back to the pool only once they all came
        const body: Effect.Effect<Chunk.Chunk<Uint8Array> | undefined, MediaError> = Effect.suspend(() => {
          const taken = conn!
          if (delivered >= part.length) return Effect.as(taken.done, undefined)
          return Effect.matchEffect(taken.pieces(part.length - delivered), {
            onFailure: (e) => Effect.fail(failed(e.reason === "Timeout" ? e.detail : e.message)),
            onSuccess: (pieces) => {
              if (Option.isNone(pieces)) return Effect.fail(failed(`the stream ended ${part.length - delivered} bytes short`))
              for (const piece of pieces.value) delivered += piece.length
              return Effect.succeed(Chunk.unsafeFromArray(pieces.value as Array<Uint8Array>))
            }
          })
        })
        return {
          pull: Effect.suspend(() => (asked ? body : header)),
          close: Effect.suspend(() => {
            const taken = conn
            conn = undefined
            return taken === undefined ? Effect.void : taken.release
          })
        }
      }

      // sources are chosen as they are needed, so a peer that came online during the read is one
      const tried = new Set<string>()
      const next = Effect.gen(function*() {
        for (const record of candidates) {
          if (!tried.has(`local:${record.id}`) && Option.isSome(yield* mounts.onlineRoot(library, record.location))) {
            tried.add(`local:${record.id}`)
            return Option.some<Source>({ _tag: "Local", record })
          }
        }
        for (const record of candidates) {
          for (const holder of yield* presence.peers(library, record.location)) {
            if (!tried.has(`peer:${holder.peer}`)) {
              tried.add(`peer:${holder.peer}`)
              return Option.some<Source>({ _tag: "Remote", record, peer: holder.peer })
            }
          }
        }
        return Option.none<Source>()
      })
      let reached = range.offset
      const errors: Array<MediaError> = []
      // the source being read (or opened: closed with the stream whatever happens)
      let current: Opened | undefined = undefined
      const closeCurrent = Effect.suspend(() => {
        const source = current
        current = undefined
        return source === undefined ? Effect.void : source.close
      })
      // a source that failed, before or during its bytes: closed, and the next one goes on from the byte reached
      const replace = (error: MediaError) =>
        Effect.suspend(() => {
          errors.push(error)
          return Effect.zipRight(closeCurrent, pullAny)
        })
      // the next bytes from the current source, or from the next one when it fails: one flat pull, not a stream per source
      const pullAny: Pull = Effect.suspend(() => {
        const source = current
        if (source !== undefined) {
          return Effect.matchEffect(source.pull, {
            onFailure: replace,
            onSuccess: (chunk) => {
              // a source ends cleanly only with all its bytes
              if (chunk === undefined) return Effect.zipRight(closeCurrent, Effect.fail(Option.none()))
              for (const piece of chunk) reached += piece.length
              return Effect.succeed(chunk)
            }
          })
        }
        if (reached >= end && tried.size > 0) return Effect.fail(Option.none())
        return Effect.flatMap(next, (chosen) => {
          if (Option.isNone(chosen)) {
            const worst = [...errors].sort((a, b) => RANK.indexOf(a.reason) - RANK.indexOf(b.reason))[0]
            return Effect.fail(Option.some(worst ?? fail("Offline", `location ${file.location} is online nowhere this node reaches`)))
          }
          const part = { offset: reached, length: end - reached }
          const source = chosen.value
          current = source._tag === "Remote" ? remote(source.peer, source.record, part) : local(source.record, part)
          return pullAny
        })
      })
      // its sources closed as the stream ends (a stream over a scope, `unwrapScoped`, costs a third of a small read)
      const bytes = Stream.ensuring(Stream.repeatEffectChunkOption(pullAny), closeCurrent)
      return Effect.succeed<Reading>({ file, range, bytes })
    })
  }
}
