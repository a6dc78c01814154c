/**
 * `npm run bench -- preview` (only when named): preview media, each figure
 * beside a baseline measured in the same run.
 *
 * - making thumbnails: `Preview.generate` over `WEFT_BENCH_PREVIEW_IMAGES`
 *   (default 2 000) JPEGs of 800×600 (noisy, so each decodes and encodes
 *   for real), beside `sharp` called directly on the same files with the
 *   same recipe and concurrency (read, resize, WebP: no hashing, no cache,
 *   no records); goal ≥ 0.8. The baseline runs before and after, and the
 *   faster of the two counts.
 * - fetching them: a new node's `fetchAll` of every thumbnail from a peer
 *   over the real transport (libp2p on loopback: TCP, Noise, Yamux), beside
 *   the same bytes sent over one stream of the same connection; goal ≥ 0.5.
 *   Each is run once to warm up, then twice, interleaved (bulk, fetch, bulk,
 *   fetch), and the faster of its two runs counts; before each fetch the
 *   new node's cache is emptied.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import sharp from "sharp"
import * as Engine from "../src/engine/Engine.js"
import * as Libraries from "../src/library/Libraries.js"
import * as Media from "../src/plugins/media/Media.js"
import * as MediaModels from "../src/plugins/media/Models.js"
import * as Mounts from "../src/plugins/media/Mounts.js"
import * as Presence from "../src/plugins/media/Presence.js"
import * as Models from "../src/plugins/media/preview/Models.js"
import * as Preview from "../src/plugins/media/preview/Preview.js"
import * as Thumbnailer from "../src/plugins/media/preview/Thumbnailer.js"
import { tempDir } from "../src/plugins/media/testing/Files.js"
import { library, LIBRARY } from "../src/plugins/media/testing/Nodes.js"
import * as Plugin from "../src/plugins/Plugin.js"
import * as PluginHost from "../src/plugins/PluginHost.js"
import * as Identity from "../src/transport/Identity.js"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import * as Transport from "../src/transport/Transport.js"
import type { Figure } from "./report.js"

const fromEnv = (name: string, fallback: number) => {
  const set = Number(process.env[name])
  return Number.isSafeInteger(set) && set > 0 ? set : fallback
}

const CONCURRENCY = 2
const BULK_ID = "/weft-bench/preview-bulk/1.0.0"

const node = (identity: Identity.Identity["Type"], members: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const transport = yield* Libp2pTransport.make({ identity, listen: ["/ip4/127.0.0.1/tcp/0"] })
    const context = yield* Layer.build(Layer.provideMerge(
      PluginHost.layer({ connectDiscovered: false }),
      Layer.merge(Layer.succeed(Transport.Transport, transport), Libraries.layerMemory([library(members)]))
    ))
    const engine = yield* Engine.makeSqlite({ models: [...MediaModels.models, ...Models.models], node: identity.peerId, filename: ":memory:" })
    const mounts = yield* Mounts.make({ checkInterval: Duration.days(1) })
    const provide = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.provide(context), Effect.provideService(Mounts.Mounts, mounts))
    const presence = yield* provide(Presence.make())
    const media = yield* provide(Media.make({ engine: () => Effect.succeed(engine) })).pipe(Effect.provideService(Presence.Presence, presence))
    const preview = yield* provide(Preview.make({ engine: () => Effect.succeed(engine), directory: yield* tempDir("weft-bench-preview-"), budget: 2 ** 30, concurrency: CONCURRENCY })).pipe(
      Effect.provideService(Presence.Presence, presence)
    )
    const [address] = yield* transport.addresses
    return { id: identity.peerId, address: address!, host: Context.get(context, PluginHost.PluginHost), engine, media, preview }
  })

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.timed(effect), ([duration, a]) => [Duration.toMillis(duration) / 1000, a] as const)

/** `effect`'s wall seconds, its result, and the CPU seconds of this process meanwhile (both nodes run here). */
const timedCpu = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const start = process.cpuUsage()
    return Effect.map(timed(effect), ([seconds, a]) => {
      const used = process.cpuUsage(start)
      return [seconds, a, (used.user + used.system) / 1e6] as const
    })
  })

/** sharp alone over `paths`: read, thumbnail, in `CONCURRENCY` at once. */
const sharpDirect = (paths: ReadonlyArray<string>) =>
  timed(Effect.forEach(paths, (path) =>
    Effect.promise(async () => {
      const input = await fs.readFile(path)
      const { id: _, size, quality } = Thumbnailer.DEFAULT_RECIPE
      await sharp(input).rotate().resize(size, size, { fit: "inside", withoutEnlargement: true }).webp({ quality }).toBuffer()
    }), { concurrency: CONCURRENCY, discard: true }))

