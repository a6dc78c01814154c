/**
 * Spacedrop resumes an interrupted transfer from the last verified chunk:
 * after its connection dropped, after the receiver restarted, after the
 * sender restarted, or when the receiver asks. Every chunk frame the sender
 * writes is counted by where it goes (entry, offset): none the receiver had
 * verified is sent again. Resume records are cleaned up at the end, and a
 * corrupt one is ignored, never a crash.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import * as MemoryTransport from "../../transport/MemoryTransport.js"
import * as Files from "./internal/files.js"
import * as Wire from "./internal/wire.js"
import * as Protocol from "./Protocol.js"
import * as Peers from "./testing/Peers.js"


/** A chunk frame (a JSON message's body starts with `{`). */
const isChunk = (bytes: Uint8Array) => bytes.length >= 4 + 45 && bytes[4] === 0x01

const SMALL = "small and first"
const BIG = 8 * 1024 * 1024
const CHUNK = 64 * 1024
/** The chunk held at about half: the small file's, then 63 of the big file's go before it. */
const HOLD = 1 + BIG / CHUNK / 2
/** What the receiver has verified once every chunk before the held one is in. */
const BEFORE_HOLD = SMALL.length + (HOLD - 2) * CHUNK

/** `source/f` with a small file (entry 1) and an 8 MiB one (entry 2), sent in 64 KiB chunks. */
const files = (source: string) =>
  Effect.promise(async () => {
    const folder = nodePath.join(source, "f")
    await fs.mkdir(folder)
    await fs.writeFile(nodePath.join(folder, "0-small.txt"), SMALL)
    await fs.writeFile(nodePath.join(folder, "big.bin"), randomBytes(BIG))
    return folder
  })

/**
 * The sender's chunk frames, counted by run and place; while `holding`, the
 * `n`th chunk and every later one is held (never written) and `held` completes.
 */
const wiretap = (n: number) =>
  Effect.gen(function*() {
    const held = yield* Deferred.make<void>()
    const runs: Array<Array<{ readonly index: number; readonly offset: number; readonly length: number }>> = [[]]
    let holding = true
    let chunks = 0
    const onWrite: Peers.OnWrite = (bytes, write) => {
      if (!isChunk(bytes)) return write(bytes)
      if (holding && ++chunks >= n) return Effect.zipRight(Deferred.succeed(held, undefined), Effect.never)
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      runs[runs.length - 1]!.push({ index: view.getUint32(5), offset: view.getUint32(9) * 2 ** 32 + view.getUint32(13), length: bytes.length - 4 - 45 })
      return write(bytes)
    }
    return {
      onWrite,
      held: Deferred.await(held),
      /** Lets every chunk through from now on, counted as a new run. */
      release: Effect.sync(() => {
        holding = false
        runs.push([])
      }),
      runs
    }
  })


/** The one interrupted transfer `peer` lists (waiting for its handler to have let go). */
const interrupted = (peer: Peers.Peer) =>
  Effect.gen(function*() {
    while (true) {
      const all = yield* peer.spacedrop.transfers
      if (all.length === 1 && all[0]!.state === "interrupted") return all[0]!
      yield* Effect.sleep("10 millis")
    }
  }).pipe(Effect.timeout("10 seconds"))

/**
 * Checks the second run: it sent nothing the receiver held verified (`verified` bytes: the small file, then
 * the start of the big one), each remaining byte exactly once. Returns how many chunks went in both runs.
 */
const expectNoVerifiedChunkResent = (runs: ReadonlyArray<ReadonlyArray<{ index: number; offset: number; length: number }>>, verified: number) => {
  const [first, second] = [runs[0]!, runs[runs.length - 1]!]
  const bigVerified = verified - SMALL.length
  expect(bigVerified, "part of the big file was verified before the drop").toBeGreaterThan(0)
  expect(bigVerified).toBeLessThan(BIG)
  expect(second.filter((c) => c.index !== 2), "the small file is not sent again").toEqual([])
  for (const chunk of second) expect(chunk.offset, "no verified chunk is sent again").toBeGreaterThanOrEqual(bigVerified)
  expect(second[0]!.offset).toBe(bigVerified)
  expect(second.reduce((n, c) => n + c.length, 0)).toBe(BIG - bigVerified)
  const sentFirst = new Set(first.map((c) => `${c.index}:${c.offset}`))
  const again = second.filter((c) => sentFirst.has(`${c.index}:${c.offset}`)).length
  console.log(`resume: ${first.length} chunks before the drop, ${verified} bytes verified, ${second.length} after it, ${again} of them sent in both runs (in flight, unverified)`)
  return again
}

