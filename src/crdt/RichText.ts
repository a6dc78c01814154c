/**
 * Rich-text fields: a string backed by an Automerge document, so concurrent
 * edits on different peers merge character by character instead of one
 * overwriting the other.
 *
 * Every document starts from the same deterministic base change (fixed
 * actor, fixed time) that creates its `text` object; all peers' splices then
 * land in that one object, even when two peers create the same record
 * concurrently. `Edit` operations carry the change bytes of local edits.
 *
 * Automerge queues a change whose dependencies have not arrived and applies
 * it when they do; `save` keeps queued changes, so merging is independent of
 * arrival order.
 *
 * @since 0.1.0
 */
import * as Automerge from "@automerge/automerge"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { toString as bytesToString, fromString as bytesFromString } from "uint8arrays"
import type { NodeId } from "./Timestamp.js"

/** The shape of every rich-text document. */
export interface Document {
  text: string
}

/** An immutable Automerge rich-text document. */
export type Doc = Automerge.Doc<Document>

/** Automerge refused bytes (a malformed change or document). */
export class RichTextError extends Schema.TaggedError<RichTextError>("weft/RichTextError")("RichTextError", {
  reason: Schema.Literal("MalformedChange", "MalformedDocument", "OutOfRange"),
  detail: Schema.String
}) {
  override get message(): string {
    return `rich text: ${this.reason}: ${this.detail}`
  }
}

const BASE_ACTOR = "00"

const base: Doc = Automerge.change(Automerge.init<Document>({ actor: BASE_ACTOR }), { time: 0 }, (doc) => {
  doc.text = ""
})

/** The base change every document starts from (identical on every peer). */
export const baseChange: Uint8Array = Automerge.getAllChanges(base)[0]!

/** Automerge actor id of a node: the hex of its id's bytes. */
export const actorOf = (node: NodeId): string => bytesToString(bytesFromString(node, "utf8"), "base16")

/** A new document (the base) edited as `node`. */
export const make = (node: NodeId): Doc => Automerge.clone(base, { actor: actorOf(node) })

/** A copy of a document, for code that keeps earlier values (edits change a document in place). */
export const copy = (doc: Doc): Doc => Automerge.clone(doc, { actor: Automerge.getActorId(doc) })

/** Current text of a document. */
export const text = (doc: Doc): string => doc.text

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** The id of the base's `text` object: the one object every change may touch. */
const TEXT_OBJECT = Automerge.getObjectId(base, "text")!
const [TEXT_COUNTER, TEXT_ACTOR] = [Number(TEXT_OBJECT.split("@")[0]), TEXT_OBJECT.split("@")[1]!]

/** Change chunks start with these bytes, then a 4-byte checksum, then the chunk type. */
const MAGIC = [0x85, 0x6f, 0x4a, 0x83]
const UNCOMPRESSED_CHANGE = 1

/** What a change expands to, read from its bytes without applying or decoding it. */
export interface Inspection {
  /** Operations (and predecessor references) Automerge would create from it. */
  readonly ops: number
}

/**
 * Reads an Automerge change chunk's header and op columns (the binary format's
 * change chunk: deps, actor, seq, start op, time, message, other actors, column
 * metadata, columns) and counts its rows by summing run lengths, so a change
 * of a hundred bytes whose run-length encoding stands for a million inserts
 * is measured in microseconds. `Automerge.decodeChange` would build every
 * operation as an object first (about 9 s for a million).
 *
 * Refused: anything but an uncompressed change chunk (a compressed one inflates
 * without a bound inside Automerge, and local edits never produce one), a
 * deflated column (same), and a change with an operation on any object but
 * the base's `text` (one that removed or replaced `text` would break every
 * later edit of the field).
 */
