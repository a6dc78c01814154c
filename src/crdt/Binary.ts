/**
 * The one binary codec of Weft: MessagePack in its standard, interoperable
 * mode. Objects are MessagePack maps, byte arrays are `bin`, 64-bit integers
 * decode as numbers. No extensions are produced or accepted.
 *
 * Encoding is msgpackr's. Decoding is our own bounded reader, because every
 * byte decoded here may come from a hostile peer (sync frames, stored
 * operations, file contents), and msgpackr trusts a container's header: an
 * array32 announcing 33 554 431 elements allocates ~250 MB before its first
 * element is read, and twenty of them nested (a 105-byte frame) exhaust the
 * heap. Before anything is allocated, this reader checks:
 *
 * - a container's count against the bytes left (an element takes at least
 *   one byte, a map entry two), a `str`'s or `bin`'s length likewise;
 * - the nesting depth (`maxDepth`, `DEFAULT_MAX_DEPTH` unless told);
 * - that a string is well-formed UTF-8 (no U+FFFD substitution: a sender's
 *   own string must never read back as another one elsewhere);
 * - that map keys are strings, each once.
 *
 * Maps decode to objects without a prototype, so a key named `__proto__`,
 * `constructor` or `toString` is plain data: it sets no prototype and no
 * lookup of an absent key finds an inherited member. Every failure is a
 * `MalformedBytesError`; nothing throws.
 *
 * Decoding only parses; callers validate the result with a Schema.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Packr } from "msgpackr"
import { isUtf8 } from "node:buffer"

/** Bytes that are not a well-formed MessagePack value, or one outside the bounds of this reader. */
export class MalformedBytesError extends Schema.TaggedError<MalformedBytesError>("weft/MalformedBytesError")(
  "MalformedBytesError",
  {
    reason: Schema.Literal(
      "Truncated", // the bytes end inside a value
      "Invalid", // not MessagePack, an extension, a map key that is not a string or is repeated, a string not UTF-8
      "TrailingBytes", // more than one value
      "TooLong", // a container announces more elements than the bytes left could hold
      "TooDeep" // containers nested deeper than the bound
    ),
    length: Schema.Number,
    detail: Schema.String
  }
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
  // maps of any size (by default msgpackr writes every object as a map16, and throws past 65 535 keys)
  variableMapSize: true
})

/** Encodes a plain value (null, booleans, numbers, strings, byte arrays, arrays, objects). */
export const encode = (value: unknown): Uint8Array => codec.pack(value)

/**
 * Default bound on nesting: a field value nests up to 65 levels (`Value`),
 * and a sync frame wraps it in 5 more (frame, batch, rows, row, fields).
 */
export const DEFAULT_MAX_DEPTH = 100

/** Bounds of one decode. */
export interface DecodeOptions {
  /** Most containers nested in one another (default `DEFAULT_MAX_DEPTH`). */
  readonly maxDepth?: number
}

// The reader's state, module-wide: decoding is synchronous and never re-entered, and
// plain variables are several times faster than a state object's fields.
let src: Uint8Array = new Uint8Array(0)
let view: DataView = new DataView(src.buffer)
let pos = 0
let end = 0
let maxDepth = DEFAULT_MAX_DEPTH
let failure: MalformedBytesError | undefined
/**
 * Elements that open containers announce and that are not read yet: each takes a byte
 * after `pos`, so a new container's count must fit in the bytes left beside them. Checking
 * each count alone would let nested headers each announce all the bytes left (a 4 MiB frame
 * of 100 levels, each allocating 4M slots: 3 GB).
 */
let pending = 0

/** Returned by a read that failed; the reason is in `failure`. */
const FAILED: unique symbol = Symbol("weft/Binary/failed")

const fail = (reason: MalformedBytesError["reason"], detail: string): typeof FAILED => {
  failure = new MalformedBytesError({ reason, length: end, detail })
  return FAILED
}

const truncated = (): typeof FAILED => fail("Truncated", `the bytes end inside a value at offset ${pos}`)

