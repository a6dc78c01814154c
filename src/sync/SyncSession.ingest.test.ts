import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Operation from "../crdt/Operation.js"
import * as Model from "../engine/Model.js"
import * as Engines from "../engine/testing/Engines.js"
import * as Snapshot from "../engine/testing/Snapshot.js"
import * as SyncProtocol from "./SyncProtocol.js"
import * as SyncSession from "./SyncSession.js"
import * as ChannelPair from "./testing/ChannelPair.js"

// Batches a peer sent back to back, already read from the channel when the first is ingested,
// are ingested together: one transaction, each batch still acknowledged.

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, rank: Schema.Number }))

const op = (seq: number): Operation.Operation => ({
  _tag: "Create",
  origin: "peer-a" as any,
  seq,
  ts: `018bcfe568${seq.toString(16).padStart(6, "0")}` as any,
  model: "notes" as any,
  record: `r${seq}`,
  fields: { title: `t${seq}`, rank: seq }
})

const hello = SyncProtocol.encode({ _tag: "Hello", node: "peer-a" as any, library: "lib-1", entries: new Map(), more: false })
const ops = (seqs: ReadonlyArray<number>, hasMore: boolean) => SyncProtocol.encode({ _tag: "Ops", ops: seqs.map(op), hasMore })

/** Runs B's session against frames already queued, then ends A's side; B's events and the frames B sent. */
const against = (frames: ReadonlyArray<Uint8Array>, options: Partial<SyncSession.Options> = {}) =>
  Effect.gen(function*() {
    const b = yield* Engines.open({ models: [notes], node: "peer-b" })
    const pair = yield* ChannelPair.make(64)
    for (const frame of frames) yield* pair.left.send(frame)
    yield* pair.left.end
    const events: Array<SyncSession.Event> = []
    const exit = yield* Effect.exit(SyncSession.run(b, pair.right, {
      library: "lib-1",
      onEvent: (e) => Effect.sync(() => void events.push(e)),
      ...options
    }))
    const sent = yield* Effect.fork(Stream.runCollect(pair.left.frames))
    yield* pair.right.end
    const messages = Chunk.toArray(yield* Fiber.join(sent)).map((frame) => Either.getOrThrow(SyncProtocol.decode(frame))._tag)
    return { exit, events, messages, log: (yield* Snapshot.snapshot(b)).log.length }
  })

describe("SyncSession: batches received back to back", () => {
  it.scopedLive("are ingested in one transaction, and each is acknowledged", () =>
    Effect.gen(function*() {
      const { events, exit, log, messages } = yield* against([hello, ops([1, 2], true), ops([3, 4], true), ops([5], false)])
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(log).toBe(5)
      const received = events.filter((e) => e._tag === "Received")
      expect(received).toEqual([{ _tag: "Received", ops: 5, applied: 5, hasMore: false }])
      expect(messages.filter((m) => m === "Ack")).toHaveLength(3)
    }))

  it.scopedLive("up to maxIngestOps: past it, the next batch is ingested on its own", () =>
    Effect.gen(function*() {
      const { events, exit, log, messages } = yield* against([hello, ops([1, 2], true), ops([3, 4], true), ops([5], false)], { maxIngestOps: 4 })
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(log).toBe(5)
      expect(events.filter((e) => e._tag === "Received").map((e) => (e as { ops: number }).ops)).toEqual([4, 1])
      expect(messages.filter((m) => m === "Ack")).toHaveLength(3)
    }))

  it.scopedLive("a batch that fails fails those ingested with it: nothing of them is written", () =>
    Effect.gen(function*() {
      // the second batch leaves a gap after 2
      const { exit, log, messages } = yield* against([hello, ops([1, 2], true), ops([4], false)])
      expect(Exit.isFailure(exit)).toBe(true)
      expect(log).toBe(0)
      expect(messages).not.toContain("Ack")
    }))

  it.scopedLive("a message other than Ops behind the batches is handled after them", () =>
    Effect.gen(function*() {
      const vector = SyncProtocol.encode({ _tag: "Vector", entries: new Map(), more: false })
      const { events, exit, log } = yield* against([hello, ops([1, 2], true), vector, ops([3], false)])
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(log).toBe(3)
      expect(events.filter((e) => e._tag === "Received").map((e) => (e as { ops: number }).ops)).toEqual([2, 1])
    }))
})
