/**
 * Structure-aware fuzzing of decoders that read remote bytes (from a peer, a
 * file or the control socket). The only protocol-specific part is a
 * generator of VALID inputs; the kit parses each valid input into its
 * MessagePack or JSON structure, mutates that structure the way a hostile
 * peer would, writes it back to bytes, and checks that the decoder ends
 * every case in a value or a typed error, within a time and a heap bound.
 *
 * Mutations (one to three per case, then perhaps a byte-level one):
 * - container and string headers that lie (`array32` of 0xffffffff or
 *   33 554 431 elements, `str32`, `bin32`, `map32`…), alone or nested twenty deep;
 * - deep nesting (up to tens of thousands of levels);
 * - a wrong type at any path (and MessagePack extensions a plain decoder may
 *   still honour: dates, sets, errors, regular expressions, self-references);
 * - prototype names (`__proto__`, `constructor`, `toString`, …) as keys, and
 *   values such as `{"toString": 1}`;
 * - ill-formed strings (lone surrogates, invalid UTF-8);
 * - elements dropped, duplicated or swapped;
 * - truncation at every node boundary, byte flips, trailing bytes.
 *
 * ```ts
 * it("decodeBatch", () =>
 *   Fuzz.assertDecoder({
 *     cases: Fuzz.msgpack(validOps.map(Operation.encodeBatch)),
 *     decode: Operation.decodeBatch
 *   }))
 * ```
 *
 * Runs: `WEFT_FUZZ_RUNS` cases per decoder (default 10 000).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"
import * as fc from "fast-check"
import * as Stream from "effect/Stream"
import { getHeapStatistics } from "node:v8"
import { type Duplex, PeerId, type TransportError } from "../Transport.js"
import { concat } from "../../internal/bytes.js"

// ---------------------------------------------------------------------------
// Structure

/**
 * A value's structure: containers, and leaves kept as their exact bytes.
 * `wrap` is `depth` copies of `open` around `inner` (then `depth` of `close`):
 * deep nesting without a deep tree.
 */
export type Node =
  | { readonly kind: "array"; readonly items: ReadonlyArray<Node> }
  | { readonly kind: "map"; readonly entries: ReadonlyArray<readonly [Node, Node]> }
  | { readonly kind: "leaf"; readonly bytes: Uint8Array; readonly text?: string }
  | { readonly kind: "wrap"; readonly open: Uint8Array; readonly close: Uint8Array; readonly depth: number; readonly inner: Node }

const leaf = (bytes: ArrayLike<number>, text?: string): Node =>
  text === undefined ? { kind: "leaf", bytes: Uint8Array.from(bytes) } : { kind: "leaf", bytes: Uint8Array.from(bytes), text }

const utf8 = new TextEncoder()

/** A wire format the kit can take apart, mutate and write back. */
export interface Format {
  readonly name: string
  /** The structure of a well-formed input (ours: it is never hostile). */
  readonly parse: (bytes: Uint8Array) => Node
  /** Container framing: what comes before, between and after the children. */
  readonly arrayOpen: (count: number) => Uint8Array
  readonly mapOpen: (count: number) => Uint8Array
  readonly separator: { readonly item: Uint8Array; readonly pair: Uint8Array; readonly close: { readonly array: Uint8Array; readonly map: Uint8Array } }
  /** A string (as a key or a value). */
  readonly str: (text: string) => Node
  /** A string written from raw bytes, well-formed or not. */
  readonly rawStr: (bytes: Uint8Array) => Node
  /** Values of every type, odd ones included, to put where another type is due. */
  readonly wrongTypes: ReadonlyArray<Node>
  /** A container or string that claims far more than follows (`length` a hint). */
  readonly huge: (length: number, pick: number, rest: Uint8Array) => Node
  /** One level of nesting: bytes before and after the inner value. */
  readonly nest: (pick: number) => { readonly open: Uint8Array; readonly close: Uint8Array }
}

const repeat = (bytes: Uint8Array, times: number): Uint8Array => {
  const out = new Uint8Array(bytes.length * times)
  for (let i = 0; i < times; i++) out.set(bytes, i * bytes.length)
  return out
}

/** Writes `node`, recording the offset where each node starts and ends. */
const write = (format: Format, node: Node, boundaries?: Array<number>): Uint8Array => {
  const parts: Array<Uint8Array> = []
  let at = 0
  const push = (bytes: Uint8Array) => {
    parts.push(bytes)
    at += bytes.length
  }
  const go = (n: Node): void => {
    boundaries?.push(at)
    switch (n.kind) {
      case "leaf":
        push(n.bytes)
        break
      case "array":
        push(format.arrayOpen(n.items.length))
        n.items.forEach((item, i) => {
          if (i > 0) push(format.separator.item)
          go(item)
        })
        push(format.separator.close.array)
        break
      case "map":
        push(format.mapOpen(n.entries.length))
        n.entries.forEach(([k, v], i) => {
          if (i > 0) push(format.separator.item)
          go(k)
          push(format.separator.pair)
          go(v)
        })
        push(format.separator.close.map)
        break
      case "wrap":
        push(repeat(n.open, n.depth))
        go(n.inner)
        push(repeat(n.close, n.depth))
        break
    }
    boundaries?.push(at)
  }
  go(node)
  return concat(parts)
}

/** `bytes` taken apart and written back (the same bytes, for an input in the canonical form of `format`). */
export const rewrite = (format: Format, bytes: Uint8Array): Uint8Array => write(format, format.parse(bytes))

/** Nodes in pre-order (keys and values of maps both count). */
const count = (node: Node): number => {
  switch (node.kind) {
    case "leaf":
      return 1
    case "array":
      return 1 + node.items.reduce((n, item) => n + count(item), 0)
    case "map":
      return 1 + node.entries.reduce((n, [k, v]) => n + count(k) + count(v), 0)
    case "wrap":
      return 1 + count(node.inner)
  }
}

