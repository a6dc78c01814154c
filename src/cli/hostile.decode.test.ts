/**
 * A paired member's identity speaking raw frames to a real `weft serve`:
 * one small frame that once took the node past its heap limit is refused as
 * a violation, the sender is disconnected, and the node serves on, syncing
 * with an honest peer.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import * as Libraries from "../library/Libraries.js"
import * as Pair from "../plugins/pair/Pair.js"
import * as PluginHost from "../plugins/PluginHost.js"
import * as SyncPlugin from "../plugins/sync/Protocol.js"
import * as SyncProtocol from "../sync/SyncProtocol.js"
import * as Framing from "../transport/Framing.js"
import * as Identity from "../transport/Identity.js"
import * as Libp2pTransport from "../transport/Libp2pTransport.js"
import * as Transport from "../transport/Transport.js"
import * as Cli from "./testing/Cli.js"
import * as Processes from "./testing/Processes.js"

const { eventually } = Processes
const { LOOPBACK, serve, twoDirs, weftJson } = Cli

/**
 * A sync frame `[VERSION, Ops, …, false]` whose batch is twenty nested array32
 * headers, each announcing 33 554 431 elements: 105 bytes. A reader that
 * trusts headers allocates ~250 MB per level before reading an element.
 */
const NESTED_HEADERS = Uint8Array.from([
  0x94, SyncProtocol.VERSION, 0x01,
  ...Array.from({ length: 20 }, () => [0xdd, 0x01, 0xff, 0xff, 0xff]).flat(),
  0xc0, 0xc2
])

const titles = (notes: ReadonlyArray<{ readonly title: string }>) => notes.map((n) => n.title).sort().join()

describe("weft serve against a hostile member", () => {
  it.scopedLive("the 105-byte nested-header frame as a member's first sync frame: the node stays up, the sender is disconnected, an honest peer keeps syncing", () =>
    Effect.gen(function*() {
      expect(NESTED_HEADERS.length).toBe(105)
      const { a, alpha, b } = yield* twoDirs
      // one after the other: two starting at once on a busy machine may miss serve's start-up bound
      const nodeB = yield* serve(b, "--yes")
      const nodeA = yield* serve(a)
      const [statusA, statusB] = yield* Effect.all([nodeA.status, nodeB.status], { concurrency: 2 })

      // the honest peer a shares Alpha with b (b approves with --yes), and they sync
      yield* weftJson("pair", statusB.addresses[0]!, "--dir", a)
      yield* weftJson("notes", "add", "before", "--dir", a)
      yield* eventually("the first note on b", nodeB.call({ _tag: "NotesList", library: alpha }), ({ notes }) => titles(notes) === "before", nodeB.output)

      // mallory, in this process, pairs with b as any peer would ...
      const identity = yield* Identity.generate()
      const mallory = identity.peerId
      const transport = yield* Libp2pTransport.make({ identity, listen: [LOOPBACK] })
      const library = randomUUID()
      const libraries = yield* Effect.provide(Libraries.Libraries, Libraries.layerMemory([{ id: library, name: "Shared", members: [mallory] }]))
      const withServices = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        effect.pipe(Effect.provideService(Transport.Transport, transport), Effect.provideService(Libraries.Libraries, libraries))
      const host = yield* withServices(PluginHost.make({ connectDiscovered: false }))
      yield* host.connect(statusB.addresses[0]!)
      yield* withServices(Effect.provideService(Pair.pair(statusB.peerId, library), PluginHost.PluginHost, host))
      yield* eventually("mallory a member on b", nodeB.status, (s) => s.libraries.some((l) => l.members.includes(mallory)), nodeB.output)

      // ... then opens a sync stream and sends the frame first
      yield* Effect.scoped(Effect.gen(function*() {
        const stream = yield* host.open(statusB.peerId, SyncPlugin.protocol, library)
        yield* Framing.make(stream).send(NESTED_HEADERS)
        yield* Effect.sleep(Duration.millis(500))
      }))
      yield* eventually("b disconnecting mallory", Effect.sync(() => nodeB.output()), (out) => out.includes(`disconnected ${mallory}: it broke`), nodeB.output)
      expect(nodeB.child.exitCode).toBe(null)
      expect(nodeB.child.signalCode).toBe(null)
      expect(nodeB.output()).not.toMatch(/heap out of memory|FATAL ERROR/)

      // b serves on: a write on each honest side reaches the other
      yield* weftJson("notes", "add", "after, from a", "--dir", a)
      yield* weftJson("notes", "add", "after, from b", "--library", alpha, "--dir", b)
      const all = "after, from a,after, from b,before"
      yield* eventually("a's and b's notes on b", nodeB.call({ _tag: "NotesList", library: alpha }), ({ notes }) => titles(notes) === all, nodeB.output)
      yield* eventually("a's and b's notes on a", nodeA.call({ _tag: "NotesList" }), ({ notes }) => titles(notes) === all, nodeA.output)
      expect((yield* nodeB.status).connections).toContain(statusA.peerId)
    }), 120_000)
})
