/**
 * Byte arrays joined, for the few places that build one from parts.
 *
 * @internal
 */

/** The parts one after another, in one new array. */
export const concat = (parts: ReadonlyArray<ArrayLike<number>>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}