/** The `index`-th node in pre-order. */
const nodeAt = (node: Node, index: number): Node => {
  let found: Node | undefined
  mapAt(node, index, (n) => {
    found = n
    return n
  })
  return found ?? node
}

/** `node` with its `index`-th node (in pre-order) replaced by `f` of it. */
const mapAt = (node: Node, index: number, f: (n: Node) => Node): Node => {
  let left = index
  const go = (n: Node): Node => {
    if (left === 0) {
      left = -1
      return f(n)
    }
    if (left < 0) return n
    left--
    switch (n.kind) {
      case "leaf":
        return n
      case "array": {
        const items = n.items.map(go)
        return { kind: "array", items }
      }
      case "map": {
        const entries = n.entries.map(([k, v]) => [go(k), go(v)] as const)
        return { kind: "map", entries }
      }
      case "wrap":
        return { ...n, inner: go(n.inner) }
    }
  }
  return go(node)
}

// ---------------------------------------------------------------------------
// MessagePack

const be = (value: number, bytes: number): Array<number> => {
  const out: Array<number> = []
  for (let i = bytes - 1; i >= 0; i--) out.push(Math.floor(value / 2 ** (8 * i)) & 0xff)
  return out
}

const msgpackString = (bytes: Uint8Array): Uint8Array =>
  concat([
    bytes.length < 32 ? [0xa0 | bytes.length] : bytes.length < 256 ? [0xd9, bytes.length] : bytes.length < 65536 ? [0xda, ...be(bytes.length, 2)] : [0xdb, ...be(bytes.length, 4)],
    bytes
  ])

/** Parses well-formed MessagePack into its structure. */
const parseMsgpack = (bytes: Uint8Array): Node => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const decoder = new TextDecoder()
  let at = 0
  const take = (n: number) => bytes.subarray(at, (at += n))
  const read = (): Node => {
    const start = at
    const b = bytes[at++]!
    const scalar = (n: number) => {
      at += n
      return leaf(bytes.subarray(start, at))
    }
    const str = (headerBytes: number, length: number) => {
      at += headerBytes
      const text = decoder.decode(take(length))
      return leaf(bytes.subarray(start, at), text)
    }
    const array = (headerBytes: number, n: number): Node => {
      at += headerBytes
      const items: Array<Node> = []
      for (let i = 0; i < n; i++) items.push(read())
      return { kind: "array", items }
    }
    const map = (headerBytes: number, n: number): Node => {
      at += headerBytes
      const entries: Array<readonly [Node, Node]> = []
      for (let i = 0; i < n; i++) entries.push([read(), read()])
      return { kind: "map", entries }
    }
    if (b < 0x80 || b >= 0xe0) return leaf([b])
    if (b < 0x90) return map(0, b & 0x0f)
    if (b < 0xa0) return array(0, b & 0x0f)
    if (b < 0xc0) return str(0, b & 0x1f)
    switch (b) {
      case 0xc0: case 0xc2: case 0xc3:
        return leaf([b])
      case 0xc4: return scalar(1 + bytes[at]!)
      case 0xc5: return scalar(2 + view.getUint16(at))
      case 0xc6: return scalar(4 + view.getUint32(at))
      case 0xc7: return scalar(2 + bytes[at]!)
      case 0xc8: return scalar(3 + view.getUint16(at))
      case 0xc9: return scalar(5 + view.getUint32(at))
      case 0xca: case 0xce: case 0xd2: return scalar(4)
      case 0xcb: case 0xcf: case 0xd3: return scalar(8)
      case 0xcc: case 0xd0: return scalar(1)
      case 0xcd: case 0xd1: return scalar(2)
      case 0xd4: return scalar(2)
      case 0xd5: return scalar(3)
      case 0xd6: return scalar(5)
      case 0xd7: return scalar(9)
      case 0xd8: return scalar(17)
      case 0xd9: return str(1, bytes[at]!)
      case 0xda: return str(2, view.getUint16(at))
      case 0xdb: return str(4, view.getUint32(at))
      case 0xdc: return array(2, view.getUint16(at))
      case 0xdd: return array(4, view.getUint32(at))
      case 0xde: return map(2, view.getUint16(at))
      case 0xdf: return map(4, view.getUint32(at))
      default: return leaf([b])
    }
  }
  return read()
}

const containerHeader = (fix: number, b16: number, b32: number) => (n: number): Uint8Array =>
  Uint8Array.from(n < 16 ? [fix | n] : n < 65536 ? [b16, ...be(n, 2)] : [b32, ...be(n, 4)])

/** Headers that claim a length: [marker, bytes of the length]. */
const LENGTH_HEADERS: ReadonlyArray<readonly [number, number]> = [
  [0xdd, 4], [0xdf, 4], [0xdb, 4], [0xc6, 4], [0xc9, 4], // array32 map32 str32 bin32 ext32
  [0xdc, 2], [0xde, 2], [0xda, 2], [0xc5, 2], [0xc8, 2], // the 16-bit ones
  [0xd9, 1], [0xc4, 1], [0xc7, 1] // str8 bin8 ext8
]

const fixext = (type: number, data: ReadonlyArray<number>): Array<number> => {
  const marker = ({ 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 } as Record<number, number>)[data.length]
  return marker === undefined ? [0xc7, data.length, type & 0xff, ...data] : [marker, type & 0xff, ...data]
}

const mp = (text: string) => msgpackString(utf8.encode(text))

