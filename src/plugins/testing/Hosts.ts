/**
 * A fixture for plugin tests: plugin hosts on a seeded in-memory network,
 * each with its own libraries (in memory) and `Consent`, so a test adds its
 * plugins and talks to them as two or more peers would.
 *
 * ```ts
 * const network = yield* Hosts.network({ seed: 1 })
 * const alice = yield* network.host("alice")
 * const bob = yield* network.host("bob", { answer: () => Effect.succeed(true) })
 * yield* bob.provide(Pair.make())
 * yield* alice.connect(bob)
 * ```
 *
 * Everything lives in the caller's scope: closing it stops the hosts, their
 * plugins and the network. A host made in a scope of its own crashes when
 * that scope closes (its connections drop, its handlers are interrupted).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Libraries from "../../library/Libraries.js"
import * as MemoryTransport from "../../transport/MemoryTransport.js"
import { type PeerId, Transport, type TransportError } from "../../transport/Transport.js"
import * as Consent from "../Consent.js"
import * as PluginHost from "../PluginHost.js"

/** What a host provides to the effects it runs. */
export type Services = Transport | Libraries.Libraries | PluginHost.PluginHost | Consent.Consent

/** One peer: its transport, libraries, consent and plugin host. */
export interface Host {
  readonly id: PeerId
  readonly transport: Transport["Type"]
  readonly libraries: Libraries.Libraries["Type"]
  readonly consent: Consent.Service
  readonly host: PluginHost.Service
  /** Runs `effect` with this peer's services (a plugin's `make`, a client call). */
  readonly provide: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, Services>>
  /** Connects to `other`; both become available to each other. */
  readonly connect: (other: Host) => Effect.Effect<PeerId, TransportError>
}

/** How one host is set up. */
export interface HostOptions {
  /** Its libraries at the start (default none). */
  readonly libraries?: ReadonlyArray<Libraries.Library>
  /** Options of its plugin host (default: discovered peers are not dialled). */
  readonly host?: PluginHost.Options
  /** Options of its consent service. */
  readonly consent?: Consent.Options
  /** A front end answering its consent questions (default: none attends, so every question is `unattended`). */
  readonly answer?: (question: Consent.Pending) => Effect.Effect<boolean>
  /** Wraps its libraries service, to inject faults (a slow write, say). */
  readonly wrapLibraries?: (libraries: Libraries.Libraries["Type"]) => Libraries.Libraries["Type"]
}

/** A network of hosts. */
export interface Network {
  readonly network: MemoryTransport.MemoryNetwork
  /** A host named `name` (its peer id), on this network, in the caller's scope. */
  readonly host: (name: string, options?: HostOptions) => Effect.Effect<Host, TransportError, Scope.Scope>
}

/** A seeded memory network to put hosts on. */
export const network = (options: Partial<MemoryTransport.Options> = {}): Effect.Effect<Network, never, Scope.Scope> =>
  Effect.map(MemoryTransport.make({ seed: 1, ...options }), (network) => ({
    network,
    host: (name, hostOptions = {}) =>
      Effect.gen(function*() {
        const transport = yield* network.transport(name)
        const stored = yield* Effect.provide(Libraries.Libraries, Libraries.layerMemory(hostOptions.libraries ?? []))
        const libraries = hostOptions.wrapLibraries?.(stored) ?? stored
        const consent = yield* Consent.make(hostOptions.consent ?? {})
        const host = yield* PluginHost.make({ connectDiscovered: false, ...hostOptions.host }).pipe(
          Effect.provideService(Transport, transport),
          Effect.provideService(Libraries.Libraries, libraries)
        )
        const provide = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
          effect.pipe(
            Effect.provideService(Transport, transport),
            Effect.provideService(Libraries.Libraries, libraries),
            Effect.provideService(PluginHost.PluginHost, host),
            Effect.provideService(Consent.Consent, consent)
          ) as Effect.Effect<A, E, Exclude<R, Services>>
        if (hostOptions.answer !== undefined) yield* provide(Consent.answerWith(hostOptions.answer))
        return {
          id: transport.peerId,
          transport,
          libraries,
          consent,
          host,
          provide,
          connect: (other: Host) => host.connect(`memory://${other.id}`)
        } satisfies Host
      })
  }))
