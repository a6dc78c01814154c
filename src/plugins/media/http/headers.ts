/**
 * The pure part of media's HTTP front: reading `Range`, `If-None-Match`,
 * `If-Range` and `Host` as RFC 9110 says, and the per-run token. Values in,
 * values out, so each rule is tested without a server.
 *
 * @since 0.1.0
 */
import { createHash, timingSafeEqual } from "node:crypto"

/** What a request's `Range` asks of a file of `size` bytes. */
export type RangeAnswer =
  /** No range (absent, not `bytes`, malformed, or several: all answered by the whole file, 200). */
  | { readonly _tag: "Whole" }
  /** One satisfiable range (206), `[offset, offset + length)`. */
  | { readonly _tag: "Part"; readonly offset: number; readonly length: number }
  /** Well-formed, but none of its ranges overlaps the file (416). */
  | { readonly _tag: "Unsatisfiable" }

const WHOLE: RangeAnswer = { _tag: "Whole" }
const UNSATISFIABLE: RangeAnswer = { _tag: "Unsatisfiable" }

// one range-spec: `first-last`, `first-`, or `-suffix` (digits only, RFC 9110 §14.1.1)
const SPEC = /^(?:(\d{1,15})-(\d{1,15})?|-(\d{1,15}))$/

/** Most range-specs read in one header (a longer list is not worth reading: it is answered whole). */
export const MAX_RANGES = 16

/**
 * Reads `Range` (RFC 9110 §14.2) against `size`: a single satisfiable range
 * is a `Part` (cut at the end of the file); a well-formed header none of
 * whose ranges is satisfiable is `Unsatisfiable`; anything else is `Whole`:
 * no header, another unit, a malformed set (the RFC lets a server ignore
 * it), or several ranges, some satisfiable (answered whole rather than as
 * `multipart/byteranges`, which the RFC allows).
 */
export const parseRange = (header: string | undefined, size: number): RangeAnswer => {
  if (header === undefined) return WHOLE
  const match = /^\s*bytes\s*=\s*(.*)$/i.exec(header)
  if (match === null) return WHOLE
  const specs = match[1]!.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
  if (specs.length === 0 || specs.length > MAX_RANGES) return WHOLE
  const satisfiable: Array<{ readonly offset: number; readonly length: number }> = []
  for (const spec of specs) {
    const parts = SPEC.exec(spec)
    if (parts === null) return WHOLE
    const [, first, last, suffix] = parts
    if (suffix !== undefined) {
      const n = Number(suffix)
      if (n > 0 && size > 0) satisfiable.push({ offset: Math.max(0, size - n), length: Math.min(n, size) })
      continue
    }
    const from = Number(first)
    const to = last === undefined ? Number.POSITIVE_INFINITY : Number(last)
    if (to < from) return WHOLE
    if (from < size) satisfiable.push({ offset: from, length: Math.min(to, size - 1) - from + 1 })
  }
  if (satisfiable.length === 0) return UNSATISFIABLE
  return specs.length === 1 ? { _tag: "Part", ...satisfiable[0]! } : WHOLE
}

/** The strong entity tag of a file with content hash `hash`. */
export const etag = (hash: string): string => `"${hash}"`

/** Whether `If-None-Match` names `tag` (weak comparison, RFC 9110 §13.1.2), or is `*`. */
export const noneMatch = (header: string | undefined, tag: string): boolean => {
  if (header === undefined) return false
  if (header.trim() === "*") return true
  const opaque = tag.replace(/^W\//, "")
  return header.split(",").some((t) => t.trim().replace(/^W\//, "") === opaque)
}

/**
 * Whether a `Range` is to be honoured under `If-Range` (RFC 9110 §13.1.5):
 * yes when absent, or when it is exactly the current strong `tag` or
 * `lastModified` date; else the whole file is sent.
 */
export const ifRange = (header: string | undefined, tag: string, lastModified: string): boolean =>
  header === undefined || header.trim() === tag || header.trim() === lastModified

/** The `Host` values a server bound to `hostname:port` answers: the address itself, and the loopback names when it is loopback. */
export const allowedHosts = (hostname: string, port: number): ReadonlySet<string> => {
  const bare = hostname.replace(/^\[(.*)\]$/, "$1")
  const named = bare.includes(":") ? `[${bare}]:${port}` : `${bare}:${port}`
  const loopback = bare === "localhost" || bare === "::1" || /^127\.\d+\.\d+\.\d+$/.test(bare)
  return new Set(loopback ? [named, `127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`] : [named])
}

/** Whether the `Host` header is one of `allowed` (case-insensitive, as host names are). */
export const hostAllowed = (header: string | undefined, allowed: ReadonlySet<string>): boolean =>
  header !== undefined && allowed.has(header.trim().toLowerCase())

/**
 * Whether an `Origin` header (sent by browsers on cross-origin and CORS
 * requests) is absent or this server's own: a page of another site is
 * refused even before its lack of a token is (no CORS is offered, so it
 * could not read an answer anyway).
 */
export const originAllowed = (header: string | undefined, allowed: ReadonlySet<string>): boolean => {
  if (header === undefined) return true
  const match = /^http:\/\/([^/]+)$/i.exec(header.trim())
  return match !== null && allowed.has(match[1]!.toLowerCase())
}

const digest = (s: string) => createHash("sha256").update(s).digest()

/** Whether `given` is `token`, in time that does not depend on where they differ. */
export const tokenMatches = (given: string | undefined, token: string): boolean =>
  given !== undefined && timingSafeEqual(digest(given), digest(token))

/** The token of an `Authorization: Bearer` header. */
export const bearer = (header: string | undefined): string | undefined => {
  const match = header === undefined ? null : /^\s*Bearer\s+(\S+)\s*$/i.exec(header)
  return match === null ? undefined : match[1]
}

/**
 * The cookie that carries the token: its name has the port, since cookies
 * are not kept apart by port and two nodes on one machine would otherwise
 * overwrite each other's.
 */
export const cookieName = (port: number): string => `weft-token-${port}`
