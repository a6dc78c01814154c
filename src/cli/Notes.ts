/**
 * The CLI's demo app: notes, enough to watch changes sync between nodes. A
 * note has a title, a rich-text body (concurrent edits merge) and a done
 * flag. Its procedures on the node's control endpoint are `NotesControl`.
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

/** A new note id: 12 random hex digits, short enough to type. */
export const newId = (): string => randomBytes(6).toString("hex")
