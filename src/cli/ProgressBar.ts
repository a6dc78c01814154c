/**
 * How a command shows long work: a progress bar when standard output is a
 * terminal (cli-progress, loaded only then), plain lines otherwise, nothing
 * with `--json`. `weft send` and `weft location add | rescan` both show
 * progress this way.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** At most one plain progress line a second. */
export const LINE_EVERY_MS = 1000

/** A bar drawn on standard output. */
export interface Bar<Payload extends object> {
  /** Columns of the terminal. */
  readonly width: number
  /** Draws `value` of `total` (the first call starts the bar). */
  readonly show: (value: number, total: number, payload: Payload) => void
  /** The total last shown (0 before the first). */
  readonly total: () => number
  /** Draws the last state and lets the terminal go; nothing if never shown. */
  readonly stop: () => void
}

/**
 * A bar with cli-progress's `format` (`{bar}`, `{percentage}` and the
 * payload's fields); `reserve` is the room the rest of a line needs
 * beside the bar itself.
 */
export const make = <Payload extends object>(options: {
  readonly format: string
  readonly reserve: number
  /** cli-progress's own ETA smoothing, for formats that show `{eta}`. */
  readonly etaBuffer?: number
}): Effect.Effect<Bar<Payload>> =>
  Effect.map(Effect.promise(() => import("cli-progress")), ({ Presets, SingleBar }) => {
    const width = process.stdout.columns ?? 80
    const bar = new SingleBar({
      stream: process.stdout,
      format: options.format,
      barsize: Math.max(10, Math.min(30, width - options.reserve)),
      hideCursor: true,
      fps: 10,
      ...(options.etaBuffer === undefined ? {} : { etaBuffer: options.etaBuffer })
    }, Presets.shades_classic)
    let started = false
    return {
      width,
      show: (value, total, payload) => {
        if (!started) {
          started = true
          bar.start(total, value, payload)
        } else {
          if (total !== bar.getTotal()) bar.setTotal(total)
          bar.update(value, payload)
        }
      },
      total: () => (started ? bar.getTotal() : 0),
      stop: () => {
        if (started) bar.stop()
      }
    }
  })

/**
 * The display a command uses for as long as its scope is open: `quiet` with
 * `--json`, the bar on a terminal, plain lines otherwise; stopped (its last
 * state drawn) when the scope closes, also when the command fails or is
 * stopped.
 */
export const display = <Display extends { readonly stop: Effect.Effect<void> }>(options: {
  readonly json: boolean
  readonly quiet: Display
  readonly bar: Effect.Effect<Display>
  readonly lines: () => Display
}): Effect.Effect<Display, never, Scope.Scope> =>
  Effect.acquireRelease(
    options.json ? Effect.succeed(options.quiet) : process.stdout.isTTY ? options.bar : Effect.sync(options.lines),
    (shown) => shown.stop
  )
