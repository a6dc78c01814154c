/**
 * Grants: which capabilities each peer holds in each library, for rspc.
 * Nothing is granted until this node's owner grants it (default deny).
 *
 * Storage: `layerFile` keeps them in a JSON file of the node's data
 * directory (`grants.json`, beside `libraries.json` and `peers.json`),
 * validated with Schema on load and written atomically, owner-only. Not in
 * the library's SQLite database: that one is replicated to every member by
 * sync, and a grant is this node's own decision about its own procedures,
 * which no other peer must learn or change.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as JsonFile from "../../internal/jsonFile.js"
import * as ParseError from "../../internal/parseError.js"
import { LibraryId } from "../../library/LibraryId.js"
import { PeerId } from "../../transport/Transport.js"
import { Capability } from "./Protocol.js"

/** The capabilities one peer holds in one library. */
export const Grant = Schema.Struct({
  peer: PeerId,
  library: LibraryId,
  capabilities: Schema.Array(Capability).pipe(Schema.maxItems(256))
})
export type Grant = typeof Grant.Type

const File = Schema.Struct({
  version: Schema.Literal(1),
  grants: Schema.Array(Grant).pipe(Schema.maxItems(100_000))
})

/** Most bytes of the grants file read. */
const MAX_FILE_BYTES = 16 * 1024 * 1024

/** A grant could not be read, made or stored. */
export class GrantsError extends Schema.TaggedError<GrantsError>("weft/rspc/GrantsError")("GrantsError", {
  reason: Schema.Literal(
    "Invalid", // a peer id, library id or capability that is not one
    "Corrupt",
    "Io"
  ),
  detail: Schema.String
}) {
  override get message(): string {
    return `grants ${this.reason}: ${this.detail}`
  }
}

/** Every grant now, keyed by peer and library. */
export type Table = ReadonlyMap<string, Grant>

const key = (peer: string, library: string) => `${peer}\u0000${library}`

/** The grants' operations. */
export interface Service {
  /** Adds `capabilities` to what `peer` holds in `library`; what it holds after. */
  readonly grant: (peer: string, library: string, capabilities: ReadonlyArray<string>) => Effect.Effect<Grant, GrantsError>
  /** Takes `capabilities` (default: all) from `peer` in `library`; what it still holds. */
  readonly revoke: (peer: string, library: string, capabilities?: ReadonlyArray<string>) => Effect.Effect<Grant, GrantsError>
  /** Every grant, or those of one library. */
  readonly list: (library?: string) => Effect.Effect<ReadonlyArray<Grant>>
  /** Whether `peer` holds `capability` in `library`. */
  readonly allows: (peer: string, library: string, capability: string) => Effect.Effect<boolean>
  /** `allows`, answered at once from the grants held in memory (the check of every call: no effect to run). */
  readonly unsafeAllows: (peer: string, library: string, capability: string) => boolean
  /** Every grant now, then after each change (subscribed at once). */
  readonly changes: Effect.Effect<Stream.Stream<Table>, never, Scope.Scope>
}

/** The grants of this node. */
export class Grants extends Context.Tag("weft/plugins/rspc/Grants")<Grants, Service>() {}

/** Whether `table` lets `peer` use `capability` in `library`. */
export const allowedIn = (table: Table, peer: string, library: string, capability: string): boolean =>
  table.get(key(peer, library))?.capabilities.includes(capability as Capability) ?? false

const decodeGrant = Schema.decodeUnknownEither(Grant)

const build = (initial: ReadonlyArray<Grant>, persist: (grants: ReadonlyArray<Grant>) => Effect.Effect<void, GrantsError>) =>
  Effect.gen(function*() {
    let current: Table = new Map(initial.map((g) => [key(g.peer, g.library), g]))
    const state = yield* SubscriptionRef.make<Table>(current)
    const lock = yield* Effect.makeSemaphore(1)
    const valid = (grant: unknown) =>
      Either.match(decodeGrant(grant), {
        onLeft: (error) => Effect.fail(new GrantsError({ reason: "Invalid", detail: ParseError.describe(error, 512) })),
        onRight: (g) => Effect.succeed(g)
      })
    const update = (peer: string, library: string, f: (held: ReadonlyArray<string>) => ReadonlyArray<string>) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const table = yield* SubscriptionRef.get(state)
        const held = table.get(key(peer, library))?.capabilities ?? []
        const grant = yield* valid({ peer, library, capabilities: [...new Set(f(held))].sort() })
        const next = new Map(table)
        if (grant.capabilities.length === 0) next.delete(key(peer, library))
        else next.set(key(peer, library), grant)
        // memory follows the file once the write starts: the two never disagree
        // read at once by `unsafeAllows`: set before any subscriber hears of the change
        yield* Effect.uninterruptible(Effect.zipRight(
          persist([...next.values()]),
          Effect.suspend(() => {
            current = next
            return SubscriptionRef.set(state, next)
          })
        ))
        return grant
      }))
    return Grants.of({
      grant: (peer, library, capabilities) => update(peer, library, (held) => [...held, ...capabilities]),
      revoke: (peer, library, capabilities) =>
        update(peer, library, (held) => (capabilities === undefined ? [] : held.filter((c) => !capabilities.includes(c)))),
      list: (library) =>
        Effect.map(SubscriptionRef.get(state), (table) => [...table.values()].filter((g) => library === undefined || g.library === library)),
      allows: (peer, library, capability) => Effect.sync(() => allowedIn(current, peer, library, capability)),
      unsafeAllows: (peer, library, capability) => allowedIn(current, peer, library, capability),
      changes: Effect.succeed(state.changes)
    })
  })

/** Grants held in memory (tests, and apps that grant at start-up). */
export const layerMemory = (initial: ReadonlyArray<Grant> = []): Layer.Layer<Grants> => Layer.effect(Grants, build(initial, () => Effect.void))

const errors = {
  io: (detail: string) => new GrantsError({ reason: "Io", detail }),
  corrupt: (detail: string) => new GrantsError({ reason: "Corrupt", detail })
}

/** Loads the grants of a JSON file (none if it does not exist). */
export const load = (path: string): Effect.Effect<ReadonlyArray<Grant>, GrantsError> =>
  Effect.map(JsonFile.read(path, File, errors, MAX_FILE_BYTES), Option.match({ onNone: () => [], onSome: (file) => file.grants }))

/** Grants persisted in a JSON file (`grants.json` of a data directory). */
export const layerFile = (path: string): Layer.Layer<Grants, GrantsError> =>
  Layer.effect(Grants, Effect.flatMap(load(path), (initial) => build(initial, (grants) => JsonFile.write(path, { version: 1, grants }, errors.io))))