const textDecoder = new TextDecoder("utf-8")
const fromCharCode = String.fromCharCode

// Strings are the bulk of a sync batch. Short ASCII ones are built here from their bytes
// (a native call costs more than the string), longer ones by `TextDecoder`; non-ASCII ones
// up to `SHORT_STRING` bytes are checked and decoded here, longer ones checked by `isUtf8`.
const SHORT_STRING = 48
const SHORT_ASCII = 16
const units: Array<number> = []

/** Bytes `start`…`start + n` (ASCII, n ≤ 16) as a string. */
const ascii = (start: number, n: number): string => {
  const s = src
  switch (n) {
    case 1:
      return fromCharCode(s[start]!)
    case 2:
      return fromCharCode(s[start]!, s[start + 1]!)
    case 3:
      return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!)
    case 4:
      return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!, s[start + 3]!)
    case 5:
      return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!, s[start + 3]!, s[start + 4]!)
    case 6:
      return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!, s[start + 3]!, s[start + 4]!, s[start + 5]!)
    case 7:
      return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!, s[start + 3]!, s[start + 4]!, s[start + 5]!, s[start + 6]!)
    case 8:
      return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!, s[start + 3]!, s[start + 4]!, s[start + 5]!, s[start + 6]!, s[start + 7]!)
    default:
      return ascii(start, 8) + ascii(start + 8, n - 8)
  }
}

/** A string of at most `SHORT_STRING` bytes, checked as UTF-8 as it is decoded (WHATWG rules: no overlong forms, no surrogates). */
const shortString = (start: number, stop: number): string | typeof FAILED => {
  let i = start
  while (i < stop && src[i]! < 0x80) i++
  if (i === stop) return stop - start <= SHORT_ASCII ? ascii(start, stop - start) : textDecoder.decode(src.subarray(start, stop))
  units.length = 0
  for (let k = start; k < i; k++) units.push(src[k]!)
  while (i < stop) {
    const b0 = src[i++]!
    if (b0 < 0x80) {
      units.push(b0)
      continue
    }
    let lower = 0x80
    let upper = 0xbf
    let need: number
    let cp: number
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      need = 1
      cp = b0 & 0x1f
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      if (b0 === 0xe0) lower = 0xa0
      else if (b0 === 0xed) upper = 0x9f // U+D800..U+DFFF are not characters
      need = 2
      cp = b0 & 0x0f
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      if (b0 === 0xf0) lower = 0x90
      else if (b0 === 0xf4) upper = 0x8f
      need = 3
      cp = b0 & 0x07
    } else {
      return invalidString()
    }
    if (i + need > stop) return invalidString()
    for (let k = 0; k < need; k++) {
      const b = src[i++]!
      if (b < lower || b > upper) return invalidString()
      lower = 0x80
      upper = 0xbf
      cp = (cp << 6) | (b & 0x3f)
    }
    if (cp >= 0x10000) {
      cp -= 0x10000
      units.push(0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff))
    } else {
      units.push(cp)
    }
  }
  return fromCharCode.apply(null, units)
}

const invalidString = (): typeof FAILED => fail("Invalid", `a string at offset ${pos} is not well-formed UTF-8`)

const readString = (length: number): string | typeof FAILED => {
  const start = pos
  const stop = start + length
  if (stop > end) return truncated()
  pos = stop
  if (length === 0) return ""
  if (length <= SHORT_STRING) return shortString(start, stop)
  const bytes = src.subarray(start, stop)
  return isUtf8(bytes) ? textDecoder.decode(bytes) : invalidString()
}

// Map keys repeat (field names, in every operation of a batch): the last key seen at each
// slot of a small table is reused when its bytes match, instead of building a new string.
const KEY_CACHE_SLOTS = 4096
const MAX_CACHED_KEY = 32
const keyBytes: Array<Uint8Array | undefined> = new Array(KEY_CACHE_SLOTS)
const keyStrings: Array<string> = new Array(KEY_CACHE_SLOTS)

