#!/usr/bin/env node
/**
 * The `weft` executable: runs the command line (`Commands`) on Node.
 *
 * Exit codes: 0 on success (and when `serve` is stopped with SIGINT or
 * SIGTERM); 1 on an expected failure, printed as one line
 * `weft: <Tag>: <message>` on standard error; 2 on a usage error (printed by
 * the parser with the help text); 130 when another command is stopped by a
 * signal before it finished; 70 on a defect (a bug), printed in full.
 *
 * @since 0.1.0
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Commands from "./Commands.js"
import * as Output from "./Output.js"

// a closed pipe (`weft serve | head`) is not worth dying for: what cannot be written is dropped
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error
  })
}

/** Stopping `serve` with a signal is how it ends; any other command stopped so did not finish. */
const serving = process.argv[2] === "serve"

const exitCode = (exit: Exit.Exit<void, unknown>): Effect.Effect<number> => {
  if (Exit.isSuccess(exit)) return Effect.succeed(0)
  if (Cause.isInterruptedOnly(exit.cause)) {
    return serving ? Effect.succeed(0) : Effect.as(Console.error("weft: Interrupted: the command was stopped before it finished"), 130)
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    // the parser has printed what was wrong, with the help text
    if (ValidationError.isValidationError(failure.value)) return Effect.succeed(2)
    return Effect.as(Console.error(`weft: ${Output.failure(failure.value)}`), 1)
  }
  return Effect.as(Console.error(`weft: unexpected failure (a bug):\n${Cause.pretty(exit.cause)}`), 70)
}

// the command is interruptible (a signal stops it); what follows it always runs, so a stopped command still
// reports and sets its exit code
const program = Effect.uninterruptibleMask((restore) =>
  restore(Effect.suspend(() => Commands.run(process.argv)).pipe(
    Effect.provide(NodeContext.layer),
    Effect.provide(Logger.replace(Logger.defaultLogger, Output.logger))
  )).pipe(
    Effect.exit,
    Effect.flatMap(exitCode),
    Effect.flatMap((code) => Effect.sync(() => {
      process.exitCode = code
    }))
  )
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  disablePrettyLogger: true,
  // after a signal the default teardown exits 0 for an interrupted program: exit with the code it set
  teardown: (exit, onExit) => onExit(typeof process.exitCode === "number" ? process.exitCode : Exit.isSuccess(exit) ? 0 : 1)
})