/** The MessagePack format. */
export const MsgPack: Format = {
  name: "msgpack",
  parse: parseMsgpack,
  arrayOpen: containerHeader(0x90, 0xdc, 0xdd),
  mapOpen: containerHeader(0x80, 0xde, 0xdf),
  separator: { item: new Uint8Array(0), pair: new Uint8Array(0), close: { array: new Uint8Array(0), map: new Uint8Array(0) } },
  str: (text) => leaf(mp(text), text),
  rawStr: (bytes) => leaf(msgpackString(bytes)),
  wrongTypes: [
    [0xc0], [0xc2], [0xc3], [0x00], [0x01], [0x7f], [0xff], [0xe0],
    [0xcc, 0xff], [0xcd, 0xff, 0xff], [0xce, 0xff, 0xff, 0xff, 0xff],
    [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // 2^64 - 1
    [0xcf, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], // 2^53 + 1
    [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], // -2^63
    [0xd0, 0x80], [0xd2, 0x80, 0, 0, 0],
    [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], // NaN
    [0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0], // Infinity
    [0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0], // -0
    [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0], // 1.5
    [0xca, 0x7f, 0xc0, 0, 0], // float32 NaN
    [0xa0], [0xa1, 0x78], [...mp("0000000000000000")], [...mp("a".repeat(300))],
    [0xc4, 0x00], [0xc4, 0x20, ...new Array(32).fill(7)],
    [0x90], [0x80], [0x91, 0xc0], [0x81, 0xa1, 0x61, 0x01],
    [0xc1], // never used
    [0xd4, 0x00, 0x00], // ext 0: undefined in msgpackr
    [0xd6, 0xff, 0, 0, 0, 0], // timestamp: a Date
    [0xd7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // a Date out of range
    [0xc7, 0x03, 0xff, 1, 2, 3], // timestamp of a wrong size: an invalid Date
    [0xd4, 0x73, 0x00, 0x92, 0x01, 0x02], // a Set of [1, 2]
    [0xd4, 0x65, 0x00, 0x92, ...mp("TypeError"), ...mp("boom")], // an Error
    [0xd4, 0x78, 0x00, 0x92, ...mp("(a+)+$"), ...mp("")], // a RegExp
    [0xd4, 0x78, 0x00, 0x92, ...mp("("), ...mp("")], // a RegExp that does not compile
    [0xd5, 0x42, 0x7f, 0xff], // a BigInt
    [...fixext(0x74, [1, 1, 2, 3, 4])], // a typed array
    [...fixext(0x74, [99])], // an unknown typed array
    [0xd6, 0x69, 0, 0, 0, 1, 0x91, 0xd6, 0x70, 0, 0, 0, 1], // an array that holds itself
    [0xd6, 0x70, 0, 0, 0, 9], // a reference to nothing
    [0xd4, 0x62, 0xff], // bundled strings out of bounds
    [0xd4, 0x01, 0x00], [0xd8, 0x05, ...new Array(16).fill(0)] // unknown extensions
  ].map((bytes) => leaf(bytes)),
  huge: (length, pick, rest) => {
    const [marker, size] = LENGTH_HEADERS[pick % LENGTH_HEADERS.length]!
    const n = Math.min(length, 2 ** (8 * size) - 1)
    // ext headers carry a type byte after the length
    const type = marker === 0xc9 || marker === 0xc8 || marker === 0xc7 ? [1] : []
    return leaf(concat([[marker, ...be(n, size), ...type], rest]))
  },
  nest: (pick) => {
    const options: ReadonlyArray<Uint8Array> = [Uint8Array.of(0x91), Uint8Array.of(0x81, 0xa1, 0x61), Uint8Array.of(0xdc, 0, 1), Uint8Array.of(0x92, 0xc0)]
    return { open: options[pick % options.length]!, close: new Uint8Array(0) }
  }
}

// ---------------------------------------------------------------------------
// JSON

const toJsonNode = (value: unknown): Node => {
  if (Array.isArray(value)) return { kind: "array", items: value.map(toJsonNode) }
  if (typeof value === "object" && value !== null) {
    return { kind: "map", entries: Object.entries(value).map(([k, v]) => [JSON_.str(k), toJsonNode(v)] as const) }
  }
  const text = JSON.stringify(value) ?? "null"
  return typeof value === "string" ? leaf(utf8.encode(text), value) : leaf(utf8.encode(text))
}

const j = (text: string) => leaf(utf8.encode(text))

/** The JSON format (UTF-8). */
export const JSON_: Format = {
  name: "json",
  parse: (bytes) => toJsonNode(JSON.parse(new TextDecoder().decode(bytes))),
  arrayOpen: () => utf8.encode("["),
  mapOpen: () => utf8.encode("{"),
  separator: { item: utf8.encode(","), pair: utf8.encode(":"), close: { array: utf8.encode("]"), map: utf8.encode("}") } },
  str: (text) => leaf(utf8.encode(JSON.stringify(text)), text),
  rawStr: (bytes) => leaf(concat([[0x22], bytes, [0x22]])),
  wrongTypes: [
    "null", "true", "false", "0", "-0", "-1", "1.5", "1e999", "-1e999", "1e-400", "9007199254740993",
    "123456789012345678901234567890", `"${"9".repeat(400)}"`, "\"\"", "\"x\"", "\"0000000000000000\"", `"${"a".repeat(300)}"`,
    "[]", "{}", "[null]", "{\"a\":1}", "{\"toString\":1}", "{\"valueOf\":{}}", "{\"__proto__\":{\"version\":1}}",
    "{\"constructor\":{\"prototype\":{}}}", "[[[[[[[[]]]]]]]]", "\"\\u0000\"", "\"\\ud800\"", "\"\\udfff\\ud800\"",
    "1 2", "[1,]", "{\"a\":1,}", "'a'", "NaN", "undefined", "\"\\x41\""
  ].map(j),
  huge: (length, pick, rest) => {
    // JSON says no lengths: what is large is what is there (within the frame bounds)
    const n = Math.min(length, 200_000)
    switch (pick % 4) {
      case 0: return leaf(concat([utf8.encode(`[${"0,".repeat(Math.max(0, Math.floor(n / 2) - 1))}0]`)]))
      case 1: return leaf(utf8.encode(JSON.stringify("x".repeat(n))))
      case 2: return leaf(utf8.encode(`${"9".repeat(Math.min(n, 100_000))}`))
      default: return leaf(concat([utf8.encode("{\"k\":"), rest, utf8.encode(`,"k":0`.repeat(Math.min(1 + Math.floor(n / 8), 20_000))), utf8.encode("}")]))
    }
  },
  nest: (pick) =>
    pick % 2 === 0 ? { open: utf8.encode("["), close: utf8.encode("]") } : { open: utf8.encode("{\"a\":"), close: utf8.encode("}") }
}

// ---------------------------------------------------------------------------
// Mutations

/** Names that objects inherit: as keys they find the prototype's member when looked up naively. */
export const PROTOTYPE_NAMES: ReadonlyArray<string> = [
  "__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "prototype", "isPrototypeOf", "toLocaleString", "__defineGetter__"
]

/** Bytes of ill-formed strings: lone surrogates (as CESU/WTF-8) and invalid UTF-8. */
const ILL_FORMED: ReadonlyArray<ReadonlyArray<number>> = [
  [0xed, 0xa0, 0x80], // lone high surrogate U+D800
  [0xed, 0xbf, 0xbf], // lone low surrogate U+DFFF
  [0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80], // a surrogate pair in CESU-8 (not UTF-8)
  [0xff], [0xfe, 0xff], [0xc0, 0x80], [0xc3, 0x28], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80]
]
/** Well-formed strings that are easy to get wrong. */
const ODD_STRINGS: ReadonlyArray<string> = ["", "\u0000", "\ufffd", "\ud83d\ude00", "a\u0301", "\u202e", " ", "-", "."]

const HUGE_LENGTHS: ReadonlyArray<number> = [0xffffffff, 33_554_431, 0x7fffffff, 0x80000000, 0x10000, 65_535, 1 << 20, 256]

/** One structural mutation; the numbers pick where and what (taken modulo what is there). */
export interface Mutation {
  readonly kind: "huge" | "nestedHuge" | "deep" | "wrongType" | "prototypeKey" | "prototypeValue" | "illFormed" | "drop" | "duplicate" | "swap"
  readonly at: number
  readonly a: number
  readonly b: number
}

/** A byte-level mutation applied to the written bytes. */
export interface ByteMutation {
  readonly kind: "none" | "truncateAtBoundary" | "truncate" | "flip" | "append"
  readonly a: number
  readonly b: number
}

const mutationKinds: ReadonlyArray<Mutation["kind"]> = [
  "huge", "nestedHuge", "deep", "wrongType", "wrongType", "prototypeKey", "prototypeValue", "illFormed", "drop", "duplicate", "swap"
]

const arbitraryMutation = (kinds: ReadonlyArray<Mutation["kind"]>): fc.Arbitrary<Mutation> => fc.record({
  kind: fc.constantFrom(...kinds),
  at: fc.nat({ max: 1 << 16 }),
  a: fc.nat({ max: 1 << 16 }),
  b: fc.nat({ max: 1 << 16 })
})

const arbitraryByteMutation: fc.Arbitrary<ByteMutation> = fc.record({
  kind: fc.constantFrom<ByteMutation["kind"]>("none", "none", "truncateAtBoundary", "truncate", "flip", "append"),
  a: fc.nat({ max: 1 << 16 }),
  b: fc.nat({ max: 1 << 16 })
})

const illFormedString = (format: Format, a: number, b: number, original?: string): Node => {
  const bad = ILL_FORMED[a % ILL_FORMED.length]!
  const text = utf8.encode(original ?? ODD_STRINGS[b % ODD_STRINGS.length]!)
  const cut = text.length === 0 ? 0 : b % (text.length + 1)
  if (format === JSON_ && b % 3 === 0) {
    // JSON escapes make lone surrogates out of ASCII
    const escapes = ["\\ud800", "\\udfff", "\\udc00\\ud800", "\\ud83d"]
    return leaf(utf8.encode(`"${(original ?? "").slice(0, cut)}${escapes[a % escapes.length]}"`))
  }
  return format.rawStr(concat([text.subarray(0, cut), bad, text.subarray(cut)]))
}

const applyMutation = (format: Format, root: Node, m: Mutation): { readonly node: Node; readonly said: string } => {
  const n = count(root)
  const at = m.at % n
  const target = nodeAt(root, at)
  const replace = (f: (node: Node) => Node) => mapAt(root, at, f)
  switch (m.kind) {
    case "huge": {
      const length = HUGE_LENGTHS[m.a % HUGE_LENGTHS.length]!
      const rest = write(format, target).subarray(0, m.b % 64)
      return { node: replace(() => format.huge(length, m.b, rest)), said: `node ${at}: a header claiming ${length} (kind ${m.b % 13})` }
    }
    case "nestedHuge": {
      const depth = 2 + (m.a % 24)
      const header = format === MsgPack ? Uint8Array.of(0xdd, 0x01, 0xff, 0xff, 0xff) : utf8.encode("[")
      return {
        node: replace((node) => ({ kind: "wrap", open: header, close: format === MsgPack ? new Uint8Array(0) : utf8.encode("]"), depth, inner: node })),
        said: `node ${at}: inside ${depth} containers each claiming 33 554 431 elements`
      }
    }
    case "deep": {
      const depths = [65, 101, 1_000, 5_000]
      const depth = depths[m.a % depths.length]! + (m.b % 7)
      const { close, open } = format.nest(m.b)
      return { node: replace((node) => ({ kind: "wrap", open, close, depth, inner: node })), said: `node ${at}: nested ${depth} deep` }
    }
    case "wrongType": {
      const pool = format.wrongTypes
      return { node: replace(() => pool[m.a % pool.length]!), said: `node ${at}: replaced by wrong type #${m.a % pool.length}` }
    }
    case "prototypeKey": {
      const name = PROTOTYPE_NAMES[m.a % PROTOTYPE_NAMES.length]!
      const key = format.str(name)
      const pool = format.wrongTypes
      return {
        node: replace((node) => {
          const value = m.b % 3 === 0 ? node : m.b % 3 === 1 ? pool[m.b % pool.length]! : format.str("x")
          if (node.kind === "map") {
            const entries = [...node.entries]
            // rename a key, or add one
            const i = m.b % (entries.length + 1)
            if (i < entries.length && m.b % 2 === 0) entries[i] = [key, entries[i]![1]]
            else entries.splice(i, 0, [key, entries[i]?.[1] ?? value])
            return { kind: "map", entries }
          }
          return m.b % 2 === 0 ? format.str(name) : { kind: "map", entries: [[key, value]] }
        }),
        said: `node ${at}: prototype name ${name} as a key or a string`
      }
    }
    case "prototypeValue": {
      const name = PROTOTYPE_NAMES[m.a % PROTOTYPE_NAMES.length]!
      const values = [format.wrongTypes[m.b % format.wrongTypes.length]!, { kind: "map", entries: [] } as Node, { kind: "array", items: [] } as Node]
      return {
        node: replace(() => ({ kind: "map", entries: [[format.str(name), values[m.b % values.length]!]] })),
        said: `node ${at}: replaced by {${name}: …}`
      }
    }
    case "illFormed":
      return {
        node: replace((node) => illFormedString(format, m.a, m.b, node.kind === "leaf" ? node.text : undefined)),
        said: `node ${at}: ill-formed string #${m.a % ILL_FORMED.length}`
      }
    case "drop":
      return {
        node: replace((node) => {
          if (node.kind === "array" && node.items.length > 0) {
            const i = m.a % node.items.length
            return { kind: "array", items: node.items.filter((_, k) => k !== i) }
          }
          if (node.kind === "map" && node.entries.length > 0) {
            const i = m.a % node.entries.length
            return { kind: "map", entries: node.entries.filter((_, k) => k !== i) }
          }
          return format.wrongTypes[0]!
        }),
        said: `node ${at}: an element dropped`
      }
    case "duplicate":
      return {
        node: replace((node) => {
          if (node.kind === "array" && node.items.length > 0) {
            const i = m.a % node.items.length
            const times = 1 + (m.b % 3)
            return { kind: "array", items: [...node.items.slice(0, i), ...new Array<Node>(times).fill(node.items[i]!), ...node.items.slice(i)] }
          }
          if (node.kind === "map" && node.entries.length > 0) {
            // the same key twice, the second with another entry's value
            const i = m.a % node.entries.length
            const other = node.entries[m.b % node.entries.length]!
            return { kind: "map", entries: [...node.entries, [node.entries[i]![0], other[1]]] }
          }
          return { kind: "array", items: [node, node] }
        }),
        said: `node ${at}: an element duplicated`
      }
    case "swap": {
      const other = nodeAt(root, m.a % n)
      return { node: replace(() => other), said: `node ${at}: replaced by node ${m.a % n}` }
    }
  }
}

const applyBytes = (bytes: Uint8Array, boundaries: ReadonlyArray<number>, m: ByteMutation): { readonly bytes: Uint8Array; readonly said?: string } => {
  switch (m.kind) {
    case "none":
      return { bytes }
    case "truncateAtBoundary": {
      const cut = boundaries[m.a % boundaries.length]!
      return { bytes: bytes.subarray(0, cut), said: `cut at boundary ${cut}` }
    }
    case "truncate": {
      const cut = bytes.length === 0 ? 0 : m.a % bytes.length
      return { bytes: bytes.subarray(0, cut), said: `cut at ${cut}` }
    }
    case "flip": {
      if (bytes.length === 0) return { bytes }
      const out = Uint8Array.from(bytes)
      const flips = 1 + (m.b % 4)
      const at: Array<number> = []
      for (let i = 0; i < flips; i++) {
        const p = (m.a * (i + 1) * 7919) % out.length
        const interesting = [0xc1, 0xdd, 0xdf, 0xdb, 0xc6, 0xff, 0x00, 0x80, 0x22, 0x5b, 0x7b]
        out[p] = i % 2 === 0 ? out[p]! ^ (1 << (m.b % 8)) : interesting[(m.b + i) % interesting.length]!
        at.push(p)
      }
      return { bytes: out, said: `bytes flipped at ${at.join(", ")}` }
    }
    case "append": {
      const tail = [[0x00], [0xc0], [0xdd, 0xff, 0xff, 0xff, 0xff], [0x20], [0x7d], [0xff, 0xfe]][m.a % 6]!
      return { bytes: concat([bytes, tail]), said: `trailing ${tail.length} bytes` }
    }
  }
}

/** One fuzz case: the bytes, and how they were made from a valid input (for the report of a failure). */
export class Case {
  constructor(readonly bytes: Uint8Array, readonly steps: ReadonlyArray<string>) {}
  toString(): string {
    const hex = Buffer.from(this.bytes.subarray(0, 96)).toString("hex")
    return `Case(${this.bytes.length} bytes: ${hex}${this.bytes.length > 96 ? "…" : ""}; ${this.steps.join("; ")})`
  }
  [fc.toStringMethod](): string {
    return this.toString()
  }
}

/** Options of a case generator. */
export interface CaseOptions {
  /** How often the valid input is kept as it is (a share of 1; default 0.05): the decoder must accept those. */
  readonly validShare?: number
  /** How many valid inputs to draw (default `DEFAULT_POOL_SIZE`). */
  readonly poolSize?: number
  /** The seed of the valid inputs' pool. */
  readonly seed?: number
  /** The structural mutations to use (default: all); `WEFT_FUZZ_MUTATIONS` (comma-separated) overrides. */
  readonly mutations?: ReadonlyArray<Mutation["kind"]>
}

const chosenKinds = (options: CaseOptions): ReadonlyArray<Mutation["kind"]> => {
  const configured = process.env.WEFT_FUZZ_MUTATIONS?.split(",").filter((k): k is Mutation["kind"] => mutationKinds.includes(k as Mutation["kind"]))
  return configured !== undefined && configured.length > 0 ? configured : options.mutations ?? mutationKinds
}

/** Cases made from `valid` inputs (well-formed in `format`) by structural and byte mutations. */
export const cases = (format: Format, valid: fc.Arbitrary<Uint8Array>, options: CaseOptions = {}): fc.Arbitrary<Case> => {
  const share = Math.round((options.validShare ?? 0.05) * 1000)
  // valid inputs are drawn once, into a pool, and parsed once: drawing and parsing one per case
  // would cost more than the mutation and the decoding together
  // (drawn at the first case, not here: a test's valid inputs may be made in its `beforeAll`)
  const seed = poolSeed(options)
  const size = options.poolSize ?? DEFAULT_POOL_SIZE
  let drawn: ReadonlyArray<{ readonly bytes: Uint8Array; readonly node: Node }> | undefined
  const poolOf = () => (drawn ??= fc.sample(valid, { numRuns: size, seed }).map((bytes) => ({ bytes, node: format.parse(bytes) })))
  return fc.tuple(
    fc.nat({ max: size - 1 }),
    fc.integer({ min: 0, max: 999 }),
    fc.array(arbitraryMutation(chosenKinds(options)), { minLength: 1, maxLength: 3 }),
    arbitraryByteMutation
  ).map(([index, dice, mutations, byteMutation]) => {
    const { bytes, node: parsed } = poolOf()[index]!
    const origin = `valid input ${index} of pool seed ${seed}`
    if (dice < share) return new Case(bytes, [origin, "unchanged"])
    let node = parsed
    const steps: Array<string> = [origin]
    for (const m of mutations) {
      const applied = applyMutation(format, node, m)
      node = applied.node
      steps.push(applied.said)
    }
    const boundaries: Array<number> = []
    const written = write(format, node, boundaries)
    const mutated = applyBytes(written, boundaries, byteMutation)
    if (mutated.said !== undefined) steps.push(mutated.said)
    return new Case(mutated.bytes, steps)
  })
}

/** Valid inputs drawn per decoder (each then mutated many ways). */
export const DEFAULT_POOL_SIZE = 1_000

/** The seed of the pool of valid inputs: the option, else `WEFT_FUZZ_SEED`, else random (and reported with each case). */
const poolSeed = (options: CaseOptions): number => {
  const configured = Number(process.env.WEFT_FUZZ_SEED)
  return options.seed ?? (Number.isInteger(configured) ? configured : Math.floor(Math.random() * 2 ** 31))
}

/** MessagePack cases from valid MessagePack inputs. */
export const msgpack = (valid: fc.Arbitrary<Uint8Array>, options?: CaseOptions) => cases(MsgPack, valid, options)

/** JSON cases from valid JSON texts (UTF-8). */
export const json = (valid: fc.Arbitrary<Uint8Array>, options?: CaseOptions) => cases(JSON_, valid, options)

// ---------------------------------------------------------------------------
// Streams of frames

/** A length-prefixed frame header (4 bytes, big-endian). */
const header = (length: number): Uint8Array => Uint8Array.from(be(length, 4))

/** A byte stream of frames, cut into chunks, as a peer could send it. */
export interface FrameStream {
  readonly chunks: ReadonlyArray<Uint8Array>
  readonly steps: ReadonlyArray<string>
  toString(): string
}

/**
 * Streams of length-prefixed frames: 1 to 4 frame cases in a row, with
 * length prefixes that sometimes lie (0xffffffff, just over `maxFrameBytes`,
 * shorter or longer than the frame), the stream sometimes cut short, and
 * cut into chunks at arbitrary places.
 */
export const frameStreams = (frames: fc.Arbitrary<Case>, maxFrameBytes: number): fc.Arbitrary<FrameStream> =>
  fc.tuple(
    fc.array(fc.tuple(frames, fc.nat({ max: 99 }), fc.nat()), { minLength: 1, maxLength: 4 }),
    fc.array(fc.nat(), { maxLength: 6 }),
    fc.nat({ max: 99 })
  ).map(([items, cuts, end]) => {
    const steps: Array<string> = []
    const parts = items.map(([frame, dice, n], i) => {
      steps.push(`frame ${i}: ${frame.toString()}`)
      let length = frame.bytes.length
      if (dice < 4) length = [0xffffffff, maxFrameBytes + 1, 0x80000000, maxFrameBytes][n % 4]!
      else if (dice < 8) length = Math.max(0, frame.bytes.length - 1 - (n % 8))
      else if (dice < 12) length = frame.bytes.length + 1 + (n % 8)
      if (length !== frame.bytes.length) steps.push(`frame ${i}: its prefix says ${length}`)
      return concat([header(length), frame.bytes])
    })
    let bytes = concat(parts)
    if (end < 8 && bytes.length > 0) {
      bytes = bytes.subarray(0, (end * 131) % bytes.length)
      steps.push(`stream cut at ${bytes.length}`)
    }
    const chunks = chunked(bytes, cuts)
    const text = () => `FrameStream(${bytes.length} bytes in ${chunks.length} chunks; ${steps.join("; ")})`
    return { chunks, steps, toString: text, [fc.toStringMethod]: text }
  })

/** `bytes` cut at the given offsets (each taken modulo the length): how a network may deliver them. */
export const chunked = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const offsets = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b)
  const chunks: Array<Uint8Array> = []
  let from = 0
  for (const at of [...offsets, bytes.length]) {
    if (at > from) chunks.push(bytes.subarray(from, at))
    from = at
  }
  return chunks
}