export const inspect = (change: Uint8Array): Either.Either<Inspection, string> => {
  if (change.length < 9 || MAGIC.some((byte, i) => change[i] !== byte)) return Either.left("not an Automerge change")
  if (change[8] !== UNCOMPRESSED_CHANGE) return Either.left(`an Automerge chunk of type ${change[8]}, not an uncompressed change`)
  const result = readChange(new Reader(change, 9))
  return typeof result === "string" ? Either.left(result) : Either.right(result)
}

class Truncated {}
const truncated = new Truncated()

/** LEB128 reader over a byte range; throws `truncated` past its end (caught in `readChange`). */
class Reader {
  constructor(readonly bytes: Uint8Array, public at: number, public end: number = bytes.length) {}
  get done() {
    return this.at >= this.end
  }
  byte(): number {
    if (this.at >= this.end) throw truncated
    return this.bytes[this.at++]!
  }
  /** An unsigned LEB128 as a float (exact below 2^53, which is all a count needs). */
  uleb(): number {
    let value = 0
    let scale = 1
    for (let i = 0; i < 10; i++) {
      const b = this.byte()
      value += (b & 0x7f) * scale
      if ((b & 0x80) === 0) return value
      scale *= 128
    }
    throw truncated
  }
  sleb(): number {
    let value = 0
    let scale = 1
    for (let i = 0; i < 10; i++) {
      const b = this.byte()
      value += (b & 0x7f) * scale
      scale *= 128
      if ((b & 0x80) === 0) return (b & 0x40) !== 0 ? value - scale : value
    }
    throw truncated
  }
  skip(n: number) {
    if (n > this.end - this.at) throw truncated
    this.at += n
  }
}

// column types of the binary format (the low 3 bits of a column spec; bit 3 marks a deflated column)
const GROUP = 0, ACTOR = 1, ULEB = 2, DELTA = 3, BOOLEAN = 4, STRING = 5, VALUE_META = 6, VALUE_RAW = 7
const DEFLATE = 8
// the `obj` column pair: which object each operation edits
const OBJ_ACTOR = (0 << 4) | ACTOR
const OBJ_COUNTER = (0 << 4) | ULEB

/** Rows of one column, and (for the `obj` columns) the distinct non-null values seen. */
const readColumn = (r: Reader, type: number, values?: Set<number>): number => {
  if (type === BOOLEAN) {
    let rows = 0
    while (!r.done) rows += r.uleb()
    return rows
  }
  const value = type === DELTA ? () => r.sleb() : type === STRING ? () => r.skip(r.uleb()) : () => r.uleb()
  let rows = 0
  while (!r.done) {
    const n = r.sleb()
    if (n > 0) {
      const v = value()
      if (values !== undefined) values.add(v as unknown as number)
      rows += n
    } else if (n < 0) {
      for (let i = 0; i < -n; i++) {
        const v = value()
        if (values !== undefined) values.add(v as unknown as number)
      }
      rows -= n
    } else {
      const nulls = r.uleb()
      if (nulls > 0) values?.add(-1)
      rows += nulls
    }
  }
  return rows
}

