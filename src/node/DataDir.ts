/**
 * A node's data directory (the CLI's `--dir`, default `./.weft`):
 *
 * ```text
 * identity.json        the Ed25519 identity (mode 0600; see transport/Identity)
 * libraries.json       libraries and their members (see library/Libraries)
 * peers.json           where peers were last reached (see node/AddressBook)
 * libraries/<id>.db    one SQLite database per library
 * weft.sock            the running node's control socket (see ControlSocket)
 * node.lock            held by the one process working on the directory (see DirectoryLock)
 * ```
 *
 * The directory is created with mode 0700: it holds the private key.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { access, mkdir, stat } from "node:fs/promises"
import { join, resolve } from "node:path"

/** The default data directory. */
export const DEFAULT_DIR = ".weft"

/** Paths inside a data directory. */
export interface Layout {
  readonly dir: string
  readonly identity: string
  readonly libraries: string
  readonly peers: string
  readonly socket: string
  readonly lock: string
  /** The SQLite file of a library (ids are `[A-Za-z0-9._~-]`: no separators, so it stays inside the directory). */
  readonly database: (library: string) => string
}

/** The layout of `dir` (made absolute). */
export const layout = (dir: string): Layout => {
  const root = resolve(dir)
  return {
    dir: root,
    identity: join(root, "identity.json"),
    libraries: join(root, "libraries.json"),
    peers: join(root, "peers.json"),
    socket: join(root, "weft.sock"),
    lock: join(root, "node.lock"),
    database: (library) => join(root, "libraries", `${library}.db`)
  }
}

/** The data directory is missing or could not be made. */
export class DataDirError extends Data.TaggedError("DataDirError")<{
  readonly reason:
    | "NotInitialized"
    | "Exposed" // other users may write in it, so they could replace what it holds
    | "Busy" // another process (a running node, an init) holds it
    | "Io"
  readonly dir: string
  readonly detail: string
}> {
  override get message(): string {
    return `data directory ${this.reason} (${this.dir}): ${this.detail}`
  }
}

/** Creates the directory and its `libraries/` folder (owner-only). */
export const create = (paths: Layout): Effect.Effect<void, DataDirError> =>
  Effect.tryPromise({
    try: async () => {
      await mkdir(paths.dir, { recursive: true, mode: 0o700 })
      await mkdir(join(paths.dir, "libraries"), { recursive: true, mode: 0o700 })
    },
    catch: (cause) => new DataDirError({ reason: "Io", dir: paths.dir, detail: cause instanceof Error ? cause.message : String(cause) })
  })

/**
 * Fails with `NotInitialized` unless `weft init` has run in the directory,
 * and with `Exposed` when users other than its owner may write in it.
 */
export const requireInitialized = (paths: Layout): Effect.Effect<void, DataDirError> =>
  Effect.zipRight(
    Effect.tryPromise({
      try: () => Promise.all([access(paths.identity), access(paths.libraries)]),
      catch: (cause) =>
        (cause as NodeJS.ErrnoException)?.code === "ENOENT"
          ? new DataDirError({ reason: "NotInitialized", dir: paths.dir, detail: "no identity or libraries here; run `weft init` first" })
          : new DataDirError({ reason: "Io", dir: paths.dir, detail: cause instanceof Error ? cause.message : String(cause) })
    }),
    requireOwnerOnly(paths)
  )

/** Fails with `Exposed` when the directory is writable by its group or by others. */
export const requireOwnerOnly = (paths: Layout): Effect.Effect<void, DataDirError> =>
  Effect.flatMap(
    Effect.tryPromise({
      try: () => stat(paths.dir),
      catch: (cause) => new DataDirError({ reason: "Io", dir: paths.dir, detail: cause instanceof Error ? cause.message : String(cause) })
    }),
    (info) =>
      (info.mode & 0o022) === 0 ? Effect.void : Effect.fail(new DataDirError({
        reason: "Exposed",
        dir: paths.dir,
        detail: `other users may write in it (mode ${(info.mode & 0o777).toString(8)}); make it yours alone with \`chmod 700 ${paths.dir}\``
      }))
  )
