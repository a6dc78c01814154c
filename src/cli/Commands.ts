/**
 * The `weft` command line (@effect/cli): `init` and `serve` work on a data
 * directory; every other command talks to the node that `serve` runs there,
 * through its control endpoint (`Control`), so its changes sync.
 *
 * Every command takes `--dir` (default `./.weft`); the client commands take
 * `--json` to print their answer as one JSON line instead of text.
 *
 * The modules behind `init` and `serve` (libp2p, SQLite, the engine) are
 * loaded only by those commands, so the client commands start quickly.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { existsSync } from "node:fs"
import { resolve as resolvePath } from "node:path"
import * as ControlSocket from "../node/ControlSocket.js"
import * as DataDir from "../node/DataDir.js"
import { PeerId } from "../transport/Transport.js"
import * as Control from "./Control.js"
import * as LocationCommand from "./LocationCommand.js"
import * as Remote from "./Remote.js"
import * as Output from "./Output.js"

/** The version `weft --version` prints. */
export const VERSION = "0.1.0"

const dir = Options.text("dir").pipe(
  Options.withDefault(DataDir.DEFAULT_DIR),
  Options.withDescription("the node's data directory")
)
const json = Options.boolean("json").pipe(Options.withDescription("print the answer as one JSON line"))
const library = Options.text("library").pipe(
  Options.optional,
  Options.withDescription("the library's id (default: the node's default library, see `weft status`)")
)
/** Whether `text` is a multiaddr (multiaddr's own check, loaded only for a command given one: it costs every other command's start). */
const isMultiaddr = (text: string) =>
  Effect.promise(() => import("@multiformats/multiaddr")).pipe(Effect.map(({ multiaddr }) => {
    try {
      multiaddr(text)
      return true
    } catch {
      return false
    }
  }))

/** A multiaddr, checked as the parser reads it (a typo is a usage error, not a node redialling nothing). */
const Multiaddr = Schema.String.pipe(
  Schema.filterEffect(isMultiaddr),
  Schema.annotations({ message: (issue) => `${String(issue.actual)} is not a multiaddr (for example /ip4/192.168.1.20/tcp/4001)` })
)

/** `HOST:PORT` for `weft serve --http` (an IPv6 host in brackets), as the server's listen options. */
const HttpAddress = Schema.transform(
  Schema.String.pipe(
    Schema.filter((text) =>
      /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(0|[1-9][0-9]{0,4})$/.test(text) && Number(text.slice(text.lastIndexOf(":") + 1)) <= 65_535
    ),
    Schema.annotations({ message: (issue) => `${String(issue.actual)} is not HOST:PORT (for example 127.0.0.1:8080)` })
  ),
  Schema.Struct({ hostname: Schema.String, port: Schema.Number }),
  {
    strict: true,
    decode: (text) => {
      const colon = text.lastIndexOf(":")
      return { hostname: text.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port: Number(text.slice(colon + 1)) }
    },
    encode: ({ hostname, port }) => `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`
  }
)

/**
 * A libp2p peer id as people copy it: base58btc, an Ed25519 key's
 * (`12D3KooW` and 44 more) or an RSA key's hash (`Qm` and 44 more).
 */
const PEER_ID = /^(12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|Qm[1-9A-HJ-NP-Za-km-z]{44})$/

/** A peer id, or a multiaddr to connect to first: checked as the parser reads it. */
const Target = Schema.String.pipe(
  Schema.filterEffect((text) => (PEER_ID.test(text) ? Effect.succeed(true) : isMultiaddr(text))),
  Schema.annotations({
    message: (issue) =>
      `${String(issue.actual)} is not a peer id (12D3KooW…, as \`weft status\` prints it) or a multiaddr (/ip4/192.168.1.20/tcp/4001/p2p/12D3KooW…)`
  })
)
const peer = Args.text({ name: "peer" }).pipe(
  Args.withSchema(Target),
  Args.withDescription("a peer id, or a multiaddr to connect to first")
)

/** The root command and its global options: `--peer` runs `weft notes …`, `status` and `transfers …` against that peer (see `Remote`). */
const root = Command.make("weft", {
  peer: Options.text("peer").pipe(
    Options.withSchema(Schema.String.pipe(Schema.pattern(PEER_ID, { message: () => "--peer takes a peer id (12D3KooW…, as `weft status` prints it)" }))),
    Options.optional,
    Options.withDescription("run `weft notes …`, `status` or `transfers …` on this paired peer, through rspc, as far as it granted this node (before the command: `weft --peer <id> notes list`)")
  )
})

