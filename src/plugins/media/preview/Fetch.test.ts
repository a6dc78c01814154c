import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as nodePath from "node:path"
import sharp from "sharp"
import * as Framing from "../../../transport/Framing.js"
import type * as Hosts from "../../testing/Hosts.js"
import * as Plugin from "../../Plugin.js"
import * as MediaModels from "../Models.js"
import { sha256, tempDir, write } from "../testing/Files.js"
import * as Wire from "./internal/wire.js"
import * as Models from "./Models.js"
import * as Protocol from "./Protocol.js"
import * as Nodes from "./testing/Nodes.js"

const L = Nodes.LIBRARY
const COUNT = 12
// small Gets, two in flight: a fetch of COUNT thumbnails is several Gets pipelined on one stream
const PIPELINE = { chunk: 4, window: 2 }

/**
 * Alice makes COUNT thumbnails (each picture of its own size, so each has its own hash); dave
 * gets their records (as sync would bring them) and none of the bytes, and is not connected to
 * alice: he can only fetch from the peers a test gives him. Returns the bytes by hash, for those peers.
 */
const setup = (members: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const net = yield* Nodes.network()
    const alice = yield* net.node("alice", members)
    const root = yield* tempDir()
    for (let i = 0; i < COUNT; i++) {
      const png = yield* Effect.promise(() =>
        sharp({ create: { width: 16 + i, height: 16, channels: 3, background: { r: 20 * i, g: 90, b: 200 - 10 * i } } }).png().toBuffer()
      )
      yield* write(nodePath.join(root, `p${i}.png`), png)
    }
    yield* Stream.runDrain(alice.media.index(L, { id: "loc1", name: "Pictures" }, root))
    yield* Stream.runDrain(alice.preview.generate(L))
    const records = yield* Effect.orDie(alice.engine.query(Models.thumbnails))
    expect(records.filter((r) => r.state === "ready")).toHaveLength(COUNT)
    const cache = yield* alice.preview.cache(L)
    const bytes = new Map<string, Uint8Array>()
    for (const r of records) bytes.set(r.hash!, Option.getOrThrow(yield* Effect.orDie(cache.get(r.hash!))))
    const dave = yield* net.node("dave", members, { preview: { fetchPipeline: PIPELINE } })
    yield* dave.engine.mutate([
      ...(yield* Effect.orDie(alice.engine.query(MediaModels.files))).map(({ id, ...v }) => MediaModels.files.create(id, v)),
      ...records.map(({ id, ...v }) => Models.thumbnails.create(id, v))
    ]).pipe(Effect.orDie)
    return { net, dave, bytes }
  })

/** An honest server (the plugin's own `Wire.serve`) on a bare host, counting streams, Gets and thumbnails read. */
const honest = (host: Hosts.Host, bytes: ReadonlyMap<string, Uint8Array>) =>
  Effect.gen(function*() {
    const counts = { streams: 0, gets: 0, read: 0 }
    yield* host.host.register(Plugin.make({
      name: "honest",
      ...Protocol.preview,
      handle: (stream, context) => {
        counts.streams++
        return Wire.serve(
          stream,
          context,
          (hashes) => Effect.sync(() => (counts.gets++, new Set(hashes.filter((h) => bytes.has(h))))),
          (hashes, from, each) =>
            Effect.sync(() => {
              let i = from
              while (i < hashes.length) {
                const hash = hashes[i++]
                if (hash !== undefined) counts.read++
                if (!each(hash, hash === undefined ? undefined : bytes.get(hash))) break
              }
              return i
            })
        )
      }
    }))
    return counts
  })

/**
 * A server that answers its first `good` thumbnails truly, then lies once (wrong bytes) and falls silent, or drops
 * the stream; or ("v1") answers as version 1 did: a JSON header, then the bytes in a frame of their own.
 */
