/**
 * `weft send`: asks the running node to send files and folders
 * (`SpacedropSend` on its control socket) and shows how it goes: a progress
 * bar with the rate and the time left when standard output is a terminal
 * (cli-progress), a plain line at most every second otherwise, nothing but
 * the last JSON line with `--json`. Stopping the command (Ctrl-C) cancels
 * the transfer; the receiver learns it.
 *
 * @since 0.1.0
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Scope from "effect/Scope"
import * as ControlSocket from "../node/ControlSocket.js"
import type { PeerId } from "../transport/Transport.js"
import * as Control from "./Control.js"
import * as Output from "./Output.js"
import * as ProgressBar from "./ProgressBar.js"
import * as TransferOutput from "./TransferOutput.js"
import type * as TransfersControl from "./TransfersControl.js"

/** How `weft send` runs. */
export interface Options {
  /** The node's control socket. */
  readonly socket: string
  readonly peer: PeerId
  /** Absolute paths of the files and folders. */
  readonly paths: ReadonlyArray<string>
  readonly json: boolean
}

/** How progress is shown. */
interface Display {
  readonly update: (progress: TransfersControl.Progress) => Effect.Effect<void>
  /** Draws the last state and lets the terminal go (also when the command fails or is stopped). */
  readonly stop: Effect.Effect<void>
}

const waiting = (progress: TransfersControl.Progress) => `waiting for ${progress.peer} to accept ${progress.totalFiles} file(s), ${TransferOutput.size(progress.totalBytes)}…`

/** Plain lines, for output that is not a terminal. */
const lines = (): Display => {
  let last = 0
  let state = ""
  return {
    update: (progress) =>
      Effect.suspend(() => {
        const now = Date.now()
        const changed = progress.state !== state
        state = progress.state
        if (progress.state === "waiting") return changed ? Console.log(waiting(progress)) : Effect.void
        // how it failed follows, as the error
        if (progress.state === "failed" || progress.state === "cancelled" || progress.state === "interrupted") return Effect.void
        if (progress.state === "paused" || progress.state === "reconnecting") return changed ? Console.log(`${TransferOutput.state(progress)}`) : Effect.void
        if (!changed && now - last < ProgressBar.LINE_EVERY_MS) return Effect.void
        last = now
        return Console.log(TransferOutput.line(progress))
      }),
    stop: Effect.void
  }
}

const shorten = (text: string, most: number) => (text.length <= most ? text : `…${text.slice(text.length - most + 1)}`)

/** A progress bar on the terminal. */
const bar = Effect.map(
  ProgressBar.make<ReturnType<typeof payloadOf>>({
    // `left`, not the library's own `eta`: the node's rate and time left are the ones to show
    format: "{bar} {percentage}% | {done} of {size} | {files} | {rate} | ETA {left} | {file}",
    reserve: 70,
    etaBuffer: 1
  }),
  (progressBar): Display => {
    let shown = ""
    return {
      update: (progress) =>
        Effect.suspend(() => {
          if (progress.state === "waiting") {
            if (shown === "waiting") return Effect.void
            shown = "waiting"
            return Console.log(waiting(progress))
          }
          if (progress.state === "failed" || progress.state === "cancelled" || progress.state === "interrupted") return Effect.void
          shown = progress.state
          // a transfer of empty files only has nothing to count in bytes: it counts files
          const [value, total] = progress.totalBytes === 0 ? [progress.files, Math.max(1, progress.totalFiles)] : [progress.bytes, progress.totalBytes]
          return Effect.sync(() => progressBar.show(value, total, payloadOf(progress, progressBar.width)))
        }),
      stop: Effect.sync(progressBar.stop)
    }
  }
)

const payloadOf = (progress: TransfersControl.Progress, width: number) => ({
  done: TransferOutput.size(progress.bytes),
  size: TransferOutput.size(progress.totalBytes),
  files: `${progress.files}/${progress.totalFiles} files`,
  rate: TransferOutput.rate(progress.bytesPerSecond),
  left: progress.state === "paused" || progress.state === "reconnecting" ? TransferOutput.state(progress) : TransferOutput.eta(progress.etaSeconds),
  file: Output.printable(shorten(progress.current ?? "", Math.max(10, width - 75)))
})

const display = (json: boolean): Effect.Effect<Display, never, Scope.Scope> =>
  ProgressBar.display({ json, quiet: { update: () => Effect.void, stop: Effect.void }, bar, lines })

/** Sends, showing progress, and prints what was sent. */
export const run = (options: Options) =>
  Effect.scoped(Effect.gen(function*() {
    const control = yield* ControlSocket.client(options.socket, Control.group)
    const shown = yield* display(options.json)
    const started = Date.now()
    let sent: TransfersControl.Sent | undefined
    if (!options.json) yield* Console.log(`preparing ${options.paths.length} path(s) for ${options.peer}…`)
    yield* Stream.runForEach(control.SpacedropSend({ peer: options.peer, paths: options.paths }), (event) =>
      event._tag === "Progress" ? shown.update(event.progress) : Effect.sync(() => (sent = event.sent)))
    yield* shown.stop
    if (sent === undefined) {
      return yield* new ControlSocket.ControlError({ reason: "Io", path: options.socket, detail: "the node ended the transfer without saying how it went" })
    }
    const result = sent
    yield* Console.log(options.json ? JSON.stringify(result) : TransferOutput.sent(result, (Date.now() - started) / 1000))
  }))
