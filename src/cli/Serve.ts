/**
 * `weft serve`: the node of a data directory (`weft init` prepared it),
 * embedded like any app embeds one (`Node.layerDirectory`), with the CLI's
 * notes as its app, its control procedures on the directory's control
 * socket, and a front end answering its questions (the terminal prompt, or
 * `--yes`).
 *
 * Everything lives in the scope of `run`: closing it stops the front end
 * and the control socket, then the node (its plugins, sessions,
 * connections, engines) and releases the directory.
 *
 * @since 0.1.0
 */
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { join, resolve } from "node:path"
import type * as Engine from "../engine/Engine.js"
import type { Library } from "../library/Libraries.js"
import * as DataDir from "../node/DataDir.js"
import * as Locations from "../node/Locations.js"
import * as Node from "../node/Node.js"
import * as ControlSocket from "../node/ControlSocket.js"
import { Consent } from "../plugins/Consent.js"
import * as Http from "../plugins/media/Http.js"
import * as PreviewHttp from "../plugins/media/preview/Http.js"
import { Preview } from "../plugins/media/preview/Preview.js"
import * as Grants from "../plugins/rspc/Grants.js"
import type { PeerId } from "../transport/Transport.js"
import * as Control from "./Control.js"
import * as Inbox from "./Inbox.js"
import * as Notes from "./Notes.js"
import * as NotesControl from "./NotesControl.js"
import type * as RemoteNotes from "./RemoteNotes.js"
import * as RemoteServe from "./RemoteServe.js"
import * as Transfers from "./Transfers.js"

/** How `weft serve` runs. */
export interface Options {
  readonly dir: string
  /** Multiaddrs to listen on. */
  readonly listen: ReadonlyArray<string>
  /** Discover and advertise on the local network. */
  readonly mdns: boolean
  /** Addresses of peers to connect to, and to reconnect to whenever the connection drops. */
  readonly peers: ReadonlyArray<string>
  /** Answers the node's questions (pairing requests) while it runs: `Approval.terminal`, `Consent.approveAll`. */
  readonly frontEnd: Effect.Effect<void, never, Consent | Scope.Scope>
  /** Where files sent to this node are received, once its user (or `--yes`) accepts them (default: `received` in the data directory). */
  readonly acceptDir?: string
  /** Peers whose files are accepted without asking (`--accept-from`); see `Inbox.Options`. */
  readonly acceptFrom?: ReadonlyArray<string>
  /** Watch the locations held here and rescan each after changes (`--watch`). */
  readonly watch?: boolean
  /** With `acceptFrom`: the files of every other peer are refused, not asked (`--yes`). */
  readonly refuseOthers?: boolean
  /** Serve the libraries' files over HTTP on this address (`weft serve --http 127.0.0.1:PORT`), with a per-run token. */
  readonly http?: { readonly hostname: string; readonly port: number }
}

/** The node that runs, for the banner. */
export interface Running {
  readonly peerId: PeerId
  readonly addresses: ReadonlyArray<string>
  readonly libraries: ReadonlyArray<Library>
  readonly defaultLibrary: string | undefined
  /** Where files sent to this node are received. */
  readonly acceptDir: string
  /** The HTTP front of the libraries' files, when asked for: where it listens and its per-run token. */
  readonly http?: { readonly origin: string; readonly token: string }
}

/** Why `weft serve` could not start. */
export type StartError = Node.DirectoryStartError | ControlSocket.ControlError | Grants.GrantsError | HttpServerError.ServeError

const noteOf = (library: string, row: { readonly id: string; readonly title: string; readonly body: string; readonly done: boolean }): NotesControl.Note => ({
  library,
  id: row.id,
  title: row.title,
  body: row.body,
  done: row.done
})

