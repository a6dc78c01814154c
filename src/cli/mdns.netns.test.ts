/**
 * mDNS discovery on a real (virtual) local network: two network namespaces
 * joined by a veth pair, a `weft serve` process in each, and a probe on the
 * link (a UDP socket in the 224.0.0.251:5353 group) that records every mDNS
 * packet and can inject adverts of its own.
 *
 * Creating namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and Linux;
 * where either is missing the suite is skipped with the reason. Namespaces
 * are named after this process and removed when each test's scope closes,
 * after the processes inside them have been stopped.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { execFileSync, spawn } from "node:child_process"
import { existsSync, readFileSync, rmSync } from "node:fs"
import * as Identity from "../transport/Identity.js"
import * as PeerAddress from "../transport/PeerAddress.js"
import * as Control from "./Control.js"
import type * as NodeControl from "../node/Control.js"
import type { PeerId } from "../transport/Transport.js"
import * as DataDir from "../node/DataDir.js"
import { init } from "./Init.js"
import * as Processes from "./testing/Processes.js"

const { CLI, ROOT, exited } = Processes

const IP = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].find((path) => existsSync(path)) ?? "ip"
const SERVICE = "_p2p._udp.local"
/** The most bytes an advert may take (one Ethernet frame, with room to spare). */
const MAX_ADVERT_BYTES = 1024

const ip = (...args: ReadonlyArray<string>) => execFileSync(IP, args, { stdio: ["ignore", "pipe", "pipe"], timeout: 5_000 })

/** What a failed command said: its standard error's first line, else its message. */
const said = (error: unknown) => {
  const stderr = typeof error === "object" && error !== null && "stderr" in error ? String(error.stderr).trim() : ""
  return (stderr === "" ? String(error) : stderr).split("\n")[0]
}

/** Why namespaces cannot be used here, or undefined when they can. */
const netnsUnavailable = (): string | undefined => {
  if (process.platform !== "linux") return "network namespaces need Linux"
  if (process.getuid?.() !== 0) return "creating network namespaces needs root"
  const probe = `weftprobe${process.pid}`
  try {
    ip("netns", "add", probe)
  } catch (error) {
    return `\`ip netns add\` failed: ${said(error)}`
  }
  try {
    ip("-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
    execFileSync(IP, ["netns", "exec", probe, process.execPath, "-e", "0"], { stdio: "ignore", timeout: 5_000 })
    return undefined
  } catch (error) {
    return `veth pairs or \`ip netns exec\` unavailable: ${said(error)}`
  } finally {
    try {
      ip("netns", "del", probe)
    } catch {
      // nothing was left to remove
    }
  }
}
const unavailable = netnsUnavailable()
if (unavailable !== undefined) console.log(`mDNS netns tests skipped: ${unavailable}`)

/** Two namespaces joined by a veth pair, multicast routed onto the link. */
interface Link {
  readonly a: { readonly ns: string; readonly address: string }
  readonly b: { readonly ns: string; readonly address: string }
}

let links = 0
const link: Effect.Effect<Link, never, Scope.Scope> = Effect.gen(function*() {
  const n = ++links
  const subnet = `10.77.${n}`
  const namespace = (side: string) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const ns = `weft${process.pid}n${n}${side}`
        ip("netns", "add", ns)
        return ns
      }),
      (ns) => Effect.sync(() => ip("netns", "del", ns))
    )
  const [nsA, nsB] = [yield* namespace("a"), yield* namespace("b")]
  // created inside the namespaces, so the names cannot clash with anything outside
  ip("link", "add", "weft0", "netns", nsA, "type", "veth", "peer", "name", "weft0", "netns", nsB)
  for (const [ns, host] of [[nsA, 1], [nsB, 2]] as const) {
    ip("-n", ns, "addr", "add", `${subnet}.${host}/24`, "dev", "weft0")
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "link", "set", "weft0", "up")
    // no default route in a fresh namespace: without this, sending to 224.0.0.251 fails with ENETUNREACH
    ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "weft0")
  }
  const flags = ip("-n", nsA, "link", "show", "weft0").toString()
  expect(flags).toMatch(/[<,]MULTICAST[,>]/)
  return { a: { ns: nsA, address: `${subnet}.1` }, b: { ns: nsB, address: `${subnet}.2` } }
})

