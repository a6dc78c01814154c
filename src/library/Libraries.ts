/**
 * Libraries: a library is a shared id, the data its peers sync, and a
 * membership list of the peers allowed to sync it. Pairing adds a peer to a
 * library on both sides; the plugin host lets only members open
 * library-scoped protocols (sync, media, rspc).
 *
 * `layerFile` persists libraries as a JSON file, validated with Schema on
 * load and replaced atomically on every change; `layerMemory` is for tests.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { randomUUID } from "node:crypto"
import { LibraryId } from "./LibraryId.js"
import { PeerId } from "../transport/Transport.js"
import * as JsonFile from "../internal/jsonFile.js"
import * as ParseError from "../internal/parseError.js"
import { describe } from "../internal/describe.js"

/** A library: its id, a name for people, and its members. */
export const Library = Schema.Struct({
  id: LibraryId,
  name: Schema.String.pipe(Schema.maxLength(256)),
  members: Schema.Array(PeerId)
})
export type Library = typeof Library.Type

const File = Schema.Struct({
  version: Schema.Literal(1),
  libraries: Schema.Array(Library),
  /** The library a request that names none is about (`setDefault`); the first when absent. */
  default: Schema.optional(LibraryId)
})

/** What a libraries file holds. */
export interface Saved {
  readonly libraries: ReadonlyArray<Library>
  readonly default?: string | undefined
}
/** Most bytes of the libraries file read (a library with a thousand members takes about 60 KB). */
const MAX_FILE_BYTES = 16 * 1024 * 1024

/** A library operation failed. */
export class LibraryError extends Schema.TaggedError<LibraryError>("weft/LibraryError")("LibraryError", {
  reason: Schema.Literal(
    "NotFound",
    "Exists",
    "Invalid", // a name, id or member that a saved file could not hold (it would not load again)
    "Corrupt",
    "Io"
  ),
  library: Schema.optional(Schema.String),
  detail: Schema.String
}) {
  override get message(): string {
    return `library ${this.reason}${this.library === undefined ? "" : ` (${this.library})`}: ${this.detail}`
  }
}

/** The libraries this peer belongs to. */
export class Libraries extends Context.Tag("weft/library/Libraries")<Libraries, {
  readonly list: Effect.Effect<ReadonlyArray<Library>>
  readonly get: (id: string) => Effect.Effect<Option.Option<Library>>
  /**
   * The library a request that names none is about: the one made default
   * with `setDefault` while it exists, else the first (none without libraries).
   */
  readonly defaultLibrary: Effect.Effect<Option.Option<Library>>
  /** Makes library `id` the default; persisted like any change. */
  readonly setDefault: (id: string) => Effect.Effect<Library, LibraryError>
  /** Creates a library (a new random id unless given) whose first member is `owner`. */
  readonly create: (name: string, owner: PeerId, id?: string) => Effect.Effect<Library, LibraryError>
  readonly addMember: (id: string, peer: PeerId) => Effect.Effect<Library, LibraryError>
  /**
   * Adds `peer` like `addMember`, and says whether this call added it (false:
   * it was a member already, nothing changed): what a pairing that fails
   * later may undo, and no more.
   */
  readonly recordMember: (id: string, peer: PeerId) => Effect.Effect<{ readonly library: Library; readonly added: boolean }, LibraryError>
  readonly removeMember: (id: string, peer: PeerId) => Effect.Effect<Library, LibraryError>
  readonly isMember: (id: string, peer: string) => Effect.Effect<boolean>
  /**
   * Marks `peer` as being paired into library `id` until the scope closes.
   * The two sides of a pairing record the membership one after the other, so
   * the side that records first may open a library stream before the other
   * has: meanwhile `admits` waits for the membership instead of refusing.
   */
  readonly pairing: (id: string, peer: PeerId) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Whether `peer` may use library `id`: a member now, or one that a pairing
   * in progress makes a member within `within`. Any other peer is answered
   * at once.
   */
  readonly admits: (id: string, peer: string, within: Duration.DurationInput) => Effect.Effect<boolean>
  /**
   * The libraries after each change (a library created, a member added or
   * removed), from now on: subscribed at once, so no change after this
   * returns is missed. Only changes that were persisted are published.
   */
  readonly changes: Effect.Effect<Stream.Stream<ReadonlyArray<Library>>, never, Scope.Scope>
}>() {}

