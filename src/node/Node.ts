/**
 * A full Weft node that an app embeds: identity, a libp2p transport, the
 * libraries, the plugin host, consent, an engine per library, the sync,
 * ping and pair plugins, and reconnection, as one Layer graph:
 *
 * ```text
 * Identity ─ Transport ─ PluginHost ─┬─ Sync ─ (an engine per library: Engines)
 * Libraries ────────────────────────┤─ Ping
 * Consent ──────────────────────────┤─ Pair
 * AddressBook ──────────────────────┴─ Reconnect ─ Node
 * ```
 *
 * ```ts
 * const notes = Model.make("notes", Schema.Struct({ title: Schema.String }))
 * const program = Effect.gen(function*() {
 *   const node = yield* Node.Node
 *   const { engine } = yield* node.library()          // the default library's engine
 *   yield* engine.mutate([notes.create("n1", { title: "hello" })])
 * })
 * program.pipe(Effect.scoped, Effect.provide(Node.layerDirectory({ directory: "./data", models: [notes], listen: ["/ip4/0.0.0.0/tcp/4001"] })))
 * ```
 *
 * `layer` wants the identity, libraries and address book from the app
 * (`Identity.layer(path)`, `Libraries.layerFile(path)`, …);
 * `layerDirectory` keeps them all in a data directory (see `DataDir`), held
 * by one process at a time. Every service of the graph is in the layer's
 * output (`PluginHost`, `Libraries`, `Engines`, `Consent`, `Sync`, `Ping`,
 * `Pair`, `Reconnect`, `Node`), so an app registers its own plugins on the
 * host and answers pairing requests through `Consent` (nobody attends by
 * default: requests are refused at once; `Consent.approveAll` or
 * `Consent.answerWith` attends). With the `rspc` option the node serves the
 * app's own procedures to the peers it grants them to (`RspcOptions`).
 *
 * Libraries appear while the node runs (pairing joins this node to a peer's
 * library): their engine is opened then, and synced. A library joined while
 * the default library still holds nothing becomes the default. Everything lives in
 * the layer's scope: closing it unregisters the plugins, interrupts every
 * session and handler, closes the connections and the engines.
 *
 * @since 0.1.0
 */
import type * as Rpc from "@effect/rpc/Rpc"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { join } from "node:path"
import type { StorageError } from "../engine/Database.js"
import type * as Engine from "../engine/Engine.js"
import type { ValidationError } from "../engine/EngineError.js"
import type * as Model from "../engine/Model.js"
import * as Libraries from "../library/Libraries.js"
import * as MediaModels from "../plugins/media/Models.js"
import * as PreviewModels from "../plugins/media/preview/Models.js"
import type * as Preview from "../plugins/media/preview/Preview.js"
import * as Consent from "../plugins/Consent.js"
import * as Pair from "../plugins/pair/Pair.js"
import * as Grants from "../plugins/rspc/Grants.js"
import type * as RspcProtocol from "../plugins/rspc/Protocol.js"
import * as Rspc from "../plugins/rspc/Rspc.js"
import * as Ping from "../plugins/ping/Ping.js"
import * as PluginHost from "../plugins/PluginHost.js"
import * as Spacedrop from "../plugins/spacedrop/Spacedrop.js"
import * as Sync from "../plugins/sync/Sync.js"
import * as Identity from "../transport/Identity.js"
import * as Libp2pTransport from "../transport/Libp2pTransport.js"
import { type PeerId, Transport, type TransportError } from "../transport/Transport.js"
import * as AddressBook from "./AddressBook.js"
import * as Control from "./Control.js"
import * as ControlSocket from "./ControlSocket.js"
import * as DataDir from "./DataDir.js"
import * as DirectoryLock from "./DirectoryLock.js"
import * as Engines from "./Engines.js"
import * as Locations from "./Locations.js"
import * as Previews from "./Previews.js"
import * as internal from "./internal/node.js"
import * as Reconnect from "./Reconnect.js"

