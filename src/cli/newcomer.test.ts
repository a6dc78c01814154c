/**
 * The CLI as a newcomer meets it: the README's walk-through on two fresh
 * nodes, and the messages a person sees when something is not as they
 * expected, each checked as printed, with its exit code. Real `weft`
 * processes on 127.0.0.1 (see `testing/Cli`).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { existsSync } from "node:fs"
import { createServer } from "node:net"
import * as DataDir from "../node/DataDir.js"
import * as DirectoryLock from "../node/DirectoryLock.js"
import * as Cli from "./testing/Cli.js"
import * as Processes from "./testing/Processes.js"

const { serve, serveWith, start, tempDir, weft, weftJson } = Cli
const { eventually } = Processes

/** A port on 127.0.0.1 held by another program for the scope's life. */
const heldPort = Effect.acquireRelease(
  Effect.async<{ readonly server: ReturnType<typeof createServer>; readonly port: number }>((resume) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, port: (server.address() as { port: number }).port })))
  }),
  ({ server }) => Effect.async<void>((resume) => {
    server.close(() => resume(Effect.void))
  })
)

describe("weft, as a newcomer meets it", () => {
  it.scopedLive("the README's walk-through on two fresh nodes: pair, add a note on each side, list on each side, no --library anywhere", () =>
    Effect.gen(function*() {
      const [a, b] = [yield* tempDir("walk-a"), yield* tempDir("walk-b")]
      yield* weftJson("init", "--dir", a)
      yield* weftJson("init", "--dir", b)
      const [nodeA, nodeB] = yield* Effect.all([serve(a), serve(b)], { concurrency: 2 })
      const addressB = (yield* nodeB.status).addresses[0]!
      // a asks b to share its library; b's user approves on b's terminal
      const pairing = yield* Effect.fork(weft("pair", addressB, "--dir", a))
      yield* eventually("b's question", Effect.sync(nodeB.output), (out) => out.includes("Approve? [y/N]"), nodeB.output)
      yield* nodeB.answer("y")
      const paired = yield* pairing.await.pipe(Effect.flatten)
      expect(paired.code).toBe(0)
      expect(paired.stdout).toMatch(/^paired with 12D3KooW\S+\n/)

      // b's own library holds nothing: the one it joined is its default now, and status says so
      const statusA = yield* nodeA.status
      const shared = statusA.defaultLibrary!
      const statusB = yield* nodeB.status
      expect(statusB.defaultLibrary).toBe(shared)
      const text = yield* weft("status", "--dir", b)
      expect(text.stdout).toContain(`(${shared}): 2 member(s), the default`)

      yield* weftJson("notes", "add", "Buy milk", "--body", "2 litres", "--dir", a)
      yield* weftJson("notes", "add", "Call Bob", "--dir", b)
      for (const [dir, node] of [[a, nodeA], [b, nodeB]] as const) {
        yield* eventually(`both notes on ${dir}`, Effect.map(weft("notes", "list", "--dir", dir), (listed) => listed.stdout), (out) =>
          out.includes("Buy milk — 2 litres") && out.includes("Call Bob"), node.output)
      }
    }), 90_000)

  it.scopedLive("pairing with a node nobody is at: the requester is told so, and what its user can do; `weft requests watch` there answers", () =>
    Effect.gen(function*() {
      const [a, b] = [yield* tempDir("lonely-a"), yield* tempDir("lonely-b")]
      yield* weftJson("init", "--dir", a)
      yield* weftJson("init", "--dir", b)
      const nodeA = yield* serve(a)
      // b runs with its standard input closed: nobody at its terminal
      const nodeB = yield* serveWith({ dir: b, closeInput: true })
      const addressB = (yield* nodeB.status).addresses[0]!
      const refused = yield* weft("pair", addressB, "--dir", a)
      expect(refused.code).toBe(1)
      expect(refused.stderr).toMatch(
        /^weft: PairError: pair Unattended \(peer 12D3KooW\S+, library \S+\): the peer refused: nobody is there to approve it\. Nobody at that node answers requests now: its user can answer them with `weft requests watch` there, or run `weft serve` in a terminal \(or with --yes\)\n$/
      )
      expect(nodeA.output()).not.toContain("is now a member")

      // b's user answers from another terminal: requests wait for it now
      const watch = yield* Effect.acquireRelease(Effect.sync(() => start(["requests", "watch", "--dir", b])), (child) => Effect.sync(() => child.kill("SIGKILL")))
      let watched = ""
      watch.stdout?.on("data", (data: Buffer) => (watched += data.toString()))
      yield* eventually("the watch started", Effect.sync(() => watched), (out) => out.includes("answering the node's requests here"))
      const pairing = yield* Effect.fork(weftJson("pair", addressB, "--dir", a))
      yield* eventually("the question on the watching terminal", Effect.sync(() => watched), (out) => out.includes("Approve? [y/N]"), () => watched)
      // listed while it waits, with the id to answer it by
      const listed = yield* weftJson<ReadonlyArray<{ readonly id: string; readonly kind: string }>>("requests", "--dir", b)
      expect(listed.map((request) => request.kind)).toEqual(["pair"])
      watch.stdin?.write("y\n")
      const paired = yield* pairing.await.pipe(Effect.flatten)
      expect(paired.peer).toBe((yield* nodeB.status).peerId)
      yield* eventually("approved, on the watching terminal", Effect.sync(() => watched), (out) => out.includes("approved"))
      // answered already: a second answer is told so
      const late = yield* weft("requests", "approve", listed[0]!.id, "--dir", b)
      expect(late.code).toBe(1)
      expect(late.stderr).toMatch(/^weft: ConsentError: consent (AlreadyDecided|NotFound) \(\S+\): /)
    }), 90_000)

  it.scopedLive("a peer argument that is neither a peer id nor a multiaddr is a usage error, before anything runs", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("args")
      for (const args of [["ping", "garbage"], ["pair", "12D3KooWnot-a-peer-id"], ["ping", "/ip4/999.1.1.1/tcp/1"]]) {
        const refused = yield* weft(...args, "--dir", dir)
        expect(refused.code, args.join(" ")).toBe(2)
        expect(`${refused.stdout}${refused.stderr}`).toContain(
          `${args[1]} is not a peer id (12D3KooW…, as \`weft status\` prints it) or a multiaddr (/ip4/192.168.1.20/tcp/4001/p2p/12D3KooW…)`
        )
      }
      const badAddress = yield* weft("connect", "/ip4/999.1.1.1/tcp/1", "--dir", dir)
      expect(badAddress.code).toBe(2)
      expect(`${badAddress.stdout}${badAddress.stderr}`).toContain("/ip4/999.1.1.1/tcp/1 is not a multiaddr")
    }), 60_000)

  it.scopedLive("a peer that is not connected and whose address is unknown: the user is told so, and how to reach it", () =>
    Effect.gen(function*() {
      const [a, b] = [yield* tempDir("stranger-a"), yield* tempDir("stranger-b")]
      yield* weftJson("init", "--dir", a)
      const stranger = (yield* weftJson("init", "--dir", b)).peerId as string
      yield* serve(a)
      const unknown = yield* weft("ping", stranger, "--dir", a)
      expect(unknown.code).toBe(1)
      expect(unknown.stderr).toBe(
        `weft: TransportError: transport Unreachable (peer ${stranger}) [/ipfs/ping/1.0.0]: it is not connected, and no address of it is known. Connect to it first with \`weft connect <multiaddr>\`, or wait for mDNS to find it on the local network\n`
      )
    }), 60_000)

  it.scopedLive("a listen port already in use: one line naming the port, exit 1, nothing left behind", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("port")
      yield* weftJson("init", "--dir", dir)
      const { port } = yield* heldPort
      const refused = yield* weft("serve", "--dir", dir, "--listen", `/ip4/127.0.0.1/tcp/${port}`, "--no-mdns")
      expect(refused.code).toBe(1)
      expect(refused.stderr).toBe(
        `weft: TransportError: transport Refused: port ${port} on 127.0.0.1 is in use. Another program, or another node, listens there: choose another with --listen /ip4/<address>/tcp/<port>\n`
      )
      // no control socket, and the directory is free for the next node
      const paths = DataDir.layout(dir)
      expect(existsSync(paths.socket)).toBe(false)
      const held = yield* Scope.make()
      expect(Either.isRight(yield* Effect.either(DirectoryLock.acquire(paths).pipe(Scope.extend(held))))).toBe(true)
      yield* Scope.close(held, Exit.void)
      yield* serve(dir)
    }), 60_000)

  it.scopedLive("weft notes show: the whole note, and how its fields merge when peers change it at once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("show")
      yield* weftJson("init", "--dir", dir)
      yield* serve(dir)
      const note = yield* weftJson<{ readonly id: string }>("notes", "add", "Plan", "--body", "line one\nline two", "--dir", dir)
      const shown = yield* weft("notes", "show", note.id, "--dir", dir)
      expect(shown.code).toBe(0)
      expect(shown.stdout).toContain(`note      ${note.id}`)
      expect(shown.stdout).toContain("title     Plan\n")
      expect(shown.stdout).toContain("body\n  line one\n  line two\n")
      expect(shown.stdout).toContain("the write with the\nlarger clock (its hybrid logical timestamp), or at equal clocks the one from the larger node id")
      expect(shown.stdout).toContain("merged character by character")
      const missing = yield* weft("notes", "show", "nope", "--dir", dir)
      expect(missing.code).toBe(1)
      expect(missing.stderr).toMatch(/^weft: NoteError: note NotFound: no note nope in library \S+\n$/)
    }), 60_000)
})

