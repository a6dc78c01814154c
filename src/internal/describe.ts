/**
 * A short, safe description of an unknown value, for error messages about
 * input from a peer, a file or a socket.
 *
 * `String(x)` and template interpolation run the value's own conversions:
 * a decoded map `{"toString": 1}`, or any object without a prototype, makes
 * them throw a `TypeError` where a typed error was being built. This never
 * calls anything the value carries, never throws, and is bounded in length.
 *
 * @internal
 */

/** The value described in at most `maxLength` characters (default 64). */
export const describe = (u: unknown, maxLength = 64): string => {
  const text = describeUnbounded(u, maxLength)
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text
}

const describeUnbounded = (u: unknown, maxLength: number): string => {
  switch (typeof u) {
    case "string":
      return JSON.stringify(u.length > maxLength ? u.slice(0, maxLength) : u)
    case "number":
    case "boolean":
    case "undefined":
      return `${u}`
    case "bigint":
      return `${u}n`
    case "symbol":
      return "a symbol"
    case "function":
      return "a function"
    case "object":
      if (u === null) return "null"
      if (u instanceof Uint8Array) return `${u.length} bytes`
      if (Array.isArray(u)) return `an array of ${u.length}`
      return "an object"
  }
}