/** How a node runs. */
export interface Options {
  /** The app's models, declared by every library's engine. */
  readonly models: ReadonlyArray<Model.Any>
  /** The SQLite file of a library (`layerDirectory`: `libraries/<id>.db` in the directory). */
  readonly database: (library: string) => string
  /** Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/4001` (`/ip4/127.0.0.1/tcp/0`: loopback, any free port). */
  readonly listen: ReadonlyArray<string>
  /** Discover and advertise on the local network with mDNS (default false). */
  readonly mdns?: boolean
  /** Addresses to stay connected to, redialled whenever the connection drops. */
  readonly peers?: ReadonlyArray<string>
  /**
   * More of the transport's options (connection and stream bounds). Who is a
   * member is the libraries' business: the peers of any library here may use
   * every connection slot, any other peer is a stranger, held to
   * `maxStrangerConnections`.
   */
  readonly transport?: Omit<Libp2pTransport.Options, "identity" | "listen" | "mdns" | "isMember">
  /** The sync plugin's tuning (session batch size, window, retry). */
  readonly sync?: Omit<Sync.Options, "libraries">
  /** Bounds of the questions put to the user (pending cap, timeout, cool-down). */
  readonly consent?: Consent.Options
  /** The pair plugin's options. */
  readonly pair?: Pair.Options
  /** Spacedrop's options (its display name, decision timeout, bounds). */
  readonly spacedrop?: Spacedrop.Options
  /** How dropped peers are redialled. */
  readonly reconnect?: Reconnect.Options
  /** Engine tuning (drift, batch and operation bounds). */
  readonly engine?: Engines.Options["engine"]
  /**
   * Remote media (`Locations`): mounts, presence, reads of any member's files and this node's
   * locations; the media models are declared by every library's engine. Off when absent.
   */
  readonly media?: Locations.Options
  /**
   * Preview media (`Previews`): thumbnails of the libraries' images, made here in the background for the
   * locations held here, recorded in the log, and their bytes fetched from any member that holds them; the
   * thumbnail model is declared by every library's engine. Needs `media`. Off when absent.
   */
  readonly preview?: Previews.Options
  /** The app's procedures served to the peers it grants them to (see `RspcOptions`); none by default. */
  readonly rspc?: RspcOptions
}

/**
 * rspc in an embedded node: the app's procedures (`Rspc`'s rules: each names
 * its capability, with `Protocol.Guard`), their handlers, built with the
 * node's services in context, and where the grants are kept. With it the
 * node's layer also provides `Rspc.Rspc` and `Grants.Grants` (grant and
 * revoke through it; nothing is granted by default), and peers call the
 * procedures with `Rspc.client`. Made with `rspc`, which checks the
 * handlers against the group.
 */
export interface RspcOptions<Rpcs extends Rpc.Any = any> {
  readonly group: RpcGroup.RpcGroup<Rpcs>
  /** The handlers (`group.toLayer(…)`); declare `RpcPlugin.CallerMiddleware` after `Guard` on the group to read `Caller`. */
  readonly handlers: Layer.Layer<Rpc.ToHandler<Rpcs>, never, Services>
  /** Bounds of the server (default `Protocol.DEFAULT_LIMITS`). */
  readonly limits?: Partial<RspcProtocol.Limits>
  /** The grants file (`layerDirectory`: `grants.json` in the directory); in memory when none. */
  readonly grants?: string
}

/** The `rspc` option of a node, its handlers typed by its group. */
export const rspc = <Rpcs extends Rpc.Any>(options: RspcOptions<Rpcs>): RspcOptions => options as RspcOptions

/** What a node with `rspc` provides beside `Services`. */
export type RspcServices = Rspc.Rspc | Grants.Grants

/** A request the node cannot serve as asked (`NoLibrary`). */
export const NodeError = Control.NodeError
export type NodeError = Control.NodeError

/** The running node. */
export interface Service {
  readonly peerId: PeerId
  /** Addresses other peers can connect to. */
  readonly addresses: Effect.Effect<ReadonlyArray<string>>
  /** What the node holds now: libraries, sessions, connections, streams, handlers. */
  readonly status: Effect.Effect<Control.StatusInfo>
  /** Available (connected) and discovered peers. */
  readonly peers: Effect.Effect<Control.PeersInfo>
  /** A library (default: the node's default, see `Libraries.defaultLibrary`) and its engine, open for as long as the scope. */
  readonly library: (
    id?: string
  ) => Effect.Effect<{ readonly library: Libraries.Library; readonly engine: Engine.Service }, NodeError | StorageError | ValidationError, Scope.Scope>
}

