/**
 * Small JSON state files (libraries, addresses): read with Schema, written
 * whole and atomically (a temporary file, flushed to disk, renamed over the
 * old one), so a crash leaves the old file or the new one, never half of one.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import { promises as fs } from "node:fs"
import { dirname } from "node:path"
import * as BoundedFile from "./boundedFile.js"
import * as ParseError from "./parseError.js"
import { isWellFormedJson } from "./wellFormed.js"

const describe = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

const parse = (text: string): Either.Either<unknown, string> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (cause) {
    return Either.left(`not JSON: ${describe(cause).slice(0, 200)}`)
  }
  // a lone surrogate (escaped as \uD800) has no UTF-8 form: refused like any other corruption
  return isWellFormedJson(text, json) ? Either.right(json) : Either.left("a string holds a lone surrogate")
}

/**
 * Reads and decodes a JSON file of at most `maxBytes`; `None` when it does
 * not exist. Anything but a regular file is an `io` error (see `BoundedFile`).
 */
export const read = <A, I, E>(
  path: string,
  schema: Schema.Schema<A, I, never>,
  errors: { readonly io: (detail: string) => E; readonly corrupt: (detail: string) => E },
  maxBytes: number
): Effect.Effect<Option.Option<A>, E> =>
  Effect.gen(function*() {
    const file = yield* Effect.tryPromise({
      try: () => BoundedFile.read(path, maxBytes),
      catch: (cause) => errors.io(cause instanceof BoundedFile.UnreadableFileError ? cause.message : `${path}: ${describe(cause)}`)
    })
    if (file === undefined) return Option.none()
    const json = parse(file.text)
    if (Either.isLeft(json)) return yield* Effect.fail(errors.corrupt(`${path}: ${json.left}`))
    return yield* ParseError.decodeUnknown(schema)(json.right).pipe(
      Effect.map(Option.some),
      Effect.mapError((error) => errors.corrupt(`${path}: ${ParseError.describe(error)}`))
    )
  })

/** Writes `value` as JSON (owner-only) in place of the file at `path`. */
export const write = <E>(path: string, value: unknown, io: (detail: string) => E): Effect.Effect<void, E> =>
  Effect.tryPromise({
    try: async () => {
      await fs.mkdir(dirname(path), { recursive: true })
      // a name of its own: two writes at once never share (and garble) one temporary file
      const temporary = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`
      try {
        const file = await fs.open(temporary, "wx", 0o600)
        try {
          await file.writeFile(JSON.stringify(value, null, 2))
          await file.sync()
        } finally {
          await file.close()
        }
        await fs.rename(temporary, path)
      } catch (cause) {
        await fs.rm(temporary, { force: true })
        throw cause
      }
    },
    catch: (cause) => io(`${path}: ${describe(cause)}`)
  })
