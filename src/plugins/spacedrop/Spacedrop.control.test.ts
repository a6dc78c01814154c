/**
 * Spacedrop's controls: pause and resume from either side (the other side
 * learns it, nothing is sent while paused, a pause outlasts the idle
 * timeout), and the service's by-id `transfers`, `pause`, `resume`,
 * `cancel`, `transfer`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import type * as Spacedrop from "./Spacedrop.js"
import * as Peers from "./testing/Peers.js"


/** A chunk frame (the JSON messages are far smaller). */
const isChunk = (bytes: Uint8Array) => bytes.length > 4096 && bytes[4] === 0x01


/** Counts the sender's chunk frames, and holds the `n`th until `release`. */
const gate = (n: number) =>
  Effect.gen(function*() {
    const reached = yield* Deferred.make<void>()
    const released = yield* Deferred.make<void>()
    let chunks = 0
    const onWrite: Peers.OnWrite = (bytes, write) => {
      if (!isChunk(bytes)) return write(bytes)
      chunks++
      return chunks === n ? Effect.zipRight(Effect.zipRight(Deferred.succeed(reached, undefined), Deferred.await(released)), write(bytes)) : write(bytes)
    }
    return { onWrite, reached: Deferred.await(reached), release: Deferred.succeed(released, undefined), chunks: () => chunks }
  })

/** Waits until `transfer`'s progress satisfies `f`; that progress. */
const until = (transfer: Spacedrop.Transfer, f: (p: Spacedrop.Progress) => boolean) =>
  Effect.flatMap(Stream.runLast(transfer.progress.pipe(Stream.takeUntil(f))), (last) =>
    last._tag === "Some" && f(last.value) ? Effect.succeed(last.value) : Effect.dieMessage("the transfer ended first"))

const bigFile = (source: string, size = 16 * 1024 * 1024) =>
  Effect.promise(async () => {
    const path = nodePath.join(source, "big.bin")
    await fs.writeFile(path, randomBytes(size))
    return path
  })

describe("Spacedrop pause and resume", () => {
  it.scopedLive("the sender pauses: the receiver learns it, no chunk is sent while paused; resumed, the file arrives whole", () =>
    Effect.gen(function*() {
      const g = yield* gate(3)
      const { sender, receiver } = yield* Peers.make({ onWrite: g.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const file = yield* bigFile(source)
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [file])
      const incoming = yield* Queue.take(transfers)
      yield* g.reached
      // paused while the third chunk is on its way: it goes, nothing after it
      yield* outgoing.pause
      yield* g.release
      expect(yield* until(incoming, (p) => p.state === "paused")).toMatchObject({ state: "paused", pausedBy: ["sender"] })
      expect(yield* until(outgoing, (p) => p.state === "paused")).toMatchObject({ pausedBy: ["sender"] })
      yield* Effect.sleep("300 millis")
      expect(g.chunks()).toBe(3)
      yield* outgoing.resume
      yield* outgoing.result
      const received = yield* incoming.result
      expect(received.bytes).toBe(16 * 1024 * 1024)
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
    }))

  it.scopedLive("the receiver pauses (by id): the sender stops and shows it; the sender's resume does not lift the receiver's pause; the receiver's does", () =>
    Effect.gen(function*() {
      const g = yield* gate(3)
      const { sender, receiver } = yield* Peers.make({ onWrite: g.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const file = yield* bigFile(source)
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [file])
      const incoming = yield* Queue.take(transfers)
      yield* g.reached
      yield* receiver.spacedrop.pause(incoming.id)
      expect(yield* until(outgoing, (p) => p.state === "paused")).toMatchObject({ pausedBy: ["receiver"] })
      yield* g.release
      yield* sender.spacedrop.resume(outgoing.id)
      yield* Effect.sleep("300 millis")
      const held = g.chunks()
      expect((yield* sender.spacedrop.transfers).find((p) => p.transfer === outgoing.id)).toMatchObject({ state: "paused", pausedBy: ["receiver"] })
      yield* Effect.sleep("300 millis")
      expect(g.chunks()).toBe(held)
      yield* receiver.spacedrop.resume(incoming.id)
      yield* outgoing.result
      yield* incoming.result
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
    }))

  it.scopedLive("a pause outlasts the receiver's idle timeout: the transfer waits, then completes", () =>
    Effect.gen(function*() {
      const g = yield* gate(3)
      const { sender, receiver } = yield* Peers.make({ onWrite: g.onWrite, receiver: { idleTimeout: "200 millis" } })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const file = yield* bigFile(source, 4 * 1024 * 1024)
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [file])
      const incoming = yield* Queue.take(transfers)
      yield* g.reached
      yield* outgoing.pause
      yield* g.release
      yield* until(incoming, (p) => p.state === "paused")
      yield* Effect.sleep("1200 millis")
      expect((yield* receiver.spacedrop.transfers).map((p) => p.state)).toEqual(["paused"])
      yield* outgoing.resume
      yield* incoming.result
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
    }))

  it.scopedLive("a paused transfer can be cancelled by id: both sides fail Cancelled", () =>
    Effect.gen(function*() {
      const g = yield* gate(2)
      const { sender, receiver } = yield* Peers.make({ onWrite: g.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const file = yield* bigFile(source, 4 * 1024 * 1024)
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [file])
      const incoming = yield* Queue.take(transfers)
      yield* g.reached
      yield* sender.spacedrop.pause(outgoing.id)
      yield* g.release
      yield* until(incoming, (p) => p.state === "paused")
      yield* receiver.spacedrop.cancel(incoming.id)
      expect(Peers.failure(yield* Effect.either(incoming.result))).toMatchObject({ reason: "Cancelled", by: "receiver" })
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ reason: "Cancelled", by: "receiver" })
      expect(yield* Peers.snapshot(target)).toEqual({})
      // ended and forgotten on both sides
      expect(yield* sender.spacedrop.transfers).toEqual([])
      expect(yield* receiver.spacedrop.transfers).toEqual([])
    }))

  it.scopedLive("transfers lists what runs, on each side; an unknown id fails UnknownTransfer everywhere", () =>
    Effect.gen(function*() {
      const g = yield* gate(2)
      const { sender, receiver } = yield* Peers.make({ onWrite: g.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const file = yield* bigFile(source, 4 * 1024 * 1024)
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [file])
      const incoming = yield* Queue.take(transfers)
      yield* g.reached
      expect(yield* sender.spacedrop.transfers).toMatchObject([{ transfer: outgoing.id, direction: "send", peer: receiver.id, state: "transferring", totalBytes: 4 * 1024 * 1024 }])
      expect(yield* receiver.spacedrop.transfers).toMatchObject([{ transfer: outgoing.id, direction: "receive", peer: sender.id, totalFiles: 1 }])
      expect((yield* receiver.spacedrop.transfer(outgoing.id)).direction).toBe("receive")
      for (const id of ["nope", "../../etc/passwd", ""]) {
        for (const op of [sender.spacedrop.pause, sender.spacedrop.resume, sender.spacedrop.cancel, receiver.spacedrop.transfer]) {
          expect(Peers.failure(yield* Effect.either(op(id)))).toMatchObject({ _tag: "SpacedropError", reason: "UnknownTransfer" })
        }
      }
      yield* g.release
      yield* outgoing.result
      yield* incoming.result
      expect(yield* sender.spacedrop.transfers).toEqual([])
    }))
})
