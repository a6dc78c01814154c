/**
 * Engines for tests: each on its own SQLite database (in memory by default),
 * closed with the scope.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { StorageError } from "../Database.js"
import * as Engine from "../Engine.js"
import type { ValidationError } from "../EngineError.js"

/** Opens an engine on a fresh in-memory database (or `filename`). */
export const open = (
  options: Engine.Options & { readonly filename?: string }
): Effect.Effect<Engine.Service, StorageError | ValidationError, Scope.Scope> =>
  Engine.makeSqlite({ ...options, filename: options.filename ?? ":memory:" })
