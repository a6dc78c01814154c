/**
 * Idle media streams to each peer, kept for the next read (the stream open
 * costs far more than a read's round trip). A read takes a stream (an idle
 * one, in place, or a new one) and releases it: it goes back only when its
 * answer was read whole:
 * one dropped mid-answer is closed, so no read ever sees another's bytes.
 * At most `maxIdle` idle streams per peer and library, each closed once
 * idle for `idleTimeout` (seen by the stream's one timer, so before twice
 * that), or as soon as its peer ends or resets it (a dropped connection),
 * and all with the pool's scope.
 *
 * Each stream's bytes are pumped into a bounded queue (`QUEUE` chunks), so
 * an idle stream's end is seen while nobody reads it. A read that waits for
 * bytes longer than `answerTimeout` fails `Timeout` (and the stream is not
 * reused): one timer per stream, re-armed as it goes, instead of one per wait
 * or per stay in the pool (a timer costs about as much as a small read's
 * round trip on loopback).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { PermissionError, PluginHost } from "../../PluginHost.js"
import { ProtocolError } from "../../../transport/ProtocolError.js"
import { type Duplex, type PeerId, TransportError } from "../../../transport/Transport.js"
import * as Protocol from "../Protocol.js"

/** Chunks of a stream held ahead of its reader. */
export const QUEUE = 8

type Item =
  | { readonly _tag: "Data"; readonly bytes: Uint8Array }
  | { readonly _tag: "End" }
  | { readonly _tag: "Fail"; readonly cause: Cause.Cause<TransportError> }
  | { readonly _tag: "Timeout" }

/** A stream taken from the pool, for one read. */
export interface Conn {
  readonly stream: Duplex
  /** Whether it served an earlier read (it may have gone stale since). */
  readonly reused: boolean
  /** The next frame (at most `maxBytes`): `None` when the stream ended between frames; `Timeout` after `answerTimeout` without bytes. */
  readonly frame: (maxBytes: number) => Effect.Effect<Option.Option<Uint8Array>, TransportError | ProtocolError>
  /** Bytes that came (at most `max` in all, at least one piece): `None` once the stream ended; `Timeout` after `answerTimeout` without any. */
  readonly pieces: (max: number) => Effect.Effect<Option.Option<ReadonlyArray<Uint8Array>>, TransportError>
  /** Marks the answer read whole: the stream goes back to the pool when released. */
  readonly done: Effect.Effect<void>
  /** Closes the stream now. */
  readonly discard: Effect.Effect<void>
  /** Gives the stream back: kept idle for the next read when its answer was read whole (`done`), else closed. */
  readonly release: Effect.Effect<void>
}

/** Idle streams per peer. */
export interface Pool {
  /**
   * An idle stream to `peer` for `library`, taken in place (no Effect: a read records it before anything
   * can interrupt it); its taker must `release` it.
   */
  readonly reuse: (peer: PeerId, library: string) => Conn | undefined
  /** A new stream to `peer` for `library`; its taker must `release` it (run it uninterruptibly up to that record). */
  readonly open: (peer: PeerId, library: string) => Effect.Effect<Conn, TransportError | PermissionError>
  /** Idle streams now, over all peers. */
  readonly idle: Effect.Effect<number>
}

/** Options of a pool. */
export interface Options {
  /** Most idle streams per peer and library (0: none kept). */
  readonly maxIdle: number
  /** How long an idle stream is kept. */
  readonly idleTimeout: Duration.DurationInput
  /** How long a read waits for the next bytes of a taken stream before it fails `Timeout`. */
  readonly answerTimeout: Duration.DurationInput
}

interface Entry {
  readonly key: string
  readonly scope: Scope.CloseableScope
  readonly conn: (reused: boolean) => Conn
  dead: boolean
  clean: boolean
  /** Since when it is idle in the pool (the clock's millis), if it is. */
  idleSince: number | undefined
  readonly buffered: () => number
}

