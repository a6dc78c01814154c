/**
 * The body of `Node`: starting a node from a data directory and answering
 * control requests.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Engine from "../../engine/Engine.js"
import * as AddressBook from "../../node/AddressBook.js"
import { Libraries, type Library } from "../../library/Libraries.js"
import * as LibrariesModule from "../../library/Libraries.js"
import * as Consent from "../../plugins/Consent.js"
import * as Pair from "../../plugins/pair/Pair.js"
import * as Ping from "../../plugins/ping/Ping.js"
import * as Plugin from "../../plugins/Plugin.js"
import * as PluginHost from "../../plugins/PluginHost.js"
import * as Sync from "../../plugins/sync/Sync.js"
import * as Identity from "../../transport/Identity.js"
import * as Libp2pTransport from "../../transport/Libp2pTransport.js"
import * as PeerAddress from "../../transport/PeerAddress.js"
import { PeerId, Transport, type TransportError } from "../../transport/Transport.js"
import * as Control from "../Control.js"
import * as ControlProtocol from "../ControlProtocol.js"
import * as DataDir from "../DataDir.js"
import * as DirectoryLock from "../DirectoryLock.js"
import type { Node, Options } from "../Node.js"
import * as Notes from "../Notes.js"
import * as Output from "../Output.js"
import * as Penalties from "./penalties.js"
import * as ParseError from "../../internal/parseError.js"

/** @internal */
export class NodeError extends Data.TaggedError("NodeError")<{
  readonly reason: "InvalidPeer" | "NoLibrary" | "NoSuchNote"
  readonly detail: string
}> {
  override get message(): string {
    return `${this.reason}: ${this.detail}`
  }
}

const decodePeerId = Schema.decodeUnknownEither(PeerId)
const short = (peer: string) => (peer.length > 16 ? `${peer.slice(0, 8)}…${peer.slice(-6)}` : peer)

/** Most discovered peers shown by `weft peers`. */
const MAX_DISCOVERED = 256

/** Counts the process's open handles by kind. */
const resources = (): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1
  return counts
}

