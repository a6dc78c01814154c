/**
 * A fixture for Spacedrop tests: two peers (a sender and a receiver) on a
 * seeded memory network, each with a plugin host and Spacedrop, and
 * temporary directories removed with the scope. The sender's writes can be
 * intercepted (`onWrite`), to corrupt a chunk on the wire or change a source
 * file mid-send; everything else is the real plugin.
 *
 * @since 0.1.0
 */
import { expect } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as Libraries from "../../../library/Libraries.js"
import * as MemoryTransport from "../../../transport/MemoryTransport.js"
import { type Duplex, Transport, type TransportError } from "../../../transport/Transport.js"
import * as PluginHost from "../../PluginHost.js"
import * as Spacedrop from "../Spacedrop.js"

/** One peer. */
export interface Peer {
  readonly id: Transport["Type"]["peerId"]
  readonly host: PluginHost.Service
  readonly spacedrop: Spacedrop.Service
}

/** Intercepts a write of an outbound stream: `write` sends `bytes` (or other bytes) on. */
export type OnWrite = (bytes: Uint8Array, write: (bytes: Uint8Array) => Effect.Effect<void, TransportError>) => Effect.Effect<void, TransportError>

/** Options of the fixture. */
export interface Options {
  readonly network?: Partial<MemoryTransport.Options>
  readonly sender?: Spacedrop.Options
  readonly receiver?: Spacedrop.Options
  /** Intercepts every write of the sender's outbound streams. */
  readonly onWrite?: OnWrite
}

/** A host on `network` without Spacedrop, for a test to speak the protocol by hand. */
export const bareHost = (network: MemoryTransport.MemoryNetwork, name: string) =>
  Effect.gen(function*() {
    const transport = yield* network.transport(name)
    const libraries = Context.get(yield* Effect.provide(Effect.context<Libraries.Libraries>(), Libraries.layerMemory()), Libraries.Libraries)
    const host = yield* PluginHost.make({ connectDiscovered: false }).pipe(
      Effect.provideService(Transport, transport),
      Effect.provideService(Libraries.Libraries, libraries)
    )
    return { id: transport.peerId, host }
  })

/**
 * One peer named `name` on `network`, with Spacedrop under `options`, for
 * as long as the scope: closing it and making the peer again (same name,
 * same `stateDir`) is a restart of that node.
 */
export const peer = (network: MemoryTransport.MemoryNetwork, name: string, options: Spacedrop.Options, onWrite?: OnWrite): Effect.Effect<Peer, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const raw = yield* network.transport(name)
    const transport: Transport["Type"] = onWrite === undefined ? raw : {
      ...raw,
      open: (to, protocol) =>
        Effect.map(raw.open(to, protocol), (stream): Duplex => ({ ...stream, write: (bytes) => onWrite(bytes, stream.write) }))
    }
    const libraries = Context.get(yield* Effect.provide(Effect.context<Libraries.Libraries>(), Libraries.layerMemory()), Libraries.Libraries)
    const host = yield* PluginHost.make({ connectDiscovered: false }).pipe(
      Effect.provideService(Transport, transport),
      Effect.provideService(Libraries.Libraries, libraries)
    )
    const spacedrop = yield* Spacedrop.make(options).pipe(Effect.provideService(PluginHost.PluginHost, host))
    return { id: transport.peerId, host, spacedrop } satisfies Peer
  })

/** The memory network the peers are on. */
export type Network = MemoryTransport.MemoryNetwork

/** A sender and a receiver, connected. */
export const make = (options: Options = {}): Effect.Effect<{ readonly network: MemoryTransport.MemoryNetwork; readonly sender: Peer; readonly receiver: Peer }, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const network = yield* MemoryTransport.make({ seed: 1, ...options.network })
    const sender = yield* peer(network, "sender", { name: "Sender", ...options.sender }, options.onWrite)
    const receiver = yield* peer(network, "receiver", { name: "Receiver", ...options.receiver })
    yield* sender.host.connect(`memory://${receiver.id}`)
    return { network, sender, receiver }
  })

/** A fresh temporary directory, removed when the scope closes. */
export const tempDir = (prefix = "weft-spacedrop-"): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => fs.mkdtemp(nodePath.join(os.tmpdir(), prefix))),
    (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
  )

/** What a directory holds: each path (relative, `/`-separated) with its kind and, for files, size and SHA-256. */
export const snapshot = (root: string): Effect.Effect<Record<string, string>> =>
  Effect.promise(async () => {
    const out: Record<string, string> = {}
    const visit = async (dir: string, prefix: string) => {
      for (const entry of (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
        const path = prefix === "" ? entry.name : `${prefix}/${entry.name}`
        const absolute = nodePath.join(dir, entry.name)
        if (entry.isSymbolicLink()) out[path] = `link → ${await fs.readlink(absolute)}`
        else if (entry.isDirectory()) {
          out[path] = "dir"
          await visit(absolute, path)
        } else {
          const bytes = await fs.readFile(absolute)
          out[path] = `file ${bytes.length} ${createHash("sha256").update(bytes).digest("hex")}`
        }
      }
    }
    await visit(root, "")
    return out
  })

/** The failure of `outcome`; the test fails if it succeeded. */
export const failure = <A, E>(outcome: Either.Either<A, E>): E => {
  expect(Either.isLeft(outcome), "expected a failure").toBe(true)
  return (outcome as Either.Left<E, A>).left
}

/** Accepts every offer `receiver` gets, into `target`: the transfers, in the order they were accepted. */
export const acceptAll = (receiver: Peer, target: string, options?: Spacedrop.AcceptOptions) =>
  Effect.gen(function*() {
    const transfers = yield* Queue.unbounded<Spacedrop.Transfer>()
    const offers = yield* receiver.spacedrop.offers
    yield* Effect.forkScoped(Stream.runForEach(offers, (offer) => Effect.flatMap(offer.accept(target, options), (t) => Queue.offer(transfers, t))))
    return transfers
  })