/** Temporary files (`.weft-…part`) anywhere under `root`. */
const tempFiles = (root: string) =>
  Effect.promise(async () => (await fs.readdir(root, { recursive: true })).filter((name) => nodePath.basename(name).startsWith(".weft-")))

/** Waits until `peer` lists no transfer (its record of an interrupted one dropped). */
const forgotten = (peer: Peers.Peer) =>
  peer.spacedrop.transfers.pipe(
    Effect.repeat({ until: (all) => all.length === 0, schedule: Schedule.spaced("10 millis") }),
    Effect.timeout("10 seconds")
  )

/** Files left in a directory (records, temporary files). */
const names = (dir: string) => Effect.promise(() => fs.readdir(dir))

describe("Spacedrop resume", () => {
  it.scopedLive("the connection killed at about 50%: the sender reconnects on its own and goes on from the last verified chunk (counted), the same transfer's progress showing it; the files arrive whole", () =>
    Effect.gen(function*() {
      const tap = yield* wiretap(HOLD)
      const { network, sender, receiver } = yield* Peers.make({ onWrite: tap.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      // the default attempts and delay (1 s, then doubled)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)])
      const states: Array<string> = []
      yield* Effect.forkScoped(Stream.runForEach(outgoing.progress, (p) => Effect.sync(() => void (states.at(-1) === p.state || states.push(p.state)))))
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      yield* Stream.runDrain(incoming.progress.pipe(Stream.takeUntil((p) => p.bytes >= BEFORE_HOLD)))
      yield* network.disconnect(sender.id, receiver.id)
      Peers.failure(yield* Effect.either(incoming.result))
      // what the receiver kept verified as its run ended
      const kept = yield* Stream.runLast(incoming.progress)
      expect(Option.getOrThrow(kept).state).toBe("interrupted")
      // the first run is over (its frames stopped) once the sender waits to reconnect: the rest is counted as the second run
      yield* Effect.sync(() => states.includes("reconnecting")).pipe(
        Effect.repeat({ until: (seen) => seen, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("10 seconds")
      )
      yield* tap.release
      const sent = yield* outgoing.result
      expect(sent.files.map((f) => f.path)).toEqual(["f/0-small.txt", "f/big.bin"])
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      expectNoVerifiedChunkResent(tap.runs, Option.getOrThrow(kept).bytes)
      expect(states.slice(states.indexOf("reconnecting"))).toEqual(["reconnecting", "transferring", "done"])
      yield* receiver.spacedrop.transfers.pipe(Effect.repeat({ until: (all) => all.length === 0, schedule: Schedule.spaced("10 millis") }), Effect.timeout("5 seconds"))
      expect(yield* sender.spacedrop.transfers).toEqual([])
    }))

  it.scopedLive("a transfer the receiver paused, then its connection dropped: the sender reconnects and the new run is not held by the old pause", () =>
    Effect.gen(function*() {
      const { network, sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectDelay: "20 millis" })
      const incoming = yield* Queue.take(transfers)
      yield* incoming.pause
      yield* Stream.runDrain(outgoing.progress.pipe(Stream.takeUntil((p) => p.pausedBy.includes("receiver"))))
      yield* network.disconnect(sender.id, receiver.id)
      const sent = yield* outgoing.result.pipe(Effect.timeout("20 seconds"))
      expect(sent.files.map((f) => f.path)).toEqual(["f/0-small.txt", "f/big.bin"])
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
    }))

  it.scopedLive("a receiver out of reach: the sender tries reconnectAttempts times, then ends interrupted with what was verified kept, resumable by hand", () =>
    Effect.gen(function*() {
      const tap = yield* wiretap(HOLD)
      const { network, sender, receiver } = yield* Peers.make({ onWrite: tap.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 2, reconnectDelay: "20 millis" })
      const states: Array<string> = []
      yield* Effect.forkScoped(Stream.runForEach(outgoing.progress, (p) => Effect.sync(() => void (states.at(-1) === p.state || states.push(p.state)))))
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      yield* network.partition([sender.id], [receiver.id])
      Peers.failure(yield* Effect.either(incoming.result))
      const failed = Peers.failure(yield* Effect.either(outgoing.result))
      expect(failed._tag === "TransportError" ? failed.reason : failed._tag).toBe("Unreachable")
      expect(states).toContain("reconnecting")
      expect(states.at(-1)).toBe("interrupted")
      const kept = yield* interrupted(receiver)
      expect((yield* interrupted(sender)).transfer).toBe(outgoing.id)
      yield* network.heal
      yield* tap.release
      yield* sender.spacedrop.resume(outgoing.id)
      yield* (yield* sender.spacedrop.transfer(outgoing.id)).result
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      expectNoVerifiedChunkResent(tap.runs, kept.bytes)
    }))

  it.scopedLive("the connection killed at about 50% and resumed by hand (reconnectAttempts 0): no verified chunk is sent again (counted), the files arrive whole", () =>
    Effect.gen(function*() {
      const tap = yield* wiretap(HOLD)
      const { network, sender, receiver } = yield* Peers.make({ onWrite: tap.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 0 })
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      // what the receiver verified, once the last chunk before the held one is in
      yield* Stream.runDrain(incoming.progress.pipe(Stream.takeUntil((p) => p.bytes >= BEFORE_HOLD)))
      yield* network.disconnect(sender.id, receiver.id)
      Peers.failure(yield* Effect.either(outgoing.result))
      Peers.failure(yield* Effect.either(incoming.result))
      const kept = yield* interrupted(receiver)
      expect(kept).toMatchObject({ transfer: outgoing.id, direction: "receive", files: 1 })
      expect((yield* interrupted(sender)).transfer).toBe(outgoing.id)

      yield* tap.release
      yield* sender.spacedrop.resume(outgoing.id)
      const again = yield* sender.spacedrop.transfer(outgoing.id)
      const sent = yield* again.result
      expect(sent.files.map((f) => f.path)).toEqual(["f/0-small.txt", "f/big.bin"])
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      expectNoVerifiedChunkResent(tap.runs, kept.bytes)
      // done: nothing kept on either side
      yield* receiver.spacedrop.transfers.pipe(Effect.repeat({ until: (all) => all.length === 0, schedule: Schedule.spaced("10 millis") }), Effect.timeout("5 seconds"))
      expect(yield* sender.spacedrop.transfers).toEqual([])
    }))

  it.scopedLive("after a drop the receiver asks for the resume (by id): its sender offers the transfer again and it completes", () =>
    Effect.gen(function*() {
      const tap = yield* wiretap(40)
      const { network, sender, receiver } = yield* Peers.make({ onWrite: tap.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 0 })
      yield* Queue.take(transfers)
      yield* tap.held
      yield* network.disconnect(sender.id, receiver.id)
      const kept = yield* interrupted(receiver)
      yield* interrupted(sender)
      yield* tap.release
      yield* receiver.spacedrop.resume(outgoing.id)
      yield* (yield* sender.spacedrop.transfer(outgoing.id)).result
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      expectNoVerifiedChunkResent(tap.runs, kept.bytes)
    }))

  it.scopedLive("a receiver restarted mid-transfer (a new plugin on the same state dir) resumes where its disk says; its records are gone at the end", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      const tap = yield* wiretap(HOLD)
      const senderState = yield* Peers.tempDir()
      const receiverState = yield* Peers.tempDir()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const sender = yield* Peers.peer(network, "sender", { name: "Sender", stateDir: senderState }, tap.onWrite)
      const first = yield* Scope.make()
      const receiver = yield* Scope.extend(Peers.peer(network, "receiver", { name: "Receiver", stateDir: receiverState }), first)
      const transfers = yield* Scope.extend(Peers.acceptAll(receiver, target), first)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 0 })
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      yield* Stream.runDrain(incoming.progress.pipe(Stream.takeUntil((p) => p.bytes >= BEFORE_HOLD)))
      // the receiving node stops
      yield* Scope.close(first, Exit.void)
      Peers.failure(yield* Effect.either(outgoing.result))
      yield* interrupted(sender)

      // and starts again on the same state dir: the interrupted transfer is listed from disk
      const again = yield* Peers.peer(network, "receiver", { name: "Receiver", stateDir: receiverState })
      const kept = yield* interrupted(again)
      expect(kept).toMatchObject({ transfer: outgoing.id, direction: "receive", files: 1, totalFiles: 2 })
      yield* tap.release
      yield* sender.spacedrop.resume(outgoing.id)
      yield* (yield* sender.spacedrop.transfer(outgoing.id)).result
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      expectNoVerifiedChunkResent(tap.runs, kept.bytes)
      expect(yield* names(senderState)).toEqual([])
      yield* again.spacedrop.transfers.pipe(Effect.repeat({ until: (all) => all.length === 0, schedule: Schedule.spaced("10 millis") }), Effect.timeout("5 seconds"))
      expect(yield* names(receiverState)).toEqual([])
    }))

  it.scopedLive("a receiver that crashes after a checkpoint (no finalizer ran: its record says less than its temporary file holds) resumes from the record", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      const tap = yield* wiretap(HOLD)
      const state = yield* Peers.tempDir()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const sender = yield* Peers.peer(network, "sender", { name: "Sender" }, tap.onWrite)
      const first = yield* Scope.make()
      const receiver = yield* Scope.extend(Peers.peer(network, "receiver", { name: "Receiver", stateDir: state }), first)
      const transfers = yield* Scope.extend(Peers.acceptAll(receiver, target), first)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 0 })
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      yield* Stream.runDrain(incoming.progress.pipe(Stream.takeUntil((p) => p.bytes >= BEFORE_HOLD)))
      // a pause is a checkpoint: the file synced, then the record on disk
      yield* incoming.pause
      const recordFile = nodePath.join(state, `receive-${incoming.id}.json`)
      const checkpoint = yield* Effect.gen(function*() {
        while (true) {
          const text = yield* Effect.promise(() => fs.readFile(recordFile, "utf8").catch(() => ""))
          if (text !== "" && JSON.parse(text).position.offset === BEFORE_HOLD - SMALL.length) return text
          yield* Effect.sleep("10 millis")
        }
      }).pipe(Effect.timeout("10 seconds"))
      yield* Scope.close(first, Exit.void)
      Peers.failure(yield* Effect.either(outgoing.result))
      // what a crash leaves: the record of the last checkpoint, and bytes written after it that nothing vouches for
      const temp = nodePath.join(target, "f", `.weft-${incoming.id}-2.part`)
      yield* Effect.promise(async () => {
        await fs.writeFile(recordFile, checkpoint)
        await fs.appendFile(temp, randomBytes(BIG))
      })
      const again = yield* Peers.peer(network, "receiver", { name: "Receiver", stateDir: state })
      const kept = yield* interrupted(again)
      expect(kept.bytes).toBe(BEFORE_HOLD)
      yield* tap.release
      yield* sender.spacedrop.resume(outgoing.id)
      yield* (yield* sender.spacedrop.transfer(outgoing.id)).result
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      expectNoVerifiedChunkResent(tap.runs, kept.bytes)
    }))

  it.scopedLive("a receiver that crashed with verified files not yet in place (temporary files in several folders), then cancelled after a restart: none of its temporary files is left", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      // three small files in a/, the big one in b/, three small ones in c/: held in the big one
      const tap = yield* wiretap(3 + HOLD)
      const state = yield* Peers.tempDir()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const tree = nodePath.join(source, "t")
      yield* Effect.promise(async () => {
        for (const dir of ["a", "b", "c"]) await fs.mkdir(nodePath.join(tree, dir), { recursive: true })
        for (const n of [1, 2, 3]) {
          await fs.writeFile(nodePath.join(tree, "a", `${n}.txt`), `a${n}`)
          await fs.writeFile(nodePath.join(tree, "c", `${n}.txt`), `c${n}`)
        }
        await fs.writeFile(nodePath.join(tree, "b", "big.bin"), randomBytes(BIG))
      })
      const sender = yield* Peers.peer(network, "sender", { name: "Sender" }, tap.onWrite)
      const first = yield* Scope.make()
      const receiver = yield* Scope.extend(Peers.peer(network, "receiver", { name: "Receiver", stateDir: state }), first)
      const transfers = yield* Scope.extend(Peers.acceptAll(receiver, target), first)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [tree], { reconnectAttempts: 0 })
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      // a pause is a checkpoint: a/ in place, b/big.bin part way
      yield* incoming.pause
      const recordFile = nodePath.join(state, `receive-${incoming.id}.json`)
      const checkpoint = yield* Effect.gen(function*() {
        while (true) {
          const text = yield* Effect.promise(() => fs.readFile(recordFile, "utf8").catch(() => ""))
          if (text !== "" && JSON.parse(text).position.files === 3 && JSON.parse(text).position.offset > 0) return text
          yield* Effect.sleep("10 millis")
        }
      }).pipe(Effect.timeout("10 seconds"))
      yield* Scope.close(first, Exit.void)
      Peers.failure(yield* Effect.either(outgoing.result))
      // what a hard crash leaves: the last checkpoint's record, and the temporary files of files verified after it
      // (c/'s, waiting in their group to be put in place), which that record does not name one by one
      const strays = [1, 2, 3].map((n) => nodePath.join(target, "t", "c", `.weft-${incoming.id}-${10 + n}.part`))
      yield* Effect.promise(async () => {
        await fs.writeFile(recordFile, checkpoint)
        for (const stray of strays) await fs.writeFile(stray, "verified, not yet in place")
      })
      const again = yield* Peers.peer(network, "receiver", { name: "Receiver", stateDir: state })
      yield* interrupted(again)
      yield* again.spacedrop.cancel(incoming.id)
      const left = yield* Effect.promise(() => fs.readdir(target, { recursive: true }))
      expect(left.filter((name) => name.endsWith(".part"))).toEqual([])
      expect(yield* again.spacedrop.transfers).toEqual([])
      // what was in place stays: a/ whole
      expect(left.filter((name) => name.startsWith(nodePath.join("t", "a") + nodePath.sep)).sort()).toEqual(["1.txt", "2.txt", "3.txt"].map((n) => nodePath.join("t", "a", n)))
    }))

  it.scopedLive("a sender restarted mid-transfer lists the transfer from its state dir and resumes it under the same id", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      const tap = yield* wiretap(HOLD)
      const senderState = yield* Peers.tempDir()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const receiver = yield* Peers.peer(network, "receiver", { name: "Receiver" })
      const transfers = yield* Peers.acceptAll(receiver, target)
      const first = yield* Scope.make()
      const sender = yield* Scope.extend(Peers.peer(network, "sender", { name: "Sender", stateDir: senderState }, tap.onWrite), first)
      const outgoing = yield* Scope.extend(sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 0 }), first)
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      yield* Stream.runDrain(incoming.progress.pipe(Stream.takeUntil((p) => p.bytes >= BEFORE_HOLD)))
      yield* Scope.close(first, Exit.void)
      Peers.failure(yield* Effect.either(incoming.result))
      const kept = yield* interrupted(receiver)

      const again = yield* Peers.peer(network, "sender", { name: "Sender", stateDir: senderState }, tap.onWrite)
      expect(yield* interrupted(again)).toMatchObject({ transfer: outgoing.id, direction: "send", peer: receiver.id })
      yield* tap.release
      yield* again.spacedrop.resume(outgoing.id)
      const summary = yield* (yield* again.spacedrop.transfer(outgoing.id)).result
      expect(summary.transfer).toBe(outgoing.id)
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      expectNoVerifiedChunkResent(tap.runs, kept.bytes)
      expect(yield* names(senderState)).toEqual([])
    }))

  it.scopedLive("a sender back on a new connection while the receiver still waits on the old one (half-open): the old run stops, the new one resumes where it was", () =>
    Effect.gen(function*() {
      const { network, receiver } = yield* Peers.make()
      const raw = yield* Peers.bareHost(network, "raw")
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const data = randomBytes(3 * CHUNK)
      const offer: ReadonlyArray<Protocol.Message> = [
        { type: "Offer", transfer: "halfopen" as Protocol.TransferId, sender: "raw", count: 1, totalBytes: data.length, chunkBytes: CHUNK },
        { type: "Entries", entries: [{ path: "a.bin", kind: "file", size: data.length, mtime: 0, hash: Files.hashOfBytes(data, CHUNK) }] }
      ]
      const chunk = (offset: number) => {
        const frame = Wire.chunkFrame(0, offset, CHUNK)
        frame.data.set(data.subarray(offset, offset + CHUNK))
        return frame.seal()
      }
      const connect = (scope: Scope.Scope) =>
        Effect.gen(function*() {
          const wire = yield* Scope.extend(Effect.flatMap(raw.host.open(receiver.id, Protocol.protocol), (stream) => Wire.make(stream, 1024 * 1024)), scope)
          for (const message of offer) yield* wire.send(message)
          const answer = Option.getOrThrow(yield* wire.next)
          return { wire, answer: answer._tag === "Message" ? answer.message : undefined }
        })
      // the first connection: accepted, two chunks, then silence (its stream stays open)
      const old = yield* Scope.make()
      const first = yield* connect(old)
      expect(first.answer).toEqual({ type: "Accepted" })
      const incoming = yield* Queue.take(transfers)
      yield* first.wire.sendRaw(chunk(0))
      yield* first.wire.sendRaw(chunk(CHUNK))
      yield* Stream.runDrain(incoming.progress.pipe(Stream.takeUntil((p) => p.bytes >= 2 * CHUNK)))
      // the second: the same offer is resumed at once, from the third chunk
      const second = yield* connect(yield* Effect.scope)
      expect(second.answer).toEqual({ type: "Accepted", from: { files: 0, offset: 2 * CHUNK } })
      expect(Peers.failure(yield* Effect.either(incoming.result))).toMatchObject({ reason: "Closed" })
      yield* second.wire.sendRaw(chunk(2 * CHUNK))
      yield* second.wire.send({ type: "FileEnd", index: 0 })
      yield* second.wire.send({ type: "Done" })
      let complete: Protocol.Message | undefined
      while (complete === undefined) {
        const frame = Option.getOrThrow(yield* second.wire.next)
        if (frame._tag === "Message" && frame.message.type === "Complete") complete = frame.message
      }
      expect(complete).toEqual({ type: "Complete", bytes: 3 * CHUNK, files: 1 })
      expect(Buffer.compare(yield* Effect.promise(() => fs.readFile(nodePath.join(target, "a.bin"))), data)).toBe(0)
      yield* Scope.close(old, Exit.void)
    }))

  it.scopedLive("a sender cancelling an interrupted transfer by id tells its receiver (Forget): the receiver drops what it kept", () =>
    Effect.gen(function*() {
      const tap = yield* wiretap(20)
      const { network, sender, receiver } = yield* Peers.make({ onWrite: tap.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 0 })
      yield* Queue.take(transfers)
      yield* tap.held
      yield* network.disconnect(sender.id, receiver.id)
      yield* interrupted(receiver)
      yield* interrupted(sender)
      expect(yield* tempFiles(target)).not.toEqual([])
      yield* sender.spacedrop.cancel(outgoing.id)
      yield* forgotten(receiver)
      expect(yield* tempFiles(target)).toEqual([])
      expect(Peers.failure(yield* Effect.either(receiver.spacedrop.resume(outgoing.id)))).toMatchObject({ _tag: "SpacedropError", reason: "UnknownTransfer" })
    }))

  it.scopedLive("a cancel while the sender waits to reconnect reaches the receiver once it can be reached: the receiver drops what it kept", () =>
    Effect.gen(function*() {
      const tap = yield* wiretap(HOLD)
      const { network, sender, receiver } = yield* Peers.make({ onWrite: tap.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      // a long wait before the next attempt: the cancel lands while the sender is reconnecting
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectDelay: "20 seconds" })
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      yield* network.disconnect(sender.id, receiver.id)
      Peers.failure(yield* Effect.either(incoming.result))
      yield* interrupted(receiver)
      yield* Stream.runDrain(outgoing.progress.pipe(Stream.takeUntil((p) => p.state === "reconnecting")))
      yield* outgoing.cancel
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ reason: "Cancelled", by: "sender" })
      yield* forgotten(receiver)
      expect(yield* tempFiles(target)).toEqual([])
      expect(yield* sender.spacedrop.transfers).toEqual([])
    }))

  it.scopedLive("a cancel while the sender waits to reconnect and the receiver is out of reach: the receiver learns it when it asks for the transfer (UnknownTransfer) and drops what it kept", () =>
    Effect.gen(function*() {
      const tap = yield* wiretap(HOLD)
      const { network, sender, receiver } = yield* Peers.make({ onWrite: tap.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectDelay: "20 seconds" })
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      yield* network.partition([sender.id], [receiver.id])
      Peers.failure(yield* Effect.either(incoming.result))
      yield* Stream.runDrain(outgoing.progress.pipe(Stream.takeUntil((p) => p.state === "reconnecting")))
      yield* outgoing.cancel
      // the sender tried to tell it (out of reach), then ended
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ reason: "Cancelled", by: "sender" })
      expect((yield* interrupted(receiver)).transfer).toBe(outgoing.id)
      yield* network.heal
      expect(Peers.failure(yield* Effect.either(receiver.spacedrop.resume(outgoing.id)))).toMatchObject({ _tag: "SpacedropError", reason: "UnknownTransfer", by: "sender" })
      expect(yield* receiver.spacedrop.transfers).toEqual([])
      expect(yield* tempFiles(target)).toEqual([])
    }))

  it.scopedLive("a receiver that cancels while the sender waits to reconnect is not offered the transfer again: the sender's offer is refused, it ends Declined by the receiver", () =>
    Effect.gen(function*() {
      const tap = yield* wiretap(HOLD)
      const { network, sender, receiver } = yield* Peers.make({ onWrite: tap.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 3, reconnectDelay: "300 millis" })
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      yield* network.partition([sender.id], [receiver.id])
      Peers.failure(yield* Effect.either(incoming.result))
      expect((yield* interrupted(receiver)).transfer).toBe(outgoing.id)
      yield* receiver.spacedrop.cancel(outgoing.id)
      yield* network.heal
      yield* tap.release
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ reason: "Declined", by: "receiver" })
      // nobody was asked again, and nothing was kept or written
      expect(yield* Queue.size(transfers)).toBe(0)
      expect(yield* receiver.spacedrop.transfers).toEqual([])
      expect(yield* sender.spacedrop.transfers).toEqual([])
      expect(yield* tempFiles(target)).toEqual([])
    }))

  it.scopedLive("a resumed offer the receiver does not answer in time is not offered again and again: a receiver's silence is not a dropped connection", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      const tap = yield* wiretap(HOLD)
      const sender = yield* Peers.peer(network, "sender", { name: "Sender" }, tap.onWrite)
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const first = yield* Scope.make()
      const receiver = yield* Scope.extend(Peers.peer(network, "receiver", { name: "Receiver" }), first)
      const transfers = yield* Scope.extend(Peers.acceptAll(receiver, target), first)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], {
        answerTimeout: "300 millis",
        reconnectAttempts: 6,
        reconnectDelay: "100 millis"
      })
      const incoming = yield* Queue.take(transfers)
      yield* tap.held
      yield* network.partition([sender.id], [receiver.id])
      Peers.failure(yield* Effect.either(incoming.result))
      // the receiving node stops, its record in memory with it, and starts again: the sender's next offer is a
      // new question to its user, seen (counted) and left unanswered
      yield* Scope.close(first, Exit.void)
      const again = yield* Peers.peer(network, "receiver", { name: "Receiver" })
      const offers = yield* again.spacedrop.offers
      let later = 0
      yield* Effect.forkScoped(Stream.runForEach(offers, () => Effect.sync(() => void later++)))
      yield* tap.release
      yield* network.heal
      const failed = Peers.failure(yield* Effect.either(outgoing.result.pipe(Effect.timeout("30 seconds"))))
      expect(failed).toMatchObject({ _tag: "SpacedropError", reason: "Timeout" })
      expect(later, "offers after the first: the one unanswered re-offer, no more").toBe(1)
      // kept, to resume by hand
      expect((yield* interrupted(sender)).transfer).toBe(outgoing.id)
    }))

  it.scopedLive("a corrupt or foreign resume record is ignored and removed, never a crash; an id that is not one touches no file", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      const state = yield* Peers.tempDir()
      const outside = nodePath.join(nodePath.dirname(state), "receive-..json")
      yield* Effect.promise(async () => {
        await fs.writeFile(nodePath.join(state, "receive-garbage.json"), "{ not json")
        await fs.writeFile(nodePath.join(state, "send-wrongshape.json"), JSON.stringify({ direction: "send", transfer: "wrongshape" }))
        await fs.writeFile(nodePath.join(state, "send-other.json"), JSON.stringify({ direction: "receive", transfer: "x" }))
        await fs.writeFile(nodePath.join(state, "notes.txt"), "not ours")
      })
      const peer = yield* Peers.peer(network, "node", { stateDir: state })
      expect(yield* peer.spacedrop.transfers).toEqual([])
      expect((yield* names(state)).sort()).toEqual(["notes.txt"])
      for (const id of ["garbage", "../receive-", "a/b"]) {
        expect(Peers.failure(yield* Effect.either(peer.spacedrop.resume(id)))).toMatchObject({ reason: "UnknownTransfer" })
      }
      expect(yield* Effect.promise(() => fs.stat(outside).then(() => true, () => false))).toBe(false)
    }))
})
