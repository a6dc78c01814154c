/**
 * Decoding a sync batch of 1000 operations with the bounded MessagePack
 * reader (`Binary.decode`: lengths checked against the bytes left, depth
 * bounded, strict UTF-8, maps without a prototype) beside plain msgpackr
 * `unpack` of the same bytes (which checks none of that, and uses its
 * native string extractor where installed).
 */
import * as Effect from "effect/Effect"
import { Unpackr } from "msgpackr"
import * as Binary from "../src/crdt/Binary.js"
import * as Operation from "../src/crdt/Operation.js"
import { median, type Figure } from "./report.js"

const OPS = 1000
const ROUNDS = 7
const PER_ROUND = 200

const batch = (): Uint8Array =>
  Operation.encodeBatch(Array.from({ length: OPS }, (_, i): Operation.Operation => ({
    _tag: "Update",
    origin: `12D3KooWPeer${i % 7}${"a".repeat(40)}` as Operation.Operation["origin"],
    seq: i + 1,
    ts: `018bcfe568${(i % 4096).toString(16).padStart(6, "0")}` as Operation.Operation["ts"],
    model: "notes" as Operation.ModelName,
    record: `note-${i}`,
    fields: {
      title: `A title for note ${i}`,
      rank: i * 1.5,
      done: i % 2 === 0,
      body: `Some longer body text for note ${i} — with a non-ASCII dash and words enough to be realistic.`,
      tags: ["a", "b", `t${i}`]
    }
  })))

/** Microseconds per call of `f`, median of rounds. */
const time = (f: () => unknown): number => {
  for (let i = 0; i < PER_ROUND; i++) f()
  const rounds: Array<number> = []
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < PER_ROUND; i++) f()
    rounds.push(Number(process.hrtime.bigint() - start) / PER_ROUND / 1000)
  }
  return median(rounds)
}

/** Runs the decode benchmark; returns its figure. */
export const run = () =>
  Effect.sync((): Figure => {
    const bytes = batch()
    const plain = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" })
    const baseline = time(() => plain.unpack(bytes))
    const value = time(() => Binary.decode(bytes))
    return {
      name: `decode of a ${OPS}-op sync batch (bounded reader)`,
      unit: "µs",
      value,
      baseline,
      baselineName: "msgpackr unpack of the same bytes, unchecked",
      lowerIsBetter: true,
      extra: { bytes: bytes.length }
    }
  })
