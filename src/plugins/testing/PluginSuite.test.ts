/**
 * The suite checked against itself: a small conforming plugin passes every
 * check, and plugins broken in one way each fail the checks about that way
 * (declared `knownFailures`, so vitest asserts that they fail) while passing
 * the rest.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Framing from "../../transport/Framing.js"
import { ProtocolError } from "../../transport/ProtocolError.js"
import type { Duplex, TransportError } from "../../transport/Transport.js"
import * as Plugin from "../Plugin.js"
import type * as Hosts from "./Hosts.js"
import * as PluginSuite from "./PluginSuite.js"

const PROTOCOL_ID = "/weft-test/suite/1.0.0"
const MAX_FRAME_BYTES = 1024
const IDLE = Duration.seconds(1)

/** How the test plugin misbehaves (nothing: it conforms). */
interface Flaws {
  readonly permission?: Plugin.Permission
  /** Resets a stream that breaks the protocol instead of failing as a violation. */
  readonly lenient?: boolean
  /** The maxInboundStreams it registers (default 2, what the suite is told). */
  readonly declaredMax?: number
  /** Has no idle bound. */
  readonly unbounded?: boolean
  /** Once its stream fails, waits (uninterruptibly) for the plugin to stop: it outlives resets and disconnects. */
  readonly deaf?: boolean
  /** Registers in a scope of its own, never closed. */
  readonly clingy?: boolean
}

const Message = Schema.parseJson(Schema.Struct({ n: Schema.Number }))
const decode = Schema.decodeUnknownEither(Message)
const text = new TextDecoder()

/** Echoes frames of JSON `{"n": number}` (at most 1 KiB); resets a stream silent for `IDLE`. */
const handle = (flaws: Flaws, stopped: Deferred.Deferred<void>) =>
(stream: Duplex): Effect.Effect<void, ProtocolError | TransportError, Scope.Scope> => {
  const served = Effect.gen(function*() {
    const where = { peer: stream.remote, protocol: stream.protocol }
    const reader = yield* Framing.reader(stream.source, { ...where, maxFrameBytes: MAX_FRAME_BYTES })
    while (true) {
      const next = flaws.unbounded
        ? yield* reader.frame
        : yield* Effect.timeoutTo(reader.frame, { duration: IDLE, onSuccess: (frame) => frame, onTimeout: () => "idle" as const })
      if (next === "idle") return yield* stream.reset
      if (Option.isNone(next)) return yield* stream.end
      if (Either.isLeft(decode(text.decode(next.value)))) {
        return yield* new ProtocolError({ reason: "Malformed", ...where, detail: "not a {n} message" })
      }
      yield* stream.write(Framing.encode(next.value))
    }
  })
  if (flaws.lenient) return Effect.catchTag(served, "ProtocolError", () => stream.reset)
  // (its reads too are uninterruptible, so its idle timer cannot cut one short either)
  if (flaws.deaf) return Effect.uninterruptible(Effect.catchTag(served, "TransportError", () => Deferred.await(stopped)))
  return served
}

const install = (flaws: Flaws) => (host: Hosts.Host) =>
  Effect.gen(function*() {
    // what a deaf handler waits for: released when the plugin stops, so the case can end
    const stopped = yield* Deferred.make<void>()
    yield* Effect.addFinalizer(() => Deferred.succeed(stopped, undefined))
    const plugin = Plugin.make<ProtocolError | TransportError, never>({
      name: "suite-test",
      protocol: PROTOCOL_ID,
      permission: flaws.permission ?? "authenticated",
      maxInboundStreams: flaws.declaredMax ?? 2,
      handle: handle(flaws, stopped)
    })
    if (flaws.clingy) {
      const elsewhere = yield* Scope.make()
      return yield* Scope.extend(host.host.register(plugin), elsewhere)
    }
    yield* host.host.register(plugin)
  })

const header = (length: number) => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, length)
  return out
}

const options = (flaws: Flaws, known: PluginSuite.Options["knownFailures"] = {}): PluginSuite.Options => ({
  protocol: { protocol: PROTOCOL_ID, permission: flaws.permission ?? "authenticated" },
  install: install(flaws),
  malformed: [
    { name: "not JSON", bytes: Framing.encode(Uint8Array.of(0xff)) },
    { name: "JSON of another shape", bytes: Framing.encode(new TextEncoder().encode(JSON.stringify({ n: "1" }))) }
  ],
  oversize: header(MAX_FRAME_BYTES + 1),
  maxInboundStreams: 2,
  silentTimeout: IDLE,
  // the broken plugins fail by timing out: no need to wait long for that
  stepTimeout: Duration.seconds(known === undefined || Object.keys(known).length === 0 ? 5 : 1),
  knownFailures: known
})

PluginSuite.suite("PluginSuite: a conforming authenticated plugin", options({}))
PluginSuite.suite("PluginSuite: a conforming library plugin", options({ permission: "library" }))

PluginSuite.suite(
  "PluginSuite: a plugin that resets broken streams instead of reporting a violation",
  options({ lenient: true }, { malformed: "no violation: the sender stays connected", oversize: "no violation: the sender stays connected" })
)
PluginSuite.suite(
  "PluginSuite: a plugin that declares a higher limit than it promises",
  options({ declaredMax: 32 }, { maxInboundStreams: "a third stream is admitted" })
)
PluginSuite.suite(
  "PluginSuite: a plugin without the idle bound it promises",
  options({ unbounded: true }, { silent: "a silent stream stays open" })
)
PluginSuite.suite(
  "PluginSuite: a plugin that stays registered after its scope closes",
  options({ clingy: true }, { unregister: "streams are still served after unregistering" })
)
PluginSuite.suite(
  "PluginSuite: a plugin whose handlers outlive their streams",
  options({ deaf: true }, {
    disconnect: "the disconnect waits on a handler that does not end",
    openerScope: "handlers of reset streams do not end",
    maxInboundStreams: "the slot of a closed stream is never freed",
    silent: "its idle timer cannot interrupt its uninterruptible read"
  })
)
