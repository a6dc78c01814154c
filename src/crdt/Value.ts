/**
 * The values a field can hold on the wire and in the log: JSON-like data plus
 * byte arrays. Numbers must be finite and strings (keys too) well-formed
 * UTF-16, so every peer and every store (SQL `REAL`, JSON text, MessagePack)
 * represents them identically.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { isWellFormed } from "../internal/wellFormed.js"

/** A field value as carried by operations. */
export type Value =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | ReadonlyArray<Value>
  | { readonly [key: string]: Value }

const isPlainObject = (u: object): boolean => {
  const proto = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

/**
 * Whether `u` is a `Value`. A direct recursive check: it runs for every field
 * of every operation, where a union Schema would cost twenty times more.
 */
export const isValue = (u: unknown, depth = 0): u is Value => {
  switch (typeof u) {
    case "string":
      return isWellFormed(u)
    case "boolean":
      return true
    case "number":
      return Number.isFinite(u)
    case "object": {
      if (u === null || u instanceof Uint8Array) return true
      if (depth > 64) return false
      if (Array.isArray(u)) return u.every((item) => isValue(item, depth + 1))
      if (!isPlainObject(u)) return false
      for (const key in u) {
        if (!isWellFormed(key) || !isValue((u as Record<string, unknown>)[key], depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

/** Schema of `Value`: validates untrusted data decoded from bytes (at most 64 levels deep). */
export const Value: Schema.Schema<Value> = Schema.declare((u: unknown): u is Value => isValue(u), {
  identifier: "Value",
  description: "null, a boolean, a finite number, a well-formed string, a byte array, or an array or plain object of values"
})