export const run = (): Effect.Effect<ReadonlyArray<Figure>, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const images = fromEnv("WEFT_BENCH_PREVIEW_IMAGES", 2000)
    const root = yield* tempDir("weft-bench-images-")
    const paths: Array<string> = []
    yield* Effect.forEach(Array.from({ length: images }, (_, i) => i), (i) =>
      Effect.promise(async () => {
        const path = nodePath.join(root, `d${Math.floor(i / 100)}`, `img${i}.jpg`)
        await fs.mkdir(nodePath.dirname(path), { recursive: true })
        const bytes = await sharp({ create: { width: 800, height: 600, channels: 3, background: { r: i % 256, g: (i >> 8) * 40, b: 128 }, noise: { type: "gaussian", mean: 128, sigma: 20 } } })
          .jpeg({ quality: 85 }).toBuffer()
        await fs.writeFile(path, bytes)
        paths.push(path)
      }), { concurrency: CONCURRENCY, discard: true })

    const [aliceId, bobId] = [yield* Identity.generate(), yield* Identity.generate()]
    const members = [aliceId.peerId, bobId.peerId]
    const alice = yield* node(aliceId, members)
    const bob = yield* node(bobId, members)
    yield* Stream.runDrain(alice.media.index(LIBRARY, { id: "loc1", name: "Pictures" }, root))

    const [before] = yield* sharpDirect(paths)
    const [made, progress] = yield* timed(Stream.runLast(alice.preview.generate(LIBRARY)))
    const [after] = yield* sharpDirect(paths)
    const baselineSeconds = Math.min(before, after)
    const done = progress._tag === "Some" ? progress.value : undefined
    if (done === undefined || done.made !== images) return yield* Effect.dieMessage(`made ${JSON.stringify(done)} of ${images}`)

    // bob: the records as sync would bring them, none of the bytes
    const records = yield* alice.engine.query(Models.thumbnails)
    yield* bob.engine.mutate(records.map(({ id, ...values }) => Models.thumbnails.create(id, values)))
    const totalBytes = records.reduce((n, r) => n + (r.bytes ?? 0), 0)
    const cache = yield* alice.preview.cache(LIBRARY)
    const all = yield* Effect.forEach(records, (r) => Effect.map(cache.get(r.hash!), (o) => (o._tag === "Some" ? o.value : new Uint8Array())))
    // the baseline: the same bytes on one stream of the same connection, 64 KiB writes
    const joined = Buffer.concat(all)
    yield* alice.host.register(Plugin.make({
      name: "bench-bulk",
      protocol: BULK_ID,
      permission: "library",
      handle: (stream) =>
        Effect.gen(function*() {
          for (let at = 0; at < joined.length; at += 65536) yield* stream.write(joined.subarray(at, at + 65536))
          yield* stream.end
        })
    }))
    yield* bob.host.connect(alice.address)
    const bulk = timedCpu(Effect.scoped(Effect.gen(function*() {
      const stream = yield* bob.host.open(alice.id, { protocol: BULK_ID, permission: "library" }, LIBRARY)
      const received = yield* Stream.runFold(stream.source, 0, (n, chunk) => n + chunk.length)
      if (received !== joined.length) return yield* Effect.dieMessage(`bulk: ${received} of ${joined.length} bytes`)
    })))
    // a new node's fetch: bob's cache emptied before each, so every thumbnail is fetched again
    const bobCache = yield* bob.preview.cache(LIBRARY)
    const fetch = Effect.zipRight(bobCache.retain(() => false), timedCpu(Stream.runLast(bob.preview.fetchAll(LIBRARY)))).pipe(
      Effect.tap(([, fetched]) => {
        const got = fetched._tag === "Some" ? fetched.value.fetched : 0
        return got === images ? Effect.void : Effect.dieMessage(`fetched ${got} of ${images}`)
      })
    )
    // fair both ways: one warm-up each (the first run of either was up to 6× slower: code not yet
    // optimised, buffers not yet grown), then two measured runs each, interleaved; each takes its faster
    yield* bulk
    yield* fetch
    const [bulkBefore, , bulkBeforeCpu] = yield* bulk
    const [fetchBefore, , fetchBeforeCpu] = yield* fetch
    const [bulkAfter, , bulkAfterCpu] = yield* bulk
    const [fetchAfter, , fetchAfterCpu] = yield* fetch
    const bulkSeconds = Math.min(bulkBefore, bulkAfter)
    const fetchSeconds = Math.min(fetchBefore, fetchAfter)

    return [
      {
        name: `preview: thumbnails made (${images} JPEGs 800×600, ${Thumbnailer.DEFAULT_RECIPE.id}, concurrency ${CONCURRENCY})`,
        unit: "images/s",
        value: images / made,
        baseline: images / baselineSeconds,
        baselineName: "sharp called directly on the same files, same recipe and concurrency (faster of a run before and after)",
        goal: 0.8,
        extra: { baselineBeforeS: before, baselineAfterS: after, previewS: made }
      },
      {
        name: `preview: a new node fetches all ${images} thumbnails (${Math.round(totalBytes / 1024)} KiB) from a peer over libp2p`,
        unit: "MB/s",
        value: totalBytes / 1e6 / fetchSeconds,
        baseline: totalBytes / 1e6 / bulkSeconds,
        baselineName: "the same bytes on one stream of the same encrypted connection (each after one warm-up, faster of two runs, interleaved)",
        goal: 0.5,
        // CPU seconds of this process (both nodes) beside the wall times: other work on the machine stretches these
        extra: {
          fetchBeforeS: fetchBefore,
          fetchAfterS: fetchAfter,
          bulkBeforeS: bulkBefore,
          bulkAfterS: bulkAfter,
          fetchBeforeCpuS: fetchBeforeCpu,
          fetchAfterCpuS: fetchAfterCpu,
          bulkBeforeCpuS: bulkBeforeCpu,
          bulkAfterCpuS: bulkAfterCpu
        }
      }
    ] satisfies ReadonlyArray<Figure>
  }))
