/**
 * `weft send` and receiving in `weft serve`, as a new user runs them: real
 * `weft` processes on 127.0.0.1 over the encrypted libp2p transport (see
 * `testing/Cli`), files on disk compared byte for byte.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { randomBytes } from "node:crypto"
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join, relative } from "node:path"
import * as Spacedrop from "../plugins/spacedrop/Protocol.js"
import * as Cli from "./testing/Cli.js"
import * as Processes from "./testing/Processes.js"

const { serve, serveWith, tempDir, weft, weftJson, weftWithin } = Cli
const { eventually } = Processes

/** Every entry under `root` (relative path, and the bytes of a file), sorted. */
const tree = (root: string): Array<[string, string | null]> => {
  const out: Array<[string, string | null]> = []
  const visit = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) {
        out.push([relative(root, path), null])
        visit(path)
      } else {
        out.push([relative(root, path), readFileSync(path).toString("base64")])
      }
    }
  }
  visit(root)
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}

/** A small folder tree: nested and empty folders, an empty file, a few hundred KiB, Unicode names. */
const makeTree = (root: string) => {
  const folder = join(root, "photos")
  mkdirSync(join(folder, "2024/summer"), { recursive: true })
  mkdirSync(join(folder, "empty folder"), { recursive: true })
  mkdirSync(join(folder, "ünïcødé 日本"), { recursive: true })
  writeFileSync(join(folder, "2024/summer/beach.bin"), randomBytes(300 * 1024 + 7))
  writeFileSync(join(folder, "2024/notes.txt"), "sand and sea\n")
  writeFileSync(join(folder, "empty.txt"), "")
  writeFileSync(join(folder, "ünïcødé 日本/ファイル.txt"), "こんにちは")
  writeFileSync(join(root, "loose.txt"), "a file beside the folder")
  return folder
}

/**
 * Two initialised nodes a and b serving (b accepting into `inbox` unattended), and a 64 MiB file: large
 * enough that a transfer of it is still under way when a test pauses or cancels it.
 */
const bigFileBetweenTwoNodes = (name: string) =>
  Effect.gen(function*() {
    const [a, b, source, inbox] = [yield* tempDir(`${name}-a`), yield* tempDir(`${name}-b`), yield* tempDir(`${name}-src`), yield* tempDir(`${name}-inbox`)]
    yield* weftJson("init", "--dir", a)
    yield* weftJson("init", "--dir", b)
    const big = join(source, "big.bin")
    const block = randomBytes(1024 * 1024)
    writeFileSync(big, Buffer.concat(Array.from({ length: 64 }, () => block)))
    yield* serve(a)
    const nodeB = yield* serve(b, "--accept-dir", inbox, "--yes")
    const addressB = (yield* nodeB.status).addresses[0]!
    return { a, b, inbox, big, nodeB, addressB }
  })

