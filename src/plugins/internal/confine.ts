/**
 * Confining a read to a directory: a relative path from an untrusted place
 * (a record any library member wrote, a request) is resolved inside a root
 * only if it stays there once every link on the way is followed.
 *
 * Two checks, both needed: the lexical one refuses what is plainly out
 * (`..`, `.`, an empty name, an absolute path, NUL) before the disk is
 * touched; the real one resolves the root and the target with `realpath`
 * and refuses a target outside the root's real path (a link to `/etc`, or
 * to a sibling directory). What is opened is the real path, with
 * `O_NOFOLLOW`, so a link swapped in after the check is not followed.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"

/** A path could not be resolved inside its root. */
export class ConfinementError extends Data.TaggedError("ConfinementError")<{
  readonly reason:
    | "Unsafe" // out of the root, lexically or through a link
    | "Missing" // nothing there, or the root itself is gone
  readonly root: string
  readonly path: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.reason} path ${JSON.stringify(this.path)} under ${this.root}: ${this.detail}`
  }
}

/** What is lexically wrong with a relative POSIX path, if anything. */
export const lexicalProblem = (path: string): Option.Option<string> => {
  if (path.length === 0) return Option.some("an empty path")
  if (path.includes("\u0000")) return Option.some("a NUL character")
  if (path.startsWith("/") || nodePath.isAbsolute(path)) return Option.some("an absolute path")
  for (const name of path.split("/")) {
    if (name === "") return Option.some("an empty name (`//`, or a trailing `/`)")
    if (name === "." || name === "..") return Option.some(`a \`${name}\` component`)
  }
  return Option.none()
}

const isMissing = (cause: unknown) => {
  const code = (cause as { code?: unknown } | null)?.code
  return code === "ENOENT" || code === "ENOTDIR"
}

/** The real path of `relative` under `root`, refused if it is not inside the root's real path. */
export const resolve = (root: string, relative: string): Effect.Effect<string, ConfinementError> =>
  Effect.gen(function*() {
    const fail = (reason: ConfinementError["reason"], detail: string) => new ConfinementError({ reason, root, path: relative, detail })
    const problem = lexicalProblem(relative)
    if (Option.isSome(problem)) return yield* fail("Unsafe", problem.value)
    const real = (path: string) =>
      Effect.tryPromise({
        try: () => fs.realpath(path),
        catch: (cause) => fail(isMissing(cause) ? "Missing" : "Unsafe", cause instanceof Error ? cause.message : String(cause))
      })
    const realRoot = yield* real(root)
    const target = yield* real(nodePath.join(realRoot, ...relative.split("/")))
    if (!target.startsWith(realRoot.endsWith(nodePath.sep) ? realRoot : realRoot + nodePath.sep)) {
      return yield* fail("Unsafe", "it leads out of the root through a link")
    }
    return target
  })
