/** Models the property suites run on: every column kind, optional fields, rich text. */
import * as Schema from "effect/Schema"
import * as Model from "../src/engine/Model.js"

export const notes = Model.make("notes", Schema.Struct({
  title: Schema.String,
  done: Schema.Boolean,
  rank: Schema.optional(Schema.Int),
  tags: Schema.Array(Schema.String),
  body: Model.RichText
}))

export const tasks = Model.make("tasks", Schema.Struct({
  label: Schema.Literal("todo", "doing", "done"),
  estimate: Schema.NullOr(Schema.Number)
}))

export const models = [notes, tasks]
