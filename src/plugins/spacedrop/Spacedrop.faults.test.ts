/**
 * Spacedrop when things go wrong mid-transfer: a cancel from either side, a
 * chunk corrupted on the wire, a source file changed while it is sent. In
 * each, both sides fail with a typed error saying what and who, and the
 * receiver keeps nothing partial.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import * as Plugin from "../Plugin.js"
import * as Wire from "./internal/wire.js"
import * as Protocol from "./Protocol.js"
import type * as Spacedrop from "./Spacedrop.js"
import * as Peers from "./testing/Peers.js"


/** A chunk frame (the JSON messages are far smaller). */
const isChunk = (bytes: Uint8Array) => bytes.length > 4096 && bytes[4] === 0x01

/** Where a chunk frame's data goes: entry index and offset. */
const chunkPlace = (bytes: Uint8Array) => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return `${view.getUint32(5)}:${view.getUint32(9) * 2 ** 32 + view.getUint32(13)}`
}

/** Writes a 4 MiB file and a small one under `source/f`; returns the folder. */
const files = (source: string) =>
  Effect.promise(async () => {
    const folder = nodePath.join(source, "f")
    await fs.mkdir(folder)
    await fs.writeFile(nodePath.join(folder, "0-small.txt"), "small and first")
    await fs.writeFile(nodePath.join(folder, "big.bin"), randomBytes(4 * 1024 * 1024))
    return folder
  })

/** What the receiver's target holds: only the small file, complete (nothing of the big one, no temporary file). */
const expectNothingPartial = (target: string) =>
  Effect.gen(function*() {
    const held = yield* Peers.snapshot(target)
    expect(Object.keys(held).sort()).toEqual(["f", "f/0-small.txt"])
  })


/** Lets `n` chunk frames of the sender through, then holds every later one until the scope ends. */
const holdAfter = (n: number) =>
  Effect.gen(function*() {
    const held = yield* Deferred.make<void>()
    let chunks = 0
    const onWrite: Peers.OnWrite = (bytes, write) =>
      isChunk(bytes) && ++chunks > n ? Effect.zipRight(Deferred.succeed(held, undefined), Effect.never) : write(bytes)
    return { onWrite, held: Deferred.await(held) }
  })

/** A receiver by hand on a bare host: accepts, reads every chunk, and acknowledges only what the test offers to `acks`. */
const rawReceiver = (network: Peers.Network) =>
  Effect.gen(function*() {
    const raw = yield* Peers.bareHost(network, "raw")
    const received = yield* Ref.make(0)
    const acks = yield* Queue.unbounded<number>()
    // a receiver by hand: accepts, reads every chunk, and acknowledges only when the test says so
    yield* raw.host.register(Plugin.make({
      name: "raw-spacedrop",
      ...Protocol.protocol,
      handle: (stream) =>
        Effect.gen(function*() {
          const wire = yield* Wire.make(stream, 8 * 1024 * 1024)
          const offer = Option.getOrThrow(yield* wire.next)
          const count = offer._tag === "Message" && offer.message.type === "Offer" ? offer.message.count : 0
          let listed = 0
          while (listed < count) {
            const page = Option.getOrThrow(yield* wire.next)
            if (page._tag === "Message" && page.message.type === "Entries") listed += page.message.entries.length
          }
          yield* wire.send({ type: "Accepted" })
          yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(acks), (bytes) => wire.send({ type: "Ack", bytes, files: 0 }))))
          while (true) {
            const frame = yield* wire.next
            if (Option.isNone(frame)) return
            const f = frame.value
            if (f._tag === "Chunk") yield* Ref.update(received, (n) => n + f.length)
          }
        })
    }))
    return { raw, received, acks }
  })