const build = (
  initial: Saved,
  persist: (saved: Saved) => Effect.Effect<void, LibraryError>
): Effect.Effect<Libraries["Type"]> =>
  Effect.gen(function*() {
    const state = yield* Ref.make(initial.libraries)
    let defaultId = initial.default
    const saved = (libraries: ReadonlyArray<Library>): Saved => (defaultId === undefined ? { libraries } : { libraries, default: defaultId })
    const lock = yield* Effect.makeSemaphore(1)
    // unbounded: a subscriber that lags still sees every change; subscriptions end with their scopes
    const published = yield* PubSub.unbounded<ReadonlyArray<Library>>()
    const update = (f: (libraries: ReadonlyArray<Library>) => Effect.Effect<readonly [Library, ReadonlyArray<Library>], LibraryError>) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const current = yield* Ref.get(state)
        const [library, next] = yield* f(current)
        // adding a member twice changes nothing: nothing to write or announce
        if (next === current) return library
        // once the write starts, memory follows it: an interrupted update must not leave a file that
        // says one thing and a state that says another
        yield* Effect.uninterruptible(Effect.zipRight(persist(saved(next)), Effect.zipRight(Ref.set(state, next), PubSub.publish(published, next))))
        return library
      }))
    const defaultOf = (libraries: ReadonlyArray<Library>) =>
      Option.fromNullable(libraries.find((l) => l.id === defaultId) ?? libraries[0])
    // pairings in progress, as `library\0peer` keys with a count (the same pair may be asked twice)
    const pairings = yield* SubscriptionRef.make<ReadonlyMap<string, number>>(new Map())
    const pairingKey = (id: string, peer: string) => `${id}\u0000${peer}`
    const isMember = (libraries: ReadonlyArray<Library>, id: string, peer: string) =>
      libraries.some((l) => l.id === id && l.members.includes(peer as PeerId))
    const count = (key: string, delta: number) =>
      SubscriptionRef.update(pairings, (m) => {
        const next = new Map(m)
        const n = (m.get(key) ?? 0) + delta
        if (n > 0) next.set(key, n)
        else next.delete(key)
        return next
      })
    const find = (libraries: ReadonlyArray<Library>, id: string) => {
      const library = libraries.find((l) => l.id === id)
      return library === undefined
        ? Effect.fail(new LibraryError({ reason: "NotFound", library: id, detail: "no such library" }))
        : Effect.succeed(library)
    }
    const replace = (libraries: ReadonlyArray<Library>, library: Library, previous: Library) =>
      library === previous
        ? [library, libraries] as const
        : [library, libraries.map((l) => (l.id === library.id ? library : l))] as const
    const recordMember = (id: string, peer: PeerId) => {
      let added = false
      return Effect.map(
        update((libraries) =>
          Effect.flatMap(find(libraries, id), (library) => {
            if (library.members.includes(peer)) return Effect.succeed(replace(libraries, library, library))
            added = true
            return Effect.map(valid({ ...library, members: [...library.members, peer] }), (next) => replace(libraries, next, library))
          })),
        (library) => ({ library, added })
      )
    }
    return {
      list: Ref.get(state),
      get: (id) => Effect.map(Ref.get(state), (libraries) => Option.fromNullable(libraries.find((l) => l.id === id))),
      defaultLibrary: Effect.map(Ref.get(state), defaultOf),
      setDefault: (id) =>
        lock.withPermits(1)(Effect.gen(function*() {
          const libraries = yield* Ref.get(state)
          const library = yield* find(libraries, id)
          if (defaultId === id) return library
          const previous = defaultId
          defaultId = id
          yield* Effect.uninterruptible(persist(saved(libraries))).pipe(Effect.tapError(() => Effect.sync(() => {
            defaultId = previous
          })))
          return library
        })),
      create: (name, owner, id) =>
        update((libraries) =>
          Effect.flatMap(valid({ id: id ?? randomUUID(), name, members: [owner] }), (library) =>
            libraries.some((l) => l.id === library.id)
              ? Effect.fail(new LibraryError({ reason: "Exists", library: library.id, detail: "a library with this id exists" }))
              : Effect.succeed([library, [...libraries, library]] as const))
        ),
      addMember: (id, peer) => Effect.map(recordMember(id, peer), ({ library }) => library),
      recordMember,
      removeMember: (id, peer) =>
        update((libraries) =>
          Effect.map(find(libraries, id), (library) =>
            replace(libraries, library.members.includes(peer) ? { ...library, members: library.members.filter((m) => m !== peer) } : library, library))
        ),
      isMember: (id, peer) => Effect.map(Ref.get(state), (libraries) => isMember(libraries, id, peer)),
      pairing: (id, peer) => Effect.asVoid(Effect.acquireRelease(count(pairingKey(id, peer), 1), () => count(pairingKey(id, peer), -1))),
      admits: (id, peer, within) =>
        Effect.scoped(Effect.gen(function*() {
          // subscribed before looking, so a membership recorded in between is not missed
          const recorded = yield* PubSub.subscribe(published)
          if (isMember(yield* Ref.get(state), id, peer)) return true
          const key = pairingKey(id, peer)
          if (!(yield* SubscriptionRef.get(pairings)).has(key)) return false
          // decided once a change makes it a member or its pairing ends, whichever comes first
          return yield* Stream.merge(
            Stream.filter(Stream.fromQueue(recorded), (libraries) => isMember(libraries, id, peer)),
            Stream.filter(pairings.changes, (m) => !m.has(key))
          ).pipe(
            Stream.runHead,
            Effect.flatMap(() => Ref.get(state)),
            // the pairing's end and its membership arrive in either order: the state decides
            Effect.map((libraries) => isMember(libraries, id, peer)),
            Effect.timeoutTo({ duration: within, onSuccess: (admitted) => admitted, onTimeout: () => false })
          )
        })),
      changes: Effect.map(PubSub.subscribe(published), Stream.fromQueue)
    }
  })

