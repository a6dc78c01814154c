/**
 * What `weft` prints: each command's answer for people (or as one JSON line
 * with `--json`), errors as one line with their tag and reason, and the log
 * lines of a running node.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"
import type * as Library from "../library/Libraries.js"
import type * as Control from "../node/Control.js"
import type * as PairControl from "../plugins/pair/Control.js"
import type * as PingControl from "../plugins/ping/Control.js"
import type * as Notes from "./Notes.js"

const ms = (value: number) => `${value.toFixed(2)} ms`

/** A library and its members; `self` is marked. */
export const library = (library: Library.Library, self?: string): ReadonlyArray<string> => [
  `library   ${library.name} (${library.id}): ${library.members.length} member(s)`,
  ...library.members.map((member) => `          ${member}${member === self ? " (this node)" : ""}`)
]

/** `weft status`. */
export const status = (info: Control.StatusInfo): string =>
  [
    `peer      ${info.peerId}`,
    ...info.addresses.map((address) => `address   ${address}`),
    ...info.libraries.flatMap((l) => library(l, info.peerId)),
    ...info.sessions.map((s) =>
      `session   ${s.peer} library ${s.library}: ${s.state} (sent ${s.sent}, received ${s.received})${s.error === undefined ? "" : `: ${s.error}`}`
    ),
    ...info.connections.map((peer) => {
      const held = info.streams.filter((s) => s.peer === peer)
      const handlers = held.reduce((n, s) => n + s.handlers, 0)
      const outbound = held.reduce((n, s) => n + s.outbound, 0)
      return `connected ${peer}: ${handlers + outbound} stream(s), ${handlers} handler(s)`
    }),
    `counts    ${info.counts.connections} connection(s), ${info.counts.streams} stream(s), ${info.counts.handlers} handler(s), ${info.counts.sessions} active session(s)`
  ].join("\n")

/** `weft peers`. */
export const peers = (info: Control.PeersInfo): string =>
  info.available.length === 0 && info.discovered.length === 0
    ? "no peers"
    : [
      ...info.available.map((peer) => `available  ${peer}`),
      ...info.discovered.map((d) => `discovered ${d.peer} ${d.addresses.join(" ")}`)
    ].join("\n")

/** `weft ping`. */
export const ping = (result: PingControl.PingResult): string =>
  `ping ${result.peer}: ${result.rtts.length} ping(s), min ${ms(result.min)}, median ${ms(result.median)}, max ${ms(result.max)}`

/** `weft pair`. */
export const paired = (result: PairControl.Paired): string =>
  [`paired with ${result.peer}`, ...library(result.library)].join("\n")

/** One note on one line: id, done mark, title, and the body's first line. */
export const note = (note: Notes.Note): string => {
  const body = note.body.split("\n")[0] ?? ""
  return `${note.id}  [${note.done ? "x" : " "}] ${note.title}${body === "" ? "" : ` — ${body}`}`
}

/** `weft notes list`. */
export const notes = (all: ReadonlyArray<Notes.Note>): string => (all.length === 0 ? "no notes" : all.map(note).join("\n"))

/** One line for an expected failure: its tag, then its message (which names its reason). */
export const failure = (error: unknown): string => {
  const record = typeof error === "object" && error !== null ? (error as Record<string, unknown>) : {}
  const tag = typeof record._tag === "string" ? record._tag : "Error"
  const message = error instanceof Error ? error.message : String(error)
  return printable(`${tag}: ${message.split("\n").join(" ")}`)
}

/**
 * Text fit for one line of a terminal: control characters (line breaks,
 * carriage returns, escape sequences) shown as `\uXXXX` escapes. For anything a
 * remote peer wrote (a refusal's detail, a library's name), which could
 * otherwise rewrite or forge lines on the user's screen.
 */
export const printable = (text: string): string =>
  text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)

const pad = (n: number, width = 2) => String(n).padStart(width, "0")

const part = (value: unknown): string =>
  typeof value === "string" ? value
    : Cause.isCause(value) ? Cause.pretty(value).split("\n")[0]!
    : value instanceof Error ? value.message
    : JSON.stringify(value)

/**
 * Log lines as `HH:MM:SS.mmm LEVEL message key=value…`, on standard output,
 * one line each: what they quote from other peers (a library's name, a
 * refusal's detail) is escaped (`printable`).
 */
export const logger = Logger.make(({ annotations, cause, date, logLevel, message }) => {
  const parts = Array.isArray(message) ? message.map(part) : [part(message)]
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`
  const fields = [...HashMap.toEntries(annotations)].map(([key, value]) => `${key}=${part(value)}`)
  const failure = Cause.isEmpty(cause) ? [] : [Cause.pretty(cause).split("\n")[0]!]
  globalThis.console.log([time, logLevel.label.padEnd(5), ...[...parts, ...failure, ...fields].map(printable)].join(" "))
})