const readKey = (length: number): string | typeof FAILED => {
  if (length === 0 || length > MAX_CACHED_KEY || pos + length > end) return readString(length)
  const start = pos
  const slot = ((length << 7) ^ (src[start]! << 3) ^ src[start + length - 1]! ^ (src[start + (length >> 1)]! << 5)) & (KEY_CACHE_SLOTS - 1)
  const cached = keyBytes[slot]
  if (cached !== undefined && cached.length === length) {
    let i = 0
    while (i < length && cached[i] === src[start + i]) i++
    if (i === length) {
      pos = start + length
      return keyStrings[slot]!
    }
  }
  const key = readString(length)
  if (key === FAILED) return FAILED
  keyBytes[slot] = src.slice(start, start + length)
  keyStrings[slot] = key
  return key
}

/** The length of a string whose type byte was just read, or -1 if it is not a string's. */
const stringLength = (token: number): number => {
  if (token >= 0xa0 && token <= 0xbf) return token - 0xa0
  switch (token) {
    case 0xd9:
      return pos + 1 > end ? -2 : src[pos++]!
    case 0xda: {
      if (pos + 2 > end) return -2
      const n = view.getUint16(pos)
      pos += 2
      return n
    }
    case 0xdb: {
      if (pos + 4 > end) return -2
      const n = view.getUint32(pos)
      pos += 4
      return n
    }
    default:
      return -1
  }
}

const readArray = (count: number, depth: number): Array<unknown> | typeof FAILED => {
  // each element takes at least one byte: a count beyond the bytes left is a lie, refused before allocating
  if (count + pending > end - pos) {
    return fail("TooLong", `an array of ${count} elements at offset ${pos}, in ${end - pos} bytes left (${pending} of them due to enclosing containers)`)
  }
  if (depth >= maxDepth) return fail("TooDeep", `containers nested deeper than ${maxDepth} at offset ${pos}`)
  pending += count
  const array = new Array<unknown>(count)
  for (let i = 0; i < count; i++) {
    pending--
    const item = read(depth + 1)
    if (item === FAILED) return FAILED
    array[i] = item
  }
  return array
}

const readMap = (count: number, depth: number): Record<string, unknown> | typeof FAILED => {
  if (count * 2 + pending > end - pos) {
    return fail("TooLong", `a map of ${count} entries at offset ${pos}, in ${end - pos} bytes left (${pending} of them due to enclosing containers)`)
  }
  if (depth >= maxDepth) return fail("TooDeep", `containers nested deeper than ${maxDepth} at offset ${pos}`)
  pending += count * 2
  // no prototype: a key is data, never a prototype member
  const map: Record<string, unknown> = Object.create(null)
  for (let i = 0; i < count; i++) {
    pending -= 2
    if (pos >= end) return truncated()
    const at = pos
    const length = stringLength(src[pos++]!)
    if (length === -2) return truncated()
    if (length === -1) return fail("Invalid", `a map key at offset ${at} is not a string`)
    const key = readKey(length)
    if (key === FAILED) return FAILED
    if (key in map) return fail("Invalid", `a map repeats a key at offset ${at}`)
    const value = read(depth + 1)
    if (value === FAILED) return FAILED
    map[key] = value
  }
  return map
}

const readBin = (length: number): Uint8Array | typeof FAILED => {
  if (pos + length > end) return truncated()
  // a copy, so a decoded value never pins a large frame
  const bytes = src.slice(pos, pos + length)
  pos += length
  return bytes
}

