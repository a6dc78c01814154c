/**
 * rspc: serves an app's procedures to the peers it granted them to, and
 * calls another peer's (see `Protocol` for the rules a call must pass).
 *
 * ```ts
 * // serving: the handlers in context, the grants of the node
 * const server = yield* Rspc.serve({ group: Notes }).pipe(Effect.provide(NotesHandlers))
 * yield* grants.grant(bob, library, ["notes.read"])
 * // calling: a client for one named peer and library, never the local node
 * const notes = yield* Rspc.client(Notes, { peer: alice, library })
 * const list = yield* notes.List()          // fails with Forbidden unless alice granted notes.read
 * ```
 *
 * Lifetimes: each call runs in the server's fiber for it, interrupted when
 * the client interrupts it, when its stream or connection closes, when its
 * grant is revoked or its caller leaves the library (`Forbidden` `Revoked`),
 * or when a plain call passes `callTimeout`. Leaving the library also resets
 * the peer's rspc streams of that library. `active` counts what runs, so a
 * test can check nothing is left.
 *
 * @since 0.1.0
 */
import type * as Rpc from "@effect/rpc/Rpc"
import type * as RpcClient from "@effect/rpc/RpcClient"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Libraries } from "../../library/Libraries.js"
import type { PeerId, TransportError } from "../../transport/Transport.js"
import * as Plugin from "../Plugin.js"
import { PluginHost } from "../PluginHost.js"
import * as RpcPlugin from "../RpcPlugin.js"
import { Grants } from "./Grants.js"
import * as Protocol from "./Protocol.js"

/** What the server runs now. */
export interface Active {
  /** Calls whose handler runs (plain and streaming). */
  readonly calls: number
  /** Streams being served. */
  readonly streams: number
}

/** A running rspc server. */
export interface Server {
  readonly active: Effect.Effect<Active>
}

/** The running rspc server of a node. */
export class Rspc extends Context.Tag("weft/plugins/rspc/Rspc")<Rspc, Server>() {}

/** How the server runs. */
export interface ServeOptions<Rpcs extends Rpc.Any> {
  /** Every procedure served: each needs a capability and `Protocol.Guard` (merge groups into one). */
  readonly group: RpcGroup.RpcGroup<Rpcs>
  /** Bounds (default `Protocol.DEFAULT_LIMITS`). */
  readonly limits?: Partial<Protocol.Limits>
}

/** Handlers and middlewares the app provides (`Guard` and `Caller` are the server's). */
export type Requirements<Rpcs extends Rpc.Any> =
  | Rpc.ToHandler<Rpcs>
  | Exclude<Rpc.Middleware<Rpcs>, RpcPlugin.CallerMiddleware | Protocol.Guard>

interface Running {
  readonly peer: string
  readonly library: string
  readonly capability: Option.Option<Protocol.Capability>
  readonly procedure: string
  /** The fiber of the handler, once started. */
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  /** Why the call was ended from outside (its grant or its caller's membership went, or its time ran out). */
  ended: Protocol.Forbidden | Protocol.CallTimeout | undefined
  /** When a plain call's time runs out (epoch ms); undefined for a streaming call. */
  deadline: number | undefined
}

/** The calls of one peer running now, and what bounds them. */
interface PeerCalls {
  readonly slots: Effect.Semaphore
  /** Calls of the peer inside the guard (running or waiting for a slot). */
  users: number
}

interface Served {
  readonly peer: string
  readonly library: string
  readonly lost: Deferred.Deferred<void>
}

const encodeForbidden = Schema.encodeSync(Protocol.Forbidden)

/** Dies, at registration, when a procedure of `group` is not guarded as rspc needs. */
const checkGroup = (group: RpcGroup.RpcGroup<any>) =>
  Effect.forEach(group.requests.values(), (rpc) => {
    const middlewares = [...rpc.middlewares] as Array<unknown>
    const guard = middlewares.indexOf(Protocol.Guard)
    const caller = middlewares.indexOf(RpcPlugin.CallerMiddleware)
    const needs = Context.getOption(rpc.annotations, Protocol.Needs)
    if (Option.isSome(needs) && Option.isNone(Protocol.capabilityOf(rpc))) return Effect.dieMessage(`rspc: procedure ${rpc._tag} needs "${needs.value}", which is not a capability (dotted lower-case words)`)
    if (guard === -1) return Effect.dieMessage(`rspc: procedure ${rpc._tag} does not carry Protocol.Guard (add .middleware(Protocol.Guard) to the group)`)
    // Guard reads the Caller that an outer CallerMiddleware provides
    if (caller !== -1 && caller < guard) return Effect.dieMessage(`rspc: procedure ${rpc._tag} declares CallerMiddleware before Protocol.Guard; declare Guard first`)
    return Effect.void
  }, { discard: true })