const failing = (host: Hosts.Host, bytes: ReadonlyMap<string, Uint8Array>, good: number, how: "lie" | "end" | "reset" | "v1") =>
  Effect.gen(function*() {
    const counts = { streams: 0, answered: 0 }
    const encoder = new TextEncoder()
    yield* host.host.register(Plugin.make({
      name: how,
      ...Protocol.preview,
      handle: (stream) =>
        Effect.gen(function*() {
          counts.streams++
          const reader = yield* Framing.reader(stream.source, { maxFrameBytes: Protocol.MAX_MESSAGE_BYTES })
          const framed = Framing.make(stream, Protocol.MAX_THUMBNAIL_BYTES)
          while (true) {
            const frame = yield* reader.frame
            if (Option.isNone(frame)) return yield* stream.end
            const get = JSON.parse(new TextDecoder().decode(frame.value)) as { hashes: Array<string> }
            for (const hash of get.hashes) {
              if (counts.answered >= good && how === "reset") return yield* stream.reset
              // ends its side and stays (a handler that returns has its stream closed, in-flight bytes and all)
              if (counts.answered >= good && how === "end") return yield* Effect.zipRight(stream.end, Effect.never)
              const truth = counts.answered < good ? bytes.get(hash)! : new Uint8Array([1, 2, 3, 4])
              counts.answered++
              if (how === "v1") {
                yield* framed.send(encoder.encode(JSON.stringify({ version: 1, type: "Thumbnail", hash, size: truth.length })))
                yield* framed.send(truth)
              } else {
                yield* stream.write(Wire.answerFrame(hash, truth))
              }
              // one lie, then silence: the reader must see it and stop
              if (counts.answered > good) return yield* Effect.never
            }
          }
        })
    }))
    return counts
  })

/** A server that reads the Gets and never answers (nor ends). */
const silent = (host: Hosts.Host) =>
  Effect.gen(function*() {
    const counts = { streams: 0 }
    yield* host.host.register(Plugin.make({
      name: "silent",
      ...Protocol.preview,
      handle: (stream) =>
        Effect.gen(function*() {
          counts.streams++
          yield* Stream.runDrain(stream.source)
          return yield* Effect.never
        })
    }))
    return counts
  })

/** Every thumbnail is in dave's cache, intact. */
const holdsAll = (dave: Nodes.Node, bytes: ReadonlyMap<string, Uint8Array>) =>
  Effect.gen(function*() {
    const cache = yield* dave.preview.cache(L)
    expect([...(yield* cache.hashes)].sort()).toEqual([...bytes.keys()].sort())
    for (const hash of bytes.keys()) expect(sha256(Option.getOrThrow(yield* Effect.orDie(cache.get(hash))))).toBe(hash)
  })

