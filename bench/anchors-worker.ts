/**
 * One phase of the side-by-side bench (`anchors.ts`) in a process of its
 * own, so that its peak RSS and garbage are its own:
 *
 *   node --expose-gc anchors-worker.js write <system> <dir> <count> <batch>
 *   node --expose-gc anchors-worker.js catchup <system> <dir> <count> <updates> <gapMs>
 *
 * Systems: weft, weft-libp2p, automerge-doc, automerge-docs, floor. Prints one JSON line:
 * the phase's result and the process's peak RSS.
 */
import type * as Workload from "./anchors-workload.js"

/** Each system's module, imported only in its own phases: another system's code would count in this one's memory. */
const systems: Record<string, () => Promise<Workload.System>> = {
  weft: () => import("./anchors-weft.js").then((m) => m.system),
  "weft-libp2p": () => import("./anchors-weft.js").then((m) => m.overTcp),
  "automerge-doc": () => import("./anchors-automerge.js").then((m) => m.oneDocument),
  "automerge-docs": () => import("./anchors-automerge.js").then((m) => m.documentPerRecord),
  floor: () => import("./anchors-floor.js").then((m) => m.system)
}

const [phase, name, dir, count, ...rest] = process.argv.slice(2) as [string, string, string, string, ...Array<string>]

const main = async () => {
  const load = systems[name]
  if (load === undefined) throw new Error(`unknown system ${name}`)
  const system = await load()
  const result = phase === "write"
    ? await system.write(dir, Number(count), Number(rest[0]))
    : phase === "catchup"
    ? await system.catchUp(dir, Number(count), { updates: Number(rest[0]), gapMs: Number(rest[1]) })
    : undefined
  if (result === undefined) throw new Error(`unknown phase ${phase}`)
  console.log(JSON.stringify({ ...result, peakRssMb: process.resourceUsage().maxRSS / 1024 }))
}

main().then(
  // automerge-repo and the sessions may leave timers behind: the phase is over
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
