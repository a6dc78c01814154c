/**
 * Connection slots (issue 12, finding 7): peers that are not members are
 * bounded apart, overall and per host, and make room for members. The
 * strangers are stock js-libp2p nodes, each dialling from an address of its
 * own on the loopback network (127.0.0.0/8), so that hosts can be told apart.
 */
import { multiaddr } from "@multiformats/multiaddr"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { connect, type Socket } from "node:net"
import * as Identity from "./Identity.js"
import * as Libp2pTransport from "./Libp2pTransport.js"
import * as PeerAddress from "./PeerAddress.js"
import type * as Transport from "./Transport.js"
import { stranger } from "./testing/Strangers.js"

const echoProtocol = "/weft-test/echo/1.0.0"

/** Waits (in real time) until `check` holds. */
const eventually = <A>(what: string, check: Effect.Effect<A>, until: (a: A) => boolean, timeout = Duration.seconds(10)) =>
  Effect.gen(function*() {
    for (;;) {
      const value = yield* check
      if (until(value)) return value
      yield* Effect.sleep(Duration.millis(20))
    }
  }).pipe(Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`${what}: not reached in time`) }), Effect.orDie)

/**
 * Dials `address` from a new stranger at `from`; its id, and whether it is connected now (a refused dial
 * can still succeed on the dialler's side: the victim refuses after its own handshake, then closes).
 */
const strangerDials = (from: string, address: string) =>
  Effect.gen(function*() {
    const node = yield* stranger(from)
    yield* Effect.either(Effect.tryPromise(() => node.dial(multiaddr(address))))
    return { peer: node.peerId.toString() as Transport.PeerId, connected: Effect.sync(() => node.getConnections().length > 0) }
  })

/** A victim whose members are `members`, with small bounds. */
const victim = (members: Set<string>) =>
  Effect.gen(function*() {
    const transport = yield* Libp2pTransport.make({
      identity: yield* Identity.generate(),
      listen: ["/ip4/127.0.0.1/tcp/0"],
      maxConnections: 6,
      maxStrangerConnections: 4,
      maxStrangerConnectionsPerHost: 2,
      isMember: (peer) => members.has(peer)
    })
    yield* transport.handle(echoProtocol, (stream) => Effect.flatMap(Stream.runForEach(stream.source, stream.write), () => stream.end))
    const [address] = yield* transport.addresses
    return { transport, address: address! }
  })

const member = Effect.gen(function*() {
  return yield* Libp2pTransport.make({ identity: yield* Identity.generate(), listen: [] })
})

/** One echo round trip from `from` to `to`. */
const echoes = (from: Transport.Service, to: Transport.PeerId) =>
  Effect.scoped(Effect.gen(function*() {
    const stream = yield* from.open(to, echoProtocol)
    yield* stream.write(new Uint8Array([1, 2, 3]))
    yield* stream.end
    return yield* Stream.runCollect(stream.source).pipe(Effect.map((chunks) => [...chunks].flatMap((c) => [...c])))
  }))

/** A socket from `from` to `address` that connects and never speaks, closed with the scope. */
const silentSocket = (from: string, address: string) =>
  Effect.acquireRelease(
    Effect.async<Socket>((resume) => {
      const [, , host, , port] = address.split("/")
      const socket = connect({ host: host!, port: Number(port), localAddress: from })
      // refused or reset by the victim: that is its business; the socket is returned all the same
      let done = false
      const ready = () => {
        if (done) return
        done = true
        resume(Effect.succeed(socket))
      }
      socket.on("error", ready)
      socket.once("connect", ready)
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

describe("Libp2pTransport: connection slots", () => {
  it("PeerAddress.host: an IPv4 address whole, an IPv6 address by its /64, a mapped IPv4 address as that address", () => {
    expect(PeerAddress.host("/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWx")).toBe("ip4/192.0.2.7")
    expect(PeerAddress.host("/ip6/2001:db8:1:2:aaaa::1/tcp/4001")).toBe("ip6/2001:db8:1:2::/64")
    expect(PeerAddress.host("/ip6/2001:db8:1:2:ffff:ffff:ffff:ffff/tcp/1")).toBe("ip6/2001:db8:1:2::/64")
    expect(PeerAddress.host("/ip6/::ffff:192.0.2.7/tcp/1")).toBe("ip4/192.0.2.7")
    expect(PeerAddress.host("/ip6/::1/tcp/1")).toBe("ip6/0:0:0:0::/64")
    expect(PeerAddress.host("memory://bob")).toBe("memory://bob")
    expect(PeerAddress.host(undefined)).toBeUndefined()
  })

  it.scopedLive("strangers are bounded per host and overall; one from an uncrowded host takes a crowded host's place; a member takes a stranger's slot when all are taken", () =>
    Effect.gen(function*() {
      const members = new Set<string>()
      const { transport, address } = yield* victim(members)
      const strangersHeld = Effect.map(transport.connections, (peers) => peers.filter((peer) => !members.has(peer)))

      // three from one host: two get in
      const first = yield* Effect.forEach(["127.0.1.1", "127.0.1.1", "127.0.1.1"], (from) => strangerDials(from, address))
      yield* eventually("two strangers of 127.0.1.1 held", strangersHeld, (held) => held.length === 2)
      // and the third sees its connection closed
      yield* eventually("the third stranger of 127.0.1.1 closed", Effect.forEach(first, (s) => s.connected), (connected) => connected.filter(Boolean).length === 2)
      // two from another host: the strangers' bound (4) is reached
      yield* Effect.forEach(["127.0.1.2", "127.0.1.2"], (from) => strangerDials(from, address))
      yield* eventually("four strangers held", strangersHeld, (held) => held.length === 4)
      // one from a third host: it gets in, in the place of one from a host holding two
      const third = yield* strangerDials("127.0.1.3", address)
      const held = yield* eventually("the third host's stranger held", strangersHeld, (held) => held.includes(third.peer) && held.length === 4)
      expect(held.length).toBe(4)

      // members fill the remaining slots, and one more takes a stranger's
      const ones = yield* Effect.forEach([1, 2, 3], () => member)
      for (const one of ones) members.add(one.peerId)
      for (const one of ones) expect(yield* one.connect(address)).toBe(transport.peerId)
      for (const one of ones) expect(yield* echoes(one, transport.peerId)).toEqual([1, 2, 3])
      const after = yield* eventually("a stranger closed for the third member", transport.connections, (peers) => peers.length <= 6)
      expect(ones.every((one) => after.includes(one.peerId))).toBe(true)
      expect(after.filter((peer) => !members.has(peer)).length).toBe(3)
    }), 60_000)

  it.scopedLive("sockets that connect and never speak keep no one else out", () =>
    Effect.gen(function*() {
      const members = new Set<string>()
      const { transport, address } = yield* victim(members)
      // more silent sockets than libp2p let be under way for all hosts together (10): five from each of
      // three hosts (libp2p lets a host open five a second)
      yield* Effect.forEach(["127.0.3.1", "127.0.3.2", "127.0.3.3"].flatMap((host) => Array.from({ length: 5 }, () => host)), (from) => silentSocket(from, address))
      const one = yield* member
      members.add(one.peerId)
      expect(yield* one.connect(address)).toBe(transport.peerId)
      expect(yield* echoes(one, transport.peerId)).toEqual([1, 2, 3])
    }), 60_000)
})