/** A process started with `node <args>` inside a namespace, stopped (SIGTERM, then SIGKILL) with the scope. */
const processIn = (ns: string, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      // `ip netns exec` execs node in place, so the child is node itself
      const child = spawn(IP, ["netns", "exec", ns, process.execPath, ...args], {
        cwd: ROOT,
        stdio: ["pipe", "pipe", "pipe"],
        env: { ...process.env, NO_COLOR: "1" }
      })
      let stdout = ""
      let stderr = ""
      child.on("error", (error) => (stderr += `spawn failed: ${error.message}\n`))
      child.stdout.on("data", (data: Buffer) => (stdout += data.toString()))
      child.stderr.on("data", (data: Buffer) => (stderr += data.toString()))
      return { child, stdout: () => stdout, output: () => stdout + stderr }
    }),
    ({ child }) =>
      Effect.sync(() => child.kill("SIGTERM")).pipe(
        Effect.zipRight(exited(child).pipe(Effect.timeoutFail({ duration: Duration.seconds(5), onTimeout: () => "timeout" }))),
        Effect.catchAll(() => Effect.sync(() => child.kill("SIGKILL")).pipe(Effect.zipRight(exited(child)))),
        Effect.timeout(Duration.seconds(10)),
        Effect.ignore
      )
  )

/** Polls for a condition (15 s unless told). */
const eventually = <A, E>(
  what: string,
  effect: Effect.Effect<A, E>,
  done: (value: A) => boolean,
  context: () => string = () => "",
  timeout: Duration.DurationInput = Duration.seconds(15)
) => Processes.eventually(what, effect, done, context, timeout)

const tempDir = (name: string) => Processes.tempDir(`weft-mdns-${name}`)

/** A data directory initialized with one library (in-process: no network involved). */
const initialized = (name: string, libraryName: string) =>
  Effect.gen(function*() {
    const dir = yield* tempDir(name)
    const result = yield* init(dir, libraryName).pipe(Effect.orDie)
    return { dir, peerId: result.peerId as string, library: result.libraries[0]! }
  })

/** `weft serve` on every address of its namespace, mDNS on unless `--no-mdns` is given. */
const serve = (ns: string, dir: string, ...extra: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const server = yield* processIn(ns, [...CLI, "serve", "--dir", dir, "--listen", "/ip4/0.0.0.0/tcp/0", ...extra])
    // the control socket is a file, so it is reachable from this (root) namespace
    const socket = DataDir.layout(dir).socket
    const node = {
      output: server.output,
      status: Control.call(socket, { _tag: "Status" }).pipe(Effect.orDie),
      peers: Control.call(socket, { _tag: "Peers" }).pipe(Effect.orDie),
      pair: (peer: string) => Control.call(socket, { _tag: "Pair", peer: peer as PeerId }).pipe(Effect.orDie)
    }
    // a node's start is CPU-bound: on a loaded machine it takes longer than the 15 s the conditions below get
    yield* eventually(`${dir} serving`, Effect.either(Control.call(socket, { _tag: "Status" })), Either.isRight, server.output, "45 seconds")
    return node
  })

/** An mDNS packet as the probe saw it: TXT data and other buffers decoded as Latin-1 strings. */
interface Captured {
  readonly from: string
  readonly size: number
  /** The packet's bytes, base64. */
  readonly raw: string
  readonly packet: {
    readonly type: "query" | "response"
    readonly questions: ReadonlyArray<{ readonly name: string; readonly type: string }>
    readonly answers: ReadonlyArray<{ readonly name: string; readonly type: string; readonly ttl: number; readonly data: unknown }>
    readonly authorities: ReadonlyArray<unknown>
    readonly additionals: ReadonlyArray<unknown>
  }
}

/**
 * The probe (CommonJS, run with `node -e` from the repository root, where
 * `dns-packet`, the encoder of multicast-dns that @libp2p/mdns uses, is
 * installed): joins the mDNS group on the given interface address, prints
 * each packet it receives as a JSON line, and multicasts each response
 * (`{"answers":[…]}`) it reads from standard input.
 */
