/**
 * This peer's identity: an Ed25519 key pair kept in a file, and the `PeerId`
 * derived from its public key (the libp2p peer id, `12D3KooW…`). The
 * transport's handshake (Noise XX) proves it to other peers, so it is also the
 * node id of this peer's operations.
 *
 * File format (JSON, UTF-8, mode 0600, created once and never rewritten):
 *
 * ```json
 * { "format": "weft/identity", "version": 1, "type": "Ed25519",
 *   "seed": "<base64 of the 32-byte private seed>", "peerId": "12D3KooW…" }
 * ```
 *
 * Loading decodes the file with Schema and derives the peer id from the seed
 * again; it must equal the stored one, so a damaged file is a `Corrupt` error,
 * never a silently different identity. A file that others can read is refused
 * (`InsecurePermissions`), as ssh does with its keys.
 *
 * @since 0.1.0
 */
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys"
import { peerIdFromPrivateKey } from "@libp2p/peer-id"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import { link, mkdir, open, unlink } from "node:fs/promises"
import { dirname } from "node:path"
import { PeerId } from "./Transport.js"
import * as BoundedFile from "../internal/boundedFile.js"
import * as ParseError from "../internal/parseError.js"

/** Bytes in an Ed25519 private seed. */
export const SEED_BYTES = 32

/** This peer's key pair and the id derived from it. */
export interface Service {
  /** The printable peer id (libp2p's base58 form), derived from `publicKey`. */
  readonly peerId: PeerId
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  /** The 32-byte Ed25519 private seed; redacted so it never shows in logs or errors. */
  readonly seed: Redacted.Redacted<Uint8Array>
}

/** The identity of this peer. */
export class Identity extends Context.Tag("weft/transport/Identity")<Identity, Service>() {}

/** The identity could not be loaded, created or derived. */
export class IdentityError extends Data.TaggedError("IdentityError")<{
  readonly reason:
    | "Unreadable" // the file exists but could not be read
    | "Unwritable" // a new identity could not be saved
    | "Corrupt" // the file (or a seed) is not a valid identity
    | "InsecurePermissions" // the file is readable or writable by others than its owner
  readonly path?: string
  readonly detail: string
}> {
  override get message(): string {
    return `identity ${this.reason}${this.path === undefined ? "" : ` (${this.path})`}: ${this.detail}`
  }
}

const Seed = Schema.Uint8ArrayFromBase64.pipe(
  Schema.filter((seed) => seed.length === SEED_BYTES || `an Ed25519 seed is ${SEED_BYTES} bytes, got ${seed.length}`)
)

/** The identity file, as stored. */
export const IdentityFile = Schema.Struct({
  format: Schema.Literal("weft/identity"),
  version: Schema.Literal(1),
  type: Schema.Literal("Ed25519"),
  seed: Seed,
  peerId: PeerId
}).pipe(Schema.annotations({ identifier: "IdentityFile" }))

const IdentityJson = Schema.parseJson(IdentityFile)

const detailOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)
const codeOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : undefined

/** The identity of an Ed25519 seed (32 bytes). */
export const fromSeed = (seed: Uint8Array): Effect.Effect<Service, IdentityError> =>
  seed.length !== SEED_BYTES
    ? Effect.fail(new IdentityError({ reason: "Corrupt", detail: `an Ed25519 seed is ${SEED_BYTES} bytes, got ${seed.length}` }))
    : Effect.tryPromise({
      try: async () => {
        const key = await generateKeyPairFromSeed("Ed25519", seed)
        return {
          peerId: PeerId.make(peerIdFromPrivateKey(key).toString()),
          publicKey: key.publicKey.raw,
          seed: Redacted.make(Uint8Array.from(seed))
        }
      },
      catch: (cause) => new IdentityError({ reason: "Corrupt", detail: `not an Ed25519 seed: ${detailOf(cause)}` })
    })

/** A new random identity, kept only in memory. */
export const generate = (): Effect.Effect<Service> =>
  fromSeed(randomBytes(SEED_BYTES)).pipe(Effect.orDie) // 32 random bytes are always a valid seed

/** The identity file's text for `identity`. */
export const encode = (identity: Service): string =>
  JSON.stringify(
    Schema.encodeSync(IdentityFile)({
      format: "weft/identity",
      version: 1,
      type: "Ed25519",
      seed: Redacted.value(identity.seed),
      peerId: identity.peerId
    }),
    null,
    2
  ) + "\n"

