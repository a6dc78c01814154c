import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import * as DataDir from "./DataDir.js"
import * as DirectoryLock from "./DirectoryLock.js"
import * as Processes from "./testing/Processes.js"

const paths = Effect.map(Processes.tempDir("weft-lock"), DataDir.layout)

/** Another process holding the lock the way `acquire` takes it, until it is killed or `exitAfterMillis` passed. */
const holder = (lock: string, exitAfterMillis?: number) =>
  Effect.acquireRelease(
    Effect.async<ReturnType<typeof spawn>>((resume) => {
      const script = `const D = require("better-sqlite3"); const d = new D(${JSON.stringify(lock)}); d.exec("BEGIN EXCLUSIVE"); console.log("held"); setInterval(() => {}, 1000); ${exitAfterMillis === undefined ? "" : `setTimeout(() => process.exit(0), ${exitAfterMillis})`}`
      const child = spawn(process.execPath, ["-e", script], { cwd: process.cwd(), stdio: ["ignore", "pipe", "inherit"] })
      child.stdout.once("data", () => resume(Effect.succeed(child)))
    }),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )

describe("DirectoryLock", () => {
  it.scoped("one holder at a time; released when its scope closes", () =>
    Effect.gen(function*() {
      const dir = yield* paths
      const first = yield* Scope.make()
      yield* Scope.extend(DirectoryLock.acquire(dir), first)
      const refused = yield* Effect.flip(DirectoryLock.acquire(dir))
      expect(refused).toMatchObject({ _tag: "DataDirError", reason: "Busy", dir: dir.dir })
      yield* Scope.close(first, Exit.void)
      yield* DirectoryLock.acquire(dir)
    }))

  it.scopedLive("a holder killed with SIGKILL leaves nothing stale: the lock is free at once", () =>
    Effect.gen(function*() {
      const dir = yield* paths
      const scope = yield* Scope.make()
      const child = yield* Scope.extend(holder(dir.lock), scope)
      expect(yield* Effect.flip(DirectoryLock.acquire(dir))).toMatchObject({ reason: "Busy" })
      const exited = Effect.async<void>((resume) => {
        child.once("exit", () => resume(Effect.void))
      })
      yield* Scope.close(scope, Exit.void)
      yield* exited
      yield* DirectoryLock.acquire(dir)
    }))

  it.scopedLive("a waiting acquire can be interrupted at once", () =>
    Effect.gen(function*() {
      const dir = yield* paths
      yield* DirectoryLock.acquire(dir)
      const waiting = yield* Effect.fork(Effect.scoped(DirectoryLock.acquire(dir, { wait: Duration.seconds(10) })))
      yield* Effect.sleep("200 millis")
      const started = Date.now()
      yield* Fiber.interrupt(waiting)
      expect(Date.now() - started).toBeLessThan(500)
    }))

  it.scopedLive("a waiting acquire takes the lock once the holder ends within the wait", () =>
    Effect.gen(function*() {
      const dir = yield* paths
      // the wait blocks this thread: the holder ends by itself
      yield* holder(dir.lock, 300)
      const started = Date.now()
      yield* DirectoryLock.acquire(dir, { wait: Duration.seconds(10) })
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    }))
})