/** A stream whose remote sends `chunks` then ends its side; what is written to it is kept. */
export interface ScriptedDuplex {
  readonly duplex: Duplex
  readonly written: () => Uint8Array
  readonly ended: () => boolean
  readonly reset: () => boolean
}

/** A `Duplex` from a hostile peer that sends `chunks` (then ends), for handlers under test. */
export const scriptedDuplex = (chunks: ReadonlyArray<Uint8Array>, protocol = "/weft/fuzz/1.0.0"): ScriptedDuplex => {
  const written: Array<Uint8Array> = []
  let ended = false
  let reset = false
  const duplex: Duplex = {
    protocol,
    remote: PeerId.make("fuzzer"),
    source: Stream.fromIterable(chunks) as Stream.Stream<Uint8Array, TransportError>,
    write: (chunk) => Effect.sync(() => void written.push(chunk.slice())),
    end: Effect.sync(() => void (ended = true)),
    reset: Effect.sync(() => void (reset = true))
  }
  return { duplex, written: () => concat(written), ended: () => ended, reset: () => reset }
}

// ---------------------------------------------------------------------------
// Running

/** Cases per decoder: `WEFT_FUZZ_RUNS`, else 10 000. */
export const runs = (): number => {
  const configured = Number(process.env.WEFT_FUZZ_RUNS)
  return Number.isInteger(configured) && configured > 0 ? configured : 10_000
}

