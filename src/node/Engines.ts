/**
 * A node's engines: one per library, each on its own SQLite database,
 * opened when first wanted and shared by everyone who holds it (the sync
 * plugin, a request reading notes). An engine stays open while any scope
 * that got it is open, and closes when the last one closes.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RcMap from "effect/RcMap"
import type * as Scope from "effect/Scope"
import type { StorageError } from "../engine/Database.js"
import * as Engine from "../engine/Engine.js"
import type { ValidationError } from "../engine/EngineError.js"
import type * as Model from "../engine/Model.js"
import * as Identity from "../transport/Identity.js"

/** How a node's engines are opened. */
export interface Options {
  /** The app's models, declared by every library's engine. */
  readonly models: ReadonlyArray<Model.Any>
  /** The SQLite file of a library (`":memory:"` keeps it in memory). */
  readonly database: (library: string) => string
  /** Engine tuning (drift, batch and operation bounds). */
  readonly engine?: Omit<Engine.Options, "models" | "node">
}

/** The engines of a node's libraries. */
export interface Service {
  /** The engine of `library`, open for as long as the scope (shared with every other holder). */
  readonly get: (library: string) => Effect.Effect<Engine.Service, StorageError | ValidationError, Scope.Scope>
}

/** The engines of a node's libraries. */
export class Engines extends Context.Tag("weft/node/Engines")<Engines, Service>() {}

/** Opens engines for the node `node` (the origin of their operations); they close with the scope. */
export const make = (options: Options & { readonly node: string }): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.map(
    RcMap.make({
      lookup: (library: string) => Engine.makeSqlite({ ...options.engine, models: options.models, node: options.node, filename: options.database(library) })
    }),
    (engines) => ({ get: (library) => RcMap.get(engines, library) })
  )

/** Layer of the engines of the node whose `Identity` is in context. */
export const layer = (options: Options): Layer.Layer<Engines, never, Identity.Identity> =>
  Layer.scoped(Engines, Effect.flatMap(Identity.Identity, (identity) => make({ ...options, node: identity.peerId })))