/** Decodes an identity file's text; the stored peer id must match the seed's. */
export const decode = (text: string, path?: string): Effect.Effect<Service, IdentityError> =>
  Effect.gen(function*() {
    const context = path === undefined ? {} : { path }
    const file = yield* ParseError.decodeUnknown(IdentityJson)(text).pipe(
      Effect.mapError((error) =>
        new IdentityError({ reason: "Corrupt", ...context, detail: ParseError.describe(error) })
      )
    )
    const identity = yield* fromSeed(file.seed).pipe(
      Effect.mapError((error) => new IdentityError({ ...error, ...context }))
    )
    if (identity.peerId !== file.peerId) {
      return yield* new IdentityError({
        reason: "Corrupt",
        ...context,
        detail: `the seed belongs to ${identity.peerId}, but the file names ${file.peerId}`
      })
    }
    return identity
  })

/** Most bytes of an identity file read (it holds about 200). */
const MAX_FILE_BYTES = 64 * 1024

/** A failed file system call, with Node's error code, until translated to an `IdentityError`. */
class FileError extends Data.TaggedError("FileError")<{ readonly code: string | undefined; readonly detail: string }> {}

const fileCall = <A>(call: () => Promise<A>): Effect.Effect<A, FileError> =>
  Effect.tryPromise({ try: call, catch: (cause) => new FileError({ code: codeOf(cause), detail: detailOf(cause) }) })

const read = (path: string): Effect.Effect<string | undefined, IdentityError> =>
  Effect.gen(function*() {
    const file = yield* fileCall(() => BoundedFile.read(path, MAX_FILE_BYTES))
    if (file === undefined) return undefined
    // owner-only, as for ssh keys (Windows has no such mode bits)
    if (process.platform !== "win32" && (file.stats.mode & 0o077) !== 0) {
      return yield* new IdentityError({
        reason: "InsecurePermissions",
        path,
        detail: `mode ${(file.stats.mode & 0o777).toString(8)} lets others read or write the key; it must be 600`
      })
    }
    return file.text
  }).pipe(
    Effect.catchTag("FileError", (error) => Effect.fail(new IdentityError({ reason: "Unreadable", path, detail: error.detail })))
  )

/**
 * Saves `text` at `path` only if no file is there: written to a private
 * temporary file, synced, then hard-linked into place, so readers never see a
 * partial file and two processes creating at once agree on one identity.
 * Succeeds with false when another process's file won.
 */
const createExclusive = (path: string, text: string): Effect.Effect<boolean, IdentityError> => {
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`
  const writeTemporary = Effect.acquireUseRelease(
    fileCall(() => open(temporary, "wx", 0o600)),
    (handle) => fileCall(async () => {
      await handle.writeFile(text, "utf8")
      await handle.sync()
    }),
    (handle) => fileCall(() => handle.close()).pipe(Effect.orElse(() => Effect.void)) // a failed close after a failed write adds nothing
  )
  const linkIntoPlace = fileCall(() => link(temporary, path)).pipe(
    Effect.as(true),
    Effect.catchIf((error) => error.code === "EEXIST", () => Effect.succeed(false))
  )
  const removeTemporary = fileCall(() => unlink(temporary)).pipe(
    Effect.catchAll((error) =>
      error.code === "ENOENT" ? Effect.void : Effect.logWarning(`could not remove ${temporary}: ${error.detail}`)
    )
  )
  return fileCall(() => mkdir(dirname(path), { recursive: true, mode: 0o700 })).pipe(
    Effect.zipRight(writeTemporary.pipe(Effect.zipRight(linkIntoPlace), Effect.ensuring(removeTemporary))),
    Effect.catchTag("FileError", (error) => Effect.fail(new IdentityError({ reason: "Unwritable", path, detail: error.detail })))
  )
}

/**
 * The identity stored at `path`: loaded if the file exists, otherwise
 * generated and saved there (mode 0600) first.
 */
export const load = (path: string): Effect.Effect<Service, IdentityError> =>
  Effect.gen(function*() {
    const existing = yield* read(path)
    if (existing !== undefined) return yield* decode(existing, path)
    const identity = yield* generate()
    if (yield* createExclusive(path, encode(identity))) return identity
    // another process created it meanwhile: use theirs
    const created = yield* read(path)
    if (created === undefined) {
      return yield* new IdentityError({ reason: "Unreadable", path, detail: "the file vanished right after it was created" })
    }
    return yield* decode(created, path)
  })

/** The identity stored at `path` (created there on first use). */
export const layer = (path: string): Layer.Layer<Identity, IdentityError> => Layer.effect(Identity, load(path))

/** A fresh identity for this process only (tests, throwaway peers). */
export const layerGenerated: Layer.Layer<Identity> = Layer.effect(Identity, generate())
