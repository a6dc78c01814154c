/**
 * Engines for tests: each on its own SQLite database (in memory by default),
 * closed with the scope.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Database from "../Database.js"
import * as Engine from "../Engine.js"

/** Opens an engine on a fresh database (or `filename`). */
export const open = (
  options: Engine.Options & { readonly filename?: string }
): Effect.Effect<Engine.Service, Database.StorageError | import("../EngineError.js").ValidationError, Scope.Scope> =>
  Effect.gen(function*() {
    const database = yield* Database.makeSqlite({ filename: options.filename ?? ":memory:" })
    return yield* Engine.make(options).pipe(Effect.provideService(Database.Database, database))
  })