describe("weft send (two real nodes)", () => {
  it.scopedLive("a folder and a file sent to `weft serve --accept-dir D --yes` arrive byte-identical; both nodes list the transfer", () =>
    Effect.gen(function*() {
      const [a, b, source, inbox] = [yield* tempDir("send-a"), yield* tempDir("send-b"), yield* tempDir("send-src"), yield* tempDir("send-inbox")]
      yield* weftJson("init", "--dir", a)
      yield* weftJson("init", "--dir", b)
      const folder = makeTree(source)
      // one after the other: on a loaded machine two starting at once may not answer in time
      const nodeA = yield* serve(a)
      const nodeB = yield* serve(b, "--accept-dir", inbox, "--yes")
      expect(nodeB.output()).toContain(`files     received into ${inbox}`)
      const addressB = (yield* nodeB.status).addresses[0]!

      const sent = yield* weft("send", addressB, folder, join(source, "loose.txt"), "--dir", a)
      expect(sent.stderr).toBe("")
      expect(sent.code).toBe(0)
      // not a terminal: plain lines, then what was sent
      const lines = sent.stdout.trim().split("\n")
      expect(lines[0]).toMatch(/^preparing 2 path\(s\) for 12D3KooW\S+…$/)
      expect(lines[1]).toMatch(/^waiting for 12D3KooW\S+ to accept 5 file\(s\), 307 kB…$/)
      expect(lines.at(-1)).toMatch(/^sent 5 file\(s\) and 5 folder\(s\), 307 kB to 12D3KooW\S+ in \d+\.\d s \(transfer \S+\)$/)

      expect(tree(join(inbox, "photos"))).toEqual(tree(folder))
      expect(readFileSync(join(inbox, "loose.txt"), "utf8")).toBe("a file beside the folder")
      // the node that received says from whom, and where the files went
      yield* eventually("received, in b's log", Effect.sync(nodeB.output), (out) => out.includes(`received 5 file(s), 307 kB from`), nodeB.output)
      expect(nodeB.output()).toMatch(/approving without asking: "[^"]*" \(peer 12D3KooW\S+\) wants to send 5 files and 5 folders, 307 kB into /)

      const [onA, onB] = yield* Effect.all([weftJson<Array<Record<string, unknown>>>("transfers", "--dir", a), weftJson<Array<Record<string, unknown>>>("transfers", "--dir", b)])
      expect(onA).toHaveLength(1)
      expect(onA[0]).toMatchObject({ direction: "send", state: "done", files: 5, totalFiles: 5, bytes: 300 * 1024 + 7 + 13 + 15 + 24 })
      expect(onB[0]).toMatchObject({ transfer: onA[0]!.transfer, direction: "receive", state: "done", peer: (yield* nodeA.status).peerId, target: inbox })
      const listed = yield* weft("transfers", "--dir", b)
      expect(listed.stdout).toMatch(new RegExp(`^${onA[0]!.transfer as string}  from 12D3KooW\\S+ \\("[^"]*"\\)  done\\n  received 307 kB of 307 kB \\(100%\\), 5/5 file\\(s\\)`))

      // the same again, with --json: one JSON line; nothing is overwritten (a numbered name)
      const again = yield* weftJson("send", addressB, join(source, "loose.txt"), "--dir", a)
      expect(again).toMatchObject({ files: 1, directories: 0, bytes: 24 })
      expect(readFileSync(join(inbox, "loose (1).txt"), "utf8")).toBe("a file beside the folder")
    }), 120_000)

  it.scopedLive("the receiver's user declines at the prompt: the sender is told so (exit 1), nothing is written", () =>
    Effect.gen(function*() {
      const [a, b, source, inbox] = [yield* tempDir("decline-a"), yield* tempDir("decline-b"), yield* tempDir("decline-src"), yield* tempDir("decline-inbox")]
      yield* weftJson("init", "--dir", a)
      yield* weftJson("init", "--dir", b)
      const folder = makeTree(source)
      yield* serve(a)
      const nodeB = yield* serve(b, "--accept-dir", inbox)
      const addressB = (yield* nodeB.status).addresses[0]!

      const sending = yield* Effect.fork(weft("send", addressB, folder, "--dir", a))
      // b's terminal names the sender, the count and the size
      yield* eventually("b's question", Effect.sync(nodeB.output), (out) => out.includes("Approve? [y/N]"), nodeB.output)
      expect(nodeB.output()).toMatch(/spacedrop request: "[^"]*" \(peer 12D3KooW\S+\) wants to send 4 files and 5 folders, 307 kB into \S+\. Approve\? \[y\/N\]/)
      yield* nodeB.answer("n")
      const refused = yield* sending.await.pipe(Effect.flatten)
      expect(refused.code).toBe(1)
      expect(refused.stderr).toMatch(/^weft: SpacedropError: spacedrop Declined by the receiver \(peer 12D3KooW\S+, transfer \S+\): the user declined\. The user of that node said no, or it takes files only from the peers it names \(`weft serve --accept-from`\): nothing was sent\n$/)
      expect(readdirSync(inbox)).toEqual([])
    }), 120_000)

  it.scopedLive("--accept-from: the named peer's files are accepted without asking; another's are asked (nobody at the terminal: NoListener), or refused with --yes (Declined), each told apart", () =>
    Effect.gen(function*() {
      const [a, b, c, source, inbox] = [yield* tempDir("from-a"), yield* tempDir("from-b"), yield* tempDir("from-c"), yield* tempDir("from-src"), yield* tempDir("from-inbox")]
      const peerA = (yield* weftJson("init", "--dir", a)).peerId as string
      yield* weftJson("init", "--dir", b)
      yield* weftJson("init", "--dir", c)
      const file = join(source, "hello.txt")
      writeFileSync(file, "hello from a")
      yield* serve(a)
      yield* serve(c)
      // nobody at b's terminal: only a's files come in unasked (this b stops with the inner scope)
      yield* Effect.scoped(Effect.gen(function*() {
        const asking = yield* serveWith({ dir: b, closeInput: true }, "--accept-dir", inbox, "--accept-from", peerA)
        expect(asking.output()).toContain(`accept    files from ${peerA} without asking; from other peers asked on this terminal`)
        const addressB = (yield* asking.status).addresses[0]!
        const fromA = yield* weft("send", addressB, file, "--dir", a)
        expect(fromA.code, fromA.stderr).toBe(0)
        expect(readFileSync(join(inbox, "hello.txt"), "utf8")).toBe("hello from a")
        const fromC = yield* weft("send", addressB, file, "--dir", c)
        expect(fromC.code).toBe(1)
        expect(fromC.stderr).toMatch(/^weft: SpacedropError: spacedrop NoListener by the receiver \(peer 12D3KooW\S+, transfer \S+\): nobody is there to accept it/)
        expect(fromC.stderr).toContain("Nobody at that node answers for files now")
      }))

      // --yes beside --accept-from: the others are refused, not let in
      const refusing = yield* serve(b, "--accept-dir", inbox, "--yes", "--accept-from", peerA)
      expect(refusing.output()).toContain("from other peers refused")
      const addressB2 = (yield* refusing.status).addresses[0]!
      const refused = yield* weft("send", addressB2, file, "--dir", c)
      expect(refused.code).toBe(1)
      expect(refused.stderr).toMatch(/^weft: SpacedropError: spacedrop Declined by the receiver \(peer 12D3KooW\S+, transfer \S+\): this node accepts files only from the peers it names \(--accept-from\)/)
      expect(refused.stderr).toContain("The user of that node said no, or it takes files only from the peers it names")
      expect(readdirSync(inbox)).toEqual(["hello.txt"])
    }), 240_000)

  it.scopedLive("weft transfers pause and resume a transfer under way from the receiving node; the file arrives whole", () =>
    Effect.gen(function*() {
      const { a, b, inbox, big, nodeB, addressB } = yield* bigFileBetweenTwoNodes("pause")

      const sending = yield* Effect.fork(weftWithin("150 seconds", "send", addressB, big, "--dir", a))
      // paused through b's control socket as soon as it runs (as `weft transfers pause` does, without its start-up time)
      const underWay = yield* eventually("the transfer under way on b", nodeB.call({ _tag: "Transfers" }), (all) =>
        all.some((t) => t.state === "transferring"), nodeB.output, "60 seconds")
      const id = underWay[0]!.transfer
      yield* nodeB.call({ _tag: "TransferPause", id })
      const listed = yield* eventually("paused, as b lists it", weft("transfers", "--dir", b), (out) => out.stdout.includes("paused by the receiver"))
      expect(listed.stdout).toMatch(new RegExp(`^${id}  from 12D3KooW\\S+ \\("[^"]*"\\)  paused by the receiver\\n`))
      yield* eventually("paused, as a lists it", weftJson<Array<{ readonly state: string; readonly pausedBy?: ReadonlyArray<string> }>>("transfers", "--dir", a), (all) =>
        all[0]?.state === "paused" && all[0].pausedBy?.join() === "receiver")

      const resumed = yield* weft("transfers", "resume", id, "--dir", b)
      expect(resumed.stdout).toBe(`resumed ${id}\n`)
      const sent = yield* sending.await.pipe(Effect.flatten)
      expect(sent.code).toBe(0)
      // the sender's terminal said it was held, and by whom
      expect(sent.stdout).toContain("paused by the receiver")
      expect(readFileSync(join(inbox, "big.bin")).equals(readFileSync(big))).toBe(true)
      // a transfer that ended cannot be paused: told so
      const late = yield* weft("transfers", "pause", id, "--dir", a)
      expect(late.code).toBe(1)
      expect(late.stderr).toBe(`weft: TransfersError: transfer Ended (${id}): it ended already (done)\n`)
    }), 180_000)

  it.scopedLive("the receiving node killed mid-transfer and started again on its address: weft send says it reconnects, goes on, and the file arrives whole", () =>
    Effect.gen(function*() {
      const { a, b, inbox, big, nodeB, addressB } = yield* bigFileBetweenTwoNodes("reconnect")
      const sending = yield* Effect.fork(weftWithin("200 seconds", "send", addressB, big, "--dir", a))
      // held by b as soon as it runs (a pause is a checkpoint on b's disk), so it is surely under way when b dies
      const underWay = yield* eventually("the transfer under way on b", nodeB.call({ _tag: "Transfers" }), (all) =>
        all.some((t) => t.state === "transferring"), nodeB.output, "60 seconds")
      const id = underWay[0]!.transfer
      yield* nodeB.call({ _tag: "TransferPause", id })
      yield* eventually("paused, as a lists it", weftJson<Array<{ readonly state: string }>>("transfers", "--dir", a), (all) => all[0]?.state === "paused")
      nodeB.child.kill("SIGKILL")
      yield* eventually("reconnecting, as a lists it", weftJson<Array<{ readonly state: string }>>("transfers", "--dir", a), (all) => all[0]?.state === "reconnecting")
      const port = /\/tcp\/(\d+)\//.exec(addressB)![1]!
      yield* serve(b, "--accept-dir", inbox, "--yes", "--listen", `/ip4/127.0.0.1/tcp/${port}`)
      const sent = yield* sending.await.pipe(Effect.flatten)
      expect(sent.code, sent.stderr).toBe(0)
      // the sender's terminal said so, and went on (not a new transfer: the same id)
      expect(sent.stdout).toContain("connection lost: reconnecting, to go on from the last verified chunk")
      expect(sent.stdout).toContain(`(transfer ${id})`)
      expect(readFileSync(join(inbox, "big.bin")).equals(readFileSync(big))).toBe(true)
    }), 300_000)

  it.scopedLive("cancel from each side: weft transfers cancel at the receiver fails the send (exit 1, by whom); Ctrl-C on weft send cancels it at the receiver", () =>
    Effect.gen(function*() {
      const { a, b, inbox, big, nodeB, addressB } = yield* bigFileBetweenTwoNodes("cancel")
      const underWay = (seen: ReadonlyArray<string>) =>
        eventually("a transfer under way on b", nodeB.call({ _tag: "Transfers" }), (all) =>
          all.some((t) => t.state === "transferring" && !seen.includes(t.transfer)), nodeB.output, "60 seconds").pipe(
            Effect.map((all) => all.find((t) => t.state === "transferring" && !seen.includes(t.transfer))!.transfer)
          )

      // the receiver cancels (through its control socket, as `weft transfers cancel` does, the moment it runs)
      const sending = yield* Effect.fork(weftWithin("150 seconds", "send", addressB, big, "--dir", a))
      const first = yield* underWay([])
      yield* nodeB.call({ _tag: "TransferCancel", id: first })
      const cancelled = yield* sending.await.pipe(Effect.flatten)
      expect(cancelled.code).toBe(1)
      expect(cancelled.stderr).toMatch(new RegExp(`^weft: SpacedropError: spacedrop Cancelled by the receiver \\(peer 12D3KooW\\S+, transfer ${first}\\): `))

      // the sender is stopped with Ctrl-C: exit 130, and the receiver learns who cancelled
      const child = Cli.start(["send", addressB, big, "--dir", a])
      child.stdin?.end()
      let stderr = ""
      child.stderr?.on("data", (data: Buffer) => (stderr += data.toString()))
      const second = yield* underWay([first])
      child.kill("SIGINT")
      expect(yield* Processes.exited(child)).toBe(130)
      expect(stderr).toBe("weft: Interrupted: the command was stopped before it finished\n")
      const onB = yield* eventually("cancelled, as b lists it", weftJson<Array<{ readonly transfer: string; readonly state: string; readonly error?: string }>>("transfers", "--dir", b), (all) =>
        all.some((t) => t.transfer === second && t.state === "cancelled"))
      expect(onB.find((t) => t.transfer === second)?.error).toMatch(/^spacedrop Cancelled by the sender /)
      // nothing partial is left in the inbox
      expect(readdirSync(inbox)).toEqual([])
    }), 240_000)

  it.scopedLive("bad arguments and missing things: a clear line, the right exit code, no crash", () =>
    Effect.gen(function*() {
      const [a, source] = [yield* tempDir("args-a"), yield* tempDir("args-src")]
      yield* weftJson("init", "--dir", a)
      const file = join(source, "f.txt")
      writeFileSync(file, "x")
      const peer = (yield* weftJson("init", "--dir", yield* tempDir("args-b"))).peerId as string

      // usage errors (exit 2), before anything runs
      const noPath = yield* weft("send", peer, "--dir", a)
      expect(noPath.code).toBe(2)
      expect(`${noPath.stdout}${noPath.stderr}`).toContain("Missing argument <path>")
      const missing = yield* weft("send", peer, join(source, "nope.txt"), "--dir", a)
      expect(missing.code).toBe(2)
      expect(`${missing.stdout}${missing.stderr}`).toContain(`${join(source, "nope.txt")}: no such file or folder`)
      const badPeer = yield* weft("send", "someone", file, "--dir", a)
      expect(badPeer.code).toBe(2)
      expect(`${badPeer.stdout}${badPeer.stderr}`).toContain("someone is not a peer id")

      // no node running for the directory
      const notRunning = yield* weft("send", peer, file, "--dir", a)
      expect(notRunning.code).toBe(1)
      expect(notRunning.stderr).toMatch(/^weft: ControlError: control NotRunning /)

      // a node that does not know where the peer is: told how to reach it
      yield* serve(a)
      const unknown = yield* weft("send", peer, file, "--dir", a)
      expect(unknown.code).toBe(1)
      const protocol = Spacedrop.PROTOCOL_ID.replace(/[./]/g, "\\$&")
      expect(unknown.stderr).toMatch(new RegExp(`^weft: TransportError: transport Unreachable \\(peer \\S+\\) \\[${protocol}\\]: .*Connect to it first with \`weft connect <multiaddr>\``))
      const cancel = yield* weft("transfers", "cancel", "nope", "--dir", a)
      expect(cancel.code).toBe(1)
      expect(cancel.stderr).toBe("weft: TransfersError: transfer NotFound (nope): no such transfer on this node (`weft transfers` lists them)\n")
      // the send that could not start is listed, with why
      const listed = yield* weft("transfers", "--dir", a)
      expect(listed.stdout).toMatch(/^\S+  to   12D3KooW\S+  failed\n  sent 0 B of 1 B \(0%\), 0\/1 file\(s\), 0 B\/s, ETA \?\n  transport Unreachable .*it is not connected, and no address of it is known\n$/)
    }), 120_000)
})
