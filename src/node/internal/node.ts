/**
 * The body of `Node`: what a running node does beyond its services'
 * own work: it opens each library's engine and syncs it, stays connected to
 * pinned addresses, logs what happens, and answers for its state.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Engine from "../../engine/Engine.js"
import { type Library, Libraries } from "../../library/Libraries.js"
import { PluginHost } from "../../plugins/PluginHost.js"
import * as Sync from "../../plugins/sync/Sync.js"
import * as AddressBook from "../AddressBook.js"
import { Identity } from "../../transport/Identity.js"
import { type PeerId, Transport } from "../../transport/Transport.js"
import * as Control from "../Control.js"
import { NodeError } from "../Control.js"
import { Engines } from "../Engines.js"
import { Reconnect } from "../Reconnect.js"

/** Most discovered peers shown by `peers` (adverts are unauthenticated: a flood of made-up ones only pushes out older entries). */
const MAX_DISCOVERED = 256

const short = (peer: string) => (peer.length > 16 ? `${peer.slice(0, 8)}…${peer.slice(-6)}` : peer)

/** Counts the process's open handles by kind. */
const resources = (): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1
  return counts
}

/**
 * Whether a peer is a member of a library here, kept current as libraries
 * change: cheap and synchronous, as the transport asks it at each connection.
 *
 * @internal
 */
export const members = Effect.gen(function*() {
  const libraries = yield* Libraries
  // subscribed before the first read: no change in between is missed
  const changes = yield* libraries.changes
  let current: ReadonlySet<string> = new Set()
  const take = (list: ReadonlyArray<Library>) => {
    current = new Set(list.flatMap((library) => library.members))
  }
  take(yield* libraries.list)
  yield* Effect.forkScoped(Stream.runForEach(changes, (list) => Effect.sync(() => take(list))))
  return (peer: PeerId): boolean => current.has(peer)
})

