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

/** Current text of a document. */
export const text = (doc: Doc): string => doc.text

// Automerge outdates a document once it is changed; clones keep ours immutable values.
const writable = (doc: Doc): Doc => Automerge.clone(doc, { actor: Automerge.getActorId(doc) })

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** The id of the base's `text` object: the one object every change may touch. */
const TEXT_OBJECT = Automerge.getObjectId(base, "text")!

/** Change chunks start with these bytes, then a 4-byte checksum, then the chunk type. */
const MAGIC = [0x85, 0x6f, 0x4a, 0x83]
const UNCOMPRESSED_CHANGE = 1

/**
 * Why `change` may not be applied, if it may not: it must be an uncompressed
 * change chunk (a compressed one inflates without a bound inside Automerge,
 * and local edits never produce one) whose operations all edit the base's
 * `text` object (one that removed or replaced `text` would break every later
 * edit of the field).
 */
const refusal = (change: Uint8Array): string | undefined => {
  if (change.length < 9 || MAGIC.some((byte, i) => change[i] !== byte)) return "not an Automerge change"
  if (change[8] !== UNCOMPRESSED_CHANGE) return `an Automerge chunk of type ${change[8]}, not an uncompressed change`
  const decoded = Automerge.decodeChange(change)
  const stray = decoded.ops.find((op) => op.obj !== TEXT_OBJECT)
  return stray === undefined ? undefined : `a change that edits ${stray.obj === "_root" ? "the document root" : `object ${stray.obj}`}, not the text`
}

/** Loads a saved document to be edited as `node`. */
export const load = (bytes: Uint8Array, node: NodeId): Either.Either<Doc, RichTextError> =>
  Either.flatMap(
    Either.try({
      try: () => Automerge.load<Document>(bytes, { actor: actorOf(node) }),
      catch: (cause) => new RichTextError({ reason: "MalformedDocument", detail: describe(cause) })
    }),
    (doc) =>
      typeof doc.text === "string"
        ? Either.right(doc)
        : Either.left(new RichTextError({ reason: "MalformedDocument", detail: "a document without its text" }))
  )

/** Saves a document (queued changes included). */
export const save = (doc: Doc): Uint8Array => Automerge.save(doc)

/** Merges change bytes into a document; idempotent, any order. */
export const applyChanges = (doc: Doc, changes: ReadonlyArray<Uint8Array>): Either.Either<Doc, RichTextError> =>
  Either.try({
    try: () => {
      for (const change of changes) {
        const refused = refusal(change)
        if (refused !== undefined) throw new Error(refused)
      }
      return Automerge.applyChanges(writable(doc), changes.slice())[0]
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

/** Applies a splice as a local edit; returns the new document and its change bytes (none for a no-op). */
export const splice = (
  doc: Doc,
  edit: Splice,
  time: number
): Either.Either<{ readonly doc: Doc; readonly change: Uint8Array | undefined }, RichTextError> => {
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
  if (edit.deleteCount === 0 && edit.insert.length === 0) return Either.right({ doc, change: undefined })
  return Either.try({
    try: () => {
      const next = Automerge.change(writable(doc), { time: Math.floor(time / 1000) }, (d) => {
        Automerge.splice(d, ["text"], edit.index, edit.deleteCount, edit.insert)
      })
      return { doc: next, change: Automerge.getLastLocalChange(next) }
    },
    catch: (cause) => new RichTextError({ reason: "MalformedDocument", detail: describe(cause) })
  })
}

/** The documents' heads, for comparing two documents' histories. */
export const heads = (doc: Doc): ReadonlyArray<string> => Automerge.getHeads(doc).slice().sort()