/** Serves `options.group` on the host in context until the scope closes. */
export const serve = <Rpcs extends Rpc.Any>(
  options: ServeOptions<Rpcs>
): Effect.Effect<Server, TransportError, PluginHost | Grants | Libraries | Requirements<Rpcs> | Scope.Scope> =>
  Effect.gen(function*() {
    const limits = { ...Protocol.DEFAULT_LIMITS, ...options.limits }
    const callMillis = Duration.toMillis(limits.callTimeout)
    yield* checkGroup(options.group)
    const grants = yield* Grants
    const libraries = yield* Libraries
    const host = yield* PluginHost
    const calls = new Set<Running>()
    const streams = new Set<Served>()
    const clock = yield* Effect.clock
    // the plain calls running, in the order they started: all have the same time, so the first one
    // runs out first, and one watchdog fiber serves every call (no timer fiber per call)
    const timed = new Set<Running>()
    const timedAdded = Effect.unsafeMakeLatch(false)
    yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
      // closed before the look, so a call added after the look opens it again
      timedAdded.unsafeClose()
      const first = timed.values().next()
      if (first.done === true) return yield* timedAdded.await
      const call = first.value
      const left = call.deadline! - clock.unsafeCurrentTimeMillis()
      if (left > 0) return yield* Effect.sleep(Duration.millis(left))
      timed.delete(call)
      if (call.ended === undefined) {
        call.ended = new Protocol.CallTimeout({ reason: "Timeout", procedure: call.procedure, millis: callMillis })
        if (call.fiber !== undefined) yield* Fiber.interruptFork(call.fiber)
      }
    })))
    // the per-peer bound: a peer's calls beyond it wait (on whichever streams they came) before their handler runs
    const peers = new Map<string, PeerCalls>()
    const enter = (peer: string) => {
      let entry = peers.get(peer)
      if (entry === undefined) {
        entry = { slots: Effect.unsafeMakeSemaphore(limits.maxCallsPerPeer), users: 0 }
        peers.set(peer, entry)
      }
      entry.users++
      return entry
    }
    const leave = (peer: string, entry: PeerCalls) => {
      if (--entry.users === 0) peers.delete(peer)
    }

    // the grant read at once from memory; the membership, only of a caller granted the capability
    const allowed = (peer: string, library: string, capability: Option.Option<Protocol.Capability>) =>
      Option.isNone(capability) || !grants.unsafeAllows(peer, library, capability.value) ? Effect.succeed(false) : libraries.isMember(library, peer)

    // every change of grants or membership ends what it no longer allows
    const sweep = Effect.gen(function*() {
      for (const call of calls) {
        if (call.ended === undefined && !(yield* allowed(call.peer, call.library, call.capability))) {
          call.ended = new Protocol.Forbidden({ reason: "Revoked", procedure: call.procedure, detail: `${call.procedure} is no longer granted to you here` })
          if (call.fiber !== undefined) yield* Fiber.interruptFork(call.fiber)
        }
      }
      for (const stream of streams) {
        if (!(yield* libraries.isMember(stream.library, stream.peer))) yield* Deferred.succeed(stream.lost, undefined)
      }
    })
    yield* Effect.forkScoped(Stream.runForEach(yield* grants.changes, () => sweep))
    yield* Effect.forkScoped(Stream.runForEach(yield* libraries.changes, () => sweep))

    // the handler, once its caller holds a slot of its peer: it runs in a fiber of its own (one fork,
    // cheaper than a race), which the sweep or the watchdog interrupts; its interruption is then
    // answered with the reason
    const run = <A, E>(running: Running, next: Effect.Effect<A, E>, plain: boolean): Effect.Effect<A, E | Protocol.Forbidden | Protocol.CallTimeout> =>
      Effect.suspend(() => {
        // ended by the sweep while it waited for a slot
        if (running.ended !== undefined) return Effect.fail(running.ended)
        return Effect.flatMap(allowed(running.peer, running.library, running.capability), (ok) => {
          if (!ok) return Effect.fail(Protocol.notGranted(running.procedure))
          return Effect.flatMap(Effect.fork(next), (child) => {
            running.fiber = child
            if (plain) {
              running.deadline = clock.unsafeCurrentTimeMillis() + callMillis
              timed.add(running)
              timedAdded.unsafeOpen()
            }
            const answer = Effect.flatMap(
              Effect.onInterrupt(Fiber.await(child), () => Fiber.interrupt(child)),
              (exit): Effect.Effect<A, E | Protocol.Forbidden | Protocol.CallTimeout> =>
                Exit.isFailure(exit) && running.ended !== undefined && Cause.isInterruptedOnly(exit.cause) ? Effect.fail(running.ended) : exit
            )
            return running.ended === undefined ? answer : Effect.zipRight(Fiber.interruptFork(child), answer)
          })
        })
      })

    const guard: Context.Tag.Service<Protocol.Guard> = ({ next, rpc }) =>
      Effect.flatMap(Effect.serviceOption(RpcPlugin.Caller), (caller) => {
        if (Option.isNone(caller) || caller.value.library === undefined) return Effect.fail(Protocol.notGranted(rpc._tag))
        const running: Running = {
          peer: caller.value.peer,
          library: caller.value.library,
          capability: Protocol.capabilityOf(rpc),
          procedure: rpc._tag,
          fiber: undefined,
          ended: undefined,
          deadline: undefined
        }
        const plain = !RpcSchema.isStreamSchema(rpc.successSchema)
        // listed before the check (a revoke between the two is seen by the sweep), and unlisted, with
        // its peer's slot given back, however the call ends: nothing between can be interrupted
        return Effect.uninterruptibleMask((restore) => {
          const entry = enter(running.peer)
          calls.add(running)
          const release = Effect.sync(() => {
            calls.delete(running)
            timed.delete(running)
            leave(running.peer, entry)
          })
          // a free slot is taken without a wait set up; else the call waits for one
          const handler = run(running, next, plain)
          const body = Effect.flatMap(
            entry.slots.withPermitsIfAvailable(1)(handler),
            (done) => Option.isSome(done) ? Effect.succeed(done.value) : entry.slots.withPermits(1)(handler)
          )
          return Effect.ensuring(restore(body), release)
        })
      })

    const server = yield* RpcPlugin.makeServer(options.group, {
      maxFrameBytes: limits.maxFrameBytes,
      maxInFlight: limits.maxInFlight,
      idleTimeout: limits.idleTimeout,
      // before the payload is read: an unknown procedure and an ungranted one get the same answer
      authorize: (tag, caller) => {
        const rpc = options.group.requests.get(tag) as Rpc.AnyWithProps | undefined
        const capability = rpc === undefined ? Option.none() : Protocol.capabilityOf(rpc)
        return caller.library === undefined
          ? Effect.succeed(Option.some(encodeForbidden(Protocol.notGranted(tag))))
          : Effect.map(allowed(caller.peer, caller.library, capability), (ok) => (ok ? Option.none() : Option.some(encodeForbidden(Protocol.notGranted(tag)))))
      }
    }).pipe(Effect.provideService(Protocol.Guard, guard))

    yield* host.register(Plugin.make({
      name: "rspc",
      ...Protocol.protocol,
      maxInboundStreams: limits.maxStreams,
      handle: (stream, context) =>
        Effect.gen(function*() {
          const served: Served = { peer: context.peer, library: context.library!, lost: yield* Deferred.make<void>() }
          yield* Effect.acquireRelease(Effect.sync(() => streams.add(served)), () => Effect.sync(() => streams.delete(served)))
          // leaving the library ends the peer's streams of it, with every call on them
          yield* Effect.raceFirst(server.serve(stream, context), Effect.zipRight(Deferred.await(served.lost), stream.reset))
        })
    }))
    return { active: Effect.sync(() => ({ calls: calls.size, streams: streams.size })) }
  })

