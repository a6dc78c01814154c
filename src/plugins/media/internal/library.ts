/**
 * A library as reads see it: its engine, and its file records by id or
 * hash, kept in memory once looked up. A read (served or made here) looks
 * its file up each time, and a player's reads name the same file again and
 * again: the engine's lookup (a query built, run and decoded) costs more
 * than the rest of a small read.
 *
 * The records stay exact: the engine calls this library's observer
 * (`Engine.observe`) as each commit commits, before the write that made it
 * returns, and a commit that touches a file forgets every record held. A
 * lookup that went to the engine keeps its answer only if no such commit
 * came meanwhile.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Engine from "../../../engine/Engine.js"
import * as Models from "../Models.js"
import type { FileRef } from "../Protocol.js"
import * as Files from "./files.js"

/** Most lookups (ids and hashes) held; past it, all are forgotten. */
export const MAX_HELD = 4096

/** A library's engine and its file records. */
export interface Library {
  readonly engine: Engine.Service
  /** The records `ref` names (`Files.records`), from memory when looked up since the last change to a file. */
  readonly records: (ref: FileRef) => Effect.Effect<ReadonlyArray<Models.File>, Files.Refusal>
  /**
   * The records `ref` names when held in memory, in place (no Effect, no engine); `undefined` when not
   * held, and always once the library's scope closed (its engine may be gone: look it up again).
   */
  readonly held: (ref: FileRef) => ReadonlyArray<Models.File> | undefined
}

const keyOf = (ref: FileRef) => ("id" in ref ? `i${ref.id}` : `h${ref.hash}`)

/** The library of `engine`, following its commits until the scope closes. */
export const make = (engine: Engine.Service): Effect.Effect<Library, never, Scope.Scope> =>
  Effect.gen(function*() {
    const held = new Map<string, ReadonlyArray<Models.File>>()
    // bumped whenever held records are forgotten: an engine lookup begun before keeps its answer out
    let generation = 0
    let open = true
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        open = false
        held.clear()
      })
    )
    yield* engine.observe((commit) => {
      for (const change of commit.changes) {
        if (change.model === Models.files.name) {
          held.clear()
          generation++
          return
        }
      }
    })

    const records = (ref: FileRef): Effect.Effect<ReadonlyArray<Models.File>, Files.Refusal> =>
      Effect.suspend(() => {
        const key = keyOf(ref)
        const found = held.get(key)
        if (found !== undefined) return Effect.succeed(found)
        const since = generation
        return Effect.map(Files.records(engine, ref), (answer) => {
          if (open && generation === since) {
            if (held.size >= MAX_HELD) held.clear()
            held.set(key, answer)
          }
          return answer
        })
      })

    return { engine, records, held: (ref) => (open ? held.get(keyOf(ref)) : undefined) }
  })