/** @internal */
export const make = (options: { readonly peers?: ReadonlyArray<string> }) =>
  Effect.gen(function*() {
    const identity = yield* Identity
    const transport = yield* Transport
    const host = yield* PluginHost
    const libraries = yield* Libraries
    const engines = yield* Engines
    const sync = yield* Sync.Sync
    const reconnect = yield* Reconnect
    const scope = yield* Effect.scope

    // each library's engine, held for as long as the node runs, and synced
    const opened = new Map<string, Engine.Service>()
    const open = (library: Library) =>
      Effect.gen(function*() {
        if (opened.has(library.id)) return
        const engine = yield* engines.get(library.id).pipe(Scope.extend(scope))
        opened.set(library.id, engine)
        // sync progress: what remote operations did here (an observer, not a fiber woken by every commit)
        const runtime = yield* Effect.runtime<never>()
        yield* engine.observe((commit) => {
          if (commit.source !== "remote") return
          Runtime.runFork(runtime)(
            Effect.logInfo(`library ${library.name}: applied ${commit.ops.length} operation(s) from sync, ${commit.changes.length} record(s) changed`)
          )
        }).pipe(Scope.extend(scope))
        yield* sync.add({ id: library.id, engine })
      })
    for (const library of yield* libraries.list) yield* open(library)

    // a library joined while the default one is still empty (no operation in its log, from here or
    // anywhere) becomes the default: what the user does next is about the library they just joined
    const adoptIfEmpty = (joined: Library) =>
      Effect.gen(function*() {
        const current = yield* libraries.defaultLibrary
        if (Option.isNone(current) || current.value.id === joined.id) return
        const engine = opened.get(current.value.id)
        if (engine === undefined || (yield* engine.versionVector).size > 0) return
        yield* libraries.setDefault(joined.id)
        yield* Effect.logInfo(`library ${joined.name} (${joined.id}) is now the default (${current.value.name} holds nothing yet)`)
      })

    // new libraries (joined by pairing) and new members
    let known = new Map((yield* libraries.list).map((library) => [library.id, library]))
    yield* Effect.forkScoped(Stream.runForEach(yield* libraries.changes, (list) =>
      Effect.gen(function*() {
        for (const library of list) {
          const before = known.get(library.id)
          if (before === undefined) yield* Effect.logInfo(`library ${library.name} (${library.id}) added`)
          for (const member of library.members) {
            if (before !== undefined && !before.members.includes(member)) yield* Effect.logInfo(`library ${library.name}: ${member} is now a member`)
          }
          // a library whose database cannot open is reported, and the others still sync
          yield* open(library).pipe(Effect.catchAll((error) => Effect.logError(`could not open library ${library.id}: ${error.message}`)))
          if (before === undefined) {
            yield* adoptIfEmpty(library).pipe(Effect.catchAll((error) => Effect.logWarning(`could not make library ${library.id} the default: ${error.message}`)))
          }
        }
        known = new Map(list.map((library) => [library.id, library]))
      })))

    // peers: what happens is logged; what was discovered is kept (bounded) for `peers`
    const discovered = new Map<string, ReadonlyArray<string>>()
    yield* Effect.forkScoped(Stream.runForEach(yield* host.events, (event) => {
      switch (event._tag) {
        case "Discovered":
          // identify reports connected peers too, often with no address: only real discoveries are news
          if (event.addresses.length === 0) return Effect.void
          discovered.delete(event.peer)
          discovered.set(event.peer, event.addresses.slice(0, AddressBook.MAX_ADDRESSES))
          if (discovered.size > MAX_DISCOVERED) discovered.delete(discovered.keys().next().value!)
          return Effect.logInfo(`discovered ${event.peer} at ${event.addresses.join(", ")}${event.source === "identify" ? " (its own announcement)" : ""}`)
        case "Available":
          return Effect.logInfo(`peer ${event.peer} available`)
        case "Unavailable":
          return event.error === undefined
            ? Effect.logInfo(`peer ${event.peer} unavailable`)
            : Effect.logWarning(`peer ${event.peer} unavailable: ${event.error.message}`)
        case "Refused":
          return Effect.logWarning(`refused ${event.peer} on ${event.protocol}: ${event.detail}`)
        case "Violation":
          return Effect.logWarning(`disconnected ${event.peer}: it broke ${event.protocol}: ${event.detail}`)
      }
    }))

    // sync sessions: every failure as it happens, with its typed error; each other change of state and
    // progress, sampled
    yield* Effect.forkScoped(Stream.runForEach(yield* sync.failures, (failure) =>
      Effect.logWarning(`sync with ${short(failure.peer)} (library ${failure.library}): failed: ${failure.error.message}`)))
    let previous = new Map<string, Sync.SessionStatus>()
    yield* Effect.forkScoped(Effect.gen(function*() {
      const now = yield* sync.status
      const next = new Map(now.map((s) => [`${s.peer} ${s.library}`, s]))
      for (const [key, session] of next) {
        const before = previous.get(key)
        const name = `sync with ${short(session.peer)} (library ${session.library})`
        if (before?.state !== session.state && session.state !== "failed") yield* Effect.logInfo(`${name}: ${session.state}`)
        if (before !== undefined && session.sent > before.sent) yield* Effect.logInfo(`${name}: sent ${session.sent - before.sent} operation(s)`)
      }
      previous = next
    }).pipe(Effect.repeat(Schedule.spaced(Duration.millis(500)))))

    // addresses to stay connected to
    for (const address of options.peers ?? []) yield* reconnect.pin(address)

    const status = Effect.gen(function*() {
      const streams = yield* host.streams
      const connections = yield* transport.connections
      const sessions = yield* sync.status
      const defaultLibrary = yield* libraries.defaultLibrary
      return {
        peerId: identity.peerId,
        addresses: yield* transport.addresses,
        libraries: yield* libraries.list,
        ...(Option.isSome(defaultLibrary) ? { defaultLibrary: defaultLibrary.value.id } : {}),
        sessions,
        connections,
        streams,
        counts: {
          connections: connections.length,
          streams: streams.reduce((n, s) => n + s.handlers + s.outbound, 0),
          handlers: streams.reduce((n, s) => n + s.handlers, 0),
          sessions: sessions.filter((s) => s.state === "connecting" || s.state === "syncing").length
        },
        resources: resources()
      } satisfies Control.StatusInfo
    })

    const library = (id?: string) =>
      Effect.gen(function*() {
        const found = id === undefined ? Option.getOrUndefined(yield* libraries.defaultLibrary) : Option.getOrUndefined(yield* libraries.get(id))
        if (found === undefined) {
          return yield* new NodeError({ reason: "NoLibrary", detail: id === undefined ? "this node has no library" : `no library ${id} here` })
        }
        return { library: found, engine: yield* engines.get(found.id) }
      })

    return {
      peerId: identity.peerId,
      addresses: transport.addresses,
      status,
      peers: Effect.map(host.available, (available): Control.PeersInfo => ({
        available,
        discovered: [...discovered].map(([peer, addresses]) => ({ peer, addresses }))
      })),
      library
    }
  })
