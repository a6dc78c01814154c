/**
 * The server's side of `/weft/media/1.0.0`: one `Read` after another on a
 * stream, each answered from this node's disk (see `Media` and `Protocol`).
 *
 * A read's first byte is what a player waits for, so the path to it does
 * little: the `Header` frame and a small first chunk of the file
 * (`FIRST_CHUNK`) go in one write (one muxer frame), the chunk read in
 * place (no thread-pool round trip) straight into the buffer after the
 * header; the file is checked against its record (size and time) once
 * that chunk is read, so a file changed before or while it was read is
 * still refused `Changed` before any byte. The file of the last read stays
 * open on the stream (`HOLD`), so the next read of it (a player seeking)
 * costs a read and an fstat (done in place: the inode is in memory): the
 * record comes from the library's memory (`Library`, held by the stream
 * from its first read), no path resolution, no open. It is let go once the stream has been idle
 * for `HOLD`, when a read names another file or asks for a hash check,
 * when its location is no longer online at the same root, and with the
 * stream.
 *
 * Later chunks are read ahead of the transport (`READ_AHEAD` reads in
 * flight), so disk reads overlap network writes; the file is checked again
 * after the last one, and a change meanwhile resets the stream (the reader
 * asks elsewhere).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { readSync } from "node:fs"
import type { FileHandle } from "node:fs/promises"
import type { StorageError } from "../../../engine/Database.js"
import type { ValidationError } from "../../../engine/EngineError.js"
import * as Framing from "../../../transport/Framing.js"
import { type Duplex, TransportError } from "../../../transport/Transport.js"
import * as Messages from "../../Messages.js"
import type * as Plugin from "../../Plugin.js"
import type * as Models from "../Models.js"
import type { Mounts } from "../Mounts.js"
import * as Protocol from "../Protocol.js"
import * as Files from "./files.js"
import type * as Library from "./library.js"

/** Reads of a served file in flight ahead of the transport (disk reads overlap network writes). */
export const READ_AHEAD = 2

/**
 * Most bytes of a read's first chunk, sent with its header: small, so it is read in place and its first
 * byte reaches the reader early (the rest follows in `chunkBytes` chunks read ahead).
 */
export const FIRST_CHUNK = 16 * 1024

/** How long a stream keeps the file of its last read open, idle. */
export const HOLD: Duration.Duration = Duration.seconds(2)

/** What serving needs. */
export interface Deps {
  readonly mounts: Mounts["Type"]
  /** The library's engine and records, held for as long as the scope. */
  readonly library: (library: string) => Effect.Effect<Library.Library, StorageError | ValidationError, Scope.Scope>
  readonly chunkBytes: number
}

// answers are plain records whose encoded form is themselves (typed as such): no Schema encode per answer
const frameOf = (answer: typeof Protocol.Answers.schema.Encoded) => Framing.encodeText(JSON.stringify({ version: Protocol.VERSION, ...answer }))

const rank = (reason: Protocol.Reason) => ["Changed", "Unsafe", "RangeNotSatisfiable", "NotFound", "Failed", "Offline"].indexOf(reason)

/** A file kept open between the reads of one stream. */
interface Held {
  readonly opened: Files.Opened
  readonly root: string
  readonly scope: Scope.CloseableScope
}

const sameRecord = (a: Models.File, b: Models.File) =>
  a.id === b.id && a.location === b.location && a.path === b.path && a.size === b.size && a.mtime === b.mtime && a.hash === b.hash

type Chunk = { readonly _tag: "Bytes"; readonly bytes: Uint8Array } | { readonly _tag: "Failed"; readonly refusal: Files.Refusal }

const unreadable = (cause: unknown) => Files.refusal("Changed", `the file could not be read: ${cause instanceof Error ? cause.message : String(cause)}`)
const short = Files.refusal("Changed", "the file is shorter than recorded")

/**
 * Reads `want` bytes at `position` into `into` from `at` (fewer: the file is shorter than its record
 * says), as a promise that never rejects: started ahead, it may be abandoned (a write failed) with
 * nobody to see its failure.
 */
const readInto = (handle: FileHandle, into: Uint8Array, at: number, want: number, position: number): Promise<Chunk> =>
  handle.read(into, at, want, position).then(
    ({ bytesRead }) => (bytesRead < want ? { _tag: "Failed", refusal: short } : { _tag: "Bytes", bytes: into }),
    (cause) => ({ _tag: "Failed", refusal: unreadable(cause) })
  )

