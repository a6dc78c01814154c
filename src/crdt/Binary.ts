/**
 * The one binary codec of Weft: MessagePack (msgpackr) in its standard,
 * interoperable mode. Objects are MessagePack maps, byte arrays are `bin`,
 * 64-bit integers decode as numbers. No extensions are produced, and the
 * decoder's exceptions are translated here, once, into `MalformedBytesError`.
 *
 * Decoding only parses; callers validate the result with a Schema.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Packr } from "msgpackr"

/** Bytes that are not a well-formed MessagePack value. */
export class MalformedBytesError extends Schema.TaggedError<MalformedBytesError>("weft/MalformedBytesError")(
  "MalformedBytesError",
  { reason: Schema.Literal("Truncated", "Invalid", "TrailingBytes"), length: Schema.Number, detail: Schema.String }
) {
  override get message(): string {
    return `malformed bytes (${this.reason}, ${this.length} bytes): ${this.detail}`
  }
}

const codec = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  int64AsType: "number",
  largeBigIntToFloat: true,
  bundleStrings: false,
  // byte arrays come out as copies, so a decoded value never pins a large frame
  copyBuffers: true
})

/** Encodes a plain value (null, booleans, numbers, strings, byte arrays, arrays, objects). */
export const encode = (value: unknown): Uint8Array => codec.pack(value)

/** Decodes exactly one MessagePack value that spans all of `bytes`. */
export const decode = (bytes: Uint8Array): Either.Either<unknown, MalformedBytesError> => {
  if (bytes.length === 0) {
    return Either.left(new MalformedBytesError({ reason: "Truncated", length: 0, detail: "empty input" }))
  }
  try {
    let end = 0
    const values: Array<unknown> = []
    // a plain view: decoded byte arrays are then plain Uint8Arrays, not Buffers
    const input = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    codec.unpackMultiple(input, (value: unknown, _start?: number, stop?: number) => {
      values.push(value)
      end = stop ?? bytes.length
      return values.length < 2
    })
    if (values.length !== 1 || end !== bytes.length) {
      return Either.left(
        new MalformedBytesError({ reason: "TrailingBytes", length: bytes.length, detail: "more than one value" })
      )
    }
    return Either.right(values[0])
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause)
    const reason = /end of|Unexpected end|out of range|beyond/i.test(detail) ? "Truncated" : "Invalid"
    return Either.left(new MalformedBytesError({ reason, length: bytes.length, detail }))
  }
}
