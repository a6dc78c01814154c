/**
 * A libp2p `ComponentLogger` that logs nothing, for when `DEBUG` is not set.
 *
 * libp2p's default logger builds a `debug` instance for every stream (Yamux
 * on both sides, multistream-select's select and handle), and each one asks
 * whether stderr is a terminal: four `isatty` calls and closures per stream
 * opened, for logs nobody sees. With `DEBUG` set, libp2p's own is kept.
 *
 * @internal
 */
import type { ComponentLogger, Logger } from "@libp2p/interface"

const noop = () => {}

const quiet: Logger = Object.assign((_formatter: unknown, ..._args: Array<unknown>) => {}, {
  error: noop,
  trace: noop,
  enabled: false,
  newScope: (_name: string): Logger => quiet
})

/** Logs nothing; every component and scope shares one logger. */
export const quietLogger: ComponentLogger = { forComponent: () => quiet }

/** `quietLogger` unless `DEBUG` asks for logs, in which case libp2p's default (undefined). */
export const loggerFor = (env: Record<string, string | undefined>): ComponentLogger | undefined =>
  env["DEBUG"] === undefined || env["DEBUG"] === "" ? quietLogger : undefined
