import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as ByteQueue from "./ByteQueue.js"

const bytes = (...values: Array<number>) => new Uint8Array(values)

describe("ByteQueue", () => {
  it("reads across pieces in order: a u32 split over three pieces, views, takes, drops, indexOf and drain after reads", () => {
    const queue = new ByteQueue.ByteQueue()
    for (const piece of [bytes(0, 0), bytes(), bytes(1), bytes(2, 30, 31, 32), bytes(33, 0x0a, 34)]) queue.push(piece)
    expect(queue.length).toBe(10)
    expect(queue.peekUint32()).toBe(0x102)
    queue.drop(4)
    expect(queue.indexOf(0x0a)).toBe(4)
    expect(queue.views(2)).toEqual([bytes(30, 31)])
    // a piece read whole is handed on as it is; a read across pieces is a copy of its own
    const whole = bytes(20, 21)
    expect(queue.take(3)).toEqual(bytes(32, 33, 0x0a))
    queue.push(whole)
    expect(queue.take(1)).toEqual(bytes(34))
    expect(queue.take(2)).toBe(whole)
    expect(queue.length).toBe(0)
    queue.push(bytes(1, 2, 3))
    queue.drop(1)
    expect(queue.drain()).toEqual([bytes(2, 3)])
    expect(queue.length).toBe(0)
  })

  it("a short take never shares the larger piece it came from", () => {
    const queue = new ByteQueue.ByteQueue()
    const piece = new Uint8Array(64 * 1024)
    queue.push(piece)
    expect(queue.take(10).buffer).not.toBe(piece.buffer)
  })

  it("keeps thousands of small reads without growing its list of pieces", () => {
    const queue = new ByteQueue.ByteQueue()
    for (let i = 0; i < 10_000; i++) {
      queue.push(bytes(i & 0xff))
      if (i % 2 === 1) expect(queue.views(2).reduce((n, v) => n + v.length, 0)).toBe(2)
    }
    expect(queue.length).toBe(0)
    expect((queue as unknown as { pieces: Array<Uint8Array> }).pieces.length).toBeLessThanOrEqual(130)
  })

  it.effect("its filler pulls a stream's deliveries in until the stream ends, and says so after", () =>
    Effect.scoped(Effect.gen(function*() {
      const queue = new ByteQueue.ByteQueue()
      const pull = yield* Stream.toPull(Stream.fromChunks(Chunk.make(bytes(1), bytes(2, 3)), Chunk.make(bytes(4))))
      const filler = ByteQueue.filler(pull, queue)
      expect(yield* filler.more).toBe(true)
      expect(queue.length).toBe(3)
      expect(yield* filler.more).toBe(true)
      expect(yield* filler.more).toBe(false)
      expect(filler.ended()).toBe(true)
      expect(yield* filler.more).toBe(false)
      expect(queue.drain()).toEqual([bytes(1), bytes(2, 3), bytes(4)])
    })))
})
