/**
 * `npm run bench`: every benchmark, each beside a baseline measured in the
 * same run, reported as ratios. Ends with one JSON line holding all figures.
 *
 * Select sections with arguments: `npm run bench -- engine`.
 */
import * as Effect from "effect/Effect"
import * as Cli from "./cli.js"
import * as Decode from "./decode.js"
import * as Engine from "./engine.js"
import * as Network from "./network.js"
import * as RichText from "./richText.js"
import * as Sync from "./sync.js"
import { type Figure, json, print } from "./report.js"

const sections: Record<string, () => Effect.Effect<ReadonlyArray<Figure> | Figure, unknown>> = {
  engine: () => Engine.run(),
  decode: () => Decode.run(),
  richtext: () => RichText.run(),
  sync: () => Sync.run(),
  network: () => Network.run(),
  cli: () => Cli.run()
}

const program = Effect.gen(function*() {
  const wanted = process.argv.slice(2).filter((a) => a in sections)
  const figures: Array<Figure> = []
  for (const name of wanted.length > 0 ? wanted : Object.keys(sections)) {
    const result = yield* sections[name]!()
    for (const figure of Array.isArray(result) ? result : [result as Figure]) {
      print(figure)
      figures.push(figure)
    }
  }
  console.log(json(figures))
})

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
