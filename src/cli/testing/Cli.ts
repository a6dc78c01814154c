/**
 * Running `weft` as a person would, for the CLI's tests: commands to
 * completion, `weft serve` processes stopped with the test's scope,
 * initialized data directories. Commands run through tsx, or the built
 * executable with `WEFT_CLI=dist` (see `Processes.CLI`).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { type ChildProcess, spawn } from "node:child_process"
import type * as NodeControl from "../../node/Control.js"
import * as DataDir from "../../node/DataDir.js"
import * as Control from "../Control.js"
import * as Processes from "./Processes.js"

const { CLI, ROOT, eventually, exited } = Processes

/** Where `serve` listens: loopback, any free port. */
export const LOOPBACK = "/ip4/127.0.0.1/tcp/0"

/** What a finished command printed, and its exit code. */
export interface Outcome {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Starts `weft <args>`, its standard streams piped. */
export const start = (args: ReadonlyArray<string>): ChildProcess =>
  spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } })

/** Runs `weft <args>` to completion (killed if interrupted, or after 30 s). */
export const weft = (...args: ReadonlyArray<string>): Effect.Effect<Outcome> => weftWithin(Duration.seconds(30), ...args)

/** Runs `weft <args>` to completion (killed if interrupted, or after `timeout`): a long transfer. */
export const weftWithin = (timeout: Duration.DurationInput, ...args: ReadonlyArray<string>): Effect.Effect<Outcome> =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const child = start(args)
      child.stdin?.end()
      let stdout = ""
      let stderr = ""
      child.stdout?.on("data", (data: Buffer) => (stdout += data.toString()))
      child.stderr?.on("data", (data: Buffer) => (stderr += data.toString()))
      return { child, output: () => ({ stdout, stderr }) }
    }),
    ({ child, output }) =>
      Effect.map(
        Effect.async<number | null>((resume) => {
          child.once("close", (code) => resume(Effect.succeed(code)))
        }),
        (code) => ({ code, ...output() })
      ),
    ({ child }) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
  ).pipe(Effect.timeout(timeout), Effect.orDie)

/** Runs a command that must succeed with `--json`; its answer, parsed. */
export const weftJson = <A = any>(...args: ReadonlyArray<string>) =>
  Effect.flatMap(weft(...args, "--json"), (outcome) => {
    if (outcome.code !== 0) return Effect.die(new Error(`weft ${args.join(" ")} exited ${outcome.code}: ${outcome.stderr}${outcome.stdout}`))
    return Effect.succeed(JSON.parse(outcome.stdout.trim().split("\n").at(-1)!) as A)
  })

/** A `weft serve` process, stopped when the test's scope closes. */
export interface Server {
  readonly dir: string
  readonly child: ChildProcess
  readonly output: () => string
  /** Writes a line to its standard input (answers to pairing questions). */
  readonly answer: (line: string) => Effect.Effect<void>
  readonly status: Effect.Effect<NodeControl.StatusInfo, Control.Failure<{ readonly _tag: "Status" }>>
  readonly call: <R extends Control.Request>(request: R) => Effect.Effect<Control.Success<R>, Control.Failure<R>>
}

/** Starts `weft serve` on a random loopback port with mDNS off; waits until its control endpoint answers. */
export const serve = (dir: string, ...extra: ReadonlyArray<string>) => serveWith({ dir }, ...extra)

/** `serve`, with its standard input closed at once when `closeInput` (nobody at its terminal). */
export const serveWith = (options: { readonly dir: string; readonly closeInput?: boolean }, ...extra: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const dir = options.dir
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => start(["serve", "--dir", dir, "--listen", LOOPBACK, "--no-mdns", ...extra])),
      (child) =>
        // a polite stop first (it must shut down cleanly), then no more waiting
        Effect.sync(() => child.kill("SIGTERM")).pipe(
          Effect.zipRight(exited(child).pipe(Effect.timeout(Duration.seconds(5)))),
          Effect.catchAll(() => Effect.sync(() => child.kill("SIGKILL")))
        )
    )
    if (options.closeInput === true) child.stdin?.end()
    let output = ""
    child.stdout?.on("data", (data: Buffer) => (output += data.toString()))
    child.stderr?.on("data", (data: Buffer) => (output += data.toString()))
    const socket = DataDir.layout(dir).socket
    const server: Server = {
      dir,
      child,
      output: () => output,
      answer: (line) => Effect.sync(() => child.stdin?.write(`${line}\n`)),
      status: Control.call(socket, { _tag: "Status" }),
      call: (request) => Control.call(socket, request)
    }
    yield* eventually(`${dir} serving`, Effect.either(server.status), Either.isRight, () => output)
    return server
  })

/** A temporary data directory, removed with the scope. */
export const tempDir = (name: string) => Processes.tempDir(`weft-cli-${name}`)

/** Two initialized data directories: `a` (library Alpha) and `b` (library Beta). */
export const twoDirs = Effect.gen(function*() {
  const [a, b] = [yield* tempDir("a"), yield* tempDir("b")]
  const [initA, initB] = yield* Effect.all([
    weftJson("init", "--dir", a, "--library-name", "Alpha"),
    weftJson("init", "--dir", b, "--library-name", "Beta")
  ], { concurrency: 2 })
  return { a, b, alpha: initA.libraries[0].id as string, beta: initB.libraries[0].id as string }
})