describe("Preview fetch, pipelined", () => {
  it.scopedLive("many thumbnails come over one stream of the peer, in several Gets", () =>
    Effect.gen(function*() {
      const members = ["alice", "bert", "dave"]
      const { net, dave, bytes } = yield* setup(members)
      const bert = yield* net.bare("bert", members)
      const counts = yield* honest(bert, bytes)
      yield* dave.connect(bert)

      const progress = yield* Stream.runCollect(dave.preview.fetchAll(L))
      expect([...progress].at(-1)).toEqual({ total: COUNT, fetched: COUNT, unavailable: 0 })
      expect(counts).toEqual({ streams: 1, gets: Math.ceil(COUNT / PIPELINE.chunk), read: COUNT })
      yield* holdsAll(dave, bytes)
    }), { timeout: 60_000 })

  it.scopedLive("a lying answer in the middle of a pipelined fetch is refused; what came before is kept, the rest asked of the next peer", () =>
    Effect.gen(function*() {
      // "abel" sorts before "bert": he is asked first
      const members = ["abel", "alice", "bert", "dave"]
      const { net, dave, bytes } = yield* setup(members)
      const abel = yield* net.bare("abel", members)
      const bert = yield* net.bare("bert", members)
      // the lie is the 6th answer: in the second Get, while the third is already asked
      const liar = yield* failing(abel, bytes, 5, "lie")
      const counts = yield* honest(bert, bytes)
      yield* dave.connect(abel)
      yield* dave.connect(bert)

      const progress = yield* Stream.runCollect(dave.preview.fetchAll(L))
      expect([...progress].at(-1)).toEqual({ total: COUNT, fetched: COUNT, unavailable: 0 })
      expect(liar).toEqual({ streams: 1, answered: 6 })
      // the five true ones were kept: bert is asked only for the other seven (the lied one included)
      expect(counts.read).toBe(COUNT - 5)
      expect(counts.streams).toBe(1)
      yield* holdsAll(dave, bytes)
    }), { timeout: 60_000 })

  it.scopedLive("answers are binary frames, as Protocol.ts lays them out: version, kind, hash, then the bytes of a Thumbnail", () =>
    Effect.gen(function*() {
      const members = ["alice", "bert", "dave"]
      const { net, dave, bytes } = yield* setup(members)
      const bert = yield* net.bare("bert", members)
      yield* honest(bert, bytes)
      yield* dave.connect(bert)
      const [held] = [...bytes.keys()]
      const absent = "ab".repeat(32)
      const stream = yield* dave.host.open(bert.id, Protocol.preview, L)
      yield* Framing.make(stream).send(new TextEncoder().encode(JSON.stringify({ version: 2, type: "Get", hashes: [held, absent] })))
      yield* stream.end
      const reader = yield* Framing.reader(stream.source, { maxFrameBytes: Protocol.MAX_ANSWER_BYTES })
      const thumbnail = Option.getOrThrow(yield* reader.frame)
      expect([...thumbnail.subarray(0, 2)]).toEqual([2, 1])
      expect(Buffer.from(thumbnail.subarray(2, 34)).toString("hex")).toBe(held)
      expect(thumbnail.subarray(34)).toEqual(bytes.get(held!))
      const missing = Option.getOrThrow(yield* reader.frame)
      expect([...missing.subarray(0, 2)]).toEqual([2, 0])
      expect(Buffer.from(missing.subarray(2)).toString("hex")).toBe(absent)
      expect(yield* reader.frame).toEqual(Option.none())
    }), { timeout: 60_000 })

  it.scopedLive("a peer answering as version 1 did (a JSON header, then the bytes) is refused, and the next one asked for all", () =>
    Effect.gen(function*() {
      const members = ["abel", "alice", "bert", "dave"]
      const { net, dave, bytes } = yield* setup(members)
      const abel = yield* net.bare("abel", members)
      const bert = yield* net.bare("bert", members)
      const old = yield* failing(abel, bytes, COUNT, "v1")
      const counts = yield* honest(bert, bytes)
      yield* dave.connect(abel)
      yield* dave.connect(bert)

      const progress = yield* Stream.runCollect(dave.preview.fetchAll(L))
      expect([...progress].at(-1)).toEqual({ total: COUNT, fetched: COUNT, unavailable: 0 })
      expect(old.streams).toBe(1)
      expect(counts.read).toBe(COUNT)
      yield* holdsAll(dave, bytes)
    }), { timeout: 60_000 })

  it.scopedLive("a peer that ends the stream mid-fetch: what it sent is kept, the rest come from another", () =>
    Effect.gen(function*() {
      const members = ["abel", "alice", "bert", "dave"]
      const { net, dave, bytes } = yield* setup(members)
      const abel = yield* net.bare("abel", members)
      const bert = yield* net.bare("bert", members)
      const dropper = yield* failing(abel, bytes, 7, "end")
      const counts = yield* honest(bert, bytes)
      yield* dave.connect(abel)
      yield* dave.connect(bert)

      const progress = yield* Stream.runCollect(dave.preview.fetchAll(L))
      expect([...progress].at(-1)).toEqual({ total: COUNT, fetched: COUNT, unavailable: 0 })
      expect(dropper).toEqual({ streams: 1, answered: 7 })
      expect(counts.read).toBe(COUNT - 7)
      yield* holdsAll(dave, bytes)
    }), { timeout: 60_000 })

  it.scopedLive("a peer that resets the stream mid-fetch: every thumbnail still comes, from another", () =>
    Effect.gen(function*() {
      const members = ["abel", "alice", "bert", "dave"]
      const { net, dave, bytes } = yield* setup(members)
      const abel = yield* net.bare("abel", members)
      const bert = yield* net.bare("bert", members)
      const dropper = yield* failing(abel, bytes, 7, "reset")
      const counts = yield* honest(bert, bytes)
      yield* dave.connect(abel)
      yield* dave.connect(bert)

      const progress = yield* Stream.runCollect(dave.preview.fetchAll(L))
      expect([...progress].at(-1)).toEqual({ total: COUNT, fetched: COUNT, unavailable: 0 })
      expect(dropper.streams).toBe(1)
      // a reset may discard what was in flight: bert gives what abel's answers did not
      expect(counts.read).toBeGreaterThanOrEqual(COUNT - 7)
      yield* holdsAll(dave, bytes)
    }), { timeout: 60_000 })

  it.scopedLive("a peer that falls silent is given up after the answer timeout (one watchdog for the stream), and the next one asked", () =>
    Effect.gen(function*() {
      const members = ["abel", "alice", "bert", "dave"]
      const { net, dave, bytes } = yield* setup(members)
      const abel = yield* net.bare("abel", members)
      const bert = yield* net.bare("bert", members)
      const mute = yield* silent(abel)
      const counts = yield* honest(bert, bytes)
      yield* dave.connect(abel)
      yield* dave.connect(bert)

      const progress = yield* Stream.runCollect(dave.preview.fetchAll(L))
      expect([...progress].at(-1)).toEqual({ total: COUNT, fetched: COUNT, unavailable: 0 })
      expect(mute.streams).toBe(1)
      expect(counts.read).toBe(COUNT)
      yield* holdsAll(dave, bytes)
    }), { timeout: 60_000 })
})