/**
 * Sends a request to the node of `dir` and prints the answer; with `--peer`, to that peer through rspc
 * (`status`, `transfers …`; notes go through `notesRequest`), refused for the other commands.
 */
const request = <R extends Control.Request>(
  directory: string,
  asJson: boolean,
  body: R,
  show: (value: Control.Success<R>) => string
) =>
  Effect.flatMap(root, ({ peer }): Effect.Effect<void, unknown, Command.Command.Context<"weft">> =>
    Option.isSome(peer)
      ? Remote.isRemote(body)
        ? Effect.flatMap(
          Remote.call(DataDir.layout(directory).socket, peer.value as PeerId, body),
          (value) => Console.log(asJson ? JSON.stringify(value) : show(value as Control.Success<R>))
        )
        : Remote.unsupported(body._tag)
      : Effect.flatMap(
        Control.call(DataDir.layout(directory).socket, body),
        (value) => Console.log(asJson ? JSON.stringify(value) : show(value))
      ))

/** A notes request: to the node of `dir`, or with `--peer` to that peer's notes through it. */
const notesRequest = <R extends Control.Request & Remote.NotesRequest>(
  directory: string,
  asJson: boolean,
  body: R,
  show: (value: Control.Success<R>) => string
) =>
  Effect.flatMap(root, ({ peer }): Effect.Effect<void, unknown, Command.Command.Context<"weft">> =>
    Option.isNone(peer)
      ? request(directory, asJson, body, show)
      : Effect.flatMap(
        Remote.call(DataDir.layout(directory).socket, peer.value as PeerId, body),
        (value) => Console.log(asJson ? JSON.stringify(value) : show(value as Control.Success<R>))
      ))

/** The peer a target names: a peer id as it is; a multiaddr once the node of `dir` connected to it. */
const resolve = (directory: string, target: string) =>
  target.startsWith("/")
    ? Effect.map(Control.call(DataDir.layout(directory).socket, { _tag: "Connect", address: target }), (connected) => connected.peer)
    : Effect.succeed(target as PeerId)

const optional = <A>(option: Option.Option<A>): A | undefined => Option.getOrUndefined(option)
const libraryField = (id: Option.Option<string>) => (Option.isSome(id) ? { library: id.value } : {})

const init = Command.make(
  "init",
  {
    dir,
    libraryName: Options.text("library-name").pipe(Options.optional, Options.withDescription("the first library's name")),
    json
  },
  (args) =>
    Effect.gen(function*() {
      const { init } = yield* Effect.promise(() => import("./Init.js"))
      const result = yield* init(args.dir, optional(args.libraryName))
      yield* Console.log(
        args.json ? JSON.stringify(result) : [
          `${result.created ? "initialized" : "already initialized"} ${result.dir}`,
          `peer      ${result.peerId}`,
          ...result.libraries.flatMap((l) => Output.library(l, result.peerId, result.defaultLibrary))
        ].join("\n")
      )
    })
).pipe(Command.withDescription("create the identity, a first library and its database in the data directory"))

