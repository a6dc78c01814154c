import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import * as Send from "./internal/send.js"
import * as Protocol from "./Protocol.js"
import * as Peers from "./testing/Peers.js"

const write = (path: string, content: Uint8Array | string) =>
  Effect.promise(async () => {
    await fs.mkdir(nodePath.dirname(path), { recursive: true })
    await fs.writeFile(path, content)
  })


/** Accepts every offer on `receiver` into `target` (with `options`), handing each transfer to `transfers`. */

describe("Spacedrop over the memory transport", () => {
  it.scopedLive("a folder tree arrives byte-identical: nested and empty directories, empty files, a few MiB, Unicode names", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const tree = nodePath.join(source, "tree")
      yield* write(nodePath.join(tree, "a/b/c/deep.txt"), "deep")
      yield* write(nodePath.join(tree, "empty.txt"), "")
      yield* write(nodePath.join(tree, "big.bin"), randomBytes(3 * 1024 * 1024 + 17))
      yield* write(nodePath.join(tree, "ünïcødé/日本語 ファイル.txt"), "こんにちは")
      yield* write(nodePath.join(tree, "emoji 🎉/ok.md"), "# party")
      yield* Effect.promise(() => fs.mkdir(nodePath.join(tree, "empty-dir/inner-empty"), { recursive: true }))
      yield* write(nodePath.join(source, "loose.txt"), "a file sent beside the folder")

      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [tree, nodePath.join(source, "loose.txt")])
      const sent = yield* outgoing.result
      const incoming = yield* Queue.take(transfers)
      const received = yield* incoming.result
      expect(sent.files.length).toBe(6)
      expect(received.files.length).toBe(6)
      expect(received.bytes).toBe(sent.bytes)
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      // modification times come along
      const [a, b] = yield* Effect.promise(() => Promise.all([fs.stat(nodePath.join(tree, "big.bin")), fs.stat(nodePath.join(target, "tree/big.bin"))]))
      expect(Math.abs(a!.mtimeMs - b!.mtimeMs)).toBeLessThan(1)
    }), 60_000)

  it.scopedLive("a file between one chunk and the read-whole size goes in several chunks: 100 000 bytes in chunks of 64 KiB", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "notes.bin"), randomBytes(100_000))
      expect(Send.chunkBytesFor(100_000)).toBe(64 * 1024)
      const transfers = yield* Peers.acceptAll(receiver, target)
      const sent = yield* (yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "notes.bin")])).result
      expect((yield* (yield* Queue.take(transfers)).result).bytes).toBe(100_000)
      expect(sent.bytes).toBe(100_000)
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
    }), 60_000)

  it.scopedLive("2 000 small files move in one pipelined stream: the receiver sends a handful of frames, not one per file", () =>
    Effect.gen(function*() {
      const { network, sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const files = 2000
      yield* Effect.promise(async () => {
        await fs.mkdir(nodePath.join(source, "many"))
        for (let i = 0; i < files; i++) await fs.writeFile(nodePath.join(source, "many", `f${i}.txt`), `file ${i} `.repeat(1 + (i % 7)))
      })
      const trace = yield* network.subscribe
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "many")])
      yield* outgoing.result
      const received = yield* (yield* Queue.take(transfers)).result
      expect(received.files.length).toBe(files)
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      const delivered = Chunk.toReadonlyArray(yield* Queue.takeAll(trace)).filter((e) => e._tag === "Delivered" && e.protocol === Protocol.PROTOCOL_ID && !e.end)
      const fromReceiver = delivered.filter((e) => e._tag === "Delivered" && e.from === receiver.id).length
      const fromSender = delivered.filter((e) => e._tag === "Delivered" && e.from === sender.id).length
      // Accepted, an Ack every 256 files, Complete: stop-and-wait would be one per file at least
      expect(fromReceiver).toBeLessThanOrEqual(2 + Math.ceil(files / Protocol.ACK_EVERY_FILES))
      // one write per small file (its chunk and its FileEnd together), an offer, a page or two, Done
      expect(fromSender).toBeGreaterThanOrEqual(files)
      expect(fromSender).toBeLessThanOrEqual(files + 8)
      // the direction changes only around the receiver's few frames
      let turns = 0
      for (let i = 1; i < delivered.length; i++) if ((delivered[i] as { from: string }).from !== (delivered[i - 1] as { from: string }).from) turns++
      expect(turns).toBeLessThanOrEqual(2 * fromReceiver)
      console.log(`2000 files: ${fromSender} writes from the sender, ${fromReceiver} from the receiver, ${turns} turns`)
    }), 120_000)

  it.scoped("an offer nobody watches is refused at once: NoListener, with no clock moved", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "a.txt"), "a")
      const outgoing = yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "a.txt")])
      const error = Peers.failure(yield* Effect.either(outgoing.result))
      expect(error).toMatchObject({ _tag: "SpacedropError", reason: "NoListener", by: "receiver" })
    }))

  it.scopedLive("a rejected offer fails the sender with Declined; nothing is written", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "a.txt"), "a")
      const offers = yield* receiver.spacedrop.offers
      yield* Effect.forkScoped(Stream.runForEach(offers, (offer) => offer.reject("not now")))
      const outgoing = yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "a.txt")])
      const error = Peers.failure(yield* Effect.either(outgoing.result))
      expect(error).toMatchObject({ _tag: "SpacedropError", reason: "Declined", by: "receiver", detail: "not now" })
      expect(yield* Peers.snapshot(target)).toEqual({})
    }))

  it.scopedLive("an app refusing with a reason (nobody at its front end) fails the sender with that reason, not Declined", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "a.txt"), "a")
      const offers = yield* receiver.spacedrop.offers
      yield* Effect.forkScoped(Stream.runForEach(offers, (offer) => offer.reject("nobody at the terminal", "NoListener")))
      const outgoing = yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "a.txt")])
      const error = Peers.failure(yield* Effect.either(outgoing.result))
      expect(error).toMatchObject({ _tag: "SpacedropError", reason: "NoListener", by: "receiver", detail: "nobody at the terminal" })
    }))

  it.scoped("an unanswered offer is refused Timeout after decisionTimeout; a late answer gets Expired", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make({ receiver: { decisionTimeout: "5 seconds" } })
      const source = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "a.txt"), "a")
      const offers = yield* receiver.spacedrop.offers
      const outgoing = yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "a.txt")])
      const offer = Option.getOrThrow(yield* Stream.runHead(offers))
      expect(offer).toMatchObject({ sender: "Sender", count: 1, totalBytes: 1 })
      const result = yield* Effect.fork(Effect.either(outgoing.result))
      yield* TestClock.adjust("4999 millis")
      expect(Option.isNone(yield* Fiber.poll(result)), "still waiting just before the timeout").toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(Peers.failure(yield* Fiber.join(result))).toMatchObject({ _tag: "SpacedropError", reason: "Timeout", by: "receiver" })
      expect(Peers.failure(yield* Effect.either(offer.reject()))).toMatchObject({ _tag: "DecisionError", reason: "Expired" })
    }))

  it.scopedLive("with several watchers an offer is decided once: the first answer wins, the others get AlreadyDecided", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "a.txt"), "a")
      const watchers = yield* Effect.all([receiver.spacedrop.offers, receiver.spacedrop.offers, receiver.spacedrop.offers])
      const outgoing = yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "a.txt")])
      const seen = yield* Effect.forEach(watchers, (offers) => Effect.map(Stream.runHead(offers), Option.getOrThrow))
      expect(new Set(seen.map((o) => o.id)).size).toBe(1)
      // all at once: exactly one wins
      const answers: ReadonlyArray<Either.Either<unknown, unknown>> = yield* Effect.all([
        Effect.either(seen[0]!.accept(target)),
        Effect.either(seen[1]!.accept(target)),
        Effect.either(seen[2]!.reject())
      ], { concurrency: "unbounded" })
      expect(answers.filter(Either.isRight)).toHaveLength(1)
      for (const answer of answers) {
        if (Either.isLeft(answer)) expect(answer.left).toMatchObject({ _tag: "DecisionError", reason: "AlreadyDecided" })
      }
      const sent = yield* Effect.either(outgoing.result)
      if (answers[2]!._tag === "Right") expect(Peers.failure(sent)).toMatchObject({ reason: "Declined" })
      else expect(Either.isRight(sent)).toBe(true)
      // and later answers too
      expect(Peers.failure(yield* Effect.either(seen[1]!.reject()))).toMatchObject({ _tag: "DecisionError", reason: "AlreadyDecided" })
    }))

  it.scopedLive("accepting a subset brings only those entries (a folder brings what is under it)", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "t/keep/one.txt"), "1")
      yield* write(nodePath.join(source, "t/keep/two.txt"), "2")
      yield* write(nodePath.join(source, "t/skip.txt"), "no")
      yield* write(nodePath.join(source, "t/also.txt"), "yes")
      const transfers = yield* Peers.acceptAll(receiver, target, { entries: ["t/keep", "t/also.txt"] })
      const outgoing = yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "t")])
      const sent = yield* outgoing.result
      expect(sent.files.map((f) => f.path).sort()).toEqual(["t/also.txt", "t/keep/one.txt", "t/keep/two.txt"])
      yield* (yield* Queue.take(transfers)).result
      expect(Object.keys(yield* Peers.snapshot(target)).sort()).toEqual(["t", "t/also.txt", "t/keep", "t/keep/one.txt", "t/keep/two.txt"])
    }))

  it.scopedLive("an existing file is never overwritten: the new one is saved as `a (1).txt`, or refused Exists by option", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "a.txt"), "new")
      yield* write(nodePath.join(target, "a.txt"), "old")
      yield* write(nodePath.join(target, "a (1).txt"), "older")
      const transfers = yield* Peers.acceptAll(receiver, target)
      yield* (yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "a.txt")])).result
      const received = yield* (yield* Queue.take(transfers)).result
      expect(received.files).toEqual([{ path: "a.txt", savedAs: nodePath.join(yield* Effect.promise(() => fs.realpath(target)), "a (2).txt") }])
      const read = (name: string) => Effect.promise(() => fs.readFile(nodePath.join(target, name), "utf8"))
      expect([yield* read("a.txt"), yield* read("a (1).txt"), yield* read("a (2).txt")]).toEqual(["old", "older", "new"])
    }))

  it.scopedLive("with onExisting refuse, an offer naming an existing file is refused Exists and nothing changes", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make({ receiver: { onExisting: "refuse" } })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "a.txt"), "new")
      yield* write(nodePath.join(target, "a.txt"), "old")
      const offers = yield* receiver.spacedrop.offers
      const accepted = yield* Effect.forkScoped(Effect.flatMap(Stream.runHead(offers), (o) => Effect.either(Option.getOrThrow(o).accept(target))))
      const error = Peers.failure(yield* Effect.either((yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "a.txt")])).result))
      expect(error).toMatchObject({ _tag: "SpacedropError", reason: "Exists", by: "receiver" })
      expect(Peers.failure(yield* Fiber.join(accepted))).toMatchObject({ _tag: "SpacedropError", reason: "Exists" })
      expect(yield* Peers.snapshot(target)).toEqual({ "a.txt": expect.stringMatching(/^file 3 /) })
      expect(yield* Effect.promise(() => fs.readFile(nodePath.join(target, "a.txt"), "utf8"))).toBe("old")
    }))

  it.scopedLive("progress streams on both sides: bytes and files rise to the totals, with the current file, a rate and an ETA", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      yield* write(nodePath.join(source, "p/big.bin"), randomBytes(2 * 1024 * 1024))
      yield* write(nodePath.join(source, "p/small.txt"), "small")
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [nodePath.join(source, "p")])
      const sending = yield* Effect.fork(Stream.runCollect(outgoing.progress))
      const incoming = yield* Queue.take(transfers)
      const receiving = yield* Effect.fork(Stream.runCollect(incoming.progress))
      yield* incoming.result
      for (const fiber of [sending, receiving]) {
        const seen = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
        const last = seen[seen.length - 1]!
        expect(last).toMatchObject({ state: "done", bytes: 2 * 1024 * 1024 + 5, totalBytes: 2 * 1024 * 1024 + 5, files: 2, totalFiles: 2, etaSeconds: 0 })
        const moving = seen.filter((p) => p.state === "transferring" && p.bytes > 0 && p.bytes < p.totalBytes)
        expect(moving.length, "progress while the big file moves").toBeGreaterThan(0)
        expect(moving.some((p) => p.current === "p/big.bin")).toBe(true)
        expect(moving.every((p) => p.bytesPerSecond >= 0)).toBe(true)
        for (let i = 1; i < seen.length; i++) expect(seen[i]!.bytes).toBeGreaterThanOrEqual(seen[i - 1]!.bytes)
      }
    }))

  it("chunks fit the total: about a thousand of them, between 64 KiB and 1 MiB", () => {
    const KiB = 1024
    expect(Send.chunkBytesFor(0)).toBe(64 * KiB)
    expect(Send.chunkBytesFor(5 * KiB)).toBe(64 * KiB)
    expect(Send.chunkBytesFor(100 * KiB * KiB)).toBe(128 * KiB)
    expect(Send.chunkBytesFor(1024 * KiB * KiB)).toBe(1024 * KiB)
    expect(Send.chunkBytesFor(40 * 1024 * KiB * KiB)).toBe(1024 * KiB)
  })
})