/**
 * Reads `want` bytes at `position` into `into` from `at`, in place (fewer: the file is shorter than its
 * record says). For the first `chunkBytes` of a read only: one such read, most often from the page
 * cache, takes less than handing it to the thread pool (a wake-up of one of its threads, which under
 * load costs the loop far more than the copy).
 */
const readInPlace = (handle: FileHandle, into: Uint8Array, at: number, want: number, position: number): Chunk => {
  try {
    return readSync(handle.fd, into, at, want, position) < want ? { _tag: "Failed", refusal: short } : { _tag: "Bytes", bytes: into }
  } catch (cause) {
    return { _tag: "Failed", refusal: unreadable(cause) }
  }
}

/** The handler of media streams over `deps`: Reads answered until the reader ends the stream or goes quiet. */
export const handler = ({ chunkBytes, library: libraryOf, mounts }: Deps) => (stream: Duplex, context: Plugin.StreamContext) =>
  Effect.gen(function*() {
    const library = context.library!
    const clock = yield* Effect.clock
    // the stream's: a held file's scope is its child, so nothing opened outlives the stream, even when interrupted
    const streamScope = yield* Effect.scope
    const channel = yield* Messages.make(stream, Protocol.Requests)
    let held: Held | undefined
    const release = Effect.suspend(() => {
      const was = held
      held = undefined
      return was === undefined ? Effect.void : Scope.close(was.scope, Exit.void)
    })
    yield* Effect.addFinalizer(() => release)
    // the library, held from the stream's first read to its end (not looked up again for each read)
    let lib: Library.Library | undefined
    const records = (ref: Protocol.FileRef) =>
      Effect.suspend(() => {
        if (lib !== undefined) return lib.records(ref)
        return Effect.flatMap(
          Effect.mapError(Scope.extend(libraryOf(library), streamScope), (e) => Files.refusal("Failed", `the library could not be opened: ${e.message}`)),
          (got) => {
            lib = got
            return got.records(ref)
          }
        )
      })
    const send = (answer: typeof Protocol.Answers.schema.Type) => stream.write(frameOf(answer))

    // the held file, if it still serves `record`: same record, its location still online at the same root
    const reusable = (record: Models.File, verify: boolean) =>
      Effect.gen(function*() {
        if (held === undefined || verify || !sameRecord(held.opened.record, record)) return undefined
        const root = yield* mounts.root(library, record.location)
        const online = (yield* SubscriptionRef.get(mounts.online)).get(library) ?? []
        return Option.contains(root, held.root) && online.includes(record.location) ? held.opened : undefined
      })

    const open = (record: Models.File, verify: boolean) =>
      Effect.gen(function*() {
        const kept = yield* reusable(record, verify)
        if (kept !== undefined) return Either.right(kept)
        yield* release
        const scope = yield* Scope.fork(streamScope, ExecutionStrategy.sequential)
        const opened = yield* Effect.either(Scope.extend(Files.open(mounts, library, record, verify), scope))
        const root = yield* mounts.root(library, record.location)
        if (Either.isLeft(opened) || Option.isNone(root)) {
          yield* Scope.close(scope, Exit.void)
          return Either.isLeft(opened) ? opened : Either.left(Files.refusal("Offline", `location ${record.location} is not online on this node`))
        }
        held = { opened: opened.right, root: root.value, scope }
        return opened
      })

    // the first of `candidates` this node can serve, with the range resolved against it
    const openFirst = (candidates: ReadonlyArray<Models.File>, request: Protocol.Read) =>
      Effect.gen(function*() {
        if (candidates.length === 0) return Either.left(Files.refusal("NotFound", "no such file in the library"))
        const refusals: Array<Files.Refusal> = []
        for (const record of candidates) {
          const range = Files.resolveRange(record.size, request.offset, request.length)
          if (Option.isNone(range)) {
            refusals.push(Files.refusal("RangeNotSatisfiable", `the file has ${record.size} bytes`, record.size))
            continue
          }
          const opened = yield* open(record, request.verify)
          if (Either.isRight(opened)) return Either.right({ opened: opened.right, range: range.value })
          refusals.push(opened.left)
        }
        return Either.left(refusals.sort((a, b) => rank(a.reason) - rank(b.reason))[0]!)
      })

    const refuse = (refusal: Files.Refusal) =>
      Effect.as(send({ type: "Error", reason: refusal.reason, detail: refusal.detail.slice(0, 1024) }), true)

    // one Read answered; false when the stream must be reset (the file failed or changed after its header)
    const serve = (request: Protocol.Read) =>
      Effect.gen(function*() {
        const candidates = yield* Effect.either(records(request.file))
        if (Either.isLeft(candidates)) return yield* refuse(candidates.left)
        const chosen = yield* openFirst(candidates.right, request)
        if (Either.isLeft(chosen)) return yield* refuse(chosen.left)
        const { opened, range } = chosen.right
        const { handle, record } = opened
        const header = frameOf({
          type: "Header",
          id: record.id,
          size: record.size,
          mtime: record.mtime,
          hash: record.hash,
          mime: record.mime,
          offset: range.offset,
          length: range.length
        })
        const end = range.offset + range.length
        // the header and a small first chunk in one buffer, one write, read in place: no thread-pool round trip
        // (which costs more than the read of a few pages) before the first byte
        const firstWant = Math.min(FIRST_CHUNK, chunkBytes, range.length)
        const buffer = new Uint8Array(header.length + firstWant)
        buffer.set(header)
        const first = firstWant === 0 ? { _tag: "Bytes" as const, bytes: buffer } : readInPlace(handle, buffer, header.length, firstWant, range.offset)
        let position = range.offset + firstWant
        // later chunks, read ahead through the thread pool while the ones before are written
        const ahead: Array<Promise<Chunk>> = []
        const readAhead = () => {
          while (ahead.length < READ_AHEAD && position < end) {
            const want = Math.min(chunkBytes, end - position)
            ahead.push(readInto(handle, new Uint8Array(want), 0, want, position))
            position += want
          }
        }
        // checked after the first chunk was read: a file changed before or during that read is refused before any byte
        if (first._tag === "Failed" || !Files.stillSameNow(opened)) {
          yield* release
          return yield* refuse(first._tag === "Failed" ? first.refusal : Files.refusal("Changed", "the file on disk no longer matches its record"))
        }
        yield* stream.write(first.bytes)
        if (range.length <= firstWant) return true
        // the rest of the first chunkBytes read in place too (the kernel most often read those pages ahead
        // with the first), after the first bytes were handed on; later chunks read ahead
        const restWant = Math.min(chunkBytes - firstWant, end - position)
        if (restWant > 0) {
          const rest = readInPlace(handle, new Uint8Array(restWant), 0, restWant, position)
          position += restWant
          if (rest._tag === "Failed") return false
          readAhead()
          yield* stream.write(rest.bytes)
        } else readAhead()
        while (ahead.length > 0) {
          const chunk = yield* Effect.promise(() => ahead.shift()!)
          if (chunk._tag === "Failed") return false
          readAhead()
          yield* stream.write(chunk.bytes)
        }
        // a file that changed under the read: the reader sees the stream cut, and asks elsewhere
        return Files.stillSameNow(opened)
      }).pipe(Effect.catchAll(() => Effect.succeed(false)))

    // the held file is let go once the stream idled for HOLD, and the stream ended once it idled for IDLE_TIMEOUT:
    // one timer for the stream, not one per read
    let busy = true
    let lastUsed = clock.unsafeCurrentTimeMillis()
    const hold = Duration.toMillis(HOLD)
    const idle = Duration.toMillis(Protocol.IDLE_TIMEOUT)
    const watch = Effect.gen(function*() {
      while (true) {
        yield* Effect.sleep(HOLD)
        if (busy) continue
        const quiet = clock.unsafeCurrentTimeMillis() - lastUsed
        if (quiet >= idle) return
        if (quiet >= hold) yield* release
      }
    })

    const loop = Effect.gen(function*() {
      let request = yield* channel.next("a Read", Protocol.REQUEST_TIMEOUT)
      for (let served = 1;; served++) {
        busy = true
        const ok = yield* serve(request)
        busy = false
        lastUsed = clock.unsafeCurrentTimeMillis()
        if (!ok) {
          yield* release
          return yield* stream.reset
        }
        if (served >= Protocol.MAX_READS_PER_STREAM) return yield* stream.end
        // the reader keeps the stream for its next read, for a while; its end (or silence: `watch`) ends ours
        // (a reader that closes an idle stream resets it: that is its end, no failure)
        const following = yield* Effect.catchIf(channel.receive, (e): e is TransportError => e instanceof TransportError, () => Effect.succeedNone)
        if (Option.isNone(following)) return yield* stream.end
        request = following.value
      }
    })
    busy = false
    return yield* Effect.raceFirst(loop, Effect.zipRight(watch, stream.end))
  }).pipe(
    // a reader that goes away or says nothing in time is no violation
    Effect.catchIf((e): e is Messages.MessageError => e instanceof Messages.MessageError && e.reason !== "VersionMismatch", () => stream.reset)
  )
