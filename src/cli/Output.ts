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
import type * as Consent from "../plugins/Consent.js"
import type * as NotesControl from "./NotesControl.js"

const ms = (value: number) => `${value.toFixed(2)} ms`

/** A library and its members; `self` is marked, and the library when it is the default one. */
export const library = (library: Library.Library, self?: string, defaultLibrary?: string): ReadonlyArray<string> => [
  `library   ${library.name} (${library.id}): ${library.members.length} member(s)${library.id === defaultLibrary ? ", the default" : ""}`,
  ...library.members.map((member) => `          ${member}${member === self ? " (this node)" : ""}`)
]

/** `weft status`. */
export const status = (info: Control.StatusInfo): string =>
  [
    `peer      ${info.peerId}`,
    ...info.addresses.map((address) => `address   ${address}`),
    ...info.libraries.flatMap((l) => library(l, info.peerId, info.defaultLibrary)),
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
export const note = (note: NotesControl.Note): string => {
  const body = note.body.split("\n")[0] ?? ""
  return `${note.id}  [${note.done ? "x" : " "}] ${note.title}${body === "" ? "" : ` — ${body}`}`
}

/** `weft notes show`: the whole note, and how each field merges. */
export const noteInFull = (note: NotesControl.Note): string =>
  [
    `note      ${note.id} (library ${note.library})`,
    `title     ${note.title}`,
    `done      ${note.done ? "yes" : "no"}`,
    "body",
    ...note.body.split("\n").map((line) => `  ${line}`),
    "",
    "When peers change this note at the same time, title and done keep one value: the write with the",
    "larger clock (its hybrid logical timestamp), or at equal clocks the one from the larger node id.",
    "The body is rich text: both edits are kept and merged character by character, so two bodies set",
    "at once read as one text holding both."
  ].join("\n")

/** `weft requests`: the requests waiting at the node. */
export const requests = (pending: ReadonlyArray<Consent.Pending>): string =>
  pending.length === 0
    ? "no requests waiting"
    : pending.map((request) =>
      `${request.id}  ${printable(request.kind)} request: ${printable(request.text)} (answer before ${new Date(request.expiresAt).toLocaleTimeString()})`
    ).join("\n")

/** `weft notes list`. */
export const notes = (all: ReadonlyArray<NotesControl.Note>): string => (all.length === 0 ? "no notes" : all.map(note).join("\n"))

/** What to do next, for the failures people run into. */
const nextStep = (record: Record<string, unknown>, message: string): string | undefined => {
  switch (record._tag) {
    case "PairError":
      return record.reason === "Unattended"
        ? "Nobody at that node answers requests now: its user can answer them with `weft requests watch` there, or run `weft serve` in a terminal (or with --yes)"
        : undefined
    case "TransportError":
      if (record.reason === "Unreachable" && message.includes("no address of it is known")) {
        return "Connect to it first with `weft connect <multiaddr>`, or wait for mDNS to find it on the local network"
      }
      if (record.reason === "Refused" && message.includes("is in use")) {
        return "Another program, or another node, listens there: choose another with --listen /ip4/<address>/tcp/<port>"
      }
      return undefined
    case "SpacedropError":
      return record.reason === "NoListener"
        ? "Nobody at that node answers for files now: its user can run `weft serve` there in a terminal (or with --accept-from naming this node), or answer with `weft requests watch`"
        : record.reason === "Declined"
        ? "The user of that node said no, or it takes files only from the peers it names (`weft serve --accept-from`): nothing was sent"
        : record.reason === "Closed" || record.reason === "Timeout"
        ? "`weft transfers` says whether it was interrupted; `weft transfers resume <id>` then goes on from the last verified chunk"
        : undefined
    case "ConsentError":
      return record.reason === "NotFound" ? "`weft requests` lists the requests waiting" : undefined
    default:
      return undefined
  }
}

/** What a peer may call on this node in one library (`weft grant`, `weft revoke`). */
export const grant = (grant: { readonly peer: string; readonly library: string; readonly capabilities: ReadonlyArray<string> }): string =>
  printable(`${grant.peer} in ${grant.library}: ${grant.capabilities.length === 0 ? "nothing" : grant.capabilities.join(" ")}`)

/** Every grant (`weft grants`). */
export const grants = (all: ReadonlyArray<{ readonly peer: string; readonly library: string; readonly capabilities: ReadonlyArray<string> }>): string =>
  all.length === 0 ? "no grants: no peer may call anything here" : all.map(grant).join("\n")

/** One line for an expected failure: its tag, then its message (which names its reason), and what to do next when known. */
export const failure = (error: unknown): string => {
  const record = typeof error === "object" && error !== null ? (error as Record<string, unknown>) : {}
  const tag = typeof record._tag === "string" ? record._tag : "Error"
  const message = (error instanceof Error ? error.message : String(error)).split("\n").join(" ")
  const next = nextStep(record, message)
  return printable(`${tag}: ${message}${next === undefined ? "" : `. ${next}`}`)
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
