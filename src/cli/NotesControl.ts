/**
 * The procedures the CLI adds to its node's control endpoint for its notes
 * (schemas only: every command loads this, none loads the engine for it;
 * `Serve` serves them, the model is `Notes`).
 *
 *   NotesAdd     library?, title, body, done          → Note
 *   NotesGet     library?, id                         → Note
 *   NotesList    library?, after?, limit?             → NotesPage: notes, next?
 *   NotesSet     library?, id, title?, body?, done?   → Note
 *   NotesRemove  library?, id                         → { id }
 *
 * Each fails with `NodeError` `NoLibrary`, `NoteError` `NotFound`, or a
 * storage or validation error. `library` defaults to the node's default library.
 * `NotesList` answers one page, ordered by title then id: at most `limit`
 * notes (default `NOTES_PAGE_LIMIT`) and at most `NOTES_PAGE_BYTES` of
 * them; `next`, when present, is the cursor to send as `after` for the
 * following page. Pages hold no note twice, but a note renamed between two
 * pages can come again at its new place (`Control.listNotes` keeps the last).
 *
 * @since 0.1.0
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { RecordId } from "../crdt/Names.js"
import { ClockDriftError } from "../crdt/Hlc.js"
import { MutationError, StorageError, ValidationError } from "../engine/EngineError.js"
import { LibraryId } from "../library/LibraryId.js"
import { NodeError } from "../node/Control.js"

/** A note as the control endpoint and the CLI show it. */
export const Note = Schema.Struct({
  library: Schema.String,
  id: Schema.String,
  title: Schema.String,
  body: Schema.String,
  done: Schema.Boolean
})
export type Note = typeof Note.Type

/** A note that is not there. */
export class NoteError extends Schema.TaggedError<NoteError>("weft/NoteError")("NoteError", {
  reason: Schema.Literal("NotFound"),
  detail: Schema.String
}) {
  override get message(): string {
    return `note ${this.reason}: ${this.detail}`
  }
}

const Text = (max: number) => Schema.String.pipe(Schema.maxLength(max))
// any record id: a note synced from another peer need not have an id this node would make
const NoteId = RecordId

/** Where a page of notes starts: after the note with this title and id. */
export const NoteCursor = Schema.Struct({ title: Text(1024), id: NoteId })
export type NoteCursor = typeof NoteCursor.Type

/** Notes per page unless the request says fewer or more. */
export const NOTES_PAGE_LIMIT = 100
/** Most bytes of the notes of one page, as JSON: half a frame, so a page with its envelope always fits. */
export const NOTES_PAGE_BYTES = 512 * 1024

/** One page of notes; `next` is absent on the last page. */
export const NotesPage = Schema.Struct({ notes: Schema.Array(Note), next: Schema.optional(NoteCursor) })
export type NotesPage = typeof NotesPage.Type

/**
 * Every note, following pages from `page(undefined)` until the last; a note
 * changed between two pages may come again at its new place and is listed
 * once, as last seen. A page that promises more but holds none would repeat
 * forever: it fails with `empty()`.
 */
export const allNotes = <E, E2>(
  page: (after: NoteCursor | undefined) => Effect.Effect<NotesPage, E>,
  empty: () => E2
): Effect.Effect<ReadonlyArray<Note>, E | E2> =>
  Effect.gen(function*() {
    const notes = new Map<string, Note>()
    let after: NoteCursor | undefined = undefined
    do {
      const next: NotesPage = yield* page(after)
      if (next.next !== undefined && next.notes.length === 0) return yield* Effect.fail(empty())
      for (const note of next.notes) {
        notes.delete(note.id)
        notes.set(note.id, note)
      }
      after = next.next
    } while (after !== undefined)
    return [...notes.values()]
  })

const NotesFailure = Schema.Union(NodeError, NoteError, StorageError, ValidationError, MutationError, ClockDriftError)
const library = Schema.optional(LibraryId)

/** The notes procedures the CLI adds to its node's control endpoint. */
export class Control extends RpcGroup.make(
  Rpc.make("NotesAdd", { payload: { library, title: Text(1024), body: Text(64 * 1024), done: Schema.Boolean }, success: Note, error: NotesFailure }),
  Rpc.make("NotesGet", { payload: { library, id: NoteId }, success: Note, error: NotesFailure }),
  Rpc.make("NotesList", {
    payload: { library, after: Schema.optional(NoteCursor), limit: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000))) },
    success: NotesPage,
    error: NotesFailure
  }),
  Rpc.make("NotesSet", {
    payload: { library, id: NoteId, title: Schema.optional(Text(1024)), body: Schema.optional(Text(64 * 1024)), done: Schema.optional(Schema.Boolean) },
    success: Note,
    error: NotesFailure
  }),
  Rpc.make("NotesRemove", { payload: { library, id: NoteId }, success: Schema.Struct({ id: Schema.String }), error: NotesFailure })
) {}