/**
 * A test timeout for one fuzz property of `runs()` cases: generous (20 ms a
 * case and a minute more), for a loaded machine where a case waits for a
 * core far longer than it runs.
 */
export const testTimeout = (cases: number = runs()): number => 60_000 + 20 * cases

/**
 * Most CPU time (user and system, of the whole process) one case may take.
 * CPU time, not wall time: on a loaded machine a case may wait for a core
 * far longer than it runs. Valid inputs here decode in well under a
 * millisecond; a header that is trusted costs seconds (33 554 431
 * elements: about 2 s). One second leaves room for a GC pause and still
 * catches that.
 */
export const DEFAULT_TIME_BOUND_MILLIS = 1_000

/** Wall time after which an effect's case counts as hung (generous: the machine may be loaded). */
export const HANG_MILLIS = 30_000

/**
 * Most heap (V8's used heap plus external memory) one case may add. Inputs
 * are at most a few hundred kilobytes, so an honest decoder adds a few
 * megabytes at most; a trusted 33 554 431-element header adds about 250 MB.
 * 64 MB leaves room for garbage not yet collected and still catches that.
 */
export const DEFAULT_HEAP_BOUND_BYTES = 64 * 1024 * 1024

/** How long fast-check may look for a smaller failing case once one failed. */
const SHRINK_BUDGET_MILLIS = 20_000