/** The running node. */
export class Node extends Context.Tag("weft/node/Node")<Node, Service>() {}

/** Every service a node provides. */
export type Services =
  | Node
  | Transport
  | PluginHost.PluginHost
  | Engines.Engines
  | Consent.Consent
  | Sync.Sync
  | Ping.Ping
  | Pair.Pair
  | Spacedrop.Spacedrop
  | Reconnect.Reconnect

/** Why a node could not start (`LocationError`: its media mounts could not be read). */
export type StartError = TransportError | StorageError | ValidationError | Locations.LocationError | Grants.GrantsError

/** The media services, in a node's output when its options have `media`. */
export type MediaOf<O> = O extends { readonly media: object } ? Locations.Services : never

/** The preview service, in a node's output when its options have `media` and `preview`. */
export type PreviewOf<O> = O extends { readonly media: object; readonly preview: object } ? Preview.Preview : never

/**
 * `Services`, with `RspcServices` when the options have `rspc`, the media services when they have `media`,
 * and preview when they have `media` and `preview`.
 */
export type ServicesOf<O extends Options> = Services | (O["rspc"] extends RspcOptions ? RspcServices : never) | MediaOf<O> | PreviewOf<O>

/** A node over the identity, libraries and address book in context; it runs for the layer's lifetime. */
export const layer = <const O extends Options>(
  options: O
): Layer.Layer<ServicesOf<O>, StartError, Identity.Identity | Libraries.Libraries | AddressBook.AddressBook> => {
  // a programming error, told at once rather than a node that quietly shows no thumbnails
  if (options.preview !== undefined && options.media === undefined) {
    return Layer.effectDiscard(Effect.dieMessage("Node: the preview option needs the media option (thumbnails are made of the locations media indexes)")) as never
  }
  const transport = Layer.scoped(
    Transport,
    Effect.gen(function*() {
      const identity = yield* Identity.Identity
      const isMember = yield* internal.members
      return yield* Libp2pTransport.make({ ...options.transport, identity, isMember, listen: options.listen, mdns: options.mdns ?? false })
    })
  )
  // discovered peers are dialled by Reconnect, which knows which ones wait out a penalty
  const host = PluginHost.layer({ connectDiscovered: false })
  const mediaModels = options.media === undefined ? [] : [...MediaModels.models, ...(options.preview === undefined ? [] : PreviewModels.models)]
  const models = [...options.models, ...mediaModels.filter((m) => !options.models.includes(m))]
  const engines = Engines.layer({ models, database: options.database, ...(options.engine === undefined ? {} : { engine: options.engine }) })
  const plugins = Layer.mergeAll(
    Sync.layer({ ...options.sync, libraries: [] }),
    Ping.layer,
    Pair.layer(options.pair ?? {}),
    Spacedrop.layer(options.spacedrop ?? {}),
    Reconnect.layer(options.reconnect ?? {})
  )
  const graph = Layer.scoped(Node, internal.make({ ...(options.peers === undefined ? {} : { peers: options.peers }) })).pipe(
    Layer.provideMerge(plugins),
    Layer.provideMerge(Layer.mergeAll(host, engines, Consent.layer(options.consent ?? {}))),
    Layer.provideMerge(transport)
  )
  // media, when asked for: on the graph's host, libraries and engines
  const media = options.media === undefined ? graph : Locations.layer(options.media).pipe(Layer.provideMerge(graph))
  // preview, when asked for (with media): on the graph's host, libraries, engines and media's mounts
  const withMedia = options.media === undefined || options.preview === undefined
    ? media
    : Previews.layer(options.preview).pipe(Layer.provideMerge(media))
  return (options.rspc === undefined ? withMedia : Layer.provideMerge(rspcLayer(options.rspc), withMedia)) as Layer.Layer<
    ServicesOf<O>,
    StartError,
    Identity.Identity | Libraries.Libraries | AddressBook.AddressBook
  >
}

/** The rspc server of `options`, its handlers built over the node. */
const rspcLayer = (options: RspcOptions): Layer.Layer<RspcServices, StartError, Services | Libraries.Libraries> =>
  Rspc.layer({ group: options.group, ...(options.limits === undefined ? {} : { limits: options.limits }) }).pipe(
    Layer.provide(options.handlers as Layer.Layer<never, never, Services>),
    Layer.provideMerge(options.grants === undefined ? Grants.layerMemory() : Grants.layerFile(options.grants))
  )

