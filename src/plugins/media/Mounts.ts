/**
 * Where this node holds locations: a location's root directory, per
 * library. Node-local on purpose: a location's records are synced, where it
 * lives is not, so a drive plugged into another node serves from there with
 * no write to the library.
 *
 * A mounted location is online while its root is a directory: roots are
 * checked on every change and every `checkInterval` (a drive unmounted, or
 * back), and `check` re-checks at once. `online` is a SubscriptionRef, so a
 * watcher (presence) gets the current set, then each change.
 *
 * Kept in memory: an app (the CLI) records its mounts and mounts them again
 * at start.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as fs from "node:fs/promises"

/** Online locations: library → sorted location ids (libraries without any are absent). */
export type Online = ReadonlyMap<string, ReadonlyArray<string>>

/** The mounts of a node. */
export interface Service {
  /** Holds `location` of `library` at `root` (an absolute path), replacing any earlier root. */
  readonly mount: (library: string, location: string, root: string) => Effect.Effect<void>
  readonly unmount: (library: string, location: string) => Effect.Effect<void>
  /** The root of a location mounted here, online or not. */
  readonly root: (library: string, location: string) => Effect.Effect<Option.Option<string>>
  /** The root of a location mounted here whose directory is there now (checked now). */
  readonly onlineRoot: (library: string, location: string) => Effect.Effect<Option.Option<string>>
  /** The online locations; its `changes` start with the current value. */
  readonly online: SubscriptionRef.SubscriptionRef<Online>
  /** Checks every root now. */
  readonly check: Effect.Effect<void>
}

/** The mounts of a node. */
export class Mounts extends Context.Tag("weft/plugins/media/Mounts")<Mounts, Service>() {}

/** Options of the mounts. */
export interface Options {
  /** How often roots are checked for being there (default 5 s). */
  readonly checkInterval?: Duration.DurationInput
}

const isDirectory = (path: string) =>
  Effect.promise(() => fs.stat(path).then((s) => s.isDirectory(), () => false))

const key = (library: string, location: string) => `${library}\u0000${location}`

const sameOnline = (a: Online, b: Online) =>
  a.size === b.size && [...a].every(([library, locations]) => {
    const other = b.get(library)
    return other !== undefined && other.length === locations.length && other.every((l, i) => l === locations[i])
  })

/** Mounts, their roots checked every `checkInterval` until the scope closes. */
export const make = (options: Options = {}): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const mounts = yield* Ref.make(new Map<string, { readonly library: string; readonly location: string; readonly root: string }>())
    const online = yield* SubscriptionRef.make<Online>(new Map())
    const lock = yield* Effect.makeSemaphore(1)

    const check = lock.withPermits(1)(Effect.gen(function*() {
      const next = new Map<string, Array<string>>()
      for (const mount of (yield* Ref.get(mounts)).values()) {
        if (!(yield* isDirectory(mount.root))) continue
        const list = next.get(mount.library) ?? []
        list.push(mount.location)
        next.set(mount.library, list)
      }
      for (const list of next.values()) list.sort()
      const current = yield* SubscriptionRef.get(online)
      if (!sameOnline(current, next)) yield* SubscriptionRef.set(online, next)
    }))

    yield* Effect.forkScoped(Effect.repeat(check, Schedule.spaced(options.checkInterval ?? Duration.seconds(5))))

    const root = (library: string, location: string) =>
      Effect.map(Ref.get(mounts), (all) => Option.map(Option.fromNullable(all.get(key(library, location))), (m) => m.root))

    return {
      mount: (library, location, rootPath) =>
        Effect.zipRight(Ref.update(mounts, (all) => new Map(all).set(key(library, location), { library, location, root: rootPath })), check),
      unmount: (library, location) =>
        Effect.zipRight(Ref.update(mounts, (all) => {
          const next = new Map(all)
          next.delete(key(library, location))
          return next
        }), check),
      root,
      onlineRoot: (library, location) =>
        Effect.flatMap(root(library, location), Option.match({
          onNone: () => Effect.succeedNone,
          onSome: (path) => Effect.map(isDirectory(path), (there) => (there ? Option.some(path) : Option.none()))
        })),
      online,
      check
    }
  })

/** Layer of the mounts. */
export const layer = (options: Options = {}): Layer.Layer<Mounts> => Layer.scoped(Mounts, make(options))
