/**
 * `npm run bench -- media` (only when named: it writes and reads a 1 GiB
 * file): remote media over the real libp2p transport (TCP loopback, Noise,
 * Yamux), both peers in this process (so each figure and its baseline share
 * the same event loop and cores), each figure beside a baseline measured in
 * the same run:
 *
 * - reading a large remote file (`WEFT_BENCH_MEDIA_BYTES`, default 1 GiB)
 *   through `Media.read` (presence picks the peer; the server reads the
 *   file from disk and checks it against its record), beside one raw
 *   encrypted stream on the same connection carrying as many bytes from
 *   memory, in chunks of the same size; goal ≥ 0.8;
 * - time to the first byte of a random 64 KiB range of that file read from
 *   the remote peer (`WEFT_BENCH_MEDIA_RANGES` reads, default 200), p50 and
 *   p99, beside the ping plugin's round trip on the same connection (pings
 *   and reads taken in turns, `TURN` at a time, so both see the same load); goal
 *   p50 ≤ 3× the ping's p50 (shown too: the first byte of a new raw stream,
 *   how much of it is opening a stream);
 * - indexing `WEFT_BENCH_MEDIA_FILES` small files (default 20 000, of
 *   1–4 KiB, 100 to a folder) into a library on disk (walk, stat, SHA-256,
 *   records written in batches), beside walking the same tree and hashing
 *   every file with node's crypto one at a time (`find | sha256sum`);
 *   files/s (the issue sets no goal: the ratio is reported).
 *
 * `WEFT_BENCH_MEDIA_ROUNDS` (default 2) sets the rounds of the large read
 * and of the indexing; medians are reported, with every round.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash, randomBytes } from "node:crypto"
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { readdir, readFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Engine from "../src/engine/Engine.js"
import * as Libraries from "../src/library/Libraries.js"
import * as Indexer from "../src/plugins/media/Indexer.js"
import * as Media from "../src/plugins/media/Media.js"
import * as Models from "../src/plugins/media/Models.js"
import * as Mounts from "../src/plugins/media/Mounts.js"
import * as Presence from "../src/plugins/media/Presence.js"
import * as Ping from "../src/plugins/ping/Ping.js"
import * as Plugin from "../src/plugins/Plugin.js"
import * as PluginHost from "../src/plugins/PluginHost.js"
import * as Identity from "../src/transport/Identity.js"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import { type PeerId, Transport } from "../src/transport/Transport.js"
import { type Figure, median } from "./report.js"

const LIBRARY = "bench-media"
const LOCATION = "lbench"
const CHUNK = 64 * 1024
const RANGE = 64 * 1024
/** Pings, then range reads, taken in turns of this many. */
const TURN = 20

const fromEnv = (name: string, fallback: number) => {
  const set = Number(process.env[name])
  return Number.isSafeInteger(set) && set > 0 ? set : fallback
}

/** The sizes of a run. */
export interface Settings {
  readonly bytes: number
  readonly ranges: number
  readonly files: number
  readonly rounds: number
}

export const defaults = (): Settings => ({
  bytes: fromEnv("WEFT_BENCH_MEDIA_BYTES", 1024 * 1024 * 1024),
  ranges: fromEnv("WEFT_BENCH_MEDIA_RANGES", 200),
  files: fromEnv("WEFT_BENCH_MEDIA_FILES", 20_000),
  rounds: fromEnv("WEFT_BENCH_MEDIA_ROUNDS", 2)
})

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
}
const round3 = (n: number) => Math.round(n * 1000) / 1000

/** A raw stream of `bytes` bytes from memory, the baseline of the large read. */
const SOURCE = { protocol: "/weft/bench-media-source/1.0.0", permission: "library" } as const

/** A peer on loopback: transport, host, ping, the media plugin and a raw byte source, over `engine`. */
const peer = (identity: Identity.Identity["Type"], members: ReadonlyArray<PeerId>, engine: Engine.Service, sourceBytes: number) =>
  Effect.gen(function*() {
    const transport = yield* Libp2pTransport.make({ identity, listen: ["/ip4/127.0.0.1/tcp/0"] })
    const context = yield* Layer.build(Layer.provideMerge(
      Layer.mergeAll(Ping.layer, Mounts.layer({ checkInterval: Duration.days(1) })),
      Layer.provideMerge(
        PluginHost.layer({ connectDiscovered: false }),
        Layer.merge(Layer.succeed(Transport, transport), Libraries.layerMemory([{ id: LIBRARY, name: "bench", members: [...members] }]))
      )
    ))
    const host = Context.get(context, PluginHost.PluginHost)
    const mounts = Context.get(context, Mounts.Mounts)
    const presence = yield* Presence.make().pipe(Effect.provide(context))
    const media = yield* Media.make({ engine: () => Effect.succeed(engine), chunkBytes: CHUNK }).pipe(
      Effect.provide(context),
      Effect.provideService(Presence.Presence, presence)
    )
    const block = randomBytes(CHUNK)
    yield* host.register(Plugin.make({
      name: "bench-source",
      ...SOURCE,
      handle: (stream) =>
        Effect.gen(function*() {
          for (let sent = 0; sent < sourceBytes; sent += CHUNK) yield* stream.write(block.subarray(0, Math.min(CHUNK, sourceBytes - sent)))
          yield* stream.end
        }).pipe(
          // a reader that took what it wanted (the first byte) resets the stream: the end of this source, not a failure
          Effect.catchIf((e) => e.reason === "Reset", () => Effect.void)
        )
    }))
    const [address] = yield* transport.addresses
    return { id: identity.peerId, address: address!, host, mounts, presence, media, ping: Context.get(context, Ping.Ping) }
  })

