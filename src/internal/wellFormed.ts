/**
 * Well-formed strings: no lone UTF-16 surrogate. A string holding one has no
 * UTF-8 form, so the codec (and any peer's) would write U+FFFD in its place:
 * the writer's own record would differ from every copy of it, and its id
 * would no longer find it. `mutate` and every decoder of JSON or MessagePack
 * from a peer, a file or a socket refuse such strings with this one check.
 *
 * @internal
 */

const LONE_SURROGATE = /\p{Cs}/u
const native = (String.prototype as { readonly isWellFormed?: (this: string) => boolean }).isWellFormed

/** Whether `s` holds no lone surrogate (`String.prototype.isWellFormed`, Node 20). */
export const isWellFormed: (s: string) => boolean = native !== undefined
  ? (s) => native.call(s)
  : (s) => !LONE_SURROGATE.test(s)

/**
 * Whether every string in `value` (keys too) is well-formed, at any depth
 * (iterative: `JSON.parse` builds values deeper than a stack reaches).
 */
export const isWellFormedValue = (value: unknown): boolean => {
  const pending: Array<unknown> = [value]
  while (pending.length > 0) {
    const u = pending.pop()
    if (typeof u === "string") {
      if (!isWellFormed(u)) return false
    } else if (Array.isArray(u)) {
      for (const item of u) pending.push(item)
    } else if (typeof u === "object" && u !== null && !(u instanceof Uint8Array)) {
      for (const key of Object.keys(u)) {
        if (!isWellFormed(key)) return false
        pending.push((u as Record<string, unknown>)[key])
      }
    }
  }
  return true
}

// Well-formed text makes a lone surrogate only through a `\uD800`–`\uDFFF` escape.
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/

/** Whether `value`, parsed from the JSON `text`, holds only well-formed strings (the walk only when an escape could make one). */
export const isWellFormedJson = (text: string, value: unknown): boolean =>
  isWellFormed(text) && (!SURROGATE_ESCAPE.test(text) || isWellFormedValue(value))
