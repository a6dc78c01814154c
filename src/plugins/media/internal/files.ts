/**
 * Opening a file of a location for reading, as the server and a local read
 * both do: the record, the location's root on this node, the path confined
 * to it, the file checked against its record, and its bytes as a Stream.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import { constants, fstatSync } from "node:fs"
import * as fs from "node:fs/promises"
import type * as Engine from "../../../engine/Engine.js"
import * as Confine from "../../internal/confine.js"
import * as Models from "../Models.js"
import type { Mounts } from "../Mounts.js"
import type { FileRef, Reason } from "../Protocol.js"

/** Why a file could not be opened: a `MediaError`'s reason and detail, its peer and library left to the caller. */
export interface Refusal {
  readonly _tag: "Refusal"
  readonly reason: Reason
  readonly detail: string
  readonly size?: number
}

export const refusal = (reason: Reason, detail: string, size?: number): Refusal =>
  size === undefined ? { _tag: "Refusal", reason, detail } : { _tag: "Refusal", reason, detail, size }

/** A byte range resolved against a file's size: `[offset, offset + length)`. */
export interface Range {
  readonly offset: number
  readonly length: number
}

/**
 * `offset` and `length` (absent: to the end) against `size`: cut at the
 * end; an offset at or past the end of a non-empty file, or past the end of
 * an empty one, is not satisfiable.
 */
export const resolveRange = (size: number, offset: number, length: number | undefined): Option.Option<Range> =>
  (size === 0 ? offset > 0 : offset >= size) ? Option.none() : Option.some({ offset, length: Math.min(length ?? size, size - offset) })

/** The records `ref` names in the library, the one by id, or every one with the hash. */
export const records = (engine: Engine.Service, ref: FileRef): Effect.Effect<ReadonlyArray<Models.File>, Refusal> =>
  Effect.mapError(
    "id" in ref
      ? Effect.map(engine.get(Models.files, ref.id), Option.toArray)
      : engine.query(Models.files, (q) => q.where("hash", "=", ref.hash).orderBy("id").limit(64)),
    (e) => refusal("Failed", `the library's records could not be read: ${e.message}`)
  )

/** An open file, checked against its record. */
export interface Opened {
  readonly record: Models.File
  readonly handle: fs.FileHandle
}

const sameStat = (record: Models.File, stat: { readonly size: number; readonly mtimeMs: number }) =>
  stat.size === record.size && stat.mtimeMs === record.mtime

/**
 * Opens `record`'s file on this node: its location mounted and online here
 * (`Offline`), its path inside the root (`Unsafe`), there and matching the
 * record's size and time (`Changed`), and its hash when `verify`.
 */
export const open = (mounts: Mounts["Type"], library: string, record: Models.File, verify: boolean): Effect.Effect<Opened, Refusal, Scope.Scope> =>
  Effect.gen(function*() {
    const root = yield* mounts.onlineRoot(library, record.location)
    if (Option.isNone(root)) return yield* Effect.fail(refusal("Offline", `location ${record.location} is not online on this node`))
    const real = yield* Effect.mapError(Confine.resolve(root.value, record.path), (e) =>
      e.reason === "Missing" ? refusal("Changed", `the file is gone from disk`) : refusal("Unsafe", e.detail))
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({
        // the real path holds no link now; O_NOFOLLOW refuses one swapped in since
        try: () => fs.open(real, constants.O_RDONLY | constants.O_NOFOLLOW),
        catch: (cause) => refusal("Changed", `the file could not be opened: ${cause instanceof Error ? cause.message : String(cause)}`)
      }),
      (handle) => Effect.promise(() => handle.close())
    )
    const stat = yield* Effect.tryPromise({ try: () => handle.stat(), catch: () => refusal("Changed", "the file could not be read") })
    if (!stat.isFile()) return yield* Effect.fail(refusal("Unsafe", "not a regular file"))
    if (!sameStat(record, stat)) {
      return yield* Effect.fail(refusal("Changed", `on disk: ${stat.size} bytes, modified ${stat.mtimeMs}; recorded: ${record.size} bytes, modified ${record.mtime}`))
    }
    if (verify) {
      const hash = createHash("sha256")
      yield* Stream.runForEach(chunks(handle, { offset: 0, length: record.size }, 256 * 1024), (chunk) => Effect.sync(() => hash.update(chunk)))
      if (hash.digest("hex") !== record.hash) return yield* Effect.fail(refusal("Changed", "its content no longer has the recorded hash"))
    }
    return { record, handle }
  })

/** The bytes of `range` of an open file, one chunk of at most `chunkBytes` read at a time, as they are pulled. */
export const chunks = (handle: fs.FileHandle, range: Range, chunkBytes: number): Stream.Stream<Uint8Array, Refusal> =>
  Stream.unfoldEffect(range.offset, (position) => {
    const end = range.offset + range.length
    if (position >= end) return Effect.succeedNone
    const want = Math.min(chunkBytes, end - position)
    return Effect.tryPromise({
      try: () => handle.read(new Uint8Array(want), 0, want, position),
      catch: (cause) => refusal("Changed", `the file could not be read: ${cause instanceof Error ? cause.message : String(cause)}`)
    }).pipe(
      Effect.flatMap(({ buffer, bytesRead }) =>
        bytesRead === 0
          ? Effect.fail(refusal("Changed", "the file is shorter than recorded"))
          : Effect.succeed(Option.some([buffer.subarray(0, bytesRead), position + bytesRead] as const))
      )
    )
  })

/** Whether an open file still matches its record, now (after its bytes were read: a change meanwhile shows). */
export const stillSameNow = (opened: Opened): boolean => {
  // an fstat of an open file reads its inode, held in memory: done in place, not as a round trip through libuv's thread pool
  try {
    return sameStat(opened.record, fstatSync(opened.handle.fd))
  } catch {
    return false
  }
}