/** @internal */
export const make = (options: Options) =>
  Effect.gen(function*() {
    const paths = DataDir.layout(options.dir)
    yield* DataDir.requireInitialized(paths)
    yield* DataDir.create(paths)
    // before opening anything: one node per data directory. An init under way (it holds the lock briefly)
    // is waited for; a node that answers on the control socket is not
    yield* DirectoryLock.acquire(paths, {
      wait: Duration.seconds(10),
      keepWaiting: Effect.map(Control.answers(paths.socket), (serving) => !serving)
    })
    const scope = yield* Effect.scope
    const identity = yield* Identity.load(paths.identity)
    const libraries = yield* Effect.provide(Libraries, LibrariesModule.layerFile(paths.libraries))
    const book = yield* Effect.provide(AddressBook.AddressBook, AddressBook.layerFile(paths.peers))
    // losing an address is not worth failing a request or a connection for
    const remember = (peer: PeerId, addresses: ReadonlyArray<string>) =>
      book.remember(peer, addresses).pipe(Effect.catchAll((error) => Effect.logWarning(`could not remember ${peer}'s addresses: ${error.message}`)))
    const transport = yield* Libp2pTransport.make({ identity, listen: options.listen, mdns: options.mdns })
    const withServices = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.provideService(Transport, transport), Effect.provideService(Libraries, libraries))
    // peers that broke a protocol (members and --peer peers only, so bounded by them)
    const penalties = Penalties.make()
    // a discovered peer is dialled at once, unless it is waiting out a penalty
    const host = yield* withServices(PluginHost.make({ connectDiscovered: true, dialDiscovered: (peer) => !penalties.held(peer, Date.now()) }))
    const withHost = <A, E, R>(effect: Effect.Effect<A, E, R>) => withServices(Effect.provideService(effect, PluginHost.PluginHost, host))

    // the sync plugin, and an engine per library, opened as libraries appear (a pairing can add one)
    const sync = yield* withHost(Sync.make({ libraries: [] }))
    const engines = new Map<string, Engine.Service>()
    const openEngine = (library: Library) =>
      Effect.gen(function*() {
        const engine = yield* Engine.makeSqlite({ models: Notes.models, node: identity.peerId, filename: paths.database(library.id) })
        engines.set(library.id, engine)
        // sync progress: what remote operations did here
        const commits = yield* engine.commits
        yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
          const commit = yield* Queue.take(commits)
          if (commit.source !== "remote") return
          yield* Effect.logInfo(
            `library ${Output.printable(library.name)}: applied ${commit.ops.length} operation(s) from sync, ${commit.changes.length} record(s) changed`
          )
        })))
        yield* sync.add({ id: library.id, engine })
      }).pipe(Scope.extend(scope))
    for (const library of yield* libraries.list) yield* openEngine(library)
    const sessions = sync.status

    const redial = Schedule.exponential(Duration.millis(500)).pipe(Schedule.union(Schedule.spaced(Duration.seconds(30))))
    const members = Effect.map(libraries.list, (list) =>
      new Set(list.flatMap((library) => library.members).filter((member) => member !== identity.peerId)))

    // the address book holds library members only, at addresses they gave themselves (identify) or that
    // this node dialled and reached: an mDNS advert can be sent by anyone for any id, and a connection by
    // any identity, so neither may push a member's real addresses out of its bounded entry
    const located = new Map<PeerId, ReadonlyArray<string>>()
    const locate = (peer: PeerId, addresses: ReadonlyArray<string>) => {
      const known = located.get(peer) ?? []
      located.delete(peer)
      located.set(peer, AddressBook.merge(addresses, known))
      if (located.size > MAX_DISCOVERED) located.delete(located.keys().next().value!)
    }
    const rememberMember = (peer: PeerId) =>
      Effect.gen(function*() {
        const addresses = located.get(peer)
        if (addresses !== undefined && (yield* members).has(peer)) yield* remember(peer, addresses)
      })

    // an address the user gave that reached the peer is kept as given (a DNS name outlives an IP), if a member
    const dial = (address: string) =>
      Effect.tap(host.connect(address), (peer) => Effect.zipRight(Effect.sync(() => locate(peer, [address])), rememberMember(peer)))

    // members that drop are redialled at their remembered addresses, and --peer peers by their own loop;
    // after a disconnection for breaking a protocol, only once its penalty is waited out (see Penalties)
    // the peer each --peer address reached last (an address can come to reach another peer)
    const pinnedAt = new Map<string, PeerId>()
    const pinned = { has: (peer: PeerId) => [...pinnedAt.values()].includes(peer) }
    const reconnecting = yield* FiberMap.make<PeerId>()
    const violated = (peer: PeerId) =>
      Effect.gen(function*() {
        if (!pinned.has(peer) && !(yield* members).has(peer)) return
        penalties.violated(peer)
        // a redial under way (the peer got back in meanwhile) makes way for one that waits
        yield* FiberMap.remove(reconnecting, peer)
      })
    const penalty = (peer: PeerId) =>
      Effect.suspend(() => {
        const wait = penalties.take(peer, Date.now())
        return wait === 0 ? Effect.void : Effect.zipRight(
          Effect.logInfo(`redialling ${peer} in ${wait / 1000} s (it broke a protocol)`),
          Effect.sleep(Duration.millis(wait))
        )
      })
    const reconnect = (peer: PeerId) =>
      Effect.gen(function*() {
        if (pinned.has(peer) || !(yield* members).has(peer)) return
        const attempt = Effect.gen(function*() {
          // a peer removed from its libraries meanwhile is no longer redialled
          if (!(yield* members).has(peer) || (yield* host.available).includes(peer)) return
          const addresses = yield* book.get(peer)
          if (addresses.length === 0) return
          yield* Effect.firstSuccessOf(addresses.map((address) => host.connect(PeerAddress.withPeer(address, peer))))
          yield* Effect.logInfo(`reconnected to ${peer}`)
        })
        yield* FiberMap.run(reconnecting, peer, Effect.zipRight(penalty(peer), Effect.retry(attempt, redial)), { onlyIfMissing: true })
      })

    // new libraries (joined by pairing) and new members
    const changes = yield* libraries.changes
    let known = new Map((yield* libraries.list).map((l) => [l.id, l]))
    yield* Effect.forkScoped(Stream.runForEach(changes, (list) =>
      Effect.gen(function*() {
        for (const library of list) {
          const before = known.get(library.id)
          if (before === undefined) yield* Effect.logInfo(`library ${Output.printable(library.name)} (${library.id}) added`)
          for (const member of library.members) {
            if (before === undefined || !before.members.includes(member)) {
              if (before !== undefined) yield* Effect.logInfo(`library ${Output.printable(library.name)}: ${member} is now a member`)
              // a peer connected before it was paired: where it is can be kept now
              if (member !== identity.peerId) yield* rememberMember(member)
            }
          }
          if (!engines.has(library.id)) {
            // a library whose database cannot open is reported, and the others still sync
            yield* openEngine(library).pipe(
              Effect.catchAll((error) => Effect.logError(`could not open library ${library.id}: ${error.message}`))
            )
          }
        }
        // a peer that left every library is no longer redialled, so what it owed is dropped with it
        const current = new Set(list.flatMap((library) => library.members))
        for (const library of known.values()) {
          for (const member of library.members) if (!current.has(member) && !pinned.has(member)) penalties.forget(member)
        }
        known = new Map(list.map((l) => [l.id, l]))
      })
    ))

    // ping and pair
    const ping = yield* withHost(Layer.build(Ping.layer)).pipe(Effect.map(Context.get(Ping.Ping)))
    const consent = yield* Consent.make()
    yield* options.frontEnd.pipe(Effect.provideService(Consent.Consent, consent))
    const pair = yield* withHost(Pair.make().pipe(Effect.provideService(Consent.Consent, consent)))

    // peers: log what happens; what was discovered is shown by `weft peers`
    // (adverts are unauthenticated: bounded here, so a flood of made-up peers only pushes out older entries)
    const discovered = new Map<string, ReadonlyArray<string>>()
    const events = yield* host.events
    yield* Effect.forkScoped(Stream.runForEach(events, (event) => {
      switch (event._tag) {
        case "Discovered":
          // identify reports connected peers too, often with no address: only real discoveries are news
          if (event.addresses.length === 0) return Effect.void
          discovered.delete(event.peer)
          discovered.set(event.peer, event.addresses.slice(0, AddressBook.MAX_ADDRESSES))
          if (discovered.size > MAX_DISCOVERED) discovered.delete(discovered.keys().next().value!)
          if (event.source === "identify") locate(event.peer, event.addresses)
          return Effect.zipRight(
            Effect.logInfo(`discovered ${event.peer} at ${event.addresses.join(", ")}${event.source === "identify" ? " (its own announcement)" : ""}`),
            event.source === "identify" ? rememberMember(event.peer) : Effect.void
          )
        case "Available":
          penalties.connected(event.peer, Date.now())
          if (event.address !== undefined) locate(event.peer, [event.address])
          return Effect.zipRight(Effect.logInfo(`peer ${event.peer} available`), rememberMember(event.peer))
        case "Unavailable":
          located.delete(event.peer)
          penalties.disconnected(event.peer, Date.now())
          return Effect.all([
            event.error === undefined
              ? Effect.logInfo(`peer ${event.peer} unavailable`)
              : Effect.logWarning(`peer ${event.peer} unavailable: ${event.error.message}`),
            // broken framing below the plugins (an oversize or malformed frame) counts as a violation too
            // (once: a plugin's Violation event, just before, already counted this one). The --peer
            // loop counts its own peer's, as it sees them
            Plugin.isViolation(event.error) && !penalties.pending(event.peer) && !pinned.has(event.peer)
              ? violated(event.peer)
              : Effect.void,
            reconnect(event.peer)
          ], { discard: true })
        case "Refused":
          return Effect.logWarning(`refused ${event.peer} on ${event.protocol}: ${event.detail}`)
        case "Violation":
          return Effect.zipRight(
            Effect.logWarning(`disconnected ${event.peer}: it broke ${event.protocol}: ${event.detail}`),
            pinned.has(event.peer) ? Effect.void : violated(event.peer)
          )
      }
    }))

    // sync sessions: every failure, as it happens, with its typed error
    yield* Effect.forkScoped(Stream.runForEach(yield* sync.failures, (failure) =>
      Effect.logWarning(`sync with ${short(failure.peer)} (library ${failure.library}): failed: ${failure.error.message}`)))
    // and, sampled, each other change of state and progress
    let previous = new Map<string, Sync.SessionStatus>()
    yield* Effect.forkScoped(Effect.gen(function*() {
      const now = yield* sessions
      const next = new Map(now.map((s) => [`${s.peer} ${s.library}`, s]))
      for (const [key, session] of next) {
        const before = previous.get(key)
        const name = `sync with ${short(session.peer)} (library ${session.library})`
        if (before?.state !== session.state && session.state !== "failed") yield* Effect.logInfo(`${name}: ${session.state}`)
        if (before !== undefined && session.sent > before.sent) {
          yield* Effect.logInfo(`${name}: sent ${session.sent - before.sent} operation(s)`)
        }
      }
      previous = next
    }).pipe(Effect.repeat(Schedule.spaced(Duration.millis(500)))))

    // peers given on the command line: connect, and reconnect whenever the connection drops
    for (const address of options.peers) {
      yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
        const peer = yield* dial(address).pipe(
          Effect.tapError((error) => Effect.logDebug(`could not connect to ${address}: ${error.message}`)),
          Effect.retry(redial)
        )
        pinnedAt.set(address, peer)
        yield* Effect.logInfo(`connected to ${address}`)
        // subscribed only while connected (an unread subscription would keep every event); what ended
        // the connection is seen here, so its penalty is known before the redial
        const ending = yield* Effect.scoped(Effect.gen(function*() {
          const watch = yield* host.events
          if (!(yield* host.available).includes(peer)) return Chunk.empty<PluginHost.PeerEvent>()
          return yield* watch.pipe(
            Stream.filter((event) => (event._tag === "Violation" || event._tag === "Unavailable") && event.peer === peer),
            Stream.takeUntil((event) => event._tag === "Unavailable"),
            Stream.runCollect
          )
        }))
        if (Chunk.some(ending, (event) => event._tag === "Violation" || (event._tag === "Unavailable" && Plugin.isViolation(event.error)))) {
          yield* violated(peer)
        }
        yield* Effect.sleep(Duration.millis(500))
        yield* penalty(peer)
      })))
    }

    // peers this node shares a library with: reconnected at their remembered addresses when not connected
    for (const peer of yield* members) {
      if (!(yield* host.available).includes(peer)) yield* reconnect(peer)
    }

    // requests
    const resolvePeer = (target: string): Effect.Effect<PeerId, TransportError | NodeError> =>
      target.startsWith("/")
        ? dial(target)
        : Effect.mapError(
          decodePeerId(target),
          (error) => new NodeError({ reason: "InvalidPeer", detail: `not a peer id or multiaddr: ${ParseError.describe(error)}` })
        )
    const libraryOf = (id: string | undefined) =>
      Effect.gen(function*() {
        const all = yield* libraries.list
        const library = id === undefined ? all[0] : all.find((l) => l.id === id)
        if (library === undefined) {
          return yield* new NodeError({ reason: "NoLibrary", detail: id === undefined ? "this node has no library (run `weft init`)" : `no library ${id} here` })
        }
        const engine = engines.get(library.id)
        if (engine === undefined) return yield* new NodeError({ reason: "NoLibrary", detail: `library ${library.id} has no open database` })
        return { library, engine }
      })
    const noteOf = (library: string, row: { readonly id: string; readonly title: string; readonly body: string; readonly done: boolean }): Notes.Note => ({
      library,
      id: row.id,
      title: row.title,
      body: row.body,
      done: row.done
    })
    const existing = (engine: Engine.Service, library: string, id: string) =>
      Effect.flatMap(engine.get(Notes.notes, id), Option.match({
        onNone: () => Effect.fail(new NodeError({ reason: "NoSuchNote", detail: `no note ${id} in library ${library}` })),
        onSome: Effect.succeed
      }))

    const handle = (request: ControlProtocol.Request): Effect.Effect<unknown, unknown> => {
      switch (request._tag) {
        case "Status":
          return Effect.gen(function*() {
            const streams = yield* host.streams
            const connections = yield* transport.connections
            const all = yield* sessions
            return {
              peerId: identity.peerId,
              addresses: yield* transport.addresses,
              libraries: yield* libraries.list,
              sessions: all,
              connections,
              streams,
              counts: {
                connections: connections.length,
                streams: streams.reduce((n, s) => n + s.handlers + s.outbound, 0),
                handlers: streams.reduce((n, s) => n + s.handlers, 0),
                sessions: all.filter((s) => s.state === "connecting" || s.state === "syncing").length
              },
              resources: resources()
            } satisfies ControlProtocol.StatusInfo
          })
        case "Peers":
          return Effect.map(host.available, (available) => ({
            available,
            discovered: [...discovered].map(([peer, addresses]) => ({ peer, addresses }))
          }))
        case "Connect":
          return Effect.map(dial(request.address), (peer) => ({ peer }))
        case "Pair":
          return Effect.gen(function*() {
            const peer = yield* resolvePeer(request.peer)
            const { library } = yield* libraryOf(request.library)
            return { peer, library: yield* pair.pair(peer, library.id) }
          })
        case "Ping":
          return Effect.flatMap(
            resolvePeer(request.peer),
            (peer) => ping.ping(peer, { count: request.count, timeout: options.pingTimeout ?? Duration.seconds(10) })
          )
        case "NotesAdd":
          return Effect.gen(function*() {
            const { engine, library } = yield* libraryOf(request.library)
            const id = Notes.newId()
            yield* engine.mutate([Notes.notes.create(id, { title: request.title, body: request.body, done: request.done })])
            return noteOf(library.id, yield* existing(engine, library.id, id))
          })
        case "NotesList":
          return Effect.gen(function*() {
            const { engine, library } = yield* libraryOf(request.library)
            const limit = request.limit ?? ControlProtocol.NOTES_PAGE_LIMIT
            const after = request.after
            // keyset paging on (title, id): one more row than the page holds says whether another follows
            const rows = yield* engine.query(Notes.notes, (q) =>
              (after === undefined ? q : q.where((eb) =>
                eb.or([eb("title", ">", after.title), eb.and([eb("title", "=", after.title), eb("id", ">", after.id)])])
              )).orderBy("title").orderBy("id").limit(limit + 1))
            const notes: Array<Notes.Note> = []
            let bytes = 0
            for (const row of rows.slice(0, limit)) {
              const note = noteOf(library.id, row)
              bytes += Buffer.byteLength(JSON.stringify(note))
              // a page holds at least one note, and stops before the one that would pass its byte bound
              if (notes.length > 0 && bytes > ControlProtocol.NOTES_PAGE_BYTES) break
              notes.push(note)
            }
            const last = notes[notes.length - 1]
            const more = notes.length < rows.length
            return { notes, ...(more && last !== undefined ? { next: { title: last.title, id: last.id } } : {}) } satisfies ControlProtocol.NotesPage
          })
        case "NotesSet":
          return Effect.gen(function*() {
            const { engine, library } = yield* libraryOf(request.library)
            yield* existing(engine, library.id, request.id)
            const values = {
              ...(request.title === undefined ? {} : { title: request.title }),
              ...(request.body === undefined ? {} : { body: request.body }),
              ...(request.done === undefined ? {} : { done: request.done })
            }
            if (Object.keys(values).length > 0) yield* engine.mutate([Notes.notes.update(request.id, values)])
            return noteOf(library.id, yield* existing(engine, library.id, request.id))
          })
        case "NotesRemove":
          return Effect.gen(function*() {
            const { engine, library } = yield* libraryOf(request.library)
            yield* existing(engine, library.id, request.id)
            yield* engine.mutate([Notes.notes.delete(request.id)])
            return { id: request.id }
          })
      }
    }

    yield* Control.serve(paths.socket, handle)
    return {
      peerId: identity.peerId,
      addresses: transport.addresses,
      libraries: libraries.list,
      handle
    } satisfies Node
  })
