/**
 * The CLI's demo models: notes, enough to watch changes sync between nodes.
 * A note has a title, a rich-text body (concurrent edits merge) and a done
 * flag.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import * as Model from "../engine/Model.js"

/** A note. */
export const notes = Model.make("notes", Schema.Struct({
  title: Schema.String.pipe(Schema.maxLength(1024)),
  body: Model.RichText,
  done: Schema.Boolean
}))

/** Every model the CLI's engines declare. */
export const models = [notes] as const

/** A note as the control endpoint and the CLI show it. */
export const Note = Schema.Struct({
  library: Schema.String,
  id: Schema.String,
  title: Schema.String,
  body: Schema.String,
  done: Schema.Boolean
})
export type Note = typeof Note.Type

/** A new note id: 12 random hex digits, short enough to type. */
export const newId = (): string => randomBytes(6).toString("hex")
