/**
 * One holder at a time works on a data directory: a running node, or an
 * `init` creating what the directory holds. The lock is SQLite's own
 * exclusive lock on `node.lock` (an empty database kept in an open
 * `BEGIN EXCLUSIVE`): a POSIX record lock, so taking it is atomic, and the
 * operating system releases it when its process ends, however it ends (a
 * crash leaves nothing stale to clean up). Within one process, a second
 * connection is refused like another process would be.
 *
 * Loaded only by `init` and `serve`.
 *
 * @since 0.1.0
 */
import Database from "better-sqlite3"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { DataDirError, type Layout } from "./DataDir.js"

/** How to take the lock. */
export interface Options {
  /** How long to wait while another holder has it (default: not at all). */
  readonly wait?: Duration.DurationInput
  /** Asked after each busy attempt: false gives up at once (say, the holder is a node that will not end). */
  readonly keepWaiting?: Effect.Effect<boolean>
}

/** How often a waiting `acquire` tries again. */
const POLL = Duration.millis(50)

const BUSY = /^SQLITE_BUSY/

/** One try: the lock at once, or `Busy`. */
const attempt = (paths: Layout): Effect.Effect<Database.Database, DataDirError> =>
  Effect.try({
    try: () => {
      const database = new Database(paths.lock, { timeout: 0 })
      try {
        database.exec("BEGIN EXCLUSIVE")
      } catch (cause) {
        database.close()
        throw cause
      }
      return database
    },
    catch: (cause) => {
      const code = (cause as { readonly code?: unknown })?.code
      return typeof code === "string" && BUSY.test(code)
        ? new DataDirError({
          reason: "Busy",
          dir: paths.dir,
          detail: "another weft process works on it: a node already serves this data directory, or an init is under way"
        })
        : new DataDirError({ reason: "Io", dir: paths.dir, detail: `${paths.lock}: ${cause instanceof Error ? cause.message : String(cause)}` })
    }
  })

/**
 * Holds the directory's lock until the scope closes; fails with `Busy` when
 * another holder has it past `wait`.
 */
export const acquire = (paths: Layout, options: Options = {}): Effect.Effect<void, DataDirError, Scope.Scope> =>
  Effect.asVoid(Effect.retry(
    // closing rolls the empty transaction back and releases the lock
    Effect.acquireRelease(attempt(paths), (database) => Effect.sync(() => database.close())),
    {
      // polled, not SQLite's busy timeout, which would block the thread (and a holder in this process) while
      // it waits; between attempts the wait can be interrupted (Ctrl-C)
      schedule: Schedule.spaced(POLL).pipe(Schedule.upTo(options.wait ?? 0)),
      while: (error) => error.reason === "Busy" ? (options.keepWaiting ?? Effect.succeed(true)) : Effect.succeed(false)
    }
  ))