const decodeLibrary = Schema.decodeUnknownEither(Library)

/** `library` if it is one a saved file can hold (so the file loads again), else `Invalid`. */
const valid = (library: Library): Effect.Effect<Library, LibraryError> =>
  Either.match(decodeLibrary(library), {
    onLeft: (error) =>
      Effect.fail(new LibraryError({
        reason: "Invalid",
        library: typeof library.id === "string" ? library.id.slice(0, 128) : describe(library.id),
        detail: ParseError.describe(error, 512)
      })),
    onRight: Effect.succeed
  })

/** Libraries held in memory; `defaultId` names the default (else the first is). */
export const layerMemory = (initial: ReadonlyArray<Library> = [], defaultId?: string): Layer.Layer<Libraries> =>
  Layer.effect(Libraries, build(defaultId === undefined ? { libraries: initial } : { libraries: initial, default: defaultId }, () => Effect.void))

const errors = {
  io: (detail: string) => new LibraryError({ reason: "Io", detail }),
  corrupt: (detail: string) => new LibraryError({ reason: "Corrupt", detail })
}

/** Loads libraries from a JSON file (none if it does not exist). */
export const load = (path: string): Effect.Effect<Saved, LibraryError> =>
  Effect.map(JsonFile.read(path, File, errors, MAX_FILE_BYTES), Option.match({
    onNone: (): Saved => ({ libraries: [] }),
    onSome: (file): Saved => ({ libraries: file.libraries, default: file.default })
  }))

/** Writes libraries to a JSON file atomically. */
export const save = (path: string, saved: Saved): Effect.Effect<void, LibraryError> =>
  JsonFile.write(path, { version: 1, ...saved }, errors.io)

/** Libraries persisted in a JSON file. */
export const layerFile = (path: string): Layer.Layer<Libraries, LibraryError> =>
  Layer.effect(Libraries, Effect.flatMap(load(path), (initial) => build(initial, (saved) => save(path, saved))))