const timedOut = Symbol("timedOut")

/**
 * Runs an effect synchronously as far as it goes (most decoders over an
 * in-memory stream never wait), and only what waits on the event loop, with
 * a deadline: a timer and a promise per case would cost more than many a case.
 */
const runExit = <A, E>(effect: Effect.Effect<A, E>): Promise<Exit.Exit<A, E | typeof timedOut>> => {
  const exit = Effect.runSyncExit(effect)
  if (Exit.isSuccess(exit)) return Promise.resolve(exit)
  const defect = Cause.dieOption(exit.cause)
  if (defect._tag === "None" || !Runtime.isAsyncFiberException(defect.value)) return Promise.resolve(exit)
  const fiber = defect.value.fiber as Fiber.RuntimeFiber<A, E>
  return Effect.runPromise(Fiber.await(fiber).pipe(
    Effect.timeoutTo({ duration: HANG_MILLIS, onTimeout: () => Exit.fail(timedOut), onSuccess: (e): Exit.Exit<A, E | typeof timedOut> => e })
  ))
}

/** What a decoder did with one input. */
export type Outcome<A, E> = Either.Either<A, E> | Effect.Effect<A, E>

/** Options of `assertDecoder`. */
export interface AssertOptions<I, A, E> {
  /** The inputs (cases, or streams of frames). */
  readonly cases: fc.Arbitrary<I>
  /** The decoder under test: a value or a typed error, as an `Either` or an `Effect`. */
  readonly decode: (input: I) => Outcome<A, E>
  /** Whether a failure is one of the decoder's typed errors (default: an object with a string `_tag`). */
  readonly isTypedError?: (error: unknown) => boolean
  /**
   * Whether a decoded value may hold an ill-formed string (a lone
   * surrogate): by default it may not, as such a string has no UTF-8 form
   * and reads back as another one elsewhere. Only plain objects, arrays and
   * Maps are searched.
   */
  readonly allowIllFormed?: boolean
  /** A further check of a decoded value (say, that it re-encodes to the input). */
  readonly checkValue?: (value: A, input: I) => void
  readonly runs?: number
  /**
   * Defects already known and recorded elsewhere (a skipped test naming them):
   * a throw or a defect whose message matches one of these passes, so the
   * rest of the property keeps running. Never a substitute for a fix.
   */
  readonly knownDefects?: ReadonlyArray<RegExp>
  /** How long to look for a smaller failing case once one failed (default 20 s). */
  readonly shrinkBudgetMillis?: number
  readonly timeBoundMillis?: number
  readonly heapBoundBytes?: number
  readonly seed?: number
}

