/**
 * `weft init`: prepares a data directory. Creates the identity (kept if it
 * exists), a first library with this peer as its only member (unless the
 * directory already has libraries), and each library's SQLite database.
 * Running it again changes nothing. It holds the directory's lock while it
 * creates (a concurrent init waits, up to 10 s, then finds everything made);
 * on the directory of a running node it only reads.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import { existsSync } from "node:fs"
import * as Engine from "../engine/Engine.js"
import * as Libraries from "../library/Libraries.js"
import * as Identity from "../transport/Identity.js"
import type { PeerId } from "../transport/Transport.js"
import * as DataDir from "../node/DataDir.js"
import * as DirectoryLock from "../node/DirectoryLock.js"
import * as Notes from "./Notes.js"

/** What `init` found or made. */
export interface Initialized {
  readonly dir: string
  readonly peerId: PeerId
  readonly libraries: ReadonlyArray<Libraries.Library>
  /** The library commands are about when they name none. */
  readonly defaultLibrary?: string
  /** Whether a library was created now. */
  readonly created: boolean
}

const defaultOf = (library: Option.Option<Libraries.Library>) => (Option.isSome(library) ? { defaultLibrary: library.value.id } : {})

/** The default name of the first library. */
export const DEFAULT_LIBRARY_NAME = "My library"

/**
 * What an initialized directory holds, read without its lock; none unless it
 * has an identity, a library and every library's database (an init under way
 * has not made them all yet, and is waited for).
 */
const readyWithoutLock = (paths: DataDir.Layout) =>
  Effect.gen(function*() {
    if (!existsSync(paths.identity) || !existsSync(paths.libraries)) return Option.none()
    const identity = yield* Identity.load(paths.identity)
    const libraries = yield* Effect.provide(Libraries.Libraries, Libraries.layerFile(paths.libraries))
    const all = yield* libraries.list
    const complete = all.length > 0 && all.every((library) => existsSync(paths.database(library.id)))
    return !complete ? Option.none() : Option.some({
      dir: paths.dir,
      peerId: identity.peerId,
      libraries: all,
      ...defaultOf(yield* libraries.defaultLibrary),
      created: false
    } satisfies Initialized)
  })

/** Initializes `dir`; `libraryName` names the first library. */
export const init = (dir: string, libraryName: string = DEFAULT_LIBRARY_NAME) =>
  Effect.scoped(Effect.gen(function*() {
    const paths = DataDir.layout(dir)
    yield* DataDir.create(paths)
    // an existing directory keeps its mode: one others may write in is not a place for a private key
    yield* DataDir.requireOwnerOnly(paths)
    // one process creates what the directory holds: a concurrent init waits for it and then finds it all made
    const locked = yield* Effect.either(DirectoryLock.acquire(paths))
    if (Either.isLeft(locked)) {
      if (locked.left.reason !== "Busy") return yield* locked.left
      // a running node holds the directory for as long as it runs: reading is all that is left to do
      const ready = yield* readyWithoutLock(paths)
      if (Option.isSome(ready)) return ready.value
      yield* DirectoryLock.acquire(paths, { wait: Duration.seconds(10) })
    }
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
    return { dir: paths.dir, peerId: identity.peerId, libraries: all, ...defaultOf(yield* libraries.defaultLibrary), created } satisfies Initialized
  }))