/** Counts the bytes of a stream (its source open for as long as it is read); seconds taken. */
const timed = <E>(open: Effect.Effect<Stream.Stream<Uint8Array, E>, E, Scope.Scope>) =>
  Effect.scoped(Effect.gen(function*() {
    const start = performance.now()
    let n = 0
    yield* Stream.runForEach(yield* open, (chunk) => Effect.sync(() => (n += chunk.length)))
    return { seconds: (performance.now() - start) / 1000, bytes: n }
  }))

/** Writes `bytes` random bytes at `path`, a MiB at a time. */
const writeLarge = (path: string, bytes: number) =>
  Effect.async<void, Error>((resume) => {
    const out = createWriteStream(path)
    const block = randomBytes(1024 * 1024)
    let left = bytes
    const more = () => {
      while (left > 0) {
        const n = Math.min(block.length, left)
        left -= n
        if (!out.write(block.subarray(0, n))) return void out.once("drain", more)
      }
      out.end(() => resume(Effect.void))
    }
    out.on("error", (e) => resume(Effect.fail(e)))
    more()
  })

/** A tree of `files` files of 1–4 KiB, 100 to a folder. */
const writeTree = (root: string, files: number) => {
  for (let i = 0; i < files; i++) {
    const dir = join(root, `d${Math.floor(i / 100)}`)
    if (i % 100 === 0) mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, `f${i}.bin`), randomBytes(1024 + (i * 97) % 3072))
  }
}

/** `find | sha256sum`: every regular file under `root`, hashed one at a time; how many. */
const hashTree = async (root: string): Promise<number> => {
  let count = 0
  const visit = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) await visit(path)
      else if (entry.isFile()) {
        createHash("sha256").update(await readFile(path)).digest("hex")
        count++
      }
    }
  }
  await visit(root)
  return count
}

