/**
 * `weft init`: prepares a data directory. Creates the identity (kept if it
 * exists), a first library with this peer as its only member (unless the
 * directory already has libraries), and each library's SQLite database.
 * Running it again changes nothing.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Engine from "../engine/Engine.js"
import * as Libraries from "../plugins/Libraries.js"
import * as Identity from "../transport/Identity.js"
import type { PeerId } from "../transport/Transport.js"
import * as DataDir from "./DataDir.js"
import * as Notes from "./Notes.js"

/** What `init` found or made. */
export interface Initialized {
  readonly dir: string
  readonly peerId: PeerId
  readonly libraries: ReadonlyArray<Libraries.Library>
  /** Whether a library was created now. */
  readonly created: boolean
}

/** The default name of the first library. */
export const DEFAULT_LIBRARY_NAME = "My library"

/** Initializes `dir`; `libraryName` names the first library. */
export const init = (dir: string, libraryName: string = DEFAULT_LIBRARY_NAME) =>
  Effect.gen(function*() {
    const paths = DataDir.layout(dir)
    yield* DataDir.create(paths)
    // an existing directory keeps its mode: one others may write in is not a place for a private key
    yield* DataDir.requireOwnerOnly(paths)
    const identity = yield* Identity.load(paths.identity)
    const libraries = yield* Effect.provide(Libraries.Libraries, Libraries.layerFile(paths.libraries))
    const existing = yield* libraries.list
    const created = existing.length === 0
    if (created) yield* libraries.create(libraryName, identity.peerId)
    const all = yield* libraries.list
    // each library's database, created (and migrated) now, so `serve` starts on a ready directory
    for (const library of all) {
      yield* Effect.scoped(
        Engine.makeSqlite({ models: Notes.models, node: identity.peerId, filename: paths.database(library.id) })
      )
    }
    return { dir: paths.dir, peerId: identity.peerId, libraries: all, created } satisfies Initialized
  })