describe("Spacedrop faults", () => {
  it.scopedLive("the sender cancels mid-transfer: both sides fail Cancelled by the sender; the partial file is gone", () =>
    Effect.gen(function*() {
      const gate = yield* holdAfter(3)
      const { sender, receiver } = yield* Peers.make({ onWrite: gate.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)])
      const incoming = yield* Queue.take(transfers)
      yield* gate.held
      yield* outgoing.cancel
      const mine = Peers.failure(yield* Effect.either(outgoing.result))
      const theirs = Peers.failure(yield* Effect.either(incoming.result))
      expect(mine).toMatchObject({ _tag: "SpacedropError", reason: "Cancelled", by: "sender" })
      expect(theirs).toMatchObject({ _tag: "SpacedropError", reason: "Cancelled", by: "sender" })
      yield* expectNothingPartial(target)
    }))

  it.scopedLive("the receiver cancels mid-transfer: both sides fail Cancelled by the receiver; the partial file is gone", () =>
    Effect.gen(function*() {
      const gate = yield* holdAfter(3)
      const { sender, receiver } = yield* Peers.make({ onWrite: gate.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)])
      const incoming = yield* Queue.take(transfers)
      yield* gate.held
      // the receiver has what came before the held chunk
      yield* Stream.runDrain(incoming.progress.pipe(Stream.takeUntil((p) => p.bytes > 0 && p.current === "f/big.bin")))
      yield* incoming.cancel
      const theirs = Peers.failure(yield* Effect.either(incoming.result))
      const mine = Peers.failure(yield* Effect.either(outgoing.result))
      expect(theirs).toMatchObject({ _tag: "SpacedropError", reason: "Cancelled", by: "receiver" })
      expect(mine).toMatchObject({ _tag: "SpacedropError", reason: "Cancelled", by: "receiver" })
      yield* expectNothingPartial(target)
    }))

  it.scopedLive("a chunk corrupted on the wire is detected and asked for again: the file arrives whole, only that chunk (and what was in flight after it) sent twice", () =>
    Effect.gen(function*() {
      let chunks = 0
      const sent = new Map<string, number>()
      const { sender, receiver } = yield* Peers.make({
        onWrite: (bytes, write) => {
          if (!isChunk(bytes)) return write(bytes)
          const place = chunkPlace(bytes)
          sent.set(place, (sent.get(place) ?? 0) + 1)
          if (++chunks !== 3) return write(bytes)
          const flipped = bytes.slice()
          flipped[flipped.length - 100]! ^= 0x40
          return write(flipped)
        }
      })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)])
      const incoming = yield* Queue.take(transfers)
      yield* outgoing.result
      expect((yield* incoming.result).bytes).toBe(4 * 1024 * 1024 + 15)
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      // the third chunk went twice; every chunk before it once
      const again = [...sent].filter(([, n]) => n > 1).map(([place]) => place)
      const third = [...sent.keys()][2]!
      expect(again).toContain(third)
      for (const place of [...sent.keys()].slice(0, 2)) expect(sent.get(place)).toBe(1)
    }))

  it.scopedLive("a chunk corrupted every time it is sent fails Corrupt on both sides after maxRetries, nothing of that file kept", () =>
    Effect.gen(function*() {
      let third: string | undefined
      let seen = 0
      let copies = 0
      const { sender, receiver } = yield* Peers.make({
        receiver: { maxRetries: 2 },
        onWrite: (bytes, write) => {
          if (!isChunk(bytes)) return write(bytes)
          const place = chunkPlace(bytes)
          if (++seen === 3) third = place
          if (place !== third) return write(bytes)
          copies++
          const flipped = bytes.slice()
          flipped[flipped.length - 100]! ^= 0x40
          return write(flipped)
        }
      })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)])
      const incoming = yield* Queue.take(transfers)
      expect(Peers.failure(yield* Effect.either(incoming.result))).toMatchObject({ _tag: "SpacedropError", reason: "Corrupt", path: "f/big.bin" })
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ _tag: "SpacedropError", reason: "Corrupt", by: "receiver" })
      // sent once, then asked for again twice
      expect(copies).toBe(3)
      yield* expectNothingPartial(target)
    }))

  it.scopedLive("a source file changed while it is sent: SourceChanged on both sides, the receiver keeps nothing of it", () =>
    Effect.gen(function*() {
      const source = yield* Peers.tempDir()
      const folder = yield* files(source)
      let chunks = 0
      const { sender, receiver } = yield* Peers.make({
        onWrite: (bytes, write) =>
          isChunk(bytes) && ++chunks === 2
            // the user saves over the end of the file (same size) while its start is on the wire
            ? Effect.zipRight(
              Effect.promise(async () => {
                const handle = await fs.open(nodePath.join(folder, "big.bin"), "r+")
                await handle.write(Buffer.from("edited"), 0, 6, 4 * 1024 * 1024 - 6)
                await handle.close()
              }),
              write(bytes)
            )
            : write(bytes)
      })
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [folder])
      const incoming = yield* Queue.take(transfers)
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ _tag: "SpacedropError", reason: "SourceChanged", by: "sender", path: "f/big.bin" })
      expect(Peers.failure(yield* Effect.either(incoming.result))).toMatchObject({ _tag: "SpacedropError", reason: "SourceChanged", by: "sender" })
      yield* expectNothingPartial(target)
    }))

  it.scopedLive("a source file changed between the offer and its turn is refused before a byte of it is sent", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const folder = yield* files(source)
      const target = yield* Peers.tempDir()
      const offers = yield* receiver.spacedrop.offers
      const transfers = yield* Queue.unbounded<Spacedrop.Transfer>()
      yield* Effect.forkScoped(Stream.runForEach(offers, (offer) =>
        Effect.gen(function*() {
          yield* Effect.promise(() => fs.appendFile(nodePath.join(folder, "big.bin"), "more"))
          yield* Queue.offer(transfers, yield* offer.accept(target))
        })))
      const outgoing = yield* sender.spacedrop.send(receiver.id, [folder])
      const incoming = yield* Queue.take(transfers)
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ reason: "SourceChanged", path: "f/big.bin" })
      expect(Peers.failure(yield* Effect.either(incoming.result))).toMatchObject({ reason: "SourceChanged", by: "sender" })
      yield* expectNothingPartial(target)
    }))

  it.scopedLive("a sender that stalls mid-transfer is timed out by the receiver: Timeout there, Closed here, both interrupted (resumable); cancelled, nothing partial is kept", () =>
    Effect.gen(function*() {
      const gate = yield* holdAfter(2)
      const { sender, receiver } = yield* Peers.make({ onWrite: gate.onWrite, receiver: { idleTimeout: "300 millis" } })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 0 })
      const incoming = yield* Queue.take(transfers)
      expect(Peers.failure(yield* Effect.either(incoming.result))).toMatchObject({ _tag: "SpacedropError", reason: "Timeout" })
      // a quiet sender is most likely a connection gone half-open: the receiver ends its side and keeps what it verified
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ _tag: "SpacedropError", reason: "Closed" })
      expect((yield* receiver.spacedrop.transfers).map((p) => p.state)).toEqual(["interrupted"])
      expect((yield* sender.spacedrop.transfers).map((p) => p.state)).toEqual(["interrupted"])
      yield* receiver.spacedrop.cancel(incoming.id)
      yield* expectNothingPartial(target)
    }))

  it.scopedLive("the connection dropped mid-transfer: both sides fail typed (never an interruption) and show it interrupted; cancelled by id, nothing partial is kept", () =>
    Effect.gen(function*() {
      const gate = yield* holdAfter(3)
      const { network, sender, receiver } = yield* Peers.make({ onWrite: gate.onWrite })
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const transfers = yield* Peers.acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)], { reconnectAttempts: 0 })
      const incoming = yield* Queue.take(transfers)
      yield* gate.held
      yield* network.disconnect(sender.id, receiver.id)
      expect(Peers.failure(yield* Effect.either(incoming.result))).toMatchObject({ _tag: "SpacedropError", reason: "Closed" })
      const mine = Peers.failure(yield* Effect.either(outgoing.result))
      // the sender learns it from its stream: a reset, or the receiver's side closing
      expect(mine._tag === "TransportError" ? mine.reason : mine._tag === "SpacedropError" ? mine.reason : mine._tag).toMatch(/^(Reset|Closed)$/)
      expect((yield* receiver.spacedrop.transfers).map((p) => p.state)).toEqual(["interrupted"])
      expect((yield* sender.spacedrop.transfers).map((p) => p.state)).toEqual(["interrupted"])
      yield* receiver.spacedrop.cancel(incoming.id)
      yield* sender.spacedrop.cancel(outgoing.id)
      expect(yield* receiver.spacedrop.transfers).toEqual([])
      expect(yield* sender.spacedrop.transfers).toEqual([])
      yield* expectNothingPartial(target)
    }))

  it.scopedLive("a sender that cancels before the answer withdraws its offer: a late accept gets Expired", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const offers = yield* receiver.spacedrop.offers
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)])
      const offer = Option.getOrThrow(yield* Stream.runHead(offers))
      yield* outgoing.cancel
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ reason: "Cancelled", by: "sender" })
      // once the receiver's handler has seen the withdrawal and let go of the stream
      yield* receiver.host.streams.pipe(
        Effect.repeat({ until: (held) => held.length === 0, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("5 seconds")
      )
      expect(Peers.failure(yield* Effect.either(offer.accept(target)))).toMatchObject({ _tag: "DecisionError", reason: "Expired" })
      expect(yield* Peers.snapshot(target)).toEqual({})
    }))

  it.scopedLive("an offer whose connection drops before the answer expires: a late accept gets Expired, never a transfer that hangs", () =>
    Effect.gen(function*() {
      const { network, sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const offers = yield* receiver.spacedrop.offers
      const outgoing = yield* sender.spacedrop.send(receiver.id, [yield* files(source)])
      const offer = Option.getOrThrow(yield* Stream.runHead(offers))
      yield* network.disconnect(sender.id, receiver.id)
      const mine = Peers.failure(yield* Effect.either(outgoing.result))
      expect(mine._tag === "TransportError" || mine._tag === "SpacedropError" ? mine.reason : mine._tag).toMatch(/^(Reset|Closed)$/)
      yield* receiver.host.streams.pipe(
        Effect.repeat({ until: (held) => held.length === 0, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("5 seconds")
      )
      expect(Peers.failure(yield* Effect.either(offer.accept(target)))).toMatchObject({ _tag: "DecisionError", reason: "Expired" })
      expect(yield* Peers.snapshot(target)).toEqual({})
    }))

  it.scopedLive("offers past maxPendingOffers are refused Busy while the others wait", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make({ receiver: { maxPendingOffers: 1 } })
      const source = yield* Peers.tempDir()
      const offers = yield* receiver.spacedrop.offers
      const folder = yield* files(source)
      yield* sender.spacedrop.send(receiver.id, [folder])
      yield* Stream.runHead(offers)
      const second = yield* sender.spacedrop.send(receiver.id, [folder])
      expect(Peers.failure(yield* Effect.either(second.result))).toMatchObject({ reason: "Busy", by: "receiver" })
    }))

  it.scopedLive("the sender keeps at most its window unacknowledged: it stops there, and goes on as acknowledgements come", () =>
    Effect.gen(function*() {
      const windowBytes = 4 * 1024 * 1024
      const { network, sender } = yield* Peers.make()
      const { raw, received, acks } = yield* rawReceiver(network)
      yield* sender.host.connect(`memory://${raw.id}`)
      const source = yield* Peers.tempDir()
      const size = 24 * 1024 * 1024
      yield* Effect.promise(() => fs.writeFile(nodePath.join(source, "big.bin"), randomBytes(size)))
      const outgoing = yield* sender.spacedrop.send(raw.id, [nodePath.join(source, "big.bin")], { windowBytes })
      const chunk = 64 * 1024
      /** What the raw receiver has read once the sender has stopped sending (nothing more for 300 ms). */
      const settled = Effect.gen(function*() {
        let last = -1
        while (true) {
          const now = yield* Ref.get(received)
          if (now === last) return now
          last = now
          yield* Effect.sleep("300 millis")
        }
      })
      const first = yield* settled
      expect(first).toBeGreaterThan(windowBytes - chunk)
      expect(first).toBeLessThanOrEqual(windowBytes)
      // an acknowledgement of 3 MiB lets exactly that much more through
      yield* Queue.offer(acks, 3 * 1024 * 1024)
      const second = yield* settled
      expect(second).toBeGreaterThan(first)
      expect(second).toBeLessThanOrEqual(3 * 1024 * 1024 + windowBytes)
      yield* outgoing.cancel
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ reason: "Cancelled", by: "sender" })
    }))

  it.scopedLive("a receiver that stops acknowledging fails the send with Timeout once the window is full for idleTimeout", () =>
    Effect.gen(function*() {
      const { network, sender } = yield* Peers.make()
      const { raw } = yield* rawReceiver(network)
      yield* sender.host.connect(`memory://${raw.id}`)
      const source = yield* Peers.tempDir()
      yield* Effect.promise(() => fs.writeFile(nodePath.join(source, "big.bin"), randomBytes(8 * 1024 * 1024)))
      const outgoing = yield* sender.spacedrop.send(raw.id, [nodePath.join(source, "big.bin")], { windowBytes: 4 * 1024 * 1024, idleTimeout: "500 millis", reconnectAttempts: 0 })
      expect(Peers.failure(yield* Effect.either(outgoing.result))).toMatchObject({ _tag: "SpacedropError", reason: "Timeout", detail: expect.stringMatching(/acknowledgement/) })
    }))
})