/** How a node runs on a data directory: `Options`, with the databases (and preview's cache) in the directory. */
export interface DirectoryOptions extends Omit<Options, "database" | "preview"> {
  readonly directory: string
  /** Preview (`Options.preview`), its cache in `media/previews` in the directory unless it says where. */
  readonly preview?: Omit<Previews.Options, "directory"> & { readonly directory?: string }
  /**
   * How long to wait for the directory's lock while another process holds it (an init under way holds
   * it briefly; default 10 s). A node answering on the directory's control socket is not waited for.
   */
  readonly lockWait?: Duration.DurationInput
}

/** Why a node could not start on a data directory. */
export type DirectoryStartError =
  | StartError
  | DataDir.DataDirError
  | Identity.IdentityError
  | Libraries.LibraryError
  | AddressBook.AddressBookError

/**
 * A node whose identity, libraries, address book and databases live in a
 * data directory (created, owner-only, if missing; see `DataDir`). One
 * process at a time: the directory's lock is held while the node runs; a
 * second node on it is refused (`DataDirError` `Busy`) before it opens
 * anything.
 */
export const layerDirectory = <const O extends DirectoryOptions>(
  options: O
): Layer.Layer<ServicesOf<O & Options> | Identity.Identity | Libraries.Libraries | AddressBook.AddressBook, DirectoryStartError> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const paths = DataDir.layout(options.directory)
    yield* DataDir.create(paths)
    yield* DataDir.requireOwnerOnly(paths)
    // before opening anything: one process per data directory. An init under way (it holds the lock
    // briefly) is waited for; a node that answers on the control socket is not
    yield* DirectoryLock.acquire(paths, {
      wait: options.lockWait ?? Duration.seconds(10),
      keepWaiting: Effect.map(ControlSocket.answers(paths.socket), (serving) => !serving)
    })
    const { directory: _, lockWait: __, preview: previewOptions, ...rest }: DirectoryOptions = options
    // a node's mounts are its own: kept in its directory, never synced
    const media = options.media === undefined ? {} : { media: { mountsFile: join(paths.dir, "media", "mounts.json"), ...options.media } }
    // a node's thumbnails too: a cache of its own, with a byte budget
    const preview = previewOptions === undefined ? {} : { preview: { ...previewOptions, directory: previewOptions.directory ?? join(paths.dir, "media", "previews") } }
    // an app's grants are kept in the directory unless it says where
    const rspc = rest.rspc === undefined ? {} : { rspc: { grants: join(paths.dir, "grants.json"), ...rest.rspc } }
    return (layer({ ...rest, ...media, ...preview, ...rspc, database: paths.database }) as Layer.Layer<
      ServicesOf<O & Options>,
      StartError,
      Identity.Identity | Libraries.Libraries | AddressBook.AddressBook
    >).pipe(
      Layer.provideMerge(Layer.mergeAll(
        Identity.layer(paths.identity),
        Libraries.layerFile(paths.libraries),
        AddressBook.layerFile(paths.peers)
      ))
    ) as Layer.Layer<ServicesOf<O & Options> | Identity.Identity | Libraries.Libraries | AddressBook.AddressBook, DirectoryStartError>
  }))

/** Serves the node's own control procedures (`Control.NodeControl`) with its services in context. */
export const nodeControlHandlers = Control.NodeControl.toLayer(Effect.gen(function*() {
  const node = yield* Node
  const reconnect = yield* Reconnect.Reconnect
  const consent = yield* Consent.Consent
  return {
    Status: () => node.status,
    Peers: () => node.peers,
    Connect: ({ address }) => Effect.map(reconnect.dial(address), (peer) => ({ peer })),
    ConsentPending: () => consent.pending,
    ConsentWatch: () => consent.watch,
    ConsentAnswer: ({ approve, id }) => consent.answer(id, approve)
  }
}))

/** Serves a node's control procedures (`Control.group`: its own, ping's and pair's) with its services in context. */
export const controlHandlers = Layer.mergeAll(nodeControlHandlers, Ping.controlHandlers, Pair.controlHandlers)