const serve = Command.make(
  "serve",
  {
    dir,
    listen: Options.text("listen").pipe(
      Options.repeated,
      Options.withSchema(Schema.mutable(Schema.Array(Multiaddr))),
      Options.withDescription("a multiaddr to listen on (repeatable; default /ip4/0.0.0.0/tcp/4001)")
    ),
    noMdns: Options.boolean("no-mdns").pipe(Options.withDescription("do not discover or advertise on the local network")),
    peers: Options.text("peer").pipe(Options.repeated, Options.withSchema(Schema.mutable(Schema.Array(Multiaddr))), Options.withDescription("a peer's multiaddr to stay connected to (repeatable)")),
    yes: Options.boolean("yes").pipe(Options.withDescription("approve every request without asking: pairing, and files sent to this node")),
    acceptDir: Options.directory("accept-dir").pipe(
      Options.optional,
      Options.withDescription("where files sent to this node are received (default: received/ in the data directory)")
    ),
    acceptFrom: Options.text("accept-from").pipe(
      Options.repeated,
      Options.withSchema(Schema.mutable(Schema.Array(PeerId))),
      Options.withDescription("a peer id whose files are accepted without asking (repeatable); with --yes, files from any other peer are refused")
    ),
    http: Options.text("http").pipe(
      Options.withSchema(HttpAddress),
      Options.optional,
      Options.withDescription("serve the libraries' files over HTTP on HOST:PORT (e.g. 127.0.0.1:8080; port 0 picks one), behind a token printed at start")
    ),
    watch: Options.boolean("watch").pipe(
      Options.withDescription("watch the locations held here and rescan each once its changes settle (not needed for `weft location rescan`)")
    )
  },
  (args) =>
    Effect.scoped(Effect.gen(function*() {
      const Serve = yield* Effect.promise(() => import("./Serve.js"))
      const Approval = yield* Effect.promise(() => import("./Approval.js"))
      const Consent = yield* Effect.promise(() => import("../plugins/Consent.js"))
      const node = yield* Serve.run({
        dir: args.dir,
        listen: args.listen.length === 0 ? ["/ip4/0.0.0.0/tcp/4001"] : args.listen,
        mdns: !args.noMdns,
        peers: args.peers,
        frontEnd: args.yes ? Consent.approveAll : Approval.terminal,
        ...(Option.isSome(args.acceptDir) ? { acceptDir: args.acceptDir.value } : {}),
        ...(args.acceptFrom.length === 0 ? {} : { acceptFrom: args.acceptFrom, refuseOthers: args.yes }),
        ...(Option.isSome(args.http) ? { http: args.http.value } : {}),
        watch: args.watch
      })
      const paths = DataDir.layout(args.dir)
      yield* Console.log([
        `weft node ${node.peerId}`,
        `data      ${paths.dir}`,
        ...node.addresses.map((address) => `listening ${address}`),
        ...node.libraries.flatMap((l) => Output.library(l, node.peerId, node.defaultLibrary)),
        `control   ${paths.socket}`,
        `files     received into ${node.acceptDir}`,
        `mdns      ${args.noMdns ? "off" : "on"}; pairing requests and files ${args.yes ? "approved automatically (--yes)" : "asked on this terminal"}`,
        ...(args.acceptFrom.length === 0 ? [] : [
          `accept    files from ${args.acceptFrom.join(", ")} without asking; from other peers ${args.yes ? "refused" : "asked on this terminal"}`
        ]),
        ...(args.watch ? ["watch     the locations held here, rescanned as they change"] : []),
        ...(node.http === undefined ? [] : [
          `http      ${node.http.origin}/files/<library>/<file id>, /hash/<library>/<sha256>, /play/<library>/<file id>, /thumbnail/<library>/<file id>, /gallery/<library>`,
          `token     ${node.http.token} (as ?token=, which sets a cookie, or Authorization: Bearer)`
        ])
      ].join("\n"))
      return yield* Effect.never.pipe(Effect.onInterrupt(() => Effect.logInfo("stopping")))
    }))
).pipe(Command.withDescription("run the node: transport, plugins, sync; serves the other commands until stopped"))

const status = Command.make("status", { dir, json }, (args) => request(args.dir, args.json, { _tag: "Status" }, Output.status)).pipe(
  Command.withDescription("peer id, addresses, libraries, sync sessions, open connections, streams and handlers")
)

const peers = Command.make("peers", { dir, json }, (args) => request(args.dir, args.json, { _tag: "Peers" }, Output.peers)).pipe(
  Command.withDescription("available and discovered peers")
)

const connect = Command.make(
  "connect",
  { dir, json, address: Args.text({ name: "multiaddr" }).pipe(Args.withSchema(Multiaddr)) },
  (args) => request(args.dir, args.json, { _tag: "Connect", address: args.address }, (r) => `connected to ${r.peer}`)
).pipe(Command.withDescription("connect to a peer's address"))

const pair = Command.make(
  "pair",
  { dir, json, library, peer },
  (args) =>
    Effect.flatMap(resolve(args.dir, args.peer), (peer) =>
      request(args.dir, args.json, { _tag: "Pair", peer, ...libraryField(args.library) }, Output.paired))
).pipe(Command.withDescription("ask a peer to share a library (its user approves); both become members"))

const ping = Command.make(
  "ping",
  {
    dir,
    json,
    peer,
    count: Options.integer("count").pipe(
      Options.withSchema(Schema.Int.pipe(Schema.between(1, 1000, { message: () => "--count must be a whole number from 1 to 1000" }))),
      Options.withDefault(3),
      Options.withDescription("pings to send (1-1000)")
    )
  },
  (args) =>
    Effect.flatMap(resolve(args.dir, args.peer), (peer) =>
      request(args.dir, args.json, { _tag: "Ping", peer, count: args.count }, Output.ping))
).pipe(Command.withDescription("measure round trips to a peer"))

const notesAdd = Command.make(
  "add",
  {
    dir,
    json,
    library,
    title: Args.text({ name: "title" }),
    body: Options.text("body").pipe(Options.withDefault("")),
    done: Options.boolean("done")
  },
  (args) =>
    notesRequest(
      args.dir,
      args.json,
      { _tag: "NotesAdd", title: args.title, body: args.body, done: args.done, ...libraryField(args.library) },
      (note) => `added ${Output.note(note)}`
    )
).pipe(Command.withDescription("add a note"))

const notesList = Command.make(
  "list",
  { dir, json, library },
  (args) =>
    Effect.flatMap(root, ({ peer }) =>
      Effect.flatMap(
        Option.isSome(peer)
          ? Remote.listNotes(DataDir.layout(args.dir).socket, peer.value as PeerId, optional(args.library))
          : Control.listNotes(DataDir.layout(args.dir).socket, optional(args.library)),
        (all) => Console.log(args.json ? JSON.stringify(all) : Output.notes(all))
      ))
).pipe(Command.withDescription("list the notes"))

const notesSet = Command.make(
  "set",
  {
    dir,
    json,
    library,
    id: Args.text({ name: "id" }),
    title: Options.text("title").pipe(Options.optional),
    body: Options.text("body").pipe(Options.optional),
    done: Options.choice("done", ["true", "false"]).pipe(Options.optional)
  },
  (args) =>
    notesRequest(
      args.dir,
      args.json,
      {
        _tag: "NotesSet",
        id: args.id,
        ...libraryField(args.library),
        ...(Option.isSome(args.title) ? { title: args.title.value } : {}),
        ...(Option.isSome(args.body) ? { body: args.body.value } : {}),
        ...(Option.isSome(args.done) ? { done: args.done.value === "true" } : {})
      },
      (note) => `updated ${Output.note(note)}`
    )
).pipe(Command.withDescription("change a note's title, body or done flag"))

const notesRemove = Command.make(
  "rm",
  { dir, json, library, id: Args.text({ name: "id" }) },
  (args) => notesRequest(args.dir, args.json, { _tag: "NotesRemove", id: args.id, ...libraryField(args.library) }, (r) => `removed ${r.id}`)
).pipe(Command.withDescription("remove a note"))

const notesShow = Command.make(
  "show",
  { dir, json, library, id: Args.text({ name: "id" }) },
  (args) => notesRequest(args.dir, args.json, { _tag: "NotesGet", id: args.id, ...libraryField(args.library) }, Output.noteInFull)
).pipe(Command.withDescription("show a note whole, and how its fields merge when peers change them at once"))

const notes = Command.make("notes").pipe(
  Command.withDescription("demo data: notes that sync between paired nodes"),
  Command.withSubcommands([notesAdd, notesList, notesShow, notesSet, notesRemove])
)

const grantPeer = Args.text({ name: "peer" }).pipe(
  Args.withSchema(Schema.String.pipe(Schema.pattern(PEER_ID, { message: () => "a peer id (12D3KooW…, as `weft status` prints it)" }))),
  Args.withDescription("the peer's id")
)
const capability = Args.text({ name: "capability" }).pipe(Args.withDescription("a capability, as notes.read or notes.write"))

const grant = Command.make(
  "grant",
  { dir, json, library, peer: grantPeer, capabilities: Args.atLeast(capability, 1) },
  (args) =>
    request(args.dir, args.json, { _tag: "Grant", peer: args.peer as PeerId, capabilities: args.capabilities, ...libraryField(args.library) }, Output.grant)
).pipe(Command.withDescription("let a peer of the library call this node's procedures that need these capabilities (rspc)"))

const revoke = Command.make(
  "revoke",
  { dir, json, library, peer: grantPeer, capabilities: Args.repeated(capability) },
  (args) =>
    request(args.dir, args.json, {
      _tag: "Revoke",
      peer: args.peer as PeerId,
      ...(args.capabilities.length === 0 ? {} : { capabilities: args.capabilities }),
      ...libraryField(args.library)
    }, Output.grant)
).pipe(Command.withDescription("take capabilities (default: all) from a peer; its calls that need them end at once"))

const grants = Command.make(
  "grants",
  { dir, json, library },
  (args) => request(args.dir, args.json, { _tag: "Grants", ...libraryField(args.library) }, Output.grants)
).pipe(Command.withDescription("what each peer may call on this node (every library, or --library's)"))

const requestId = Args.text({ name: "id" }).pipe(Args.withDescription("the request's id, as `weft requests` lists it"))

const requestsApprove = Command.make(
  "approve",
  { dir, json, id: requestId },
  (args) => request(args.dir, args.json, { _tag: "ConsentAnswer", id: args.id, approve: true }, () => `approved ${args.id}`)
).pipe(Command.withDescription("approve a request waiting at the node"))

const requestsDecline = Command.make(
  "decline",
  { dir, json, id: requestId },
  (args) => request(args.dir, args.json, { _tag: "ConsentAnswer", id: args.id, approve: false }, () => `declined ${args.id}`)
).pipe(Command.withDescription("decline a request waiting at the node"))

const requestsWatch = Command.make(
  "watch",
  { dir },
  (args) =>
    Effect.scoped(Effect.gen(function*() {
      const Approval = yield* Effect.promise(() => import("./Approval.js"))
      const path = DataDir.layout(args.dir).socket
      const control = yield* ControlSocket.client(path, Control.group)
      yield* Console.log("answering the node's requests here (y approves); stop with Ctrl-C")
      // the node counts on this terminal while it reads the requests: they wait for an answer here
      yield* Approval.prompt({
        events: control.ConsentWatch(),
        answer: (id, approve) => control.ConsentAnswer({ id, approve })
      })
    }))
).pipe(Command.withDescription("answer the node's requests on this terminal, as they come"))

const requests = Command.make(
  "requests",
  { dir, json },
  (args) => request(args.dir, args.json, { _tag: "ConsentPending" }, Output.requests)
).pipe(
  Command.withDescription("requests waiting for an answer at the node (pairing); approve, decline or watch them"),
  Command.withSubcommands([requestsApprove, requestsDecline, requestsWatch])
)

/** A file or folder to send: it must exist (checked as the parser reads it). */
const SourcePath = Schema.String.pipe(
  Schema.filter((path) => existsSync(path)),
  Schema.annotations({ message: (issue) => `${String(issue.actual)}: no such file or folder` })
)

const send = Command.make(
  "send",
  {
    dir,
    json,
    peer,
    paths: Args.text({ name: "path" }).pipe(Args.withSchema(SourcePath), Args.atLeast(1), Args.withDescription("files and folders to send"))
  },
  (args) =>
    Effect.flatMap(resolve(args.dir, args.peer), (peer) =>
      Effect.flatMap(Effect.promise(() => import("./Send.js")), (Send) =>
        Send.run({ socket: DataDir.layout(args.dir).socket, peer, paths: args.paths.map((path) => resolvePath(path)), json: args.json })))
).pipe(Command.withDescription("send files and folders to a peer (its user accepts them); Ctrl-C cancels"))

const transferId = Args.text({ name: "id" }).pipe(Args.withDescription("the transfer's id, as `weft transfers` lists it"))

const transfersCancel = Command.make(
  "cancel",
  { dir, json, id: transferId },
  (args) => request(args.dir, args.json, { _tag: "TransferCancel", id: args.id }, () => `cancelled ${args.id}`)
).pipe(Command.withDescription("cancel a transfer (the other side learns it)"))

const transfersPause = Command.make(
  "pause",
  { dir, json, id: transferId },
  (args) => request(args.dir, args.json, { _tag: "TransferPause", id: args.id }, () => `paused ${args.id}`)
).pipe(Command.withDescription("pause a transfer from this side (it waits until resumed here)"))

const transfersResume = Command.make(
  "resume",
  { dir, json, id: transferId },
  (args) => request(args.dir, args.json, { _tag: "TransferResume", id: args.id }, () => `resumed ${args.id}`)
).pipe(Command.withDescription("resume a paused transfer, or an interrupted one from its last verified chunk"))

const transfers = Command.make(
  "transfers",
  { dir, json },
  (args) =>
    Effect.flatMap(Effect.promise(() => import("./TransferOutput.js")), (TransferOutput) =>
      request(args.dir, args.json, { _tag: "Transfers" }, TransferOutput.transfers))
).pipe(
  Command.withDescription("files being sent and received by the node, and those that ended lately; pause, resume or cancel one"),
  Command.withSubcommands([transfersPause, transfersResume, transfersCancel])
)

const location = LocationCommand.make({
  dir,
  json,
  local: (command) => Effect.flatMap(root, ({ peer }) => (Option.isSome(peer) ? Remote.unsupported(command) : Effect.void))
})

/** The `weft` command and its subcommands. */
export const weft = root.pipe(
  Command.withDescription("Weft: a local-first sync node"),
  Command.withSubcommands([init, serve, status, peers, connect, pair, ping, notes, requests, send, transfers, grant, revoke, grants, location])
)

/** Runs `weft` on the arguments (`process.argv` shape: node, script, then the arguments). */
export const run = Command.run(weft, { name: "weft", version: VERSION })