const PROBE = `
const dgram = require("node:dgram")
const packet = require("dns-packet")
const address = process.argv[1]
const socket = dgram.createSocket({ type: "udp4", reuseAddr: true })
const strings = (key, value) =>
  value !== null && typeof value === "object" && value.type === "Buffer" && Array.isArray(value.data)
    ? Buffer.from(value.data).toString("latin1")
    : value
socket.on("message", (message, from) => {
  let decoded
  try { decoded = packet.decode(message) } catch (error) { decoded = { type: "undecodable", error: String(error) } }
  process.stdout.write(JSON.stringify({ from: from.address, size: message.length, raw: message.toString("base64"), packet: decoded }, strings) + "\\n")
})
socket.bind(5353, () => {
  socket.addMembership("224.0.0.251", address)
  socket.setMulticastInterface(address)
  process.stdout.write("ready\\n")
})
let pending = ""
process.stdin.on("data", (data) => {
  pending += data
  let newline
  while ((newline = pending.indexOf("\\n")) >= 0) {
    const line = pending.slice(0, newline)
    pending = pending.slice(newline + 1)
    const message = packet.encode({ type: "response", flags: packet.AUTHORITATIVE_ANSWER, answers: JSON.parse(line).answers })
    socket.send(message, 5353, "224.0.0.251")
  }
})
`

const probeIn = (ns: string, address: string) =>
  Effect.gen(function*() {
    const probe = yield* processIn(ns, ["-e", PROBE, address])
    yield* eventually("the probe joined the group", Effect.sync(probe.stdout), (out) => out.startsWith("ready\n"), probe.output, "5 seconds")
    const captured = (): ReadonlyArray<Captured> =>
      probe.stdout().split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as Captured)
    const advertise = (answers: ReadonlyArray<unknown>) => Effect.sync(() => probe.child.stdin?.write(`${JSON.stringify({ answers })}\n`))
    return { captured, advertise, output: probe.output }
  })

const isQuery = (c: Captured) => c.packet.type === "query"
const isResponse = (c: Captured) => c.packet.type === "response"

/**
 * Checks a node's advert against everything it may contain: one PTR record
 * naming a random 63-character instance, and TXT records with one
 * `dnsaddr=<address>/p2p/<peer id>` each, where the address is one of the
 * node's own on `ips`.
 */
const expectOnlyPeerIdAndAddresses = (advert: Captured, peerId: string, ips: ReadonlyArray<string>) => {
  const { answers, authorities, additionals, questions } = advert.packet
  expect(questions).toEqual([])
  expect(authorities).toEqual([])
  expect(additionals).toEqual([])
  const [ptr, ...txts] = answers
  expect(ptr).toMatchObject({ name: SERVICE, type: "PTR" })
  const instance = ptr!.data as string
  expect(instance).toMatch(new RegExp(`^[a-z0-9]{63}\\.${SERVICE.replaceAll(".", "\\.")}$`))
  expect(txts.length).toBeGreaterThan(0)
  for (const txt of txts) {
    expect(txt).toMatchObject({ name: instance, type: "TXT" })
    expect(txt.data).toHaveLength(1)
    const [entry] = txt.data as ReadonlyArray<string>
    const match = /^dnsaddr=\/ip4\/([\d.]+)\/tcp\/\d+\/p2p\/(\w+)$/.exec(entry!)
    expect(match, entry).not.toBeNull()
    expect(ips).toContain(match![1])
    expect(match![2]).toBe(peerId)
  }
}

