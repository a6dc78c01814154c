/**
 * What `weft send`, `weft transfers` and the receiving `weft serve` print
 * about transfers: sizes, rates and times for people, one line per
 * progress step where no bar can be drawn, and the listing. Names that came
 * from another peer (a sender's name, a received file's path) are escaped
 * (`Output.printable`).
 *
 * @since 0.1.0
 */
import * as Output from "./Output.js"
import type * as TransfersControl from "./TransfersControl.js"

const UNITS = ["B", "kB", "MB", "GB", "TB"] as const

/** A size in decimal units, as file managers show it (`12.4 MB`). */
export const size = (bytes: number): string => {
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${UNITS[unit]}`
}

/** A rate (`5.1 MB/s`). */
export const rate = (bytesPerSecond: number): string => `${size(Math.round(bytesPerSecond))}/s`

/** A time left (`42 s`, `3 min 5 s`, `1 h 2 min`), or `?` while unknown. */
export const eta = (seconds: number | undefined): string => {
  if (seconds === undefined || !Number.isFinite(seconds)) return "?"
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
}

const percent = (progress: TransfersControl.Progress) =>
  progress.totalBytes === 0 ? (progress.files >= progress.totalFiles ? 100 : 0) : Math.floor((100 * progress.bytes) / progress.totalBytes)

/** One line of progress, for logs and for output that is not a terminal. */
export const line = (progress: TransfersControl.Progress): string =>
  [
    `${progress.direction === "send" ? "sent" : "received"} ${size(progress.bytes)} of ${size(progress.totalBytes)} (${percent(progress)}%)`,
    `${progress.files}/${progress.totalFiles} file(s)`,
    rate(progress.bytesPerSecond),
    `ETA ${eta(progress.etaSeconds)}`,
    ...(progress.current === undefined ? [] : [Output.printable(progress.current)])
  ].join(", ")

/** What an offer holds, for the receiver's question: `3 files and 1 folder, 12.4 MB`. */
export const contents = (files: number, folders: number, bytes: number): string =>
  `${files} file${files === 1 ? "" : "s"}${folders === 0 ? "" : ` and ${folders} folder${folders === 1 ? "" : "s"}`}, ${size(bytes)}`

/** `weft send`'s last line. */
export const sent = (result: TransfersControl.Sent, seconds: number): string =>
  `sent ${result.files} file(s)${result.directories === 0 ? "" : ` and ${result.directories} folder(s)`}, ${size(result.bytes)} to ${result.peer} in ${
    seconds.toFixed(1)
  } s (transfer ${result.transfer})`

/** A transfer's state, with who holds it paused, and what to do with an interrupted one. */
export const state = (progress: TransfersControl.Progress): string =>
  progress.state === "paused" && progress.pausedBy !== undefined
    ? `paused by the ${progress.pausedBy.join(" and the ")}`
    : progress.state === "interrupted"
    ? "interrupted (`weft transfers resume` goes on from the last verified chunk)"
    : progress.state === "reconnecting"
    ? "connection lost: reconnecting, to go on from the last verified chunk"
    : progress.state

/** `weft transfers`. */
export const transfers = (all: ReadonlyArray<TransfersControl.TransferInfo>): string =>
  all.length === 0
    ? "no transfers"
    : all.map((t) =>
      [
        `${t.transfer}  ${t.direction === "send" ? "to  " : "from"} ${t.peer}${t.sender === undefined ? "" : ` ("${Output.printable(t.sender)}")`}  ${state(t)}`,
        `  ${line(t)}`,
        ...(t.target === undefined ? [] : [`  into ${t.target}`]),
        ...(t.error === undefined ? [] : [`  ${Output.printable(t.error)}`])
      ].join("\n")
    ).join("\n")
