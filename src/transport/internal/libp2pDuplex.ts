/**
 * A js-libp2p 3 stream as our `Duplex`.
 *
 * Reading: a 'message' listener is attached at once and stays attached, so
 * libp2p never holds unread data of its own beyond one window (it would reset
 * a stream whose read buffer overflows, and defers 'end' and 'close' while
 * data sits unread). Received bytes wait in a queue of our own; past
 * `highWaterBytes` the libp2p stream is paused, which stops Yamux window
 * updates, so the remote stops sending after at most one window. The queue is
 * drained by pulls of `source` and reading resumes when it is empty.
 *
 * The end of `source`: clean when the remote ended its side (its FIN) and all
 * its bytes were delivered; a reset, an abort or a connection closing before
 * that fails it with `Reset`. A reset that arrives after the remote's FIN only
 * says the remote stopped reading: what it sent is complete, so it still ends
 * cleanly.
 *
 * Writing: `send()` returning false means the stream's window or the
 * connection is full; the write then waits until libp2p has handed all of
 * the chunk on to the muxer (its write buffer is empty) and the stream needs
 * no drain (or until 'close'), so at most one caller's chunk waits in
 * libp2p's write buffer. A 'drain' alone is not enough: Yamux emits one for
 * every window update, when a chunk larger than the window may still be
 * mostly queued, and a writer resumed then would pile chunk upon chunk in
 * that (unbounded) buffer. (`onDrain()` is not used either: in @libp2p/utils
 * 7.4 its promise is created once and stays resolved after the first drain,
 * so later waits return at once.)
 *
 * @internal
 */
import type { Stream as Libp2pStream, StreamCloseEvent, StreamMessageEvent } from "@libp2p/interface"
import * as Channel from "effect/Channel"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { type Duplex, type PeerId, TransportError } from "../Transport.js"
import { fromLibp2p } from "./libp2pError.js"

// what a reset by this side aborts the libp2p stream with: one for all, as its stack says nothing
const resetByThisPeer = new Error("reset by this peer")
const lingeredTooLong = new Error("reset by this peer: the remote did not end the stream in time")

/** Why `source` failed, made when first asked for. */
type Failure = () => TransportError

/** How much a stream buffers. */
export interface Settings {
  /** Bytes received and not yet pulled from `source` at which reading pauses. */
  readonly highWaterBytes: number
}

/** A `Duplex` over a libp2p stream, plus what its owner needs to end it. */
export interface Libp2pDuplex extends Duplex {
  /** Resets the stream unless both sides have already closed it (for scope finalizers). */
  readonly release: Effect.Effect<void>
  /**
   * For a handler that returned: when this side ended the stream and the
   * remote has not, leaves it to the remote for at most `millis` (reading
   * paused, so the remote sends at most one more window) and resets it then;
   * otherwise as `release`. A reset right after the end can reach an opener
   * that is still negotiating the protocol, and libp2p (7.4) then fails its
   * open and loses the bytes (`Cannot push data onto a stream that is closed`).
   */
  readonly linger: (millis: number) => Effect.Effect<void>
}