describe.skipIf(unavailable !== undefined)("mDNS between two network namespaces", () => {
  it.scopedLive("each node discovers the other and is reported available once connected; adverts carry only a random name, the peer id and addresses", () =>
    Effect.gen(function*() {
      const net = yield* link
      const [a, b] = [yield* initialized("a", "Private Alpha"), yield* initialized("b", "Private Beta")]
      const probe = yield* probeIn(net.b.ns, net.b.address)
      const [nodeA, nodeB] = yield* Effect.all([serve(net.a.ns, a.dir), serve(net.b.ns, b.dir)], { concurrency: 2 })
      const context = () => `--- a\n${nodeA.output()}\n--- b\n${nodeB.output()}`

      // no address given anywhere: each finds the other on the link, connects, and reports it available
      const knows = (peers: NodeControl.PeersInfo, peer: string) =>
        peers.available.includes(peer) && peers.discovered.some((d) => d.peer === peer)
      const [peersA, peersB] = yield* Effect.all([
        eventually("a found b", nodeA.peers, (p) => knows(p, b.peerId), context),
        eventually("b found a", nodeB.peers, (p) => knows(p, a.peerId), context)
      ], { concurrency: 2 })
      const [statusA, statusB] = [yield* nodeA.status, yield* nodeB.status]
      expect(statusA.connections).toContain(b.peerId)
      expect(statusB.connections).toContain(a.peerId)
      const port = (status: NodeControl.StatusInfo, host: string) =>
        status.addresses.find((address) => address.startsWith(`/ip4/${host}/tcp/`))!.split("/")[4]
      expect(peersA.discovered.find((d) => d.peer === b.peerId)?.addresses).toContain(`/ip4/${net.b.address}/tcp/${port(statusB, net.b.address)}`)
      expect(peersB.discovered.find((d) => d.peer === a.peerId)?.addresses).toContain(`/ip4/${net.a.address}/tcp/${port(statusA, net.a.address)}`)

      // an advert for a peer nobody can reach (a closed port), or whose address answers with
      // another identity (b's): discovered, never available, no connection
      const phantom = (yield* Identity.generate()).peerId as string
      const instance = `${"p".repeat(63)}.${SERVICE}`
      yield* probe.advertise([
        { name: SERVICE, type: "PTR", ttl: 120, data: instance },
        { name: instance, type: "TXT", ttl: 120, data: `dnsaddr=/ip4/${net.b.address}/tcp/9/p2p/${phantom}` },
        { name: instance, type: "TXT", ttl: 120, data: `dnsaddr=${statusB.addresses.find((x) => x.includes(net.b.address))!.replace(b.peerId, phantom)}` }
      ])
      for (const node of [nodeA, nodeB]) {
        yield* eventually("the phantom discovered", node.peers, (p) => p.discovered.some((d) => d.peer === phantom), context, "5 seconds")
      }
      // the dials are local and fail (refused) or succeed to b within milliseconds; give them ample time
      yield* Effect.sleep(Duration.millis(1500))
      const [afterA, afterB] = [yield* nodeA.peers, yield* nodeB.peers]
      expect(afterA.available).toEqual([b.peerId])
      expect(afterB.available).toEqual([a.peerId])
      expect((yield* nodeA.status).connections).not.toContain(phantom)
      expect((yield* nodeB.status).connections).not.toContain(phantom)

      // the adverts on the wire (the probe's own excluded): queries for the service, and responses
      // carrying a random name, the peer id and addresses, nothing else
      const captured = probe.captured().filter((c) => !JSON.stringify(c.packet).includes(phantom))
      const secrets = [a.library.id, b.library.id, a.library.name, b.library.name, a.dir, b.dir, DataDir.layout(a.dir).socket]
      for (const [node, peer, address, status] of [[a, a.peerId, net.a.address, statusA], [b, b.peerId, net.b.address, statusB]] as const) {
        const mine = captured.filter((c) => c.from === address)
        const queries = mine.filter(isQuery)
        const responses = mine.filter(isResponse)
        expect(queries.length, `queries from ${address}`).toBeGreaterThan(0)
        expect(responses.length, `responses from ${address}`).toBeGreaterThan(0)
        for (const query of queries) {
          expect(query.packet.questions).toEqual([{ name: SERVICE, type: "PTR", class: "IN" }])
          expect(query.size).toBeLessThan(MAX_ADVERT_BYTES)
        }
        const ips = status.addresses.map((x) => x.split("/")[2]!)
        // only the address the other side can reach: loopback is announced only by a node that has nothing else
        expect(ips).toEqual([address])
        for (const response of responses) {
          expect(response.size).toBeLessThan(MAX_ADVERT_BYTES)
          expectOnlyPeerIdAndAddresses(response, peer, ips)
          const text = Buffer.from(response.raw, "base64").toString("latin1")
          for (const secret of secrets) expect(text).not.toContain(secret)
        }
        console.log(
          `mDNS from ${address} (${node.library.name}): ${queries.length} queries of ${[...new Set(queries.map((q) => q.size))].join("/")} bytes, ` +
            `${responses.length} responses of ${[...new Set(responses.map((r) => r.size))].join("/")} bytes; one response: ` +
            JSON.stringify(responses[0]!.packet.answers.map((x) => ({ name: x.name, type: x.type, ttl: x.ttl, data: x.data })))
        )
      }
    }), 60_000)

  it.scopedLive("an advert naming a paired member with made-up addresses never gets them into the address book", () =>
    Effect.gen(function*() {
      const net = yield* link
      const [a, b] = [yield* initialized("a", "Private Alpha"), yield* initialized("b", "Private Beta")]
      const probe = yield* probeIn(net.b.ns, net.b.address)
      // each process in a scope of its own, so it can be stopped alone; all are closed at the end
      const [scopeA, scopeB, scopeA2, scopeB2] = yield* Effect.all([Scope.make(), Scope.make(), Scope.make(), Scope.make()])
      yield* Effect.addFinalizer(() => Effect.forEach([scopeA, scopeB, scopeA2, scopeB2], (scope) => Scope.close(scope, Exit.void)))
      let nodeA = yield* serve(net.a.ns, a.dir).pipe(Scope.extend(scopeA))
      let nodeB = yield* serve(net.b.ns, b.dir, "--yes").pipe(Scope.extend(scopeB))
      const context = () => `--- a\n${nodeA.output()}\n--- b\n${nodeB.output()}`
      yield* eventually("a found b", nodeA.peers, (p) => p.available.includes(b.peerId), context)
      yield* nodeA.pair(b.peerId)
      const book = Effect.sync((): ReadonlyArray<string> => {
        const path = DataDir.layout(a.dir).peers
        const file = existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : { peers: [] }
        return file.peers.find((e: { peer: string }) => e.peer === b.peerId)?.addresses ?? []
      })
      yield* eventually("b in a's book", book, (addresses) => addresses.length > 0, context)

      // both stop; a forgets where b was (so it has not dialled b, and an advert for b is news to it),
      // starts alone, and hears an advert naming b at more made-up addresses than an entry holds
      yield* Scope.close(scopeA, Exit.void)
      yield* Scope.close(scopeB, Exit.void)
      rmSync(DataDir.layout(a.dir).peers)
      nodeA = yield* serve(net.a.ns, a.dir).pipe(Scope.extend(scopeA2))
      const forged = Array.from({ length: 10 }, (_, i) => `/ip4/${net.b.address}/tcp/${101 + i}`)
      const instance = `${"f".repeat(63)}.${SERVICE}`
      yield* eventually("the advert seen", Effect.zipRight(
        probe.advertise([
          { name: SERVICE, type: "PTR", ttl: 120, data: instance },
          ...forged.map((address) => ({ name: instance, type: "TXT", ttl: 120, data: `dnsaddr=${address}/p2p/${b.peerId}` }))
        ]),
        nodeA.peers
      ), (p) => p.discovered.some((d) => d.peer === b.peerId && d.addresses.some((x) => forged.includes(x))), context, "5 seconds")

      // b comes back (on another port) and the two reconnect: a keeps where b really is, and nothing made up
      nodeB = yield* serve(net.b.ns, b.dir, "--yes").pipe(Scope.extend(scopeB2))
      const real = PeerAddress.withoutPeer((yield* nodeB.status).addresses.find((x) => x.includes(net.b.address))!)
      yield* eventually("a and b reconnected", nodeA.peers, (p) => p.available.includes(b.peerId), context, "15 seconds")
      yield* eventually("b's new address in a's book", book, (addresses) => addresses.includes(real), context)
      yield* Effect.sleep(Duration.millis(1000))
      expect((yield* book).filter((x) => forged.includes(x))).toEqual([])
    }), 90_000)

  it.scopedLive("with --no-mdns a node neither answers nor asks, and nothing is discovered on either side", () =>
    Effect.gen(function*() {
      const net = yield* link
      const [a, b] = [yield* initialized("a", "Private Alpha"), yield* initialized("b", "Private Beta")]
      const probe = yield* probeIn(net.b.ns, net.b.address)
      // b first, so it is up when a asks
      const nodeB = yield* serve(net.b.ns, b.dir, "--no-mdns")
      const nodeA = yield* serve(net.a.ns, a.dir)
      const context = () => `--- a\n${nodeA.output()}\n--- b\n${nodeB.output()}\n--- probe\n${probe.output()}`

      // a asked (and answered itself, as libp2p's mDNS does), so b had its chance to answer
      yield* eventually(
        "a's query and response on the link",
        Effect.sync(() => probe.captured().filter((c) => c.from === net.a.address)),
        (mine) => mine.some(isQuery) && mine.some(isResponse),
        context,
        "5 seconds"
      )
      yield* Effect.sleep(Duration.seconds(2))
      expect(probe.captured().filter((c) => c.from === net.b.address)).toEqual([])
      const empty = { available: [], discovered: [] }
      expect(yield* nodeA.peers).toEqual(empty)
      expect(yield* nodeB.peers).toEqual(empty)
      const [statusA, statusB] = [yield* nodeA.status, yield* nodeB.status]
      expect(statusA.connections).toEqual([])
      expect(statusB.connections).toEqual([])
      // with mDNS off the node holds no UDP socket at all
      expect(statusB.resources["UDPWrap"] ?? 0).toBe(0)
      expect(statusA.resources["UDPWrap"] ?? 0).toBeGreaterThan(0)
      expect(nodeB.output()).toContain("mdns      off")
    }), 60_000)
})