const isTagged = (u: unknown): boolean =>
  typeof u === "object" && u !== null && typeof (u as { readonly _tag?: unknown })._tag === "string"

// with the u flag a pair is one code point: only a lone surrogate matches
const LONE_SURROGATE = /[\uD800-\uDFFF]/u

/** The path of an ill-formed string in `value` (plain objects, arrays, Maps, Sets), or undefined. */
export const findIllFormed = (value: unknown): string | undefined => {
  const seen = new Set<unknown>()
  const go = (u: unknown, path: string): string | undefined => {
    if (typeof u === "string") return LONE_SURROGATE.test(u) ? path : undefined
    if (typeof u !== "object" || u === null || seen.has(u) || seen.size > 100_000) return undefined
    seen.add(u)
    if (Array.isArray(u)) {
      for (let i = 0; i < u.length; i++) {
        const found = go(u[i], `${path}[${i}]`)
        if (found !== undefined) return found
      }
      return undefined
    }
    if (u instanceof Map || u instanceof Set) {
      for (const [k, v] of u instanceof Map ? u : [...u].entries()) {
        const found = go(k, `${path}.key`) ?? go(v, `${path}.value`)
        if (found !== undefined) return found
      }
      return undefined
    }
    const proto = Object.getPrototypeOf(u)
    if (proto !== Object.prototype && proto !== null) return undefined
    for (const key of Object.keys(u)) {
      const found = go(key, `${path} key`) ?? go((u as Record<string, unknown>)[key], `${path}.${key}`)
      if (found !== undefined) return found
    }
    return undefined
  }
  return go(value, "value")
}

