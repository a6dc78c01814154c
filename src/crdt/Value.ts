/**
 * The values a field can hold on the wire and in the log: JSON-like data plus
 * byte arrays. Numbers must be finite, so every peer and every store (SQL
 * `REAL`, JSON text, MessagePack) represents them identically.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/** A field value as carried by operations. */
export type Value =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | ReadonlyArray<Value>
  | { readonly [key: string]: Value }

/** Schema of `Value`: validates untrusted data decoded from bytes. */
export const Value: Schema.Schema<Value> = Schema.Union(
  Schema.Null,
  Schema.Boolean,
  Schema.Finite,
  Schema.String,
  Schema.Uint8ArrayFromSelf,
  Schema.Array(Schema.suspend((): Schema.Schema<Value> => Value)),
  Schema.Record({ key: Schema.String, value: Schema.suspend((): Schema.Schema<Value> => Value) })
).annotations({ identifier: "Value" })

/** Structural equality of two values (byte arrays by content). */
export const equals = (a: Value, b: Value): boolean => {
  if (a === b) return true
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    if (!(a instanceof Uint8Array && b instanceof Uint8Array) || a.length !== b.length) return false
    return a.every((byte, i) => byte === b[i])
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!(Array.isArray(a) && Array.isArray(b)) || a.length !== b.length) return false
    return a.every((item, i) => equals(item, b[i] as Value))
  }
  const ra = a as { readonly [key: string]: Value }
  const rb = b as { readonly [key: string]: Value }
  const keys = Object.keys(ra)
  return keys.length === Object.keys(rb).length && keys.every((k) => Object.hasOwn(rb, k) && equals(ra[k]!, rb[k]!))
}