const readChange = (r: Reader): Inspection | string => {
  try {
    const length = r.uleb()
    if (length !== r.end - r.at) return "a change chunk whose length is not its size"
    r.skip(r.uleb() * 32) // dependencies
    const actorLength = r.uleb()
    const actors = [r.bytes.subarray(r.at, r.at + actorLength)]
    r.skip(actorLength)
    r.uleb() // seq
    r.uleb() // start op
    r.sleb() // time
    r.skip(r.uleb()) // message
    const others = r.uleb()
    if (others > r.end - r.at) return "more actors than bytes"
    for (let i = 0; i < others; i++) {
      const n = r.uleb()
      actors.push(r.bytes.subarray(r.at, r.at + n))
      r.skip(n)
    }
    const columns: Array<readonly [number, number]> = []
    const count = r.uleb()
    if (count > r.end - r.at) return "more columns than bytes"
    for (let i = 0; i < count; i++) columns.push([r.uleb(), r.uleb()])
    let ops = 0
    let objActor: Set<number> | undefined
    let objCounter: Set<number> | undefined
    let objRows = [0, 0]
    for (const [spec, size] of columns) {
      if (size > r.end - r.at) return "a column past the end of the change"
      const column = new Reader(r.bytes, r.at, r.at + size)
      r.skip(size)
      if ((spec & DEFLATE) !== 0) return "a deflated column, which local edits never produce"
      const type = spec & 7
      if (type === VALUE_RAW || size === 0) continue
      const values = spec === OBJ_ACTOR ? (objActor = new Set()) : spec === OBJ_COUNTER ? (objCounter = new Set()) : undefined
      const rows = readColumn(column, type, values)
      if (spec === OBJ_ACTOR) objRows[0] = rows
      if (spec === OBJ_COUNTER) objRows[1] = rows
      // every other column's rows are per operation, or per predecessor of one (the `pred` group): both are work
      if (type === GROUP || type === ACTOR || type === ULEB || type === DELTA || type === BOOLEAN || type === STRING || type === VALUE_META || type > VALUE_RAW) {
        ops = Math.max(ops, rows)
      }
    }
    if (ops === 0) return { ops }
    // every operation must name the text object: no null (the root), no other object
    const actor = [...(objActor ?? [])]
    const counter = [...(objCounter ?? [])]
    const textActor = actor.length === 1 && actor[0]! >= 0 && actor[0]! < actors.length && hex(actors[actor[0]!]!) === TEXT_ACTOR
    if (objRows[0] !== ops || objRows[1] !== ops || !textActor || counter.length !== 1 || counter[0] !== TEXT_COUNTER) {
      return "a change that edits an object other than the text"
    }
    return { ops }
  } catch (e) {
    if (e === truncated) return "a truncated change"
    throw e
  }
}

const hex = (bytes: Uint8Array) => bytesToString(bytes, "base16")

/** Loads a saved document to be edited as `node`. */
export const load = (bytes: Uint8Array, node: NodeId): Either.Either<Doc, RichTextError> =>
  Either.flatMap(
    Either.try({
      try: () => Automerge.load<Document>(bytes, { actor: actorOf(node) }),
      catch: (cause) => new RichTextError({ reason: "MalformedDocument", detail: describe(cause) })
    }),
    (doc) => {
      if (typeof doc.text === "string") return Either.right(doc)
      Automerge.free(doc)
      return Either.left(new RichTextError({ reason: "MalformedDocument", detail: "a document without its text" }))
    }
  )

/** Saves a document (queued changes included). */
export const save = (doc: Doc): Uint8Array => Automerge.save(doc)

/**
 * Frees a document's memory (Automerge's WebAssembly heap, which never shrinks:
 * what matters is how much is live at once). The document, and every earlier
 * value of it, may not be used afterwards.
 */
export const free = (doc: Doc): void => Automerge.free(doc)

/**
 * Merges change bytes into a document; idempotent, any order. The document is
 * changed in place (Automerge outdates the value given; use the one returned):
 * the caller owns it, and drops it if the merge fails.
 */
export const applyChanges = (doc: Doc, changes: ReadonlyArray<Uint8Array>): Either.Either<Doc, RichTextError> =>
  Either.try({
    try: () => {
      for (const change of changes) {
        const inspected = inspect(change)
        if (Either.isLeft(inspected)) throw new Error(inspected.left)
      }
      return Automerge.applyChanges(doc, changes.slice())[0]
    },
    catch: (cause) => new RichTextError({ reason: "MalformedChange", detail: describe(cause) })
  })

/** A splice: delete `deleteCount` characters at `index`, then insert `insert`. */
export interface Splice {
  readonly index: number
  readonly deleteCount: number
  readonly insert: string
}

