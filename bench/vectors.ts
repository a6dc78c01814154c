/**
 * Version vectors at scale: ingest of operations from many new origins beside
 * the same number from one origin, and a vector's wire form (the sync
 * protocol's pages, encoded and decoded with every entry checked, joined into one
 * vector as a session does) beside raw
 * MessagePack of the same map (no checks at all).
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Packr } from "msgpackr"
import { randomUUID } from "node:crypto"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import type * as Operation from "../src/crdt/Operation.js"
import * as Timestamp from "../src/crdt/Timestamp.js"
import * as VersionVector from "../src/crdt/VersionVector.js"
import * as Engine from "../src/engine/Engine.js"
import * as Model from "../src/engine/Model.js"
import * as SyncProtocol from "../src/sync/SyncProtocol.js"
import { median, type Figure } from "./report.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String }))
const OPS = 10_000
const BATCH = 1_000

const ingestMillis = (origin: (i: number) => string, seq: (i: number) => number) =>
  Effect.scoped(Effect.gen(function*() {
    const engine = yield* Engine.makeSqlite({ models: [notes], node: "bench", filename: ":memory:" })
    const base = Date.now()
    const ops: Array<Operation.Operation> = Array.from({ length: OPS }, (_, i) => ({
      _tag: "Create",
      origin: origin(i) as Timestamp.NodeId,
      seq: seq(i),
      ts: Timestamp.make(base, i % 0xffff),
      model: "notes" as Operation.ModelName,
      record: `r${i}`,
      fields: { title: "t" }
    }))
    // one origin's timestamps must increase: spread them over milliseconds
    if (seq(1) === 2) ops.forEach((op, i) => Object.assign(op, { ts: Timestamp.make(base - OPS + i, 0) }))
    const start = performance.now()
    for (let i = 0; i < OPS; i += BATCH) yield* engine.ingest(ops.slice(i, i + BATCH))
    return performance.now() - start
  }))

// Each measured section starts from a collected heap: the two sides alternate, and otherwise one
// side's garbage is collected (a full mark of the heap, triggered by external memory) inside the
// other's measurement. What a section allocates itself is still collected inside it.
setFlagsFromString("--expose-gc")
const collect = runInNewContext("gc") as () => void

const vectorOf = (size: number): VersionVector.VersionVector => {
  const ts = Timestamp.make(Date.now(), 0)
  return VersionVector.fromEntries(Array.from({ length: size }, (_, i) => [`weft-${randomUUID()}`, { seq: i + 1, ts }] as const))
}

const wireFigure = (size: number, runs: number): Figure => {
  const vector = vectorOf(size)
  const hello = (entries: VersionVector.VersionVector, more: boolean): SyncProtocol.Message => ({ _tag: "Hello", node: "bench" as Timestamp.NodeId, library: "lib", entries, more })
  const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true })
  const probe = [...vector.keys()][size >> 1]!
  const plain: Record<string, unknown> = Object.create(null)
  for (const [origin, entry] of vector) plain[origin] = [entry.seq, entry.ts]
  const ours: Array<{ encode: number; decode: number; bytes: number; cpu: number }> = []
  const raw: Array<{ encode: number; decode: number; bytes: number; cpu: number }> = []
  // CPU time beside wall time: on a loaded machine the wall time counts the waits for a core too
  const cpuSince = (start: NodeJS.CpuUsage) => {
    const used = process.cpuUsage(start)
    return (used.user + used.system) / 1000
  }
  for (let r = 0; r < runs; r++) {
    collect()
    let cpu = process.cpuUsage()
    let t = performance.now()
    const frames = SyncProtocol.vectorFrames(vector, hello)
    const encode = performance.now() - t
    t = performance.now()
    // as a session reads a vector: each frame decoded (every entry checked), the pages joined at the end
    const pages: Array<VersionVector.VersionVector> = []
    for (const frame of frames) {
      const message = SyncProtocol.decode(frame)
      if (message._tag === "Left" || (message.right._tag !== "Hello" && message.right._tag !== "More")) throw new Error("a page did not decode")
      pages.push(message.right.entries)
    }
    const back = VersionVector.union(pages)
    const decode = performance.now() - t
    const oursCpu = cpuSince(cpu)
    if (back.size !== size || back.get(probe)?.seq !== vector.get(probe)?.seq) throw new Error("the vector did not survive its wire form")
    ours.push({ encode, decode, bytes: frames.reduce((n, f) => n + f.length, 0), cpu: oursCpu })
    collect()
    cpu = process.cpuUsage()
    t = performance.now()
    const bytes = packr.pack(plain)
    const rawEncode = performance.now() - t
    t = performance.now()
    packr.unpack(bytes)
    raw.push({ encode: rawEncode, decode: performance.now() - t, bytes: bytes.length, cpu: cpuSince(cpu) })
  }
  const total = (xs: typeof ours) => median(xs.map((x) => x.encode + x.decode))
  return {
    name: `vector wire form, ${size.toLocaleString("en")} origins: encode + decode`,
    unit: "ms",
    value: total(ours),
    baseline: total(raw),
    baselineName: "raw msgpack of the same map, unchecked",
    lowerIsBetter: true,
    extra: {
      encodeMs: median(ours.map((x) => x.encode)),
      cpuMs: median(ours.map((x) => x.cpu)),
      baselineCpuMs: median(raw.map((x) => x.cpu)),
      decodeMs: median(ours.map((x) => x.decode)),
      pages: Math.ceil(size / VersionVector.PAGE_ENTRIES),
      bytes: ours[0]!.bytes,
      rawBytes: raw[0]!.bytes
    }
  }
}

/** Runs the vector benchmarks. */
export const run = () =>
  Effect.gen(function*() {
    const figures: Array<Figure> = []
    const many: Array<number> = []
    const one: Array<number> = []
    for (let r = 0; r < 3; r++) {
      many.push(yield* ingestMillis((i) => `origin-${i}`, () => 1))
      one.push(yield* ingestMillis(() => "origin", (i) => i + 1))
    }
    figures.push({
      name: `ingest of ${OPS.toLocaleString("en")} operations from as many new origins (batches of ${BATCH})`,
      unit: "ms",
      value: median(many),
      baseline: median(one),
      baselineName: "the same operations from one origin",
      lowerIsBetter: true
    })
    figures.push(wireFigure(100_000, 5))
    figures.push(wireFigure(1_000_000, 3))
    return figures
  })
