/**
 * The conformance suite of plugins: what every plugin on the host must do,
 * checked from outside, through the host and the wire alone.
 *
 * ```ts
 * // Ping.suite.test.ts
 * PluginSuite.suite("ping", {
 *   protocol: Protocol.protocol,
 *   install: (host) => host.provide(Layer.build(Ping.layer)),
 *   maxInboundStreams: 2,
 *   malformed: [], // every byte is a valid ping
 *   silentTimeout: Ping.IDLE_TIMEOUT
 * })
 * ```
 *
 * Each case runs on the live clock, on a fresh memory network (`Hosts`) in
 * its own scope, with four hosts:
 * - `target` runs the plugin, installed with `install` in a scope of its own;
 * - `opener` and `neighbour` are members of the library (`library`) and open
 *   raw streams to the target through their hosts (which write and check the
 *   host's library header); they run no plugin;
 * - `outsider` is a member only of another library of the target's.
 *
 * The suite watches the plugin through the `PluginHost` it registers on: a
 * wrapper records each call of the plugin's handler with its context (the
 * handler itself runs unchanged), so "refused before any handler runs" is
 * seen, not assumed. Every wait is bounded (`stepTimeout`) and fails with
 * what it waited for and what it saw last.
 *
 * The checks, each its own case (those that do not apply to the options are
 * declared skipped, with the reason in their title):
 * - each `malformed` input, and the `oversize` frame header, written after
 *   the host's header on a stream left open, is a violation: the target's
 *   host publishes `Violation` for the opener and drops its connection;
 * - past `maxInboundStreams` held open by one peer, a stream is refused
 *   before any handler runs, while another peer is still served, and once
 *   one of them closes the peer is served again;
 * - after a disconnect the target holds nothing for the opener (its host's
 *   `streams`), and the opener nothing once its scope closes;
 * - closing the opener's scope (resetting its streams) ends their handlers
 *   without a violation: nothing is held either side, the connection stays;
 * - a silent stream is ended by the plugin within `silentTimeout` (and not
 *   before half of it);
 * - closing the scope `install` ran in unregisters the plugin (a new stream
 *   is refused `UnsupportedProtocol`), and it can be installed again;
 * - for a `library` plugin: a peer that is not a member, and a member naming
 *   another library (or one the target does not have), is refused
 *   `PermissionError` `NotAMember` before any handler runs.
 *
 * A plugin that genuinely fails a check names it in `knownFailures`, with
 * the defect: that case is then declared `it.fails`, so it is reported, and
 * fixing the defect turns it red until the entry is removed.
 *
 * @since 0.1.0
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type * as Libraries from "../../library/Libraries.js"
import * as Framing from "../../transport/Framing.js"
import { DEFAULT_MAX_INBOUND_STREAMS } from "../../transport/MemoryTransport.js"
import type { Duplex, PeerId } from "../../transport/Transport.js"
import type * as Plugin from "../Plugin.js"
import * as PluginHost from "../PluginHost.js"
import * as Hosts from "./Hosts.js"

/** A named input that breaks the plugin's protocol. */
export interface Input {
  readonly name: string
  /** Written raw on a fresh stream, after the host's header (for `library` plugins). */
  readonly bytes: Uint8Array
}

/** What `install` is told about the hosts the suite set up. */
export interface InstallContext {
  /** The library the opener and neighbour are members of (the one `library` streams name). */
  readonly library: string
}

/** The checks of the suite, as `knownFailures` names them. */
export type Check =
  | "malformed"
  | "oversize"
  | "maxInboundStreams"
  | "disconnect"
  | "openerScope"
  | "silent"
  | "unregister"
  | "nonMember"
  | "otherLibrary"

