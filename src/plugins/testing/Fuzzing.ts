/**
 * Fuzzing the plugin kit's readers with the transport's fuzz kit
 * (`transport/testing/Fuzz`): valid messages of a `Messages` protocol as
 * the kit writes them, and a reader of everything a hostile stream sends.
 *
 * ```ts
 * it("my protocol's messages", () =>
 *   Fuzz.assertDecoder({
 *     cases: Fuzz.frameStreams(Fuzz.json(validMessages.map((m) => Fuzzing.jsonMessage(protocol, m))), protocol.maxFrameBytes),
 *     decode: (stream) => Fuzzing.readMessages(protocol, stream),
 *     isTypedError: Fuzzing.isKitError
 *   }))
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { ProtocolError } from "../../transport/ProtocolError.js"
import type * as Fuzz from "../../transport/testing/Fuzz.js"
import { scriptedDuplex } from "../../transport/testing/Fuzz.js"
import { TransportError } from "../../transport/Transport.js"
import * as Messages from "../Messages.js"
import { RpcError } from "../RpcPlugin.js"

const encoder = new TextEncoder()

/** One message's frame body, as `Messages` writes it. */
export const jsonMessage = <A, I>(protocol: Messages.Protocol<A, I>, message: A): Uint8Array =>
  encoder.encode(JSON.stringify({ version: protocol.version, ...(Schema.encodeSync(protocol.schema)(message) as object) }))

/** Reads messages of `protocol` off a hostile stream until it ends or fails. */
export const readMessages = <A, I>(protocol: Messages.Protocol<A, I>, stream: Fuzz.FrameStream): Effect.Effect<ReadonlyArray<A>, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const channel = yield* Messages.make(scriptedDuplex(stream.chunks).duplex, protocol)
    const read: Array<A> = []
    while (true) {
      const message = yield* channel.receive
      if (Option.isNone(message)) return read
      read.push(message.value)
    }
  }))

/** Whether `e` is one of the kit's typed errors (a violation, a message error, a transport or RPC error). */
export const isKitError = (e: unknown): boolean =>
  e instanceof ProtocolError || e instanceof Messages.MessageError || e instanceof TransportError || e instanceof RpcError