const heapNow = (): number => {
  const stats = getHeapStatistics()
  return stats.used_heap_size + stats.external_memory
}

const describe = (u: unknown): string => {
  try {
    return u instanceof Error ? `${u.name}: ${u.message}`.slice(0, 500) : String(u).slice(0, 500)
  } catch {
    return Object.prototype.toString.call(u)
  }
}

/**
 * Runs the decoder on every case: each must end in a value or a typed error
 * (never a throw, a defect or an untyped failure), within the time bound and
 * without adding more than the heap bound. Fails with the smallest case
 * fast-check finds.
 */
export const assertDecoder = async <I, A, E>(options: AssertOptions<I, A, E>): Promise<void> => {
  const isTypedError = options.isTypedError ?? isTagged
  const timeBound = options.timeBoundMillis ?? DEFAULT_TIME_BOUND_MILLIS
  const heapBound = options.heapBoundBytes ?? DEFAULT_HEAP_BOUND_BYTES
  // a failing case may cost seconds (that is what it fails for): shrinking stops after
  // SHRINK_BUDGET_MILLIS, and the smallest failing case found by then is reported
  let firstFailure: number | undefined
  // a decoder that answers synchronously never leaves the microtask queue: the event loop gets a turn
  // every 50 ms, or vitest's worker misses its own messages on a long property ("Timeout calling onTaskUpdate")
  let lastTurn = performance.now()
  const property = fc.asyncProperty(options.cases, async (input) => {
    if (performance.now() - lastTurn > 50) {
      await new Promise<void>((resolve) => setImmediate(resolve))
      lastTurn = performance.now()
    }
    if (firstFailure !== undefined && performance.now() - firstFailure > (options.shrinkBudgetMillis ?? SHRINK_BUDGET_MILLIS)) return
    try {
      await runCase(input)
    } catch (error) {
      firstFailure ??= performance.now()
      throw error
    }
  })
  const runCase = async (input: I) => {
    const heapBefore = heapNow()
    const started = process.cpuUsage()
    let outcome: Outcome<A, E>
    const known = (text: string) => options.knownDefects?.some((pattern) => pattern.test(text)) === true
    try {
      outcome = options.decode(input)
    } catch (cause) {
      if (known(describe(cause))) return
      throw new Error(`the decoder threw: ${describe(cause)}`)
    }
    let result: Either.Either<A, E>
    if (Either.isEither(outcome)) {
      result = outcome
    } else {
      const exit = await runExit(outcome as Effect.Effect<A, E>)
      if (Exit.isFailure(exit)) {
        const failure = Cause.failureOption(exit.cause)
        if (failure._tag === "Some" && failure.value === timedOut) {
          throw new Error(`the decoder did not finish within ${HANG_MILLIS} ms`)
        }
        if (failure._tag === "None" || Cause.isDie(exit.cause)) {
          if (known(Cause.pretty(exit.cause))) return
          throw new Error(`the decoder died: ${Cause.pretty(exit.cause).slice(0, 800)}`)
        }
        result = Either.left(failure.value as E)
      } else {
        result = Either.right(exit.value)
      }
    }
    const used = process.cpuUsage(started)
    const elapsed = (used.user + used.system) / 1000
    const grown = heapNow() - heapBefore
    if (elapsed > timeBound) throw new Error(`the decoder took ${Math.round(elapsed)} ms of CPU (bound ${timeBound} ms)`)
    if (grown > heapBound) throw new Error(`the heap grew by ${Math.round(grown / 1e6)} MB during the case (bound ${Math.round(heapBound / 1e6)} MB)`)
    if (Either.isLeft(result)) {
      if (!isTypedError(result.left)) throw new Error(`the decoder failed with an untyped error: ${describe(result.left)}`)
    } else {
      const illFormed = options.allowIllFormed === true ? undefined : findIllFormed(result.right)
      if (illFormed !== undefined) throw new Error(`the decoder accepted an ill-formed string (a lone surrogate) at ${illFormed}`)
      options.checkValue?.(result.right, input)
    }
  }
  await fc.assert(property, {
    numRuns: options.runs ?? runs(),
    ...(options.seed === undefined ? {} : { seed: options.seed })
  })
}
