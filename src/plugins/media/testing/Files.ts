/**
 * Disk fixtures for media tests: temporary trees removed with the scope,
 * and files written with a given modification time.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as nodePath from "node:path"
import { concat } from "../../../internal/bytes.js"

/** A fresh temporary directory, removed when the scope closes. */
export const tempDir = (prefix = "weft-media-"): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => fs.mkdtemp(nodePath.join(os.tmpdir(), prefix))),
    (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
  )

/** Writes `content` at `path`, making its directories. */
export const write = (path: string, content: Uint8Array | string): Effect.Effect<void> =>
  Effect.promise(async () => {
    await fs.mkdir(nodePath.dirname(path), { recursive: true })
    await fs.writeFile(path, content)
  })

/** The SHA-256 of `bytes` in hex. */
export const sha256 = (bytes: Uint8Array | string): string => createHash("sha256").update(bytes).digest("hex")

/** `n` bytes of a repeating, position-dependent pattern (so a misplaced range shows). */
export const pattern = (n: number): Uint8Array => {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + (i >>> 8) * 7) & 0xff
  return out
}

/** Bytes as something cheap to compare (vitest's deep equality walks typed arrays an element at a time). */
export const digest = (bytes: Uint8Array): string => `${bytes.length} bytes, sha256 ${sha256(bytes)}`

/** The chunks a stream gave, joined. */
export const joined = (chunks: Chunk.Chunk<Uint8Array>): Uint8Array => concat(Chunk.toReadonlyArray(chunks))
