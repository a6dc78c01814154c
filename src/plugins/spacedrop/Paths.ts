/**
 * Which received paths Spacedrop will write: a pure check of a manifest's
 * paths, before anything touches the disk.
 *
 * A path is accepted only if it is relative, POSIX, and portable: no `..`
 * or `.` component, no empty component (`a//b`, a leading or trailing `/`),
 * no absolute path or drive letter (`/etc`, `C:`), no backslash, no `:`
 * (a drive or an NTFS stream), no NUL or other control character, no name
 * reserved by Windows (`CON`, `NUL`, `COM1`, `LPT1.txt`, …) and no name that
 * ends in a dot or a space (Windows drops them, so two names would meet).
 * Bounds: its UTF-8 bytes, its depth, each name's bytes.
 *
 * Across a manifest, no two paths may name the same file once normalised
 * (Unicode NFC) and case-folded, as they would on macOS or Windows; no file
 * may be the parent of another entry; links are never written.
 *
 * The disk is checked at acceptance (see `Spacedrop`): links and files
 * already inside the target are never followed or overwritten.
 *
 * @since 0.1.0
 */
import * as Option from "effect/Option"

/** Bounds of one path. */
export interface PathLimits {
  /** Most UTF-8 bytes of a whole path (default 4096). */
  readonly maxPathBytes: number
  /** Most components of a path (default 64). */
  readonly maxDepth: number
}

/** The default bounds. */
export const DEFAULT_LIMITS: PathLimits = { maxPathBytes: 4096, maxDepth: 64 }

/** Most UTF-8 bytes of one name (what common file systems allow). */
export const MAX_NAME_BYTES = 255

/** Why a path is refused. */
export interface Problem {
  readonly path: string
  readonly reason: "UnsafePath" | "TooLarge"
  readonly detail: string
}

// C0 and C1 controls and DEL
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/
const RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\.|$)/i
const utf8 = new TextEncoder()

/** What is wrong with one path, if anything. */
export const checkPath = (path: string, limits: PathLimits = DEFAULT_LIMITS): Option.Option<Problem> => {
  const unsafe = (detail: string) => Option.some<Problem>({ path, reason: "UnsafePath", detail })
  if (path.length === 0) return unsafe("an empty path")
  if (utf8.encode(path).length > limits.maxPathBytes) {
    return Option.some({ path, reason: "TooLarge", detail: `a path over ${limits.maxPathBytes} bytes` })
  }
  if (CONTROL.test(path)) return unsafe("a NUL or control character")
  if (path.includes("\\")) return unsafe("a backslash (paths are POSIX, `/`-separated)")
  if (path.startsWith("/")) return unsafe("an absolute path")
  if (/^[A-Za-z]:/.test(path)) return unsafe("a drive letter")
  if (path.includes(":")) return unsafe("a colon (a drive or an alternate data stream on Windows)")
  const names = path.split("/")
  if (names.length > limits.maxDepth) return Option.some({ path, reason: "TooLarge", detail: `deeper than ${limits.maxDepth}` })
  for (const name of names) {
    if (name === "") return unsafe("an empty name (`//`, or a leading or trailing `/`)")
    if (name === "." || name === "..") return unsafe(`a \`${name}\` component`)
    if (utf8.encode(name).length > MAX_NAME_BYTES) return Option.some({ path, reason: "TooLarge", detail: `a name over ${MAX_NAME_BYTES} bytes` })
    if (RESERVED.test(name)) return unsafe(`a name reserved on Windows (${name})`)
    if (name.endsWith(".") || name.endsWith(" ")) return unsafe("a name ending in a dot or a space")
  }
  return Option.none()
}

/** The key two paths collide under: NFC, then case-folded (upper then lower, so `ß` meets `SS`). */
export const collisionKey = (path: string): string => path.normalize("NFC").toUpperCase().toLowerCase()

/** An entry as the check needs it. */
export interface PathEntry {
  readonly path: string
  readonly kind: "file" | "directory" | "symlink"
}

/**
 * The first problem of a manifest's paths: each path's own, a link, two
 * paths that collide, or a file that is also the parent of an entry.
 */
export const checkManifest = (entries: ReadonlyArray<PathEntry>, limits: PathLimits = DEFAULT_LIMITS): Option.Option<Problem> => {
  const seen = new Map<string, string>()
  const files = new Set<string>()
  // every directory named on the way to an entry, by key, as first spelled: `Photos/a` and `photos/b` meet on macOS
  const spelled = new Map<string, { readonly spelling: string; readonly by: string }>()
  for (const entry of entries) {
    const problem = checkPath(entry.path, limits)
    if (Option.isSome(problem)) return problem
    if (entry.kind === "symlink") return Option.some({ path: entry.path, reason: "UnsafePath", detail: "a symbolic link (links are never written)" })
    const key = collisionKey(entry.path)
    const before = seen.get(key)
    if (before !== undefined) {
      return Option.some({
        path: entry.path,
        reason: "UnsafePath",
        detail: before === entry.path ? "listed twice" : `collides with ${JSON.stringify(before)} once normalised and case-folded`
      })
    }
    seen.set(key, entry.path)
    if (entry.kind === "file") files.add(key)
    const names = entry.path.split("/")
    for (let i = 1; i <= names.length; i++) {
      if (i === names.length && entry.kind === "file") break
      const spelling = names.slice(0, i).join("/")
      const other = spelled.get(collisionKey(spelling))
      if (other === undefined) spelled.set(collisionKey(spelling), { spelling, by: entry.path })
      else if (other.spelling !== spelling) {
        return Option.some({ path: entry.path, reason: "UnsafePath", detail: `its directory ${JSON.stringify(spelling)} collides with ${JSON.stringify(other.spelling)} once normalised and case-folded` })
      }
    }
  }
  for (const [key, { by }] of spelled) {
    if (files.has(key)) return Option.some({ path: by, reason: "UnsafePath", detail: `its parent ${JSON.stringify(seen.get(key))} is a file in the same offer` })
  }
  return Option.none()
}