/** A pool over `host`, until the scope closes. */
export const make = (host: PluginHost["Type"], options: Options): Effect.Effect<Pool, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const clock = yield* Effect.clock
    const timeoutMillis = Duration.toMillis(Duration.decode(options.answerTimeout))
    const idleMillis = Math.max(1, Duration.toMillis(Duration.decode(options.idleTimeout)))
    const timeoutDetail = `no bytes for ${Duration.format(Duration.decode(options.answerTimeout))}`
    const idle = new Map<string, Array<Entry>>()
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        idle.clear()
      })
    )

    /** Removes `entry` from the idle ones; true when it was there. */
    const unlist = (entry: Entry) => {
      const list = idle.get(entry.key)
      const at = list === undefined ? -1 : list.indexOf(entry)
      if (at < 0) return false
      list!.splice(at, 1)
      if (list!.length === 0) idle.delete(entry.key)
      return true
    }
    const close = (entry: Entry) => Scope.close(entry.scope, Exit.void)

    const open = (peer: PeerId, library: string, key: string) =>
      Effect.gen(function*() {
        const connScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
        const stream = yield* host.open(peer, Protocol.media, library).pipe(
          Scope.extend(connScope),
          Effect.onError(() => Scope.close(connScope, Exit.void))
        )
        const queue = yield* Queue.bounded<Item>(QUEUE)
        const where = { peer, protocol: Protocol.MEDIA_ID }
        const chunks: Array<Uint8Array> = []
        let buffered = 0
        let ended = false
        // since when a read waits for bytes (the clock's millis), if one does
        let waitingSince: number | undefined = undefined

        const more: Effect.Effect<boolean, TransportError> = Effect.suspend(() => {
          if (ended) return Effect.succeed(false)
          waitingSince = clock.unsafeCurrentTimeMillis()
          return Effect.flatMap(Queue.take(queue), (item) => {
            waitingSince = undefined
            switch (item._tag) {
              case "Data":
                chunks.push(item.bytes)
                buffered += item.bytes.length
                return Effect.succeed(true)
              case "End":
                ended = true
                return Effect.succeed(false)
              case "Fail":
                ended = true
                return Effect.failCause(item.cause)
              case "Timeout":
                ended = true
                return Effect.fail(new TransportError({ reason: "Timeout", ...where, detail: timeoutDetail }))
            }
          })
        })
        const take = (n: number): Uint8Array => {
          buffered -= n
          const head = chunks[0]!
          if (head.length === n) return chunks.shift()!
          if (head.length > n) {
            chunks[0] = head.subarray(n)
            return head.subarray(0, n)
          }
          const out = new Uint8Array(n)
          let at = 0
          while (at < n) {
            const c = chunks[0]!
            const k = Math.min(c.length, n - at)
            out.set(c.subarray(0, k), at)
            at += k
            if (k === c.length) chunks.shift()
            else chunks[0] = c.subarray(k)
          }
          return out
        }
        const peekUint32 = () => {
          const four = new Uint8Array(4)
          let at = 0
          for (const c of chunks) {
            const k = Math.min(c.length, 4 - at)
            four.set(c.subarray(0, k), at)
            at += k
            if (at === 4) break
          }
          return new DataView(four.buffer).getUint32(0)
        }

        const frame = (maxBytes: number): Effect.Effect<Option.Option<Uint8Array>, TransportError | ProtocolError> =>
          Effect.suspend(() => {
            if (buffered >= 4) {
              const length = peekUint32()
              if (length > maxBytes) {
                return Effect.fail(new ProtocolError({ reason: "Oversize", detail: `frame of ${length} bytes exceeds the bound of ${maxBytes}`, ...where }))
              }
              if (buffered >= 4 + length) {
                take(4)
                return Effect.succeed(Option.some(take(length)))
              }
            }
            return Effect.flatMap(more, (pulled) => {
              if (pulled) return frame(maxBytes)
              return buffered === 0
                ? Effect.succeed(Option.none())
                : Effect.fail(new TransportError({ reason: "Reset", detail: `stream ended inside a frame (${buffered} bytes pending)`, ...where }))
            })
          })

        const pieces = (max: number): Effect.Effect<Option.Option<ReadonlyArray<Uint8Array>>, TransportError> =>
          Effect.suspend(() => {
            if (buffered === 0) return Effect.flatMap(more, (pulled) => (pulled ? pieces(max) : Effect.succeed(Option.none())))
            const out: Array<Uint8Array> = []
            let left = max
            while (left > 0 && chunks.length > 0) {
              const piece = take(Math.min(left, chunks[0]!.length))
              out.push(piece)
              left -= piece.length
            }
            return Effect.succeed(Option.some(out))
          })

        const entry: Entry = {
          key,
          scope: connScope,
          dead: false,
          clean: false,
          idleSince: undefined,
          buffered: () => buffered,
          conn: (reused) => {
            let released = false
            return {
              stream,
              reused,
              frame,
              pieces,
              done: Effect.sync(() => {
                entry.clean = true
              }),
              discard: Effect.suspend(() => {
                entry.dead = true
                return close(entry)
              }),
              release: Effect.suspend(() => {
                if (released) return Effect.void
                released = true
                return giveBack(entry)
              })
            }
          }
        }
        // the peer's end or reset is seen at once, even while the stream is idle
        const pump = Stream.runForEach(stream.source, (bytes) => Queue.offer(queue, { _tag: "Data", bytes })).pipe(
          Effect.exit,
          Effect.flatMap((exit) =>
            Effect.suspend(() => {
              entry.dead = true
              const drop = unlist(entry) ? Effect.asVoid(Effect.forkIn(close(entry), scope)) : Effect.void
              const last: Item = Exit.isSuccess(exit) ? { _tag: "End" } : { _tag: "Fail", cause: exit.cause }
              return Effect.zipRight(drop, Queue.offer(queue, last))
            })
          )
        )
        // a read waiting longer than the timeout: the stream is given up (not reused) and the read fails
        // and an idle one kept past `idleTimeout` is closed: one timer per stream for both, none per read
        const watch = Effect.gen(function*() {
          while (true) {
            const now = clock.unsafeCurrentTimeMillis()
            const since = waitingSince
            const left = since === undefined ? timeoutMillis : since + timeoutMillis - now
            if (left <= 0) {
              entry.dead = true
              return yield* Queue.offer(queue, { _tag: "Timeout" })
            }
            const idleSince = entry.idleSince
            const idleLeft = idleSince === undefined ? idleMillis : idleSince + idleMillis - now
            if (idleLeft <= 0) {
              // (closed from the pool's scope: this fiber is in the stream's, which the close interrupts)
              if (unlist(entry)) return yield* Effect.asVoid(Effect.forkIn(close(entry), scope))
              entry.idleSince = undefined
              continue
            }
            yield* Effect.sleep(Duration.millis(Math.min(left, idleLeft)))
          }
        })
        // forked from an acquire or release (uninterruptible): made interruptible again, so closing the scope stops them
        yield* Effect.forkIn(Effect.interruptible(pump), connScope)
        yield* Effect.forkIn(Effect.interruptible(watch), connScope)
        return entry
      })

    const giveBack = (entry: Entry) =>
      Effect.suspend(() => {
        const list = idle.get(entry.key) ?? []
        if (closed || entry.dead || !entry.clean || entry.buffered() > 0 || list.length >= options.maxIdle) return close(entry)
        list.push(entry)
        idle.set(entry.key, list)
        // its stream's watch closes it once idle for `idleTimeout`
        entry.idleSince = clock.unsafeCurrentTimeMillis()
        return Effect.void
      })

    const reuse = (key: string): Option.Option<Entry> => {
      const list = idle.get(key)
      while (list !== undefined && list.length > 0) {
        const entry = list.pop()!
        if (list.length === 0) idle.delete(key)
        if (!entry.dead) return Option.some(entry)
      }
      return Option.none()
    }

    const keyOf = (peer: PeerId, library: string) => `${peer}\u0000${library}`
    const reuseConn = (peer: PeerId, library: string): Conn | undefined => {
      const found = reuse(keyOf(peer, library))
      if (Option.isNone(found)) return undefined
      const entry = found.value
      entry.idleSince = undefined
      entry.clean = false
      return entry.conn(true)
    }
    const openConn = (peer: PeerId, library: string) => Effect.map(open(peer, library, keyOf(peer, library)), (entry) => entry.conn(false))

    return {
      reuse: reuseConn,
      open: openConn,
      idle: Effect.sync(() => [...idle.values()].reduce((n, list) => n + list.length, 0))
    }
  })
