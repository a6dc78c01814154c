/**
 * A library as reads see it: its engine, and its file records by id or
 * hash, kept in memory once looked up. A read (served or made here) looks
 * its file up each time, and a player's reads name the same file again and
 * again: the engine's lookup (a query built, run and decoded) costs more
 * than the rest of a small read.
 *
 * The records stay exact: every commit of the engine lands in this
 * library's subscription (`Engine.commits`) before the write that made it
 * returns, and a lookup first takes what is there, forgetting every record
 * held when one touched a file. A lookup that went to the engine keeps its
 * answer only if no such commit came meanwhile. What waits in the
 * subscription between lookups is taken every `SWEEP`, so it stays small.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Engine from "../../../engine/Engine.js"
import * as Models from "../Models.js"
import type { FileRef } from "../Protocol.js"
import * as Files from "./files.js"

/** How often commits waiting in the subscription are taken when no lookup took them. */
export const SWEEP: Duration.Duration = Duration.seconds(1)

/** Most lookups (ids and hashes) held; past it, all are forgotten. */
export const MAX_HELD = 4096

/** A library's engine and its file records. */
export interface Library {
  readonly engine: Engine.Service
  /** The records `ref` names (`Files.records`), from memory when looked up since the last change to a file. */
  readonly records: (ref: FileRef) => Effect.Effect<ReadonlyArray<Models.File>, Files.Refusal>
}

const keyOf = (ref: FileRef) => ("id" in ref ? `i${ref.id}` : `h${ref.hash}`)

/** The library of `engine`, its subscription held until the scope closes. */
export const make = (engine: Engine.Service): Effect.Effect<Library, never, Scope.Scope> =>
  Effect.gen(function*() {
    const commits = yield* engine.commits
    const held = new Map<string, ReadonlyArray<Models.File>>()
    // bumped whenever held records are forgotten: an engine lookup begun before keeps its answer out
    let generation = 0

    // takes the commits waiting, all at once (nothing runs in between), and forgets every record if one touched a file
    // (true while records may be held: not once the subscription ended with the engine)
    const settle = (): boolean => {
      const waiting = commits.unsafeSize()
      if (waiting._tag === "None") {
        held.clear()
        generation++
        return false
      }
      if (waiting.value === 0) return true
      const taken = Effect.runSync(Queue.takeAll(commits))
      for (const commit of taken) {
        if (commit.changes.some((change) => change.model === Models.files.name)) {
          held.clear()
          generation++
          return true
        }
      }
      return true
    }
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(SWEEP), Effect.sync(settle))))

    const records = (ref: FileRef): Effect.Effect<ReadonlyArray<Models.File>, Files.Refusal> =>
      Effect.suspend(() => {
        settle()
        const key = keyOf(ref)
        const found = held.get(key)
        if (found !== undefined) return Effect.succeed(found)
        const since = generation
        return Effect.map(Files.records(engine, ref), (answer) => {
          if (settle() && generation === since) {
            if (held.size >= MAX_HELD) held.clear()
            held.set(key, answer)
          }
          return answer
        })
      })

    return { engine, records }
  })
