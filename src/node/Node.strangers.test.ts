/**
 * Strangers against a real node (issue 12, finding 7): throwaway identities
 * (stock js-libp2p nodes, each dialling from an address of its own on the
 * loopback network, 127.0.0.0/8, so that the node can tell hosts apart)
 * must take neither the connection slots members need nor the pairing
 * questions an honest requester needs.
 */
import { multiaddr } from "@multiformats/multiaddr"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Model from "../engine/Model.js"
import { Libraries } from "../library/Libraries.js"
import * as Consent from "../plugins/Consent.js"
import { Pair } from "../plugins/pair/Pair.js"
import * as PairProtocol from "../plugins/pair/Protocol.js"
import { Identity } from "../transport/Identity.js"
import * as Framing from "../transport/Framing.js"
import * as PeerAddress from "../transport/PeerAddress.js"
import { Transport } from "../transport/Transport.js"
import * as Node from "./Node.js"
import { Reconnect } from "./Reconnect.js"
import * as Processes from "./testing/Processes.js"
import { stranger } from "../transport/testing/Strangers.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, body: Model.RichText }))

/** A full node on a fresh data directory, on loopback (127.0.0.1), in `scope`. */
const startNode = (name: string, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const directory = yield* Processes.tempDir(`weft-strangers-${name}`)
    const context = yield* Layer.build(Node.layerDirectory({ directory, models: [notes], listen: ["/ip4/127.0.0.1/tcp/0"] })).pipe(Scope.extend(scope))
    const get = <I, S>(tag: Context.Tag<I, S>) => Context.get(context as Context.Context<I>, tag)
    const [address] = yield* get(Node.Node).addresses
    return { context, get, id: get(Identity).peerId, address: address! }
  })

/** `count` loopback addresses 127.0.<net>.1…, one per stranger host. */
const hosts = (net: number, count: number) => Array.from({ length: count }, (_, i) => `127.0.${net}.${i + 1}`)

describe("a node and throwaway identities", () => {
  it.scopedLive("62 strangers connect and stay: a member still connects and syncs, and the strangers hold no more than their share", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const alice = yield* startNode("alice", scope)
      const library = yield* alice.get(Libraries).create("Team notes", alice.id)
      // three members of alice's library, two of them connected already
      const members = yield* Effect.forEach(["bob", "carol", "dave"], (name) => startNode(name, scope))
      for (const member of members) {
        yield* alice.get(Libraries).addMember(library.id, member.id)
        yield* member.get(Libraries).create(library.name, member.id, library.id)
        yield* member.get(Libraries).addMember(library.id, alice.id)
      }
      const [bob, carol, dave] = members as [typeof alice, typeof alice, typeof alice]
      yield* bob.get(Reconnect).dial(alice.address)
      yield* carol.get(Reconnect).dial(alice.address)

      // 62 throwaway identities, each from a host of its own, connect (a few at a time: libp2p refuses
      // more than 10 handshakes under way) and stay
      const strangers = yield* Effect.forEach(hosts(1, 62), (from) =>
        Effect.gen(function*() {
          const node = yield* stranger(from)
          yield* Effect.either(Effect.tryPromise(() => node.dial(multiaddr(PeerAddress.withPeer(alice.address, alice.id)))))
          return node.peerId.toString()
        }), { concurrency: 8 })
      const strangerSet = new Set(strangers)
      const heldByStrangers = Effect.map(alice.get(Transport).connections, (peers) => peers.filter((peer) => strangerSet.has(peer)).length)
      // they did get in, as far as alice lets them
      yield* Processes.eventually("strangers connected", heldByStrangers, (held) => held >= 16)

      // the third member connects, and a note syncs to it
      expect(yield* dave.get(Reconnect).dial(alice.address)).toBe(alice.id)
      yield* Effect.scoped(Effect.gen(function*() {
        const { engine: onAlice } = yield* alice.get(Node.Node).library(library.id)
        yield* onAlice.mutate([notes.create("n1", { title: "while strangers knock", body: "" })])
        for (const member of [dave, bob]) {
          const { engine } = yield* member.get(Node.Node).library(library.id)
          yield* Processes.eventually("alice's note on a member", Effect.map(engine.get(notes, "n1"), Option.isSome), (there) => there)
        }
      }))
      // the strangers hold at most their share of the slots
      expect(yield* heldByStrangers).toBeLessThanOrEqual(16)
      const connected = yield* alice.get(Transport).connections
      expect([bob.id, carol.id, dave.id].every((member) => connected.includes(member))).toBe(true)
    }), 120_000)

  it.scopedLive("pairing under a flood: throwaway identities asking to pair from a few hosts cannot keep the user from being asked about an honest request", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const alice = yield* startNode("alice", scope)
      const honest = yield* startNode("honest", scope)
      // alice's user approves the honest requester, and never answers anyone else
      yield* Consent.answerWith((question) => (question.peer === honest.id ? Effect.succeed(true) : Effect.never)).pipe(
        Effect.provideService(Consent.Consent, alice.get(Consent.Consent))
      )

      // 24 throwaway identities, 4 from each of 6 hosts, ask to pair and keep waiting for the answer
      const request = Framing.encode(new TextEncoder().encode(JSON.stringify({ version: 1, type: "Request", library: { id: "lib-sybil", name: "Free stuff" } })))
      yield* Effect.forEach(hosts(2, 6).flatMap((host) => [host, host, host, host]), (from) =>
        Effect.gen(function*() {
          const node = yield* stranger(from)
          const stream = yield* Effect.either(Effect.tryPromise(() => node.dialProtocol(multiaddr(PeerAddress.withPeer(alice.address, alice.id)), PairProtocol.PROTOCOL_ID)))
          if (stream._tag === "Right") stream.right.send(request)
        }), { concurrency: 8 })
      const consent = alice.get(Consent.Consent)
      // many of them wait for alice's user
      const waiting = yield* Processes.eventually("strangers' requests waiting", consent.pending, (pending) => pending.length >= 4)
      expect(waiting.every((question) => question.peer !== honest.id)).toBe(true)

      // the honest requester (from another host) is asked, and approved
      const library = yield* honest.get(Libraries).create("Honest notes", honest.id)
      yield* honest.get(Reconnect).dial(alice.address)
      const paired = yield* honest.get(Pair).pair(alice.id, library.id)
      expect([...paired.members].sort()).toEqual([alice.id, honest.id].sort())
      expect(yield* alice.get(Libraries).isMember(library.id, honest.id)).toBe(true)
    }), 120_000)
})
