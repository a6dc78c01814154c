/**
 * Integration tests of the `weft` executable: real `weft serve` processes on
 * 127.0.0.1 (random ports, mDNS off, separate temporary data directories),
 * driven by `weft` commands as a person would type them. Polling for a
 * condition goes through the control endpoint in-process (`Control.call`),
 * which is what the commands do too.
 *
 * The commands run through tsx by default; `WEFT_CLI=dist` runs the compiled
 * build instead (`npm run build` first), as `npm test` does.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs"
import { randomUUID } from "node:crypto"
import { createServer } from "node:net"
import { join } from "node:path"
import * as Control from "./Control.js"
import * as DataDir from "../node/DataDir.js"
import * as Cli from "./testing/Cli.js"
import * as Processes from "./testing/Processes.js"
import * as Libraries from "../library/Libraries.js"
import * as Pair from "../plugins/pair/Pair.js"
import * as PluginHost from "../plugins/PluginHost.js"
import * as SyncPlugin from "../plugins/sync/Protocol.js"
import * as Framing from "../transport/Framing.js"
import * as Identity from "../transport/Identity.js"
import * as Libp2pTransport from "../transport/Libp2pTransport.js"
import * as PeerAddress from "../transport/PeerAddress.js"
import * as Transport from "../transport/Transport.js"
import type { PeerId } from "../transport/Transport.js"

const { eventually, exited } = Processes
const { LOOPBACK, serve, start, tempDir, twoDirs, weft, weftJson } = Cli

const titles = (notes: ReadonlyArray<{ readonly title: string }>) => notes.map((n) => n.title).sort()

describe("weft (two real nodes)", () => {
  it.scopedLive("pair (one refusal, one approval), notes sync in each direction, ping both ways", () =>
    Effect.gen(function*() {
      const { a, alpha, b, beta } = yield* twoDirs
      // a asks its user on the terminal (its standard input); b approves everything
      const [nodeA, nodeB] = yield* Effect.all([serve(a), serve(b, "--yes")], { concurrency: 2 })
      const [statusA, statusB] = [yield* nodeA.status, yield* nodeB.status]
      const [addressA, addressB] = [statusA.addresses[0]!, statusB.addresses[0]!]
      expect(addressA).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${statusA.peerId}$`))

      // b asks a to share Beta; a's user says no: a typed error, one line, exit code 1, nothing changes
      const refusal = yield* Effect.fork(weft("pair", addressA, "--dir", b))
      yield* eventually("a's question", Effect.sync(nodeA.output), (out) => out.includes("pair request:"), nodeA.output)
      expect(nodeA.output()).toContain(`peer ${statusB.peerId} asks to share library "Beta" (${beta})`)
      yield* nodeA.answer("n")
      const refused = yield* refusal.await.pipe(Effect.flatten)
      expect(refused.code).toBe(1)
      expect(refused.stderr.trim().split("\n")).toHaveLength(1)
      expect(refused.stderr).toMatch(/^weft: PairError: pair Refused \(peer .*\): the peer refused: the user declined\n$/)
      expect((yield* nodeA.status).libraries.map((l) => l.id)).toEqual([alpha])
      expect((yield* nodeB.status).libraries.find((l) => l.id === beta)?.members).toEqual([statusB.peerId])

      // a asks b to share Alpha; b approves (--yes): both list each other, b now has Alpha too
      const paired = yield* weftJson("pair", addressB, "--dir", a)
      expect(paired.peer).toBe(statusB.peerId)
      expect([...paired.library.members].sort()).toEqual([statusA.peerId, statusB.peerId].sort())
      const alphaOnB = (yield* nodeB.status).libraries.find((l) => l.id === alpha)
      expect(alphaOnB?.name).toBe("Alpha")
      expect([...alphaOnB!.members].sort()).toEqual([statusA.peerId, statusB.peerId].sort())

      // a note on each side (b writes into Alpha), and both sides see both
      const [fromA, fromB] = yield* Effect.all([
        weftJson("notes", "add", "from a", "--body", "written on a", "--dir", a),
        weftJson("notes", "add", "from b", "--library", alpha, "--dir", b)
      ], { concurrency: 2 })
      expect(fromA).toMatchObject({ library: alpha, title: "from a", body: "written on a", done: false })
      const both = ["from a", "from b"]
      yield* eventually("both notes on a", nodeA.call({ _tag: "NotesList" }), ({ notes }) => titles(notes).join() === both.join(), nodeA.output)
      yield* eventually("both notes on b", nodeB.call({ _tag: "NotesList", library: alpha }), ({ notes }) => titles(notes).join() === both.join(), nodeB.output)
      const [listA, listB] = yield* Effect.all([
        weftJson<Array<{ id: string; title: string }>>("notes", "list", "--dir", a),
        weftJson<Array<{ id: string; title: string }>>("notes", "list", "--library", alpha, "--dir", b)
      ], { concurrency: 2 })
      expect(listA).toEqual(listB)
      expect(listA.map((n) => n.id).sort()).toEqual([fromA.id, fromB.id].sort())

      // an edit on b reaches a
      yield* weftJson("notes", "set", fromA.id, "--done", "true", "--body", "checked on b", "--library", alpha, "--dir", b)
      yield* eventually("b's edit on a", nodeA.call({ _tag: "NotesList" }), ({ notes }) => notes.some((n) => n.id === fromA.id && n.done && n.body === "checked on b"), nodeA.output)

      // ping both ways, by peer id
      const [there, back] = yield* Effect.all([
        weftJson("ping", statusB.peerId, "--count", "3", "--dir", a),
        weftJson("ping", statusA.peerId, "--count", "3", "--dir", b)
      ], { concurrency: 2 })
      for (const [result, peer] of [[there, statusB.peerId], [back, statusA.peerId]] as const) {
        expect(result.peer).toBe(peer)
        expect(result.rtts).toHaveLength(3)
        expect(result.min).toBeGreaterThan(0)
        expect(result.min).toBeLessThanOrEqual(result.median)
        expect(result.median).toBeLessThanOrEqual(result.max)
      }
      const text = yield* weft("ping", statusB.peerId, "--count", "2", "--dir", a)
      expect(text.stdout).toMatch(/^ping \S+: 2 ping\(s\), min \d+\.\d\d ms, median \d+\.\d\d ms, max \d+\.\d\d ms\n$/)

      // the node's log tells the story
      expect(nodeA.output()).toContain(`peer ${statusB.peerId} available`)
      expect(nodeB.output()).toContain(`library Alpha (${alpha}) added`)
      expect(nodeA.output()).toMatch(/library Alpha: applied \d+ operation\(s\) from sync/)
      // the first session after pairing is not refused (b opens Alpha's database while a's session waits)
      for (const node of [nodeA, nodeB]) expect(node.output()).not.toMatch(/sync with .*: failed/)

      // a clean stop: exit code 0, the control socket removed
      nodeA.child.kill("SIGINT")
      expect(yield* exited(nodeA.child)).toBe(0)
      expect(existsSync(DataDir.layout(a).socket)).toBe(false)
      const stopped = yield* weft("status", "--dir", a)
      expect(stopped.code).toBe(1)
      expect(stopped.stderr).toMatch(/^weft: ControlError: control NotRunning/)
    }), 90_000)

  it.scopedLive("a killed peer leaves nothing behind: its connections, streams, handlers and sessions are closed", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoDirs
      const nodeA = yield* serve(a)
      // b in a scope of its own, so the test can kill it and still clean up after a failure
      const scopeB = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scopeB, Exit.void))
      const nodeB = yield* serve(b, "--yes").pipe(Scope.extend(scopeB))
      const [statusA, statusB] = [yield* nodeA.status, yield* nodeB.status]
      const idle = statusA.resources

      yield* weftJson("pair", statusB.addresses[0]!, "--dir", a)
      // wait for the session, and for a's note to reach b, so streams are really in use
      yield* weftJson("notes", "add", "before the crash", "--dir", a)
      const alpha = statusA.libraries[0]!.id
      yield* eventually("the note on b", nodeB.call({ _tag: "NotesList", library: alpha }), ({ notes }) => notes.length === 1, nodeB.output)
      const busy = yield* eventually(
        "a syncing with b",
        nodeA.status,
        (s) => s.sessions.some((x) => x.peer === statusB.peerId && x.state === "syncing") && s.streams.some((x) => x.peer === statusB.peerId),
        nodeA.output
      )
      expect(busy.connections).toEqual([statusB.peerId])
      expect(busy.counts.streams).toBeGreaterThan(0)
      expect(busy.resources.TCPSocketWrap ?? 0).toBeGreaterThan(0)

      // kill -9: no goodbye, the kernel just closes its sockets
      nodeB.child.kill("SIGKILL")
      yield* exited(nodeB.child)
      const after = yield* eventually(
        "a releases everything it held for b",
        nodeA.status,
        (s) =>
          s.connections.length === 0 &&
          s.streams.length === 0 &&
          s.counts.handlers === 0 &&
          s.counts.sessions === 0 &&
          (s.resources.TCPSocketWrap ?? 0) === (idle.TCPSocketWrap ?? 0),
        nodeA.output
      )
      expect(after.counts).toEqual({ connections: 0, streams: 0, handlers: 0, sessions: 0 })
      expect(after.sessions.filter((s) => s.peer === statusB.peerId).map((s) => s.state)).not.toContain("syncing")
      expect(nodeA.output()).toContain(`peer ${statusB.peerId} unavailable`)

      // and a keeps working
      const note = yield* weftJson("notes", "add", "after the crash", "--dir", a)
      expect(note.title).toBe("after the crash")
      const text = yield* weft("status", "--dir", a)
      expect(text.code).toBe(0)
      expect(text.stdout).toContain("counts    0 connection(s), 0 stream(s), 0 handler(s), 0 active session(s)")
    }), 90_000)

  it.scopedLive("a restarted node reconnects to the peers it paired with, at their remembered addresses, and sync resumes", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoDirs
      const nodeB = yield* serve(b, "--yes")
      const statusB = yield* nodeB.status
      const scopeA = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scopeA, Exit.void))
      const nodeA = yield* serve(a).pipe(Scope.extend(scopeA))
      const statusA = yield* nodeA.status
      const alpha = statusA.libraries[0]!.id
      yield* weftJson("pair", statusB.addresses[0]!, "--dir", a)
      // b, which was dialled, learned where a listens from a's identify
      const bookOf = (dir: string) => Effect.sync(() => existsSync(DataDir.layout(dir).peers) ? JSON.parse(readFileSync(DataDir.layout(dir).peers, "utf8")) : { peers: [] })
      yield* eventually("a's address in b's book", bookOf(b), (book) =>
        book.peers.some((e: any) => e.peer === statusA.peerId && e.addresses.includes(PeerAddress.withoutPeer(statusA.addresses[0]!))), nodeB.output)
      // a peer that is no member (c pings b) is not kept: the book holds members only
      const c = yield* tempDir("c")
      yield* weftJson("init", "--dir", c)
      const nodeC = yield* serve(c)
      const statusC = yield* nodeC.status
      yield* weftJson("ping", statusB.addresses[0]!, "--count", "1", "--dir", c)
      // b has heard where c listens (c's identify), which it would have kept if it kept non-members
      yield* eventually("c's announcement on b", Effect.sync(() => nodeB.output()), (out) => out.includes(`discovered ${statusC.peerId} at`), nodeB.output)
      yield* Effect.sleep(Duration.millis(200))
      expect((yield* bookOf(b)).peers.map((e: any) => e.peer)).toEqual([statusA.peerId])

      // a stops; b writes while a is away; a starts again on another port, with no --peer and no mDNS
      yield* Scope.close(scopeA, Exit.void)
      yield* weftJson("notes", "add", "while a was away", "--library", alpha, "--dir", b)
      const book = yield* bookOf(a)
      expect(book.peers).toMatchObject([{ peer: statusB.peerId, addresses: [PeerAddress.withoutPeer(statusB.addresses[0]!)] }])
      const again = yield* serve(a)
      yield* eventually("a reconnected to b", again.status, (s) => s.connections.includes(statusB.peerId), again.output)
      yield* eventually("b's note on a", again.call({ _tag: "NotesList" }), ({ notes }) => titles(notes).join() === "while a was away", again.output)
      expect(again.output()).toContain(`reconnected to ${statusB.peerId}`)
    }), 90_000)

  it.scopedLive("a peer given with --peer is connected to, and reconnected when it comes back at that address", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoDirs
      // a fixed port, so a comes back where --peer points
      const port = yield* Effect.async<number>((resume) => {
        const probe = createServer().listen(0, "127.0.0.1", () => {
          const { port } = probe.address() as { port: number }
          probe.close(() => resume(Effect.succeed(port)))
        })
      })
      const fixed = `/ip4/127.0.0.1/tcp/${port}`
      const scopeA = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(scopeA, Exit.void))
      const nodeA = yield* serve(a, "--listen", fixed).pipe(Scope.extend(scopeA))
      const statusA = yield* nodeA.status
      const nodeB = yield* serve(b, "--peer", fixed)
      yield* eventually("b connected to a", nodeB.status, (s) => s.connections.includes(statusA.peerId), nodeB.output)
      expect(nodeB.output()).toContain(`connected to ${fixed}`)

      // a stops and starts again at the same address: b, which shares no library with a (so the
      // address book has nothing for it), gets back to it through --peer alone
      yield* Scope.close(scopeA, Exit.void)
      yield* eventually("b seeing a go", nodeB.status, (s) => !s.connections.includes(statusA.peerId), nodeB.output)
      yield* serve(a, "--listen", fixed)
      yield* eventually("b reconnected to a", nodeB.status, (s) => s.connections.includes(statusA.peerId), nodeB.output)
      expect(nodeB.output().split(`connected to ${fixed}`).length - 1).toBe(2)
    }), 60_000)

  it.scopedLive("a member that breaks the sync protocol is disconnected, and redialled only after a penalty", () =>
    Effect.gen(function*() {
      const b = yield* tempDir("b")
      yield* weftJson("init", "--dir", b)
      const nodeB = yield* serve(b, "--yes")
      const statusB = yield* nodeB.status

      // mallory, in this process, pairs with b as any peer would (b approves with --yes) ...
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

      // ... then sends b bytes that are no sync message
      yield* Effect.scoped(Effect.gen(function*() {
        const stream = yield* host.open(statusB.peerId, SyncPlugin.protocol, library)
        yield* Framing.make(stream).send(new Uint8Array([0xc1, 0xc1, 0xc1]))
        yield* Effect.sleep(Duration.millis(500))
      }))
      yield* eventually("b disconnecting mallory", Effect.sync(() => nodeB.output()), (out) => out.includes(`disconnected ${mallory}: it broke`), nodeB.output)
      // b would redial a member at once after an ordinary drop; this one waits
      yield* eventually("the penalty", Effect.sync(() => nodeB.output()), (out) => out.includes(`redialling ${mallory} in 60 s (it broke a protocol)`), nodeB.output)
      yield* Effect.sleep(Duration.seconds(2))
      expect((yield* nodeB.status).connections).not.toContain(mallory)
      expect(nodeB.output()).not.toContain(`reconnected to ${mallory}`)
    }), 60_000)

  it.scopedLive("forged identities are refused with typed errors: a dial to the wrong peer id, an identity file that lies", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoDirs
      const [nodeA, nodeB] = yield* Effect.all([serve(a), serve(b, "--yes")], { concurrency: 2 })
      const [statusA, statusB] = [yield* nodeA.status, yield* nodeB.status]

      // a third identity, c: a dials b's address expecting c there (c's id, b's key): the handshake fails
      const c = yield* tempDir("c")
      const initC = yield* weftJson("init", "--dir", c)
      const forgedAddress = PeerAddress.withPeer(statusB.addresses[0]!, initC.peerId)
      const forged = yield* weft("pair", forgedAddress, "--dir", a)
      expect(forged.code).toBe(1)
      expect(forged.stderr).toMatch(/^weft: TransportError: transport HandshakeFailed: .*does not match expected remote identity key/)
      expect(forged.stderr.trim().split("\n")).toHaveLength(1)
      const [afterA, afterB] = [yield* nodeA.status, yield* nodeB.status]
      expect(afterA.connections).toEqual([])
      expect(afterA.libraries[0]!.members).toEqual([statusA.peerId])
      expect(afterB.libraries.map((l) => l.members)).toEqual([[statusB.peerId]])

      // one node per data directory: a second one is refused at once, before it opens anything
      const second = yield* weft("serve", "--dir", a, "--listen", LOOPBACK, "--no-mdns")
      expect(second.code).toBe(1)
      expect(second.stderr).toMatch(/^weft: DataDirError: data directory Busy .*a node already serves this data directory/)
      expect(second.stderr).not.toContain("listening")

      // an identity file whose peer id is not its key's: refused at load, by serve and by init
      const path = DataDir.layout(c).identity
      const file = JSON.parse(readFileSync(path, "utf8"))
      writeFileSync(path, JSON.stringify({ ...file, peerId: statusB.peerId }), { mode: 0o600 })
      for (const command of [["serve", "--dir", c, "--listen", LOOPBACK, "--no-mdns"], ["init", "--dir", c]]) {
        const refused = yield* weft(...command)
        expect(refused.code).toBe(1)
        expect(refused.stderr).toMatch(
          new RegExp(`^weft: IdentityError: identity Corrupt \\(${path}\\): the seed belongs to ${file.peerId}, but the file names ${statusB.peerId}\\n$`)
        )
      }
    }), 90_000)

  it.scopedLive("a node whose standard output is closed (`weft serve | head -1`) keeps serving, logs on, and stops cleanly", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoDirs
      const nodeA = yield* serve(a)
      const nodeB = yield* serve(b)
      nodeA.child.stdout!.destroy()
      // log lines after the pipe closed: a peer becomes available
      const [addressB] = (yield* nodeB.status).addresses
      yield* nodeA.call({ _tag: "Connect", address: addressB! })
      yield* Effect.sleep(Duration.millis(300))
      expect(Either.isRight(yield* Effect.either(nodeA.status))).toBe(true)
      nodeA.child.kill("SIGTERM")
      expect(yield* exited(nodeA.child)).toBe(0)
    }), 60_000)

  it.scopedLive("usage errors and requests to a node that is not running fail with one line and a non-zero code", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("x")
      const usage = yield* weft("ping")
      expect(usage.code).toBe(2)
      // a value out of range is the parser's to refuse, saying which option and what it takes
      const outOfRange = yield* weft("ping", "12D3KooWLfDbRqyMWcLpmgyA5RrDg4fHcpW5p4xA1pJmBbxP8XGT", "--count", "0", "--dir", dir)
      expect(outOfRange.code).toBe(2)
      expect(`${outOfRange.stdout}${outOfRange.stderr}`.trim()).toBe("--count must be a whole number from 1 to 1000")
      // an address that is not a multiaddr is the parser's too, before anything starts
      const badPeer = yield* weft("serve", "--dir", dir, "--peer", "garbage")
      expect(badPeer.code).toBe(2)
      expect(`${badPeer.stdout}${badPeer.stderr}`).toContain("garbage is not a multiaddr")
      const missing = yield* weft("serve", "--dir", join(dir, "nothing-here"), "--no-mdns")
      expect(missing.code).toBe(1)
      expect(missing.stderr).toMatch(/^weft: DataDirError: data directory NotInitialized .*run `weft init` first\n$/)
      // a data directory others may write in is refused, by init and by serve
      const exposed = yield* tempDir("exposed")
      yield* weftJson("init", "--dir", exposed)
      chmodSync(exposed, 0o777)
      for (const command of [["init", "--dir", exposed], ["serve", "--dir", exposed, "--no-mdns"]]) {
        const refused = yield* weft(...command)
        expect(refused.code).toBe(1)
        expect(refused.stderr).toMatch(/^weft: DataDirError: data directory Exposed .*other users may write in it \(mode 777\).*chmod 700/)
      }
      const notRunning = yield* weft("notes", "list", "--dir", dir)
      expect(notRunning.code).toBe(1)
      expect(notRunning.stderr).toMatch(/^weft: ControlError: control NotRunning/)
      // requests the node refuses are typed too (schema-checked before they leave)
      const bad = yield* Effect.either(Control.call(DataDir.layout(dir).socket, { _tag: "Ping", peer: "x" as PeerId, count: 0 }))
      expect(Either.isLeft(bad) && bad.left).toMatchObject({
        _tag: "RpcError",
        reason: "Malformed",
        // where the request is wrong and what was expected, not the whole protocol's schema
        detail: "the call of Ping does not fit its schema: count: Expected a number between 1 and 1000, actual 0"
      })
    }), 60_000)

  it.scopedLive("a client command stopped by a signal while it waits exits 130, saying so", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("interrupted")
      // a control endpoint that takes requests and never answers
      const received = yield* Effect.acquireRelease(
        Effect.async<{ readonly server: ReturnType<typeof createServer>; readonly requested: Promise<void> }>((resume) => {
          let requestedResolve: () => void = () => {}
          const requested = new Promise<void>((resolve) => (requestedResolve = resolve))
          const server = createServer((socket) => socket.once("data", () => requestedResolve()))
          server.listen(DataDir.layout(dir).socket, () => resume(Effect.succeed({ server, requested })))
        }),
        ({ server }) => Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
        })
      )
      const child = start(["status", "--dir", dir])
      let stderr = ""
      child.stderr?.on("data", (data: Buffer) => (stderr += data.toString()))
      yield* Effect.addFinalizer(() => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
      yield* Effect.promise(() => received.requested)
      child.kill("SIGINT")
      expect(yield* Processes.exited(child).pipe(Effect.timeout(Duration.seconds(10)))).toBe(130)
      expect(stderr).toBe("weft: Interrupted: the command was stopped before it finished\n")
    }), 30_000)

  it.scopedLive("init on the directory of a running node only reads it, at once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("running")
      const first = yield* weftJson("init", "--dir", dir)
      yield* serve(dir)
      const again = yield* weftJson("init", "--dir", dir)
      expect(again).toEqual({ ...first, created: false })
    }), 60_000)
})