/** The notes procedures' handlers, with the node in context (served on the control socket, and on rspc). */
export const notesProcedures = Effect.gen(function*() {
  const node = yield* Node.Node
  const existing = (engine: Engine.Service, library: string, id: string) =>
    Effect.flatMap(engine.get(Notes.notes, id), Option.match({
      onNone: () => Effect.fail(new NotesControl.NoteError({ reason: "NotFound", detail: `no note ${id} in library ${library}` })),
      onSome: Effect.succeed
    }))
  return {
    NotesAdd: (request) =>
      Effect.scoped(Effect.gen(function*() {
        const { engine, library } = yield* node.library(request.library)
        const id = Notes.newId()
        yield* engine.mutate([Notes.notes.create(id, { title: request.title, body: request.body, done: request.done })])
        return noteOf(library.id, yield* existing(engine, library.id, id))
      })),
    NotesGet: (request) =>
      Effect.scoped(Effect.gen(function*() {
        const { engine, library } = yield* node.library(request.library)
        return noteOf(library.id, yield* existing(engine, library.id, request.id))
      })),
    NotesList: (request) =>
      Effect.scoped(Effect.gen(function*() {
        const { engine, library } = yield* node.library(request.library)
        const limit = request.limit ?? NotesControl.NOTES_PAGE_LIMIT
        const after = request.after
        // keyset paging on (title, id): one more row than the page holds says whether another follows
        const rows = yield* engine.query(Notes.notes, (q) =>
          (after === undefined ? q : q.where((eb) =>
            eb.or([eb("title", ">", after.title), eb.and([eb("title", "=", after.title), eb("id", ">", after.id)])])
          )).orderBy("title").orderBy("id").limit(limit + 1))
        const notes: Array<NotesControl.Note> = []
        let bytes = 0
        for (const row of rows.slice(0, limit)) {
          const note = noteOf(library.id, row)
          bytes += Buffer.byteLength(JSON.stringify(note))
          // a page holds at least one note, and stops before the one that would pass its byte bound
          if (notes.length > 0 && bytes > NotesControl.NOTES_PAGE_BYTES) break
          notes.push(note)
        }
        const last = notes[notes.length - 1]
        const more = notes.length < rows.length
        return { notes, ...(more && last !== undefined ? { next: { title: last.title, id: last.id } } : {}) } satisfies NotesControl.NotesPage
      })),
    NotesSet: (request) =>
      Effect.scoped(Effect.gen(function*() {
        const { engine, library } = yield* node.library(request.library)
        yield* existing(engine, library.id, request.id)
        const values = {
          ...(request.title === undefined ? {} : { title: request.title }),
          ...(request.body === undefined ? {} : { body: request.body }),
          ...(request.done === undefined ? {} : { done: request.done })
        }
        if (Object.keys(values).length > 0) yield* engine.mutate([Notes.notes.update(request.id, values)])
        return noteOf(library.id, yield* existing(engine, library.id, request.id))
      })),
    NotesRemove: (request) =>
      Effect.scoped(Effect.gen(function*() {
        const { engine, library } = yield* node.library(request.library)
        yield* existing(engine, library.id, request.id)
        yield* engine.mutate([Notes.notes.delete(request.id)])
        return { id: request.id }
      }))
  } satisfies RemoteNotes.Procedures
})

/** Serves the notes procedures with the node in context. */
export const notesHandlers = NotesControl.Control.toLayer(notesProcedures)

/** Starts the node of `options.dir`; it runs until the scope closes. */
export const run = (options: Options): Effect.Effect<Running, StartError, Scope.Scope> =>
  Effect.gen(function*() {
    const paths = DataDir.layout(options.dir)
    yield* DataDir.requireInitialized(paths)
    const node = Node.layerDirectory({
      directory: options.dir,
      models: Notes.models,
      listen: options.listen,
      mdns: options.mdns,
      peers: options.peers,
      // interrupted transfers resume after a restart too (`weft transfers resume`)
      spacedrop: { stateDir: join(paths.dir, "spacedrop") },
      // locations (`weft location …`), presence and remote reads; mounts kept in media/mounts.json
      media: options.watch === true ? { watch: {} } : {},
      // thumbnails of the images of locations held here, made in the background; the cache in media/previews
      preview: {}
    })
    const handlers = Layer.mergeAll(Node.controlHandlers, notesHandlers, RemoteServe.controlHandlers, Transfers.controlHandlers, Locations.controlHandlers).pipe(
      Layer.provideMerge(Transfers.layer)
    )
    const control = ControlSocket.layer(paths.socket, Control.group).pipe(Layer.provideMerge(handlers))
    // the notes, on rspc, for the peers this node granted them to
    const rspc = RemoteServe.serveNotes(notesProcedures)
    const grants = Grants.layerFile(RemoteServe.grantsPath(paths.dir))
    // (rspc serves the transfers of the control endpoint's `Transfers`: one for both)
    const context = yield* Layer.build(Layer.provideMerge(rspc, control).pipe(Layer.provideMerge(grants), Layer.provideMerge(node)))
    yield* options.frontEnd.pipe(Effect.provide(context))
    const acceptDir = resolve(options.acceptDir ?? join(paths.dir, "received"))
    yield* Inbox.receive({
      acceptDir,
      ...(options.acceptFrom === undefined ? {} : { acceptFrom: options.acceptFrom }),
      ...(options.refuseOthers === undefined ? {} : { refuseOthers: options.refuseOthers })
    }).pipe(Effect.provide(context))
    const http = options.http === undefined ? undefined : yield* serveHttp(options.http).pipe(Effect.provide(context))
    const running = yield* Effect.provide(Node.Node, context)
    const status = yield* running.status
    return {
      peerId: running.peerId,
      addresses: yield* running.addresses,
      libraries: status.libraries,
      defaultLibrary: status.defaultLibrary,
      acceptDir,
      ...(http === undefined ? {} : { http })
    }
  })

/** The libraries' files and thumbnails over HTTP (local or remote, transparently), behind a token made for this run. */
const serveHttp = (address: { readonly hostname: string; readonly port: number }) =>
  Effect.gen(function*() {
    const token = Http.makeToken()
    const routes = PreviewHttp.routes(yield* Preview)
    const http = yield* Http.make({ token, hostname: address.hostname, port: address.port, routes })
    return { origin: http.origin, token }
  })
