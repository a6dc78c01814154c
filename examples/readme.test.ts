/**
 * The README's TypeScript examples, checked so they cannot drift from the
 * API. Each ```ts block is written into a scratch folder in the repository
 * (so its imports resolve as an app's would, with "weft" and "weft/testing"
 * pointing at the sources), then:
 * - every block is type-checked with the project's compiler options;
 * - a block with `console.log(...) // text` lines is run, and must print
 *   exactly those texts, in order. Its `Effect.runPromise(...)` is exported
 *   so the run can be awaited, and its database files ("app.db") go into
 *   the scratch folder.
 *
 * The guide's example plugin is `examples/greet.ts` itself: the README
 * shows the file as it is, and blocks that use it import it as "./greet.js".
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { format } from "node:util"
import ts from "typescript"
import { afterAll, describe, expect, it, vi } from "vitest"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const readme = readFileSync(join(root, "README.md"), "utf8")

interface Example {
  /** Where the block starts in README.md. */
  readonly line: number
  readonly code: string
  /** What its `console.log(...) // text` lines say it prints. */
  readonly prints: ReadonlyArray<string>
}

const examples: ReadonlyArray<Example> = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => ({
  line: readme.slice(0, match.index).split("\n").length,
  code: match[1]!,
  prints: [...match[1]!.matchAll(/console\.log\(.*\) \/\/ (.*)$/gm)].map((print) => print[1]!)
}))

const scratch = mkdtempSync(join(root, ".readme-"))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

const sourceOf = (example: Example) => {
  const fromSources = (file: string) => `from "${relative(scratch, join(root, "src", file)).replaceAll("\\", "/")}"`
  return example.code
    .replaceAll(`from "weft/testing"`, fromSources("testing.js"))
    .replaceAll(`from "weft"`, fromSources("index.js"))
    .replaceAll(/"([\w-]+\.db)"/g, (_, file: string) => JSON.stringify(join(scratch, file)))
    .replace(/^Effect\.runPromise\(/m, "export default Effect.runPromise(")
}

// the guide's plugin, beside the blocks that import it
const greet = readFileSync(join(root, "examples", "greet.ts"), "utf8")
writeFileSync(join(scratch, "greet.ts"), greet.replaceAll(`from "../src/index.js"`, `from "${relative(scratch, join(root, "src", "index.js")).replaceAll("\\", "/")}"`))

const files = examples.map((example) => {
  const file = join(scratch, `readme-line-${example.line}.ts`)
  writeFileSync(file, sourceOf(example))
  return file
})

describe("README examples", () => {
  it("there are some, and some are run", () => {
    expect(examples.length).toBeGreaterThanOrEqual(3)
    expect(examples.filter((example) => example.prints.length > 0).length).toBeGreaterThanOrEqual(2)
  })

  it("the guide's example plugin is examples/greet.ts, as it is", () => {
    const shown = examples.filter((example) => example.code.includes("export class Greeter"))
    expect(shown.map((example) => example.code)).toEqual([greet.replaceAll(`from "../src/index.js"`, `from "weft"`)])
  })

  it("every example type-checks against the sources", () => {
    const config = ts.getParsedCommandLineOfConfigFile(join(root, "tsconfig.json"), {}, {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"))
      }
    })!
    const program = ts.createProgram(files, { ...config.options, noEmit: true })
    const host: ts.FormatDiagnosticsHost = {
      getCanonicalFileName: (name) => name,
      getCurrentDirectory: () => root,
      getNewLine: () => "\n"
    }
    const diagnostics = ts.getPreEmitDiagnostics(program).map((diagnostic) => ts.formatDiagnostic(diagnostic, host))
    expect(diagnostics).toEqual([])
  }, 180_000)

  for (const [i, example] of examples.entries()) {
    if (example.prints.length === 0) continue
    it(`the example at README.md line ${example.line} runs and prints what it says`, async () => {
      const printed: Array<string> = []
      const log = vi.spyOn(console, "log").mockImplementation((...args: Array<unknown>) => {
        printed.push(format(...args))
      })
      try {
        const module: { readonly default?: Promise<unknown> } = await import(files[i]!)
        expect(module.default).toBeInstanceOf(Promise)
        await module.default
      } finally {
        log.mockRestore()
      }
      expect(printed).toEqual(example.prints)
    })
  }
})
