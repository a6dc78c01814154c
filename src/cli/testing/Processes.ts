/**
 * Support for tests that run `weft` as real processes: where the executable
 * is; and, from the node's testing support, waiting for a process to exit,
 * polling in real time, temporary directories, and a lock-holding process.
 *
 * @since 0.1.0
 */
import { join, resolve } from "node:path"

export * from "../../node/testing/Processes.js"

/** The repository's root. */
export const ROOT = resolve(import.meta.dirname, "../../..")

/**
 * Node arguments that run `weft`: through tsx by default, the built executable
 * (`bin/weft.cjs`) with `WEFT_CLI=dist` (`npm run build` first), as `npm test`
 * does: the built commands cost a tenth of the CPU to start (no tsx loader
 * hooks resolving several hundred modules), which is most of the CLI tests'.
 */
export const CLI: ReadonlyArray<string> = process.env.WEFT_CLI === "dist"
  ? [join(ROOT, "bin/weft.cjs")]
  : ["--import", "tsx", join(ROOT, "src/cli/main.ts")]