/** Reads one value at `pos`, `depth` containers deep. */
const read = (depth: number): unknown => {
  if (pos >= end) return truncated()
  const token = src[pos++]!
  if (token < 0x80) return token
  if (token < 0x90) return readMap(token - 0x80, depth)
  if (token < 0xa0) return readArray(token - 0x90, depth)
  if (token < 0xc0) return readString(token - 0xa0)
  if (token >= 0xe0) return token - 0x100
  const at = pos - 1
  // fixed-size payloads: check once that they are all there
  const size = FIXED[token - 0xc0]!
  if (pos + size > end) return truncated()
  let value: unknown
  switch (token) {
    case 0xc0:
      return null
    case 0xc2:
      return false
    case 0xc3:
      return true
    case 0xc4:
      return readBin(src[pos++]!)
    case 0xc5:
      value = view.getUint16(pos)
      pos += 2
      return readBin(value as number)
    case 0xc6:
      value = view.getUint32(pos)
      pos += 4
      return readBin(value as number)
    case 0xca:
      value = view.getFloat32(pos)
      break
    case 0xcb:
      value = view.getFloat64(pos)
      break
    case 0xcc:
      value = src[pos]
      break
    case 0xcd:
      value = view.getUint16(pos)
      break
    case 0xce:
      value = view.getUint32(pos)
      break
    case 0xcf:
      value = view.getUint32(pos) * 0x1_0000_0000 + view.getUint32(pos + 4)
      break
    case 0xd0:
      value = view.getInt8(pos)
      break
    case 0xd1:
      value = view.getInt16(pos)
      break
    case 0xd2:
      value = view.getInt32(pos)
      break
    case 0xd3:
      value = view.getInt32(pos) * 0x1_0000_0000 + view.getUint32(pos + 4)
      break
    case 0xd9:
      return readString(src[pos++]!)
    case 0xda:
      value = view.getUint16(pos)
      pos += 2
      return readString(value as number)
    case 0xdb:
      value = view.getUint32(pos)
      pos += 4
      return readString(value as number)
    case 0xdc:
      value = view.getUint16(pos)
      pos += 2
      return readArray(value as number, depth)
    case 0xdd:
      value = view.getUint32(pos)
      pos += 4
      return readArray(value as number, depth)
    case 0xde:
      value = view.getUint16(pos)
      pos += 2
      return readMap(value as number, depth)
    case 0xdf:
      value = view.getUint32(pos)
      pos += 4
      return readMap(value as number, depth)
    case 0xc1:
      return fail("Invalid", `byte 0xc1 (never used) at offset ${at}`)
    default:
      // 0xc7-0xc9, 0xd4-0xd8
      return fail("Invalid", `an extension type (0x${token.toString(16)}) at offset ${at}: none is accepted`)
  }
  pos += size
  return value
}

/** Bytes that must follow each type byte 0xc0–0xdf before anything else is read (header or fixed payload). */
const FIXED: ReadonlyArray<number> = [
  0, 0, 0, 0, // nil, (never used), false, true
  1, 2, 4, // bin 8/16/32 headers
  0, 0, 0, // ext 8/16/32 (refused)
  4, 8, // float 32/64
  1, 2, 4, 8, // uint 8/16/32/64
  1, 2, 4, 8, // int 8/16/32/64
  0, 0, 0, 0, 0, // fixext (refused)
  1, 2, 4, // str 8/16/32 headers
  2, 4, // array 16/32 headers
  2, 4 // map 16/32 headers
]

/** Decodes exactly one MessagePack value that spans all of `bytes`. */
export const decode = (bytes: Uint8Array, options?: DecodeOptions): Either.Either<unknown, MalformedBytesError> => {
  if (bytes.length === 0) {
    return Either.left(new MalformedBytesError({ reason: "Truncated", length: 0, detail: "empty input" }))
  }
  // a plain view: `slice` then copies (a Buffer's would share), and byte arrays come out plain
  src = bytes instanceof Buffer ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  pos = 0
  end = bytes.length
  maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH
  pending = 0
  failure = undefined
  const value = read(0)
  const result: Either.Either<unknown, MalformedBytesError> = value === FAILED
    ? Either.left(failure!)
    : pos !== end
    ? Either.left(new MalformedBytesError({ reason: "TrailingBytes", length: end, detail: `more than one value (the first ends at offset ${pos})` }))
    : Either.right(value)
  // let go of the input: a module-wide reference would pin a large frame
  src = EMPTY
  view = EMPTY_VIEW
  failure = undefined
  return result
}

const EMPTY = new Uint8Array(0)
const EMPTY_VIEW = new DataView(EMPTY.buffer)
