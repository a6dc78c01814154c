/** Figures of a benchmark run, printed as a table and as one final JSON line. */
import { availableParallelism, loadavg } from "node:os"

/** One measured figure beside its same-run baseline. */
export interface Figure {
  readonly name: string
  readonly unit: string
  readonly value: number
  readonly baseline?: number
  readonly baselineName?: string
  /** Goal for value / baseline (or, with `lowerIsBetter`, baseline / value). */
  readonly goal?: number
  readonly lowerIsBetter?: boolean
  readonly extra?: Readonly<Record<string, number | string>>
}

/**
 * The machine's load average over 1, 5 and 15 minutes, with its core count: these
 * machines are shared, so every figure is read beside it.
 */
export const loadAverage = (): string => `${loadavg().map((n) => n.toFixed(2)).join(" ")} (${availableParallelism()} cores)`

/** The median of some numbers. */
export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** value / baseline, or baseline / value when lower is better. */
export const ratio = (figure: Figure): number | undefined =>
  figure.baseline === undefined ? undefined : figure.lowerIsBetter ? figure.baseline / figure.value : figure.value / figure.baseline

const round = (n: number) => (Math.abs(n) >= 100 ? Math.round(n) : Math.round(n * 1000) / 1000)

/** Prints one figure as a readable line. */
export const print = (figure: Figure): void => {
  const r = ratio(figure)
  const parts = [`${figure.name}: ${round(figure.value)} ${figure.unit}`]
  if (figure.baseline !== undefined) parts.push(`baseline ${round(figure.baseline)} ${figure.unit} (${figure.baselineName})`)
  if (r !== undefined) parts.push(`ratio ${round(r)}${figure.goal === undefined ? "" : ` (goal ≥ ${figure.goal}: ${r >= figure.goal ? "met" : "NOT met"})`}`)
  for (const [k, v] of Object.entries(figure.extra ?? {})) parts.push(`${k} ${typeof v === "number" ? round(v) : v}`)
  // the 1-minute load average when the figure is printed (just after it was measured)
  parts.push(`load ${loadavg()[0]!.toFixed(2)}`)
  console.log(parts.join("; "))
}

/** The final JSON line: every figure with its ratio, and the load average at the start and at the end of the run. */
export const json = (figures: ReadonlyArray<Figure>, loadAverageAtStart?: ReadonlyArray<number>): string =>
  JSON.stringify({
    weftBench: 1,
    node: process.version,
    cores: availableParallelism(),
    ...(loadAverageAtStart === undefined ? {} : { loadavgStart: loadAverageAtStart }),
    loadavg: loadavg(),
    figures: Object.fromEntries(figures.map((f) => [f.name, { ...f, ratio: ratio(f) }]))
  })
