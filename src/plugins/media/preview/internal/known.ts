/**
 * The thumbnail hashes of one library, in memory, for the server side of
 * `/weft/preview/2.0.0`: which of the hashes a `Get` asks for are
 * thumbnails of the stream's library. Asking the engine once per `Get` (a
 * query over the thumbnail records, built, run and decoded) cost a fetch of
 * 2 000 thumbnails about as much as hashing them.
 *
 * The answer stays exact as `internal/library.ts` keeps file records: the
 * engine calls this index's observer (`Engine.observe`) as each commit
 * commits, and each thumbnail record a commit touches is read again before
 * the next answer (at most `MAX_DIRTY` of them; past it, all are read
 * again). A record only names its thumbnail's hash in its values, not in its
 * id, so a change cannot be applied without that read.
 *
 * Held: one entry per thumbnail record of the library with a hash (its id
 * and hash), as `fetchAll` and `collect` hold them in full for a call.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { StorageError } from "../../../../engine/Database.js"
import type * as Engine from "../../../../engine/Engine.js"
import * as Models from "../Models.js"

/** Most records touched since the last answer that are read again one by one; past it, all are. */
export const MAX_DIRTY = 4096
/** Ids read per query when reading touched records again. */
const ID_BATCH = 500

/** The thumbnail hashes of a library. */
export interface Known {
  /** Those of `hashes` that a thumbnail record of the library names. */
  readonly of: (hashes: ReadonlyArray<string>) => Effect.Effect<ReadonlySet<string>, StorageError>
}

/** The index of `engine`'s library, following its commits until the scope closes. */
export const make = (engine: Engine.Service): Effect.Effect<Known, never, Scope.Scope> =>
  Effect.gen(function*() {
    // record id → the hash it names; hash → how many records name it
    const byRecord = new Map<string, string>()
    const named = new Map<string, number>()
    // records touched since they were last read (marked while `tracking`: from the start of a full read on);
    // `current`: the maps hold a full read and every change since but those in `dirty`
    const dirty = new Set<string>()
    let tracking = false
    let current = false
    // bumped when all must be read again: a full read begun before does not count
    let generation = 0
    // reads of the engine one at a time; an answer waits for one under way (it may be for this answer's changes)
    const lock = yield* Effect.makeSemaphore(1)
    let reading = false
    yield* engine.observe((commit) => {
      for (const change of commit.changes) {
        if (change.model !== Models.thumbnails.name || !tracking) continue
        dirty.add(change.record)
        if (dirty.size > MAX_DIRTY) {
          dirty.clear()
          tracking = false
          current = false
          generation++
          return
        }
      }
    })

    const forget = (id: string) => {
      const hash = byRecord.get(id)
      if (hash === undefined) return
      byRecord.delete(id)
      const n = named.get(hash)!
      if (n <= 1) named.delete(hash)
      else named.set(hash, n - 1)
    }
    const learn = (records: ReadonlyArray<Models.Thumbnail>) => {
      for (const t of records) {
        if (t.hash === undefined) continue
        byRecord.set(t.id, t.hash)
        named.set(t.hash, (named.get(t.hash) ?? 0) + 1)
      }
    }

    const loadAll = Effect.suspend(() => {
      const since = generation
      // commits from here on are marked and read again; what they changed before the read is in it
      tracking = true
      dirty.clear()
      return Effect.map(engine.query(Models.thumbnails), (all) => {
        if (generation !== since) return
        byRecord.clear()
        named.clear()
        learn(all)
        current = true
      })
    })

    const reread = Effect.suspend(() => {
      const ids = [...dirty]
      dirty.clear()
      return Effect.forEach(
        Array.from({ length: Math.ceil(ids.length / ID_BATCH) }, (_, i) => ids.slice(i * ID_BATCH, (i + 1) * ID_BATCH)),
        (batch) =>
          Effect.map(engine.query(Models.thumbnails, (q) => q.where("id", "in", batch)), (found) => {
            for (const id of batch) forget(id)
            learn(found)
          }),
        { discard: true }
      ).pipe(Effect.onError(() => Effect.sync(() => {
        // what could not be read is read again next time
        for (const id of ids) dirty.add(id)
      })))
    })

    const refresh = lock.withPermits(1)(Effect.suspend(() => {
      reading = true
      return (!current ? loadAll : dirty.size > 0 ? reread : Effect.void).pipe(Effect.ensuring(Effect.sync(() => (reading = false))))
    }))

    const of = (hashes: ReadonlyArray<string>): Effect.Effect<ReadonlySet<string>, StorageError> =>
      Effect.suspend(() => {
        const answer = () => new Set(hashes.filter((h) => named.has(h)))
        return current && dirty.size === 0 && !reading ? Effect.succeed(answer()) : Effect.zipRight(refresh, Effect.sync(answer))
      })

    return { of }
  })