/** The smallest splice that turns `before` into `after` (common prefix and suffix kept). */
export const diff = (before: string, after: string): Splice => {
  let start = 0
  const limit = Math.min(before.length, after.length)
  while (start < limit && before.charCodeAt(start) === after.charCodeAt(start)) start++
  // never split a surrogate pair: a shared high surrogate goes with the rest of its character
  if (start > 0 && isHighSurrogate(before.charCodeAt(start - 1))) start--
  let end = 0
  while (
    end < limit - start &&
    before.charCodeAt(before.length - 1 - end) === after.charCodeAt(after.length - 1 - end)
  ) end++
  // nor from the other side: a kept suffix may not start with a low surrogate
  if (end > 0 && isLowSurrogate(before.charCodeAt(before.length - end))) end--
  return { index: start, deleteCount: before.length - start - end, insert: after.slice(start, after.length - end) }
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff

/** Whether `index` falls between the two halves of a surrogate pair in `text`. */
const splitsPair = (text: string, index: number) =>
  index > 0 && index < text.length && isHighSurrogate(text.charCodeAt(index - 1)) && isLowSurrogate(text.charCodeAt(index))

/**
 * Applies a splice as a local edit; returns the document (changed in place:
 * Automerge outdates the value given) and the change bytes (none for a no-op).
 * A splice of more than `maxOpsPerChange` characters is made as several
 * changes of at most that many operations each (deletes first, then inserts
 * in slices that never split a surrogate pair), so that no change a peer
 * receives from us is one it refuses, or one that blocks it for long.
 */
export const splice = (
  doc: Doc,
  edit: Splice,
  time: number,
  maxOpsPerChange: number = Number.MAX_SAFE_INTEGER
): Either.Either<{ readonly doc: Doc; readonly changes: ReadonlyArray<Uint8Array> }, RichTextError> => {
  const length = doc.text.length
  if (
    !Number.isInteger(edit.index) || !Number.isInteger(edit.deleteCount) ||
    edit.index < 0 || edit.deleteCount < 0 || edit.index + edit.deleteCount > length ||
    splitsPair(doc.text, edit.index) || splitsPair(doc.text, edit.index + edit.deleteCount)
  ) {
    return Either.left(
      new RichTextError({
        reason: "OutOfRange",
        detail: `splice at ${edit.index} deleting ${edit.deleteCount} in text of length ${length} (an end may not fall inside a surrogate pair)`
      })
    )
  }
  const step = Math.max(2, Math.floor(maxOpsPerChange))
  const seconds = Math.floor(time / 1000)
  return Either.try({
    try: () => {
      const changes: Array<Uint8Array> = []
      let next = doc
      const change = (apply: (d: Document) => void) => {
        next = Automerge.change(next, { time: seconds }, apply)
        changes.push(Automerge.getLastLocalChange(next)!)
      }
      // deletes run from the end of the range, so each slice's index stays valid; a slice never
      // ends inside a surrogate pair (the range's own ends never do)
      let remaining = edit.deleteCount
      while (remaining > 0) {
        let n = Math.min(step, remaining)
        if (n < remaining && splitsPair(next.text, edit.index + remaining - n)) n--
        const at = edit.index + remaining - n
        change((d) => Automerge.splice(d, ["text"], at, n))
        remaining -= n
      }
      let inserted = 0
      while (inserted < edit.insert.length) {
        let end = Math.min(edit.insert.length, inserted + step)
        if (end < edit.insert.length && isHighSurrogate(edit.insert.charCodeAt(end - 1)) && isLowSurrogate(edit.insert.charCodeAt(end))) end--
        const slice = edit.insert.slice(inserted, end)
        const at = edit.index + inserted
        change((d) => Automerge.splice(d, ["text"], at, 0, slice))
        inserted = end
      }
      return { doc: next, changes }
    },
    catch: (cause) => new RichTextError({ reason: "MalformedDocument", detail: describe(cause) })
  })
}

/** The documents' heads, for comparing two documents' histories. */
export const heads = (doc: Doc): ReadonlyArray<string> => Automerge.getHeads(doc).slice().sort()
