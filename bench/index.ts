/**
 * `npm run bench`: every benchmark, each beside a baseline measured in the
 * same run, reported as ratios. Ends with one JSON line holding all figures.
 *
 * Select sections with arguments: `npm run bench -- engine`. The machine's
 * load average is printed before each section and at the end, and goes into
 * the JSON line. `anchors` (issue 14's table against automerge-repo and the
 * SQLite floor) and `spacedrop` (1 GiB and 10 000-file transfers) take many
 * minutes, so they run only when named.
 */
import * as Effect from "effect/Effect"
import { loadavg } from "node:os"
import * as Anchors from "./anchors.js"
import * as Cli from "./cli.js"
import * as Decode from "./decode.js"
import * as Engine from "./engine.js"
import * as Network from "./network.js"
import * as Preview from "./preview.js"
import * as RichText from "./richText.js"
import * as Rspc from "./rspc.js"
import * as Spacedrop from "./spacedrop.js"
import * as Sync from "./sync.js"
import * as Vectors from "./vectors.js"
import { type Figure, json, loadAverage, print } from "./report.js"

const sections: Record<string, () => Effect.Effect<ReadonlyArray<Figure> | Figure, unknown>> = {
  engine: () => Engine.run(),
  decode: () => Decode.run(),
  richtext: () => RichText.run(),
  sync: () => Sync.run(),
  vectors: () => Vectors.run(),
  network: () => Network.run(),
  rspc: () => Rspc.run(),
  cli: () => Cli.run()
}

/** Sections that run only when named. */
const named: Record<string, () => Effect.Effect<ReadonlyArray<Figure> | Figure, unknown>> = {
  media: () => Effect.flatMap(Effect.promise(() => import("./media.js")), (media) => media.run()),
  anchors: () => Anchors.run(),
  preview: () => Preview.run(),
  spacedrop: () => Spacedrop.run()
}

const program = Effect.gen(function*() {
  const all = { ...sections, ...named }
  const wanted = process.argv.slice(2).filter((a) => a in all)
  const figures: Array<Figure> = []
  const loadAtStart = loadavg()
  for (const name of wanted.length > 0 ? wanted : Object.keys(sections)) {
    console.log(`${name}: load average ${loadAverage()}`)
    const result = yield* all[name]!()
    for (const figure of Array.isArray(result) ? result : [result as Figure]) {
      print(figure)
      figures.push(figure)
    }
  }
  console.log(`load average ${loadAverage()}`)
  console.log(json(figures, loadAtStart))
})

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
