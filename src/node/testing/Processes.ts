/**
 * Support for tests of a node's data directory and processes: waiting for a
 * process to exit, polling for a condition in real time, temporary
 * directories, and another process holding a directory's lock.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** The exit code of `child` once it has exited (null when a signal ended it). */
export const exited = (child: ChildProcess) =>
  Effect.async<number | null>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.succeed(child.exitCode))
    child.once("exit", (code) => resume(Effect.succeed(code)))
  })

/** Polls `effect` until `done` holds of its value (real time); a defect naming `what` and the last value otherwise. */
export const eventually = <A, E>(
  what: string,
  effect: Effect.Effect<A, E>,
  done: (value: A) => boolean,
  context: () => string = () => "",
  timeout: Duration.DurationInput = Duration.seconds(20)
) =>
  Effect.gen(function*() {
    let last: A | undefined
    const deadline = Date.now() + Duration.toMillis(timeout)
    while (Date.now() < deadline) {
      last = yield* effect
      if (done(last)) return last
      yield* Effect.sleep(Duration.millis(100))
    }
    return yield* Effect.die(new Error(`${what}: not reached in ${Duration.format(timeout)}; last: ${JSON.stringify(last)}\n${context()}`))
  })

/** A temporary directory named after `prefix`, removed with the scope. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), `${prefix}-`))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/**
 * Another process holding the lock file `lock` the way `DirectoryLock` takes
 * it, until the scope closes (it is killed) or `exitAfterMillis` passed.
 */
export const lockHolder = (lock: string, exitAfterMillis?: number) =>
  Effect.acquireRelease(
    Effect.async<ChildProcess>((resume) => {
      const exit = exitAfterMillis === undefined ? "" : `setTimeout(() => process.exit(0), ${exitAfterMillis});`
      const script = `const D = require("better-sqlite3"); const d = new D(${JSON.stringify(lock)}); d.exec("BEGIN EXCLUSIVE"); console.log("held"); setInterval(() => {}, 1000); ${exit}`
      const child = spawn(process.execPath, ["-e", script], { cwd: import.meta.dirname, stdio: ["ignore", "pipe", "inherit"] })
      child.stdout!.once("data", () => resume(Effect.succeed(child)))
    }),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )
