/**
 * `weft location add | rescan | list | remove`: the media locations of the
 * running node (`LocationControl` on its control socket).
 *
 * - `add <library> <dir> [--name N]` records a directory as a location of
 *   the library, hashes and records its files, and keeps it mounted on this
 *   node (across restarts); `rescan <library> <location>` brings the records
 *   up to date (added, changed, removed files). Both show progress: a bar
 *   when standard output is a terminal (cli-progress), a plain line at most
 *   every second otherwise, only the last JSON line with `--json`. Stopping
 *   the command stops the scan; what was written stays, and a rescan
 *   finishes it.
 * - `list [<library>]` shows each location with whether it is online here
 *   and on which connected peers; `remove <library> <location>` stops
 *   holding it here and removes its records from the library
 *   (`--keep-records`: only stops holding it here).
 *
 * `<library>` is a library's id or name; `<location>` a location's id or
 * name. Names from the library (synced from any member) are shown escaped.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { resolve } from "node:path"
import * as ControlSocket from "../node/ControlSocket.js"
import * as DataDir from "../node/DataDir.js"
import type * as LocationControl from "../node/LocationControl.js"
import * as Control from "./Control.js"
import * as Output from "./Output.js"
import * as ProgressBar from "./ProgressBar.js"
import * as TransferOutput from "./TransferOutput.js"

/** How progress is shown. */
interface Display {
  readonly started: (event: Extract<LocationControl.LocationEvent, { _tag: "Started" }>) => Effect.Effect<void>
  readonly update: (progress: LocationControl.Progress) => Effect.Effect<void>
  /** Draws the last state and lets the terminal go (also when the command fails or is stopped). */
  readonly stop: Effect.Effect<void>
}

const done = (p: LocationControl.Progress) => p.added + p.changed + p.unchanged

/** One line of progress. */
export const line = (progress: LocationControl.Progress, total: number): string =>
  `scanned ${progress.seen} of ${total} file(s), ${TransferOutput.size(progress.hashedBytes)} hashed: ` +
  `${progress.added} added, ${progress.changed} changed, ${progress.unchanged} unchanged, ${progress.removed} removed`

/** The last line of a scan. */
export const summary = (started: Extract<LocationControl.LocationEvent, { _tag: "Started" }> | undefined, p: LocationControl.Progress): string =>
  [
    `location ${started === undefined ? p.location : `${Output.printable(started.name)} (${p.location}) at ${Output.printable(started.root)}`}`,
    ...(started === undefined ? [] : [`library  ${started.library}`]),
    `files    ${done(p)} recorded, ${TransferOutput.size(p.hashedBytes)} hashed: ${p.added} added, ${p.changed} changed, ${p.unchanged} unchanged, ${p.removed} removed${
      p.skipped === 0 ? "" : `, ${p.skipped} skipped (links, special files, unservable names)`
    }`
  ].join("\n")

const lines = (): Display => {
  let last = 0
  let total = 0
  return {
    started: (event) =>
      Effect.suspend(() => {
        total = event.files
        return Console.log(`scanning ${Output.printable(event.root)}: ${event.files} file(s)`)
      }),
    update: (progress) =>
      Effect.suspend(() => {
        const now = Date.now()
        if (progress.done || now - last < ProgressBar.LINE_EVERY_MS) return Effect.void
        last = now
        return Console.log(line(progress, total))
      }),
    stop: Effect.void
  }
}

const bar = Effect.map(
  ProgressBar.make<ReturnType<typeof payloadOf>>({
    format: "{bar} {percentage}% | {value}/{total} files | {hashed} hashed | {added} added, {changed} changed, {removed} removed",
    reserve: 80
  }),
  (progressBar): Display => {
    let started = false
    return {
      started: (event) =>
        Effect.sync(() => {
          started = true
          progressBar.show(0, Math.max(1, event.files), { hashed: "0 B", added: 0, changed: 0, removed: 0 })
        }),
      update: (progress) =>
        Effect.sync(() => {
          if (!started) return
          // files can appear while the scan runs: the total grows with them
          const total = Math.max(progressBar.total(), progress.seen)
          progressBar.show(progress.done ? total : progress.seen, total, payloadOf(progress))
        }),
      stop: Effect.sync(progressBar.stop)
    }
  }
)

const payloadOf = (p: LocationControl.Progress) => ({ hashed: TransferOutput.size(p.hashedBytes), added: p.added, changed: p.changed, removed: p.removed })

const display = (json: boolean): Effect.Effect<Display, never, Scope.Scope> =>
  ProgressBar.display({ json, quiet: { started: () => Effect.void, update: () => Effect.void, stop: Effect.void }, bar, lines })

/** Runs a scan (`LocationAdd` or `LocationRescan`) on the node at `socket`, showing its progress, and prints how it ended. */
export const scan = (
  socket: string,
  request: { readonly _tag: "LocationAdd"; readonly library: string; readonly root: string; readonly name?: string } | {
    readonly _tag: "LocationRescan"
    readonly library: string
    readonly location: string
  },
  json: boolean
) =>
  Effect.scoped(Effect.gen(function*() {
    const control = yield* ControlSocket.client(socket, Control.group)
    const shown = yield* display(json)
    let started: Extract<LocationControl.LocationEvent, { _tag: "Started" }> | undefined
    let last: LocationControl.Progress | undefined
    const { _tag, ...payload } = request
    // the node counts the files first (a walk of the directories): say so, as a large tree takes a while
    if (!json) yield* Console.log(`counting the files of ${_tag === "LocationAdd" ? Output.printable(request.root) : `location ${Output.printable(request.location)}`}…`)
    const events = _tag === "LocationAdd"
      ? control.LocationAdd(payload as Omit<Extract<typeof request, { _tag: "LocationAdd" }>, "_tag">)
      : control.LocationRescan(payload as Omit<Extract<typeof request, { _tag: "LocationRescan" }>, "_tag">)
    yield* Stream.runForEach(events, (event) =>
      event._tag === "Started"
        ? Effect.zipRight(Effect.sync(() => (started = event)), shown.started(event))
        : Effect.zipRight(Effect.sync(() => (last = event.progress)), shown.update(event.progress)))
    yield* shown.stop
    if (last === undefined || !last.done) {
      return yield* new ControlSocket.ControlError({ reason: "Io", path: socket, detail: "the node ended the scan without saying how it went" })
    }
    const result = last
    yield* Console.log(json ? JSON.stringify({ ...(started === undefined ? {} : { library: started.library, name: started.name, root: started.root }), ...result }) : summary(started, result))
  }))

const rtt = (ms: number | undefined) => (ms === undefined ? "" : ` (${ms.toFixed(1)} ms)`)

/** `weft location list`. */
export const list = (all: ReadonlyArray<LocationControl.LocationInfo>): string =>
  all.length === 0
    ? "no locations"
    : all.map((l) =>
      [
        `${Output.printable(l.name)}  (${l.id}, library ${l.library})`,
        `  here   ${
          l.root === undefined ? "not held on this node" : l.online ? `online at ${Output.printable(l.root)}` : `offline: ${Output.printable(l.root)} is missing`
        }`,
        `  peers  ${l.peers.length === 0 ? "online on no connected peer" : `online on ${l.peers.map((p) => `${p.peer}${rtt(p.rtt)}`).join(", ")}`}`
      ].join("\n")
    ).join("\n")

/** What the `location` commands need from the root command. */
export interface Shared<R> {
  readonly dir: Options.Options<string>
  readonly json: Options.Options<boolean>
  /** Fails when the command line asked to run on another peer (`--peer`), which these commands do not. */
  readonly local: (command: string) => Effect.Effect<void, unknown, R>
}

const libraryArg = Args.text({ name: "library" }).pipe(Args.withDescription("the library's id or name"))
const locationArg = Args.text({ name: "location" }).pipe(Args.withDescription("the location's id or name, as `weft location list` shows it"))

/** The `location` command and its subcommands. */
export const make = <R>(shared: Shared<R>) => {
  const { dir, json, local } = shared
  const socket = (directory: string) => DataDir.layout(directory).socket

  const add = Command.make(
    "add",
    {
      dir,
      json,
      library: libraryArg,
      directory: Args.text({ name: "directory" }).pipe(Args.withDescription("the directory to index (on this node's machine)")),
      name: Options.text("name").pipe(Options.optional, Options.withDescription("the location's name (default: the directory's)"))
    },
    (args) =>
      Effect.zipRight(
        local("location add"),
        scan(socket(args.dir), {
          _tag: "LocationAdd",
          library: args.library,
          root: resolve(args.directory),
          ...(Option.isSome(args.name) ? { name: args.name.value } : {})
        }, args.json)
      )
  ).pipe(Command.withDescription("index a directory as a location of a library (its files, hashed) and keep it mounted on this node"))

  const rescan = Command.make(
    "rescan",
    { dir, json, library: libraryArg, location: locationArg },
    (args) => Effect.zipRight(local("location rescan"), scan(socket(args.dir), { _tag: "LocationRescan", library: args.library, location: args.location }, args.json))
  ).pipe(Command.withDescription("bring a location's records up to date with its directory (added, changed, removed files)"))

  const listCommand = Command.make(
    "list",
    { dir, json, library: Args.text({ name: "library" }).pipe(Args.optional, Args.withDescription("the library's id or name (default: every library)")) },
    (args) =>
      Effect.zipRight(
        local("location list"),
        Effect.flatMap(
          Control.call(socket(args.dir), { _tag: "LocationList", ...(Option.isSome(args.library) ? { library: args.library.value } : {}) }),
          (all) => Console.log(args.json ? JSON.stringify(all) : list(all))
        )
      )
  ).pipe(Command.withDescription("the locations of the libraries: online here, and on which connected peers"))

  const remove = Command.make(
    "remove",
    {
      dir,
      json,
      library: libraryArg,
      location: locationArg,
      keepRecords: Options.boolean("keep-records").pipe(Options.withDescription("only stop holding it on this node; its records stay in the library"))
    },
    (args) =>
      Effect.zipRight(
        local("location remove"),
        Effect.flatMap(
          Control.call(socket(args.dir), { _tag: "LocationRemove", library: args.library, location: args.location, keepRecords: args.keepRecords }),
          (removed) =>
            Console.log(
              args.json ? JSON.stringify(removed) : `${args.keepRecords ? "no longer held here" : "removed"}: ${Output.printable(removed.name)} (${removed.id})`
            )
        )
      )
  ).pipe(Command.withDescription("stop holding a location on this node and remove its records from the library (--keep-records: only stop holding it)"))

  return Command.make("location").pipe(
    Command.withDescription("media locations: directories indexed into a library, served to its members"),
    Command.withSubcommands([add, rescan, listCommand, remove])
  )
}