/** Layer of the server (the `Rspc` service), with the app's handlers in context. */
export const layer = <Rpcs extends Rpc.Any>(
  options: ServeOptions<Rpcs>
): Layer.Layer<Rspc, TransportError, PluginHost | Grants | Libraries | Requirements<Rpcs>> => Layer.scoped(Rspc, serve(options))

/** Which peer and library a client calls. */
export interface Target {
  readonly peer: PeerId
  readonly library: string
}

/** Bounds of a client (they must fit the server's: a larger frame is refused there). */
export interface ClientOptions {
  readonly maxFrameBytes?: number
  readonly maxInFlight?: number
}

/**
 * A client of `group` on `target.peer`, in `target.library`, over one rspc
 * stream that closes with the scope. A peer that is not connected, refuses
 * the library, or is this node is `Unavailable`: nothing runs locally
 * instead. Calls fail with `Forbidden` for what the peer did not grant, and
 * with `RpcError` `Closed` once the stream ends.
 */
export const client = <Rpcs extends Rpc.Any>(
  group: RpcGroup.RpcGroup<Rpcs>,
  target: Target,
  options: ClientOptions = {}
): Effect.Effect<RpcClient.RpcClient<Rpcs, RpcPlugin.RpcError>, Protocol.Unavailable, PluginHost | Scope.Scope> =>
  Effect.gen(function*() {
    const host = yield* PluginHost
    const unavailable = (reason: Protocol.Unavailable["reason"], detail: string) =>
      new Protocol.Unavailable({ reason, peer: target.peer, library: target.library, detail })
    if (target.peer === host.peerId) return yield* unavailable("Local", "a client calls another peer, never this node")
    if (!(yield* host.available).includes(target.peer)) return yield* unavailable("NotConnected", "no connection to this peer now")
    const protocol = {
      ...Protocol.protocol,
      group,
      maxFrameBytes: options.maxFrameBytes ?? Protocol.DEFAULT_LIMITS.maxFrameBytes,
      maxInFlight: options.maxInFlight ?? Protocol.DEFAULT_LIMITS.maxInFlight
    }
    return yield* RpcPlugin.client(protocol, target.peer, target.library).pipe(
      Effect.catchTags({
        PermissionError: (error) => Effect.fail(unavailable("Refused", error.detail)),
        TransportError: (error) => Effect.fail(unavailable("Unreachable", error.message))
      })
    )
  })