/** The plugin under test, and the suite's bounds. */
export interface Options {
  /** The protocol the plugin registers (id and permission); the suite checks that `install` registers it so. */
  readonly protocol: Plugin.Protocol
  /**
   * Installs the plugin on `host` for as long as the scope lives, typically
   * `host.provide(MyPlugin.make())` or `host.provide(Layer.build(MyPlugin.layer))`.
   */
  readonly install: (host: Hosts.Host, context: InstallContext) => Effect.Effect<unknown, unknown, Scope.Scope>
  /** Inputs that break the protocol; none for a protocol where every byte is valid (ping). */
  readonly malformed: ReadonlyArray<Input>
  /**
   * A frame header claiming more than the plugin's frame bound, for a
   * protocol with frames. It is written alone (no body follows, and the
   * stream stays open): the plugin must refuse it at the header.
   */
  readonly oversize?: Uint8Array
  /** The most inbound streams of one peer the plugin serves at once (default the host's, 32). */
  readonly maxInboundStreams?: number
  /**
   * How long the plugin lets a silent inbound stream stay open before it
   * ends it; the check is skipped when the plugin has no such bound.
   */
  readonly silentTimeout?: Duration.DurationInput
  /** The id of the library the suite's hosts share (default `LIBRARY`). */
  readonly library?: string
  /** More options of the target host (a consent front end, say); its libraries are the suite's. */
  readonly target?: Omit<Hosts.HostOptions, "libraries">
  /** Seed of the memory network (default 1). */
  readonly seed?: number
  /** How long one awaited step may take before the case fails (default 5 s). */
  readonly stepTimeout?: Duration.DurationInput
  /** Vitest's timeout of one case, in milliseconds (default 60 000). */
  readonly testTimeout?: number
  /**
   * The least level logged while a case runs (default `Error`: resets and
   * violations are the suite's daily bread, and the host and transport warn
   * of each).
   */
  readonly logLevel?: LogLevel.LogLevel
  /** Checks the plugin is known to fail, each with its defect: declared `it.fails`. */
  readonly knownFailures?: { readonly [K in Check]?: string }
}

/** The default library of the suite's hosts. */
export const LIBRARY = "plugin-suite"

/** A length-prefixed frame (`Framing`) of `value` as JSON: how a malformed input for a framed JSON protocol is written. */
export const jsonFrame = (value: unknown): Uint8Array => Framing.encode(new TextEncoder().encode(JSON.stringify(value)))

/** A frame header alone, claiming `length` bytes: the `oversize` input of a framed protocol (`length` over its bound). */
export const frameHeader = (length: number): Uint8Array => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, length)
  return out
}

/** The peer ids of the suite's hosts. */
export const peers = {
  target: "target",
  opener: "opener",
  neighbour: "neighbour",
  outsider: "outsider"
} as const

/** How late past `silentTimeout` a silent stream may still end. */
export const SILENT_SLACK: Duration.Duration = Duration.seconds(2)

/** One call of the plugin's handler on the target. */
interface HandlerCall {
  readonly protocol: string
  readonly peer: PeerId
  readonly library: string | undefined
}

/** What one case works with. */
interface Fixture {
  readonly network: Hosts.Network
  readonly target: Hosts.Host
  readonly opener: Hosts.Host
  readonly neighbour: Hosts.Host
  readonly outsider: Hosts.Host
  /** The plugin's scope: closing it unregisters the plugin. */
  readonly registration: Scope.CloseableScope
  /** Installs the plugin on the target again, in the caller's scope. */
  readonly install: Effect.Effect<void, unknown, Scope.Scope>
  /** Calls of the plugin's handler on the target, in order. */
  readonly calls: Effect.Effect<ReadonlyArray<HandlerCall>>
  /** The target host's events since the case began. */
  readonly events: Effect.Effect<ReadonlyArray<PluginHost.PeerEvent>>
  /** Waits for a target host event that matches. */
  readonly event: (what: string, predicate: (event: PluginHost.PeerEvent) => boolean) => Effect.Effect<PluginHost.PeerEvent, Error>
}

const library = (id: string, members: ReadonlyArray<string>): Libraries.Library => ({
  id,
  name: id,
  members: members as ReadonlyArray<PeerId>
})

/**
 * `host` with its `PluginHost` wrapped: what registers through it is
 * recorded, and each call of a registered handler is recorded before the
 * handler runs. Permission checks, limits and routing stay the host's.
 */
const observe = (
  host: Hosts.Host,
  calls: Ref.Ref<ReadonlyArray<HandlerCall>>,
  registered: Ref.Ref<ReadonlyArray<Plugin.Protocol>>
): Hosts.Host => {
  const inner = host.host
  const pluginHost: PluginHost.Service = {
    ...inner,
    register: <E, R>(plugin: Plugin.Plugin<E, R>) =>
      inner.register<E, R>({
        ...plugin,
        handle: (stream, context) =>
          Effect.zipRight(
            Ref.update(calls, (all) => [...all, { protocol: plugin.protocol, peer: context.peer, library: context.library }]),
            plugin.handle(stream, context)
          )
      }).pipe(Effect.zipLeft(Ref.update(registered, (all) => [...all, plugin])))
  }
  return {
    ...host,
    host: pluginHost,
    provide: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      host.provide(Effect.provideService(effect, PluginHost.PluginHost, pluginHost)) as Effect.Effect<A, E, Exclude<R, Hosts.Services>>
  }
}