/** The figures. */
export const run = (settings: Settings = defaults()): Effect.Effect<ReadonlyArray<Figure>, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const work = mkdtempSync(join(tmpdir(), "weft-bench-media-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(work, { recursive: true, force: true })))
    const [aliceId, bobId] = [yield* Identity.generate(), yield* Identity.generate()]
    const members = [aliceId.peerId, bobId.peerId] as Array<PeerId>
    const aliceEngine = yield* Engine.makeSqlite({ models: Models.models, node: aliceId.peerId, filename: join(work, "alice.db") })
    const bobEngine = yield* Engine.makeSqlite({ models: Models.models, node: bobId.peerId, filename: ":memory:" })
    const alice = yield* peer(aliceId, members, aliceEngine, settings.bytes)
    const bob = yield* peer(bobId, members, bobEngine, settings.bytes)

    // alice holds the large file; bob has its record (as sync would give it) and sees alice online
    const films = join(work, "films")
    mkdirSync(films)
    console.log(`media: writing ${settings.bytes} bytes`)
    yield* writeLarge(join(films, "large.bin"), settings.bytes)
    yield* Stream.runDrain(alice.media.index(LIBRARY, { id: LOCATION, name: "Films" }, films))
    const records = yield* aliceEngine.query(Models.files)
    yield* bobEngine.mutate([Models.locations.create(LOCATION, { name: "Films" }), ...records.map(({ id, ...values }) => Models.files.create(id, values))])
    const changes = yield* bob.presence.changes
    yield* bob.host.connect(alice.address)
    yield* Stream.runDrain(Stream.take(changes, 1))
    const file = { id: Models.fileId(LOCATION, "large.bin") }

    const raw = timed(Effect.map(bob.host.open(alice.id, SOURCE, LIBRARY), (s) => s.source))
    const viaMedia = timed(Effect.map(bob.media.read(LIBRARY, file), (r) => r.bytes))
    // warm-up: connection windows, the file in the page cache
    yield* raw
    yield* viaMedia
    const rawRates: Array<number> = []
    const mediaRates: Array<number> = []
    for (let i = 0; i < settings.rounds; i++) {
      const r = yield* raw
      const m = yield* viaMedia
      if (r.bytes !== settings.bytes || m.bytes !== settings.bytes) return yield* Effect.fail(new Error(`short read: raw ${r.bytes}, media ${m.bytes} of ${settings.bytes}`))
      rawRates.push(r.bytes / r.seconds / 1e6)
      mediaRates.push(m.bytes / m.seconds / 1e6)
      console.log(`media: round ${i + 1}: media ${mediaRates[i]!.toFixed(1)} MB/s, raw stream ${rawRates[i]!.toFixed(1)} MB/s`)
    }

    // time to first byte of random ranges, beside ping's round trip on the same connection, taken in
    // turns (a block of pings, then a block of reads) so that both see the same load
    const rtts: Array<number> = []
    const ttfb: Array<number> = []
    const lastStart = Math.max(0, settings.bytes - RANGE)
    for (let done = 0; done < settings.ranges; done += TURN) {
      rtts.push(...(yield* bob.ping.ping(alice.id, { count: TURN })).rtts)
      for (let i = done; i < Math.min(settings.ranges, done + TURN); i++) {
        const offset = Math.floor(Math.random() * lastStart)
        const start = performance.now()
        const reading = yield* bob.media.read(LIBRARY, file, { offset, length: RANGE })
        let first = 0
        yield* Stream.runForEach(reading.bytes, () => Effect.sync(() => {
          if (first === 0) first = performance.now() - start
        }))
        ttfb.push(first)
      }
    }
    rtts.push(...(yield* bob.ping.ping(alice.id, { count: TURN })).rtts)
    // where the time goes: a new raw stream's first byte (stream open, the host's library header, one chunk)
    const rawFirst: Array<number> = []
    for (let i = 0; i < Math.min(settings.ranges, 100); i++) {
      const start = performance.now()
      yield* Effect.scoped(Effect.flatMap(bob.host.open(alice.id, SOURCE, LIBRARY), (s) => Stream.runHead(s.source)))
      rawFirst.push(performance.now() - start)
    }

    // indexing, beside hashing the same tree
    const tree = join(work, "tree")
    console.log(`media: writing ${settings.files} small files`)
    writeTree(tree, settings.files)
    yield* Effect.promise(() => hashTree(tree)) // warm-up: the tree in the page cache
    const hashRates: Array<number> = []
    const indexRates: Array<number> = []
    for (let i = 0; i < settings.rounds; i++) {
      const hashStart = performance.now()
      const hashed = yield* Effect.promise(() => hashTree(tree))
      hashRates.push(hashed / ((performance.now() - hashStart) / 1000))
      const indexStart = performance.now()
      const progress = yield* Stream.runLast(Indexer.index(aliceEngine, { id: `ltree${i}`, name: "Tree" }, tree))
      const indexed = progress._tag === "Some" ? progress.value.added : 0
      if (indexed !== settings.files || hashed !== settings.files) return yield* Effect.fail(new Error(`indexed ${indexed}, hashed ${hashed} of ${settings.files}`))
      indexRates.push(indexed / ((performance.now() - indexStart) / 1000))
      console.log(`media: round ${i + 1}: indexing ${indexRates[i]!.toFixed(0)} files/s, hashing ${hashRates[i]!.toFixed(0)} files/s`)
    }

    return [
      {
        name: "media remote read",
        unit: "MB/s",
        value: median(mediaRates),
        baseline: median(rawRates),
        baselineName: "one raw encrypted stream on the same connection",
        goal: 0.8,
        extra: { bytes: settings.bytes, rounds: mediaRates.map(round3).join(" "), baselineRounds: rawRates.map(round3).join(" ") }
      },
      {
        name: "media range first byte p50",
        unit: "ms",
        value: median(ttfb),
        baseline: median(rtts),
        baselineName: "ping round trip p50",
        lowerIsBetter: true,
        goal: 1 / 3,
        extra: {
          p99: round3(percentile(ttfb, 0.99)),
          pingP99: round3(percentile(rtts, 0.99)),
          rawStreamFirstByteP50: round3(median(rawFirst)),
          ranges: settings.ranges
        }
      },
      {
        name: "media indexing",
        unit: "files/s",
        value: median(indexRates),
        baseline: median(hashRates),
        baselineName: "walk + sha256 of every file (node crypto)",
        extra: { files: settings.files, rounds: indexRates.map(Math.round).join(" "), baselineRounds: hashRates.map(Math.round).join(" ") }
      }
    ] satisfies ReadonlyArray<Figure>
  }))