/** Wraps `stream`, whose remote end is `remote`. Attach it as soon as the stream exists. */
export const make = (stream: Libp2pStream, remote: PeerId, settings: Settings): Libp2pDuplex => {
  const protocol = stream.protocol
  const context = { peer: remote, protocol }
  const resetError = (detail: string) => new TransportError({ reason: "Reset", ...context, detail })
  // how `source` fails, built only if it is read: every stream ends with a close event, most of them a
  // reset by one side once it is done, and a `TransportError` (a stack trace) costs more than the rest of
  // the close
  const lazily = (make: () => TransportError): Failure => {
    let error: TransportError | undefined
    return () => (error ??= make())
  }

  // received, not yet pulled
  let chunks: Array<Uint8Array> = []
  let buffered = 0
  // the remote ended its side (FIN seen)
  let remoteEnded = false
  // how `source` ends once `chunks` is drained
  let outcome: "end" | Failure | undefined = undefined
  // the pull waiting for data, if any
  let wake: (() => void) | undefined = undefined
  // inside `stream.resume()`, which delivers what libp2p held back and then grants the sender
  // more window: pausing in between would be undone by that grant, so it waits until after
  let resuming = false

  const notify = () => {
    const waiting = wake
    wake = undefined
    waiting?.()
  }
  const finish = (result: "end" | Failure) => {
    if (outcome !== undefined) return
    outcome = result
    notify()
  }
  const enqueue = (piece: Uint8Array) => {
    if (piece.length === 0) return
    chunks.push(piece)
    buffered += piece.length
  }

  const pauseIfFull = () => {
    if (buffered >= settings.highWaterBytes && stream.readStatus === "readable") stream.pause()
  }

  // what was sent is all handed on to the muxer, and the stream takes more
  const handedOn = () => stream.writeBufferLength === 0 && !stream.writableNeedsDrain
  // the writes waiting until all is handed on (or 'close'); the listeners that resume them stay attached,
  // so that a wait adds and removes none
  let writers: Array<(result: Effect.Effect<void, TransportError>) => void> = []
  const resumeWriters = (result: Effect.Effect<void, TransportError>) => {
    const waiting = writers
    writers = []
    for (const resume of waiting) resume(result)
  }
  // 'drain': the window or the connection has room again (libp2p then sends more of its buffer, in a
  // microtask); 'idle': its buffer emptied
  const onWriteProgress = () => {
    if (writers.length > 0 && handedOn()) resumeWriters(Effect.void)
  }

  const onMessage = (event: StreamMessageEvent) => {
    const data = event.data
    if (data instanceof Uint8Array) enqueue(data)
    else for (const piece of data) enqueue(piece)
    if (!resuming) pauseIfFull()
    notify()
  }
  const onRemoteCloseWrite = () => {
    remoteEnded = true
  }
  // 'end': libp2p will deliver nothing more. After an abort or a reset 'close' follows with the cause.
  const onEnd = () => {
    if (remoteEnded && stream.status !== "aborted") finish("end")
  }
  const onClose = (event: StreamCloseEvent) => {
    if (writers.length > 0) {
      const error = event.error
      resumeWriters(Effect.failSync(() =>
        error === undefined
          ? resetError("the stream closed while a write waited")
          : fromLibp2p(error, { operation: "write", ...context })
      ))
    }
    if (event.error !== undefined) {
      // a remote reset after its FIN: the data is complete, 'end' comes once it is delivered
      if (remoteEnded && event.local !== true && stream.status === "reset") return
      const error = event.error
      finish(lazily(() => fromLibp2p(error, { operation: "stream", ...context })))
    } else if (!remoteEnded) {
      finish(lazily(() => resetError("the connection closed before the remote ended the stream")))
    }
  }

  stream.addEventListener("message", onMessage)
  stream.addEventListener("remoteCloseWrite", onRemoteCloseWrite)
  stream.addEventListener("end", onEnd)
  stream.addEventListener("close", onClose)
  stream.addEventListener("drain", onWriteProgress)
  stream.addEventListener("idle", onWriteProgress)
  // events that fired before we were attached
  switch (stream.status) {
    case "aborted":
    case "reset":
    case "closed": // before our side closed anything: its connection went away
      finish(lazily(() => resetError(`the stream was ${stream.status} before it was read`)))
      break
    default:
      if (stream.remoteWriteStatus === "closed") remoteEnded = true
      if (stream.readableEnded && stream.readBufferLength === 0) {
        finish(remoteEnded ? "end" : lazily(() => resetError("the stream closed before it was read")))
      }
  }

  // resumes a paused stream; a failure to, as the error it ends `source` with
  const resumeReading = (): TransportError | undefined => {
    resuming = true
    try {
      stream.resume()
    } catch (cause) {
      return fromLibp2p(cause, { operation: "stream", ...context })
    } finally {
      resuming = false
    }
    pauseIfFull()
    return undefined
  }

  // one pull of `source`: the bytes received since the last one, or `undefined` at its clean end.
  // Plain code around the fewest effects: `source` is pulled twice per message libp2p delivers.
  const pull: Effect.Effect<Chunk.Chunk<Uint8Array> | undefined, TransportError> = Effect.suspend(() => {
    if (chunks.length > 0) {
      const out = Chunk.unsafeFromArray(chunks)
      chunks = []
      buffered = 0
      if (stream.readStatus === "paused") {
        // resuming may deliver what libp2p held back into `chunks` right away
        const error = resumeReading()
        if (error !== undefined) finish(() => error)
      }
      return Effect.succeed(out)
    }
    // libp2p fires 'end' once; when the remote's FIN came with bytes that multistream-select read ahead
    // and handed back, it fired before those bytes were delivered, so nothing else would end `source`
    if (outcome === undefined && remoteEnded && stream.readableEnded && stream.readBufferLength === 0 && stream.status !== "aborted") {
      finish("end")
    }
    if (outcome === "end") return Effect.succeed(undefined)
    if (outcome !== undefined) return Effect.fail(outcome())
    if (stream.readStatus === "paused") {
      const error = resumeReading()
      return error === undefined ? pull : Effect.fail(error)
    }
    // no canceler (it would wrap every wait in an `onInterrupt`): once this pull is interrupted, the fiber
    // ignores `resume`, and the next pull replaces `wake`
    return Effect.async<Chunk.Chunk<Uint8Array> | undefined, TransportError>((resume) => {
      wake = () => resume(pull)
    })
  })

  // `source` as a channel that writes each pull's chunk until the end
  const pulling: Channel.Channel<Chunk.Chunk<Uint8Array>, unknown, TransportError, unknown, void, unknown> = Channel
    .flatMap(
      Channel.fromEffect(pull),
      (chunk) => chunk === undefined ? Channel.void : Channel.flatMap(Channel.write(chunk), () => pulling)
    )

  const waitUntilHandedOn = Effect.async<void, TransportError>((resume) => {
    if (handedOn()) return resume(Effect.void)
    if (stream.status !== "open") return resume(Effect.fail(resetError(`the stream is ${stream.status}`)))
    writers.push(resume)
    return Effect.sync(() => {
      const at = writers.indexOf(resume)
      if (at >= 0) writers.splice(at, 1)
    })
  })

  const write = (chunk: Uint8Array): Effect.Effect<void, TransportError> =>
    Effect.suspend(() => {
      if (chunk.length === 0) return Effect.void
      if (stream.status === "reset" || stream.status === "aborted") {
        return Effect.fail(resetError(`write on a stream that was ${stream.status}`))
      }
      if (stream.writeStatus !== "writable") {
        return Effect.fail(
          ended
            ? new TransportError({ reason: "Closed", ...context, detail: "write after the stream was ended" })
            : resetError("write on a stream whose connection closed")
        )
      }
      let accepted: boolean
      try {
        accepted = stream.send(chunk)
      } catch (cause) {
        return Effect.fail(fromLibp2p(cause, { operation: "write", ...context }))
      }
      return accepted ? Effect.void : waitUntilHandedOn
    })

  // our side was ended by `end`
  let ended = false
  const end: Effect.Effect<void> = Effect.suspend(() => {
    ended = true
    return close
  })
  const close = Effect.tryPromise({
    try: (signal) => stream.close({ signal }),
    catch: (cause) => fromLibp2p(cause, { operation: "end", ...context })
  }).pipe(
    // the stream already broke; the remote learns that from the reset, not from us
    Effect.catchAll((error) => Effect.logDebug("ending a stream failed", error))
  )

  const reset: Effect.Effect<void> = Effect.sync(() => {
    if (outcome === undefined) {
      chunks = []
      buffered = 0
      finish(lazily(() => resetError("reset by this peer")))
    }
    stream.abort(resetByThisPeer)
  })

  const release: Effect.Effect<void> = Effect.suspend(() =>
    stream.status === "open" || stream.status === "closing" ? reset : Effect.void
  )

  const linger = (millis: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (!ended || stream.writeStatus !== "closed" || stream.status !== "open") return release
      chunks = []
      buffered = 0
      if (stream.readStatus === "readable") stream.pause()
      const timer = setTimeout(() => stream.abort(lingeredTooLong), millis)
      timer.unref()
      stream.addEventListener("close", () => clearTimeout(timer), { once: true })
      return Effect.void
    })

  return {
    protocol,
    remote,
    source: Stream.fromChannel(pulling),
    write,
    end,
    reset,
    release,
    linger
  }
}