/** Declares the conformance suite of a plugin: one vitest case per check. */
export const suite = (name: string, options: Options): void => {
  const protocol = options.protocol
  const libraryId = options.library ?? LIBRARY
  const otherLibrary = `${libraryId}-other`
  const absentLibrary = `${libraryId}-absent`
  const isLibrary = protocol.permission === "library"
  // what the opener names when it opens a stream
  const named = isLibrary ? libraryId : undefined
  const maxInboundStreams = options.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS
  const stepTimeout = Duration.decode(options.stepTimeout ?? Duration.seconds(5))
  const testTimeout = options.testTimeout ?? 60_000
  const logLevel = options.logLevel ?? LogLevel.Error

  /** Fails the case with `what` if `effect` takes longer than a step may. */
  const step = (what: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.timeoutFail(effect, { duration: stepTimeout, onTimeout: () => new Error(`timed out after ${Duration.format(stepTimeout)}: ${what}`) })

  /** Waits until `effect` gives a value that is `done`, polling; a timeout says what it saw last. */
  const eventually = <A, E>(what: string, effect: Effect.Effect<A, E>, done: (a: A) => boolean) =>
    Effect.suspend(() => {
      let last: A | undefined
      return effect.pipe(
        Effect.tap((a) => Effect.sync(() => (last = a))),
        Effect.repeat({ until: done, schedule: Schedule.spaced("10 millis") }),
        Effect.timeoutFail({
          duration: stepTimeout,
          onTimeout: () => new Error(`timed out after ${Duration.format(stepTimeout)}: ${what} (last seen: ${JSON.stringify(last)})`)
        })
      )
    })

  const setup: Effect.Effect<Fixture, unknown, Scope.Scope> = Effect.gen(function*() {
    const network = yield* Hosts.network({ seed: options.seed ?? 1 })
    const { target: targetId, opener: openerId, neighbour: neighbourId, outsider: outsiderId } = peers
    const shared = library(libraryId, [targetId, openerId, neighbourId])
    const target = yield* network.host(targetId, { ...options.target, libraries: [shared, library(otherLibrary, [targetId, outsiderId])] })
    const opener = yield* network.host(openerId, { libraries: [shared] })
    const neighbour = yield* network.host(neighbourId, { libraries: [shared] })
    const outsider = yield* network.host(outsiderId, { libraries: [library(otherLibrary, [targetId, outsiderId])] })

    const calls = yield* Ref.make<ReadonlyArray<HandlerCall>>([])
    const registered = yield* Ref.make<ReadonlyArray<Plugin.Protocol>>([])
    const observed = observe(target, calls, registered)
    const install = Effect.gen(function*() {
      yield* Ref.set(registered, [])
      yield* options.install(observed, { library: libraryId })
      const plugins = yield* Ref.get(registered)
      const ours = plugins.find((plugin) => plugin.protocol === protocol.protocol)
      expect(ours, `install registers ${protocol.protocol} (it registered ${JSON.stringify(plugins.map((p) => p.protocol))})`).toBeDefined()
      expect(ours?.permission, `the permission ${protocol.protocol} is registered with`).toBe(protocol.permission)
    })
    const registration = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    yield* Scope.extend(install, registration)

    // the target's events, from before anything happens (kept in an array too, for failure messages)
    const log: Array<PluginHost.PeerEvent> = []
    const seen = yield* SubscriptionRef.make<ReadonlyArray<PluginHost.PeerEvent>>([])
    const subscription = yield* target.host.events
    yield* Effect.forkScoped(Stream.runForEach(subscription, (event) => {
      log.push(event)
      return SubscriptionRef.set(seen, [...log])
    }))
    const event = (what: string, predicate: (event: PluginHost.PeerEvent) => boolean) =>
      seen.changes.pipe(
        Stream.filterMap((all) => Option.fromNullable(all.find(predicate))),
        Stream.runHead,
        Effect.flatMap(Option.match({ onNone: () => Effect.fail(new Error(`no ${what}`)), onSome: Effect.succeed })),
        Effect.timeoutFail({
          duration: stepTimeout,
          onTimeout: () => new Error(`timed out after ${Duration.format(stepTimeout)} waiting for ${what} (events seen: ${JSON.stringify(log)})`)
        })
      )

    yield* opener.connect(target).pipe(step("connecting the opener to the target"))
    return {
      network,
      target,
      opener,
      neighbour,
      outsider,
      registration,
      install,
      calls: Effect.map(Ref.get(calls), (all) => all.filter((call) => call.protocol === protocol.protocol)),
      events: SubscriptionRef.get(seen),
      event
    }
  })

  /** A stream of the plugin's protocol from `from` to the target, open until `close`. */
  const hold = (fixture: Fixture, from: Hosts.Host, library: string | undefined = named) =>
    Effect.gen(function*() {
      const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
      const stream: Duplex = yield* Scope.extend(from.host.open(fixture.target.id, protocol, library), scope).pipe(
        step(`${from.id} opening a stream of ${protocol.protocol}`)
      )
      return { stream, close: Scope.close(scope, Exit.void) }
    })

  const callsFrom = (fixture: Fixture, peer: PeerId) => Effect.map(fixture.calls, (calls) => calls.filter((call) => call.peer === peer))
  /** What `host` holds (handlers and outbound streams) with `peer`. */
  const heldWith = (host: Hosts.Host, peer: PeerId) => Effect.map(host.host.streams, (streams) => streams.filter((s) => s.peer === peer))
  const handlersOf = (host: Hosts.Host, peer: PeerId) =>
    Effect.map(heldWith(host, peer), (streams) => streams.reduce((n, s) => n + (s.protocol === protocol.protocol ? s.handlers : 0), 0))

  /** Opens `count` streams from the opener and waits until a handler runs for each; closing one resets it. */
  const holdRunning = (fixture: Fixture, count: number) =>
    Effect.gen(function*() {
      const before = (yield* callsFrom(fixture, fixture.opener.id)).length
      const streams = yield* Effect.forEach(Array.from({ length: count }), () => hold(fixture, fixture.opener))
      yield* eventually(`the plugin's handler running for ${count} streams of the opener`, callsFrom(fixture, fixture.opener.id), (calls) =>
        calls.length === before + count)
      yield* eventually(`the target's host counting ${count} handlers of the opener`, handlersOf(fixture.target, fixture.opener.id), (n) =>
        n === count)
      return streams
    })

  /** Opens a stream that must be refused; succeeds with the error it was refused with. */
  const refused = (fixture: Fixture, from: Hosts.Host, library: string | undefined, what: string) =>
    Effect.scoped(Effect.gen(function*() {
      const stream = yield* from.host.open(fixture.target.id, protocol, library)
      // admitted: a refusal could still come as a reset
      return yield* Stream.runDrain(stream.source)
    })).pipe(
      Effect.matchEffect({
        onFailure: Effect.succeed,
        onSuccess: () => Effect.fail(new Error(`${what}: the stream was admitted, and ended cleanly`))
      }),
      step(`${what}: the stream being refused`)
    )

  const expectNothingHeld = (host: Hosts.Host, peer: PeerId, what: string) =>
    eventually(what, heldWith(host, peer), (streams) => streams.length === 0)

  const declare = (
    check: Check,
    title: string,
    body: (fixture: Fixture) => Effect.Effect<void, unknown, Scope.Scope>,
    skip?: string
  ) => {
    if (skip !== undefined) return it.skip(`${title} (skipped: ${skip})`)
    const known = options.knownFailures?.[check]
    const run = () => Effect.flatMap(setup, body).pipe(Logger.withMinimumLogLevel(logLevel))
    if (known !== undefined) return it.scopedLive.fails(`${title} (KNOWN FAILURE: ${known})`, run, testTimeout)
    return it.scopedLive(title, run, testTimeout)
  }

  /** Writes `input` on a stream left open; the target must report a violation and drop the opener. */
  const violation = (fixture: Fixture, input: Uint8Array) =>
    Effect.gen(function*() {
      const { stream } = yield* hold(fixture, fixture.opener)
      yield* stream.write(input)
      yield* fixture.event(
        `Violation of ${protocol.protocol} by the opener, on the target's host`,
        (event) => event._tag === "Violation" && event.peer === fixture.opener.id && event.protocol === protocol.protocol
      )
      yield* eventually("the target dropping its connection to the opener", fixture.target.transport.connections, (peers) =>
        !peers.includes(fixture.opener.id))
      yield* eventually("the opener seeing its connection dropped", fixture.opener.transport.connections, (peers) =>
        !peers.includes(fixture.target.id))
      yield* expectNothingHeld(fixture.target, fixture.opener.id, "the target holding nothing for the opener")
      // it was the plugin that saw the input, not the host's header
      expect((yield* callsFrom(fixture, fixture.opener.id)).length, "handler calls for the opener").toBe(1)
    })

  describe(name, () => {
    if (options.malformed.length === 0) {
      declare("malformed", "malformed input is a violation", () => Effect.void, "no malformed input given: every byte is valid")
    }
    for (const input of options.malformed) {
      declare(
        "malformed",
        `malformed input (${input.name}) is a violation: the host reports it and disconnects the sender`,
        (fixture) => violation(fixture, input.bytes)
      )
    }

    declare(
      "oversize",
      "an oversize frame is a violation, seen at its header: the host reports it and disconnects the sender",
      (fixture) => violation(fixture, options.oversize!),
      options.oversize === undefined ? "no oversize input given: the protocol has no frames" : undefined
    )

    declare(
      "maxInboundStreams",
      `inbound streams past maxInboundStreams (${maxInboundStreams}) per peer are refused while that many are held open`,
      (fixture) =>
        Effect.gen(function*() {
          const { opener, neighbour, target } = fixture
          const held = yield* holdRunning(fixture, maxInboundStreams)
          const error = yield* refused(fixture, opener, named, `stream ${maxInboundStreams + 1} of the opener`)
          expect(error, "the stream past the limit").toMatchObject({ _tag: "TransportError", reason: "Refused" })
          expect((yield* callsFrom(fixture, opener.id)).length, "handler calls for the opener after the refusal").toBe(maxInboundStreams)
          // the limit is per peer: another member is served meanwhile
          yield* neighbour.connect(target).pipe(step("connecting the neighbour"))
          yield* hold(fixture, neighbour)
          yield* eventually("the plugin's handler running for the neighbour's stream", callsFrom(fixture, neighbour.id), (calls) =>
            calls.length === 1)
          // once one is closed, the opener is served again
          yield* held[0]!.close
          yield* eventually("the target ending the handler of the stream the opener closed", handlersOf(target, opener.id), (n) =>
            n === maxInboundStreams - 1)
          yield* hold(fixture, opener)
          // one call more than were held: the refused stream never reached the handler
          yield* eventually("the plugin's handler running for the opener's stream in the freed slot", callsFrom(fixture, opener.id), (calls) =>
            calls.length === maxInboundStreams + 1)
          for (const call of yield* fixture.calls) {
            expect(call.library, "the library the handler is told").toBe(named)
          }
        })
    )

    declare(
      "disconnect",
      "after a disconnect the target holds nothing for the opener, and the opener nothing once its scope closes",
      (fixture) =>
        Effect.gen(function*() {
          const { opener, target } = fixture
          const held = yield* holdRunning(fixture, Math.min(maxInboundStreams, 3))
          // (disconnected from the case: a handler that will not end keeps the disconnect waiting)
          yield* fixture.network.network.disconnect(opener.id, target.id).pipe(
            Effect.disconnect,
            step("the disconnect completing (it waits for the target's handlers to end)")
          )
          yield* expectNothingHeld(target, opener.id, "the target's host holding nothing for the opener after the disconnect")
          yield* Effect.forEach(held, (stream) => stream.close, { discard: true })
          yield* expectNothingHeld(opener, target.id, "the opener's host holding nothing for the target once its scope closed")
        })
    )

    declare(
      "openerScope",
      "closing the opener's scope ends the handlers, without a violation: nothing is held either side, and the connection stays",
      (fixture) =>
        Effect.gen(function*() {
          const { opener, target } = fixture
          const held = yield* holdRunning(fixture, Math.min(maxInboundStreams, 3))
          yield* Effect.forEach(held, (stream) => stream.close, { discard: true })
          yield* expectNothingHeld(target, opener.id, "the target's handlers of the reset streams ending")
          yield* expectNothingHeld(opener, target.id, "the opener's host holding nothing once its scope closed")
          expect(yield* target.transport.connections, "the target's connections").toContain(opener.id)
          expect((yield* fixture.events).filter((event) => event._tag === "Violation"), "violations").toEqual([])
          // and the plugin serves the opener on
          yield* holdRunning(fixture, 1)
        })
    )

    const silent = options.silentTimeout === undefined ? undefined : Duration.decode(options.silentTimeout)
    declare(
      "silent",
      `a silent stream is ended within the plugin's bound (${silent === undefined ? "none" : Duration.format(silent)})`,
      (fixture) =>
        Effect.gen(function*() {
          const bound = silent!
          const start = yield* Clock.currentTimeMillis
          const { stream } = yield* hold(fixture, fixture.opener)
          // the end or a reset: either way the plugin let go of the stream
          yield* Effect.either(Stream.runDrain(stream.source)).pipe(
            Effect.timeoutFail({
              duration: Duration.sum(bound, SILENT_SLACK),
              onTimeout: () => new Error(`the silent stream was still open ${Duration.format(Duration.sum(bound, SILENT_SLACK))} after it opened`)
            })
          )
          const elapsed = (yield* Clock.currentTimeMillis) - start
          expect(elapsed, `ms until the silent stream ended (bound ${Duration.format(bound)}): not long before its bound`)
            .toBeGreaterThanOrEqual(Duration.toMillis(bound) / 2)
          yield* eventually("the handler of the silent stream ending", handlersOf(fixture.target, fixture.opener.id), (n) => n === 0)
        }),
      silent === undefined ? "no silent-stream bound given: silent streams may stay open" : undefined
    )

    declare(
      "unregister",
      "the plugin unregisters when its scope closes: a new stream is refused UnsupportedProtocol; it can be installed again",
      (fixture) =>
        Effect.gen(function*() {
          const { opener } = fixture
          const before = yield* hold(fixture, opener)
          yield* eventually("the plugin's handler running before unregistering", callsFrom(fixture, opener.id), (calls) => calls.length === 1)
          yield* before.close
          yield* Scope.close(fixture.registration, Exit.void).pipe(step("closing the plugin's scope"))
          const error = yield* refused(fixture, opener, named, "a stream after unregistering")
          expect(error, "a stream after unregistering").toMatchObject({ _tag: "TransportError", reason: "UnsupportedProtocol" })
          yield* fixture.install.pipe(step("installing the plugin again"))
          yield* hold(fixture, opener)
          yield* eventually("the plugin's handler running once installed again", callsFrom(fixture, opener.id), (calls) => calls.length === 2)
        })
    )

    const notLibrary = isLibrary ? undefined : "an authenticated plugin: any authenticated peer may open its streams"
    declare(
      "nonMember",
      "a peer not a member of the library is refused NotAMember before any handler runs",
      (fixture) =>
        Effect.gen(function*() {
          const { opener, outsider, target } = fixture
          // a member is let in, and its handler told who and which library
          yield* hold(fixture, opener)
          yield* eventually("the plugin's handler running for a member", callsFrom(fixture, opener.id), (calls) => calls.length === 1)
          expect((yield* callsFrom(fixture, opener.id))[0], "the member's handler call").toEqual({
            protocol: protocol.protocol,
            peer: opener.id,
            library: libraryId
          })
          yield* outsider.connect(target).pipe(step("connecting the outsider"))
          const error = yield* refused(fixture, outsider, libraryId, "the outsider's stream")
          expect(error, "the outsider's stream").toMatchObject({ _tag: "PermissionError", reason: "NotAMember" })
          expect(yield* callsFrom(fixture, outsider.id), "handler calls for the outsider").toEqual([])
          yield* expectNothingHeld(target, outsider.id, "the target holding nothing for the outsider")
        }),
      notLibrary
    )

    declare(
      "otherLibrary",
      "a member naming another library, or one the target does not have, is refused NotAMember before any handler runs",
      (fixture) =>
        Effect.gen(function*() {
          const { opener, target } = fixture
          for (const other of [otherLibrary, absentLibrary]) {
            const error = yield* refused(fixture, opener, other, `the opener's stream naming ${other}`)
            expect(error, `the opener's stream naming ${other}`).toMatchObject({ _tag: "PermissionError", reason: "NotAMember" })
          }
          expect(yield* fixture.calls, "handler calls").toEqual([])
          yield* expectNothingHeld(target, opener.id, "the target holding nothing for the refused streams")
          // the refusals were about the library: the member is let in for its own
          yield* hold(fixture, opener)
          yield* eventually("the plugin's handler running for the member's own library", fixture.calls, (calls) =>
            calls.length === 1 && calls[0]!.library === libraryId)
        }),
      notLibrary
    )
  })
}
