import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as DataDir from "./DataDir.js"
import * as DirectoryLock from "./DirectoryLock.js"
import * as Processes from "./testing/Processes.js"

const paths = Effect.map(Processes.tempDir("weft-lock"), DataDir.layout)

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
      const child = yield* Scope.extend(Processes.lockHolder(dir.lock), scope)
      expect(yield* Effect.flip(DirectoryLock.acquire(dir))).toMatchObject({ reason: "Busy" })
      const exited = Processes.exited(child)
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
      yield* Processes.lockHolder(dir.lock, 300)
      const started = Date.now()
      yield* DirectoryLock.acquire(dir, { wait: Duration.seconds(10) })
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    }))
})
