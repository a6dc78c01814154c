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
import * as Schema from "effect/Schema"
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

const encoder = new TextEncoder()
const encodeRead = Schema.encodeSync(Protocol.Read)
const decodeAnswer = ParseError.decodeUnknownEither(Protocol.Answers.schema)
const json = (version: number, message: object) => encoder.encode(JSON.stringify({ version, ...message }))

// which error a failed read reports when every source failed: the most telling
export const RANK: ReadonlyArray<Protocol.Reason> = ["Changed", "Unsafe", "RangeNotSatisfiable", "NotFound", "Failed", "Offline"]

/** The next bytes of a source: `None` at its end. */
type Pull = Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<MediaError>>

type Source =
  | { readonly _tag: "Local"; readonly record: Models.File }
  | { readonly _tag: "Remote"; readonly record: Models.File; readonly peer: PeerId }

/** How telling a reason is (lower: more), to report the most telling of several failures. */
export const rank = (reason: Protocol.Reason): number => RANK.indexOf(reason)

/** Reads over `deps`. */
export const make = ({ host, pool, mounts, presence, chunkBytes, ...deps }: Deps) =>
(library: string, ref: FileRef, readOptions: ReadOptions = {}): Effect.Effect<Reading, MediaError> =>
      Effect.gen(function*() {
        const fileName = "id" in ref ? ref.id : ref.hash
        const fail = (reason: Protocol.Reason, detail: string, extra: { readonly peer?: string; readonly size?: number } = {}) =>
          new MediaError({ reason, library, file: fileName, detail, ...extra })
        const fromRefusal = (peer: string | undefined) => (r: Files.Refusal) =>
          fail(r.reason, r.detail, { ...(peer === undefined ? {} : { peer }), ...(r.size === undefined ? {} : { size: r.size }) })
        const verify = readOptions.verify ?? false
        const candidates = yield* Effect.scoped(Effect.gen(function*() {
          const held = yield* Effect.mapError(deps.library(library), (e) => fail("Failed", `the library could not be opened: ${e.message}`))
          return yield* Effect.mapError(held.records(ref), fromRefusal(undefined))
        }))
        const file = candidates[0]
        if (file === undefined) return yield* fail("NotFound", "no such file in the library")
        const resolved = Files.resolveRange(file.size, readOptions.offset ?? 0, readOptions.length)
        if (Option.isNone(resolved)) return yield* fail("RangeNotSatisfiable", `the file has ${file.size} bytes`, { size: file.size })
        const range = resolved.value
        const end = range.offset + range.length

        const local = (record: Models.File, part: Range): Effect.Effect<Pull, MediaError, Scope.Scope> =>
          Effect.gen(function*() {
            const opened = yield* Effect.mapError(Files.open(mounts, library, record, verify), fromRefusal(undefined))
            const unchanged = Effect.flatMap(Files.stillSame(opened), (same) => (same ? Effect.void : Effect.fail(fail("Changed", "the file changed while it was read"))))
            return yield* Stream.toPull(Stream.concat(Stream.mapError(Files.chunks(opened.handle, part, chunkBytes), fromRefusal(undefined)), Stream.drain(Stream.fromEffect(unchanged))))
          })

        const remote = (peer: PeerId, record: Models.File, part: Range): Effect.Effect<Pull, MediaError, Scope.Scope> =>
          Effect.gen(function*() {
            const failed = (detail: string) => fail("Failed", detail, { peer })
            const where = { peer, protocol: Protocol.MEDIA_ID }
            const request = Framing.encode(json(Protocol.VERSION, encodeRead({ type: "Read", file: { id: record.id }, offset: part.offset, length: Math.max(1, part.length), verify })))
            const violation = (error: ProtocolError) => Effect.zipRight(host.violation(peer, Protocol.MEDIA_ID, error), Effect.fail(failed(error.message)))
            const take = (fresh: boolean) => Effect.mapError(pool.take(peer, library, fresh), (e) => failed(e.message))
            const ask = (conn: Pool.Conn) => Effect.zipRight(conn.stream.write(request), conn.frame(Protocol.Answers.maxFrameBytes))
            let conn = yield* take(false)
            let asked = yield* Effect.either(ask(conn))
            // an idle stream the peer closed meanwhile (or a server that answers one read per stream): once more on a new one
            if (conn.reused && (Either.isLeft(asked) ? asked.left instanceof TransportError && asked.left.reason !== "Timeout" : Option.isNone(asked.right))) {
              yield* conn.discard
              conn = yield* take(true)
              asked = yield* Effect.either(ask(conn))
            }
            const frame = yield* asked.pipe(
              Effect.catchIf((e): e is ProtocolError => e instanceof ProtocolError, violation),
              Effect.mapError((e) => (e instanceof MediaError ? e : failed(e.reason === "Timeout" ? "no answer in time" : e.message)))
            )
            if (Option.isNone(frame)) return yield* failed("the peer ended the stream before answering")
            const answer = Messages.decodeJson(frame.value, Protocol.VERSION, decodeAnswer, where)
            if (Either.isLeft(answer)) {
              return yield* (answer.left instanceof ProtocolError ? violation(answer.left) : Effect.fail(failed(answer.left.message)))
            }
            const header = answer.right
            if (header.type === "Error") {
              // the stream is ready for the next read
              yield* conn.done
              return yield* fail(header.reason, header.detail, { peer })
            }
            if (header.offset !== part.offset || header.length !== Math.min(part.length, header.size - part.offset)) {
              return yield* violation(new ProtocolError({ reason: "Unexpected", ...where, detail: "a Header for another range than asked" }))
            }
            if (header.id !== record.id || header.size !== record.size || header.mtime !== record.mtime || header.hash !== record.hash) {
              return yield* fail("Changed", "the peer's record of the file differs from this node's", { peer })
            }
            if (part.length === 0) {
              yield* conn.done
              return Effect.fail(Option.none())
            }
            // exactly part.length bytes, each pull timed by the pool (a peer alive but stalled is replaced like a dead one; a slow consumer is not);
            // the stream goes back to the pool only once they all came
            let delivered = 0
            const taken = conn
            const pull: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<MediaError>> = Effect.suspend(() => {
              if (delivered >= part.length) return Effect.fail(Option.none())
              return taken.pieces(part.length - delivered).pipe(
                Effect.mapError((e) => Option.some(failed(e.reason === "Timeout" ? e.detail : e.message))),
                Effect.flatMap(Option.match({
                  onNone: () => Effect.fail(Option.some(failed(`the stream ended ${part.length - delivered} bytes short`))),
                  onSome: (pieces) => {
                    for (const piece of pieces) delivered += piece.length
                    return Effect.as(delivered >= part.length ? taken.done : Effect.void, Chunk.unsafeFromArray(pieces as Array<Uint8Array>))
                  }
                }))
              )
            })
            return pull
          })

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
        // the source being read, in a scope of its own
        let current: { readonly pull: Pull; readonly scope: Scope.CloseableScope } | undefined = undefined
        // the next bytes from the current source, or from the next one when it fails: one flat pull, not a stream per source
        const pullAny: Pull =
          Effect.suspend(() => {
            const source = current
            if (source !== undefined) {
              return source.pull.pipe(
                Effect.map((chunk) => {
                  for (const piece of chunk) reached += piece.length
                  return chunk
                }),
                Effect.catchAll((error) => {
                  current = undefined
                  if (Option.isSome(error)) errors.push(error.value)
                  // a source ends cleanly only with all its bytes
                  return Effect.zipRight(Scope.close(source.scope, Exit.void), Option.isNone(error) ? Effect.fail(error) : pullAny)
                })
              )
            }
            if (reached >= end && tried.size > 0) return Effect.fail(Option.none())
            return Effect.gen(function*() {
              const chosen = yield* next
              if (Option.isNone(chosen)) {
                const worst = [...errors].sort((a, b) => RANK.indexOf(a.reason) - RANK.indexOf(b.reason))[0]
                return yield* Effect.fail(Option.some(worst ?? fail("Offline", `location ${file.location} is online nowhere this node reaches`)))
              }
              const part = { offset: reached, length: end - reached }
              // noted before anything can interrupt it, so the stream's end closes it whatever happens
              const sourceScope = yield* Effect.uninterruptible(Effect.tap(Scope.make(), (made) => {
                opening = made
              }))
              const opened = yield* Effect.either(Scope.extend(
                chosen.value._tag === "Local" ? local(chosen.value.record, part) : remote(chosen.value.peer, chosen.value.record, part),
                sourceScope
              ))
              opening = undefined
              if (Either.isLeft(opened)) {
                errors.push(opened.left)
                yield* Scope.close(sourceScope, Exit.void)
              } else {
                current = { pull: opened.right, scope: sourceScope }
              }
              return yield* pullAny
            })
          })
        // the scope of the source being opened, until it is `current`
        let opening: Scope.CloseableScope | undefined = undefined
        // its sources' scopes closed as the stream ends (a stream over a scope, `unwrapScoped`, costs a third of a small read)
        const closeSources = Effect.suspend(() => {
          const open = [current?.scope, opening].filter((scope) => scope !== undefined)
          current = undefined
          opening = undefined
          return Effect.forEach(open, (scope) => Scope.close(scope, Exit.void), { discard: true })
        })
        const attempt = Stream.ensuring(Stream.repeatEffectChunkOption(pullAny), closeSources)
        return { file, range, bytes: attempt }
      })

