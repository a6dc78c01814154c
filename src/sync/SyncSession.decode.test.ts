import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Binary from "../crdt/Binary.js"
import * as Operation from "../crdt/Operation.js"
import * as Model from "../engine/Model.js"
import * as Engines from "../engine/testing/Engines.js"
import * as Snapshot from "../engine/testing/Snapshot.js"
import * as SyncProtocol from "./SyncProtocol.js"
import * as SyncSession from "./SyncSession.js"
import * as ChannelPair from "./testing/ChannelPair.js"

// Hostile frames from a peer: each ends the session with a typed violation (a Malformed
// ProtocolError, which gets the peer disconnected), never a defect, and writes nothing.

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, rank: Schema.Number }))
const options: SyncSession.Options = { library: "lib-1", batchSize: 50, window: 2 }
const TS = "018bcfe568000000"

const against = (frames: ReadonlyArray<Uint8Array>) =>
  Effect.gen(function*() {
    const b = yield* Engines.open({ models: [notes], node: "peer-b" })
    yield* b.mutate([notes.create("n1", { title: "mine", rank: 1 })])
    const before = yield* Snapshot.snapshot(b)
    const pair = yield* ChannelPair.make(64)
    const session = yield* Effect.fork(SyncSession.run(b, pair.right, { ...options, remote: "peer-a" }))
    for (const frame of frames) yield* pair.left.send(frame)
    const exit = yield* Fiber.await(session)
    const after = yield* Snapshot.snapshot(b)
    return { exit, unchanged: JSON.stringify(after) === JSON.stringify(before) }
  })

const hello = SyncProtocol.encode({ _tag: "Hello", node: "peer-a" as any, library: "lib-1", entries: new Map(), more: false })

/** The exit's failure: a typed error, or `Die` for a defect. */
const failureOf = (exit: Exit.Exit<void, unknown>) =>
  Exit.isFailure(exit) ? (exit.cause._tag === "Fail" ? exit.cause.error : { _tag: exit.cause._tag }) : { _tag: "Success" }

const malformed = { _tag: "ProtocolError", reason: "Malformed" }

describe("SyncSession: hostile frames are violations, not defects", () => {
  it.scopedLive("a map {toString: 1} where the protocol expects a number or a string", () =>
    Effect.gen(function*() {
      const toString = { toString: 1 }
      const row = (over: Record<number, unknown>) => {
        const r: Array<unknown> = [0, 0, 1, TS, "notes", "r1", { title: "x", rank: 1 }]
        for (const [i, v] of Object.entries(over)) r[Number(i)] = v
        return r
      }
      const frames = [
        Binary.encode([SyncProtocol.VERSION, toString]), // the message type
        Binary.encode([toString, 0, "peer-a", "lib-1", new Uint8Array(0), false]), // the version
        Binary.encode([SyncProtocol.VERSION, 1, [["peer-a"], [row({ 0: toString })]], false]), // an operation's kind
        Binary.encode([SyncProtocol.VERSION, 1, [["peer-a"], [row({ 1: toString })]], false]), // its origin index
        Binary.encode([SyncProtocol.VERSION, 1, [["peer-a"], [row({ 4: toString })]], false]), // its model
        Binary.encode([SyncProtocol.VERSION, 1, [[toString], [row({})]], false]) // an origin
      ]
      for (const frame of frames) {
        const { exit, unchanged } = yield* against(frame === frames[0] || frame === frames[1] ? [frame] : [hello, frame])
        const failure = failureOf(exit)
        // another version is a typed SyncError, not a violation; everything else is Malformed
        if (frame === frames[1]) expect(failure).toMatchObject({ _tag: "SyncError", reason: "VersionMismatch" })
        else expect(failure).toMatchObject(malformed)
        expect(unchanged).toBe(true)
      }
    }))

  it.scopedLive("the 105-byte frame of twenty nested array32 headers, as the first frame or after Hello", () =>
    Effect.gen(function*() {
      const frame = Uint8Array.from([
        0x94, 0x01, 0x01,
        ...Array.from({ length: 20 }, () => [0xdd, 0x01, 0xff, 0xff, 0xff]).flat(),
        0xc0, 0xc2
      ])
      for (const frames of [[frame], [hello, frame]]) {
        const { exit, unchanged } = yield* against(frames)
        expect(failureOf(exit)).toMatchObject(malformed)
        expect(unchanged).toBe(true)
      }
    }))

  it.scopedLive("an op batch holding a lone surrogate (CESU-8 bytes) in a string is refused, not turned into U+FFFD", () =>
    Effect.gen(function*() {
      const valid = Binary.encode([SyncProtocol.VERSION, 1, Operation.toBatchWire([
        { _tag: "Create", origin: "peer-a", seq: 1, ts: TS, model: "notes", record: "rX", fields: { title: "X", rank: 1 } }
      ]), false])
      // the title "X" is the byte 0x58 after its fixstr header 0xa1: make it a 3-byte string holding U+D800 as CESU-8
      const at = valid.findIndex((b, i) => b === 0xa1 && valid[i + 1] === 0x58)
      const frame = Uint8Array.from([...valid.subarray(0, at), 0xa3, 0xed, 0xa0, 0x80, ...valid.subarray(at + 2)])
      expect(Either.isLeft(Binary.decode(frame))).toBe(true)
      const { exit, unchanged } = yield* against([hello, frame])
      expect(failureOf(exit)).toMatchObject(malformed)
      expect(unchanged).toBe(true)
    }))
})
