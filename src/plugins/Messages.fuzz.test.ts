import { describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as fc from "fast-check"
import * as Framing from "../transport/Framing.js"
import * as Fuzz from "../transport/testing/Fuzz.js"
import * as Messages from "./Messages.js"
import * as Fuzzing from "./testing/Fuzzing.js"

/** A protocol with the shapes plugins use: literals, bounded strings, numbers, arrays, records, optional and nested fields. */
const Message = Schema.Union(
  Schema.Struct({ type: Schema.Literal("Offer"), name: Schema.String.pipe(Schema.maxLength(64)), size: Schema.Int, tags: Schema.Array(Schema.String) }),
  Schema.Struct({ type: Schema.Literal("Decision"), accept: Schema.Boolean, note: Schema.optional(Schema.String) }),
  Schema.Struct({ type: Schema.Literal("Progress"), files: Schema.Record({ key: Schema.String, value: Schema.Struct({ done: Schema.Number, hash: Schema.String }) }) })
)
const MAX_FRAME_BYTES = 64 * 1024
const protocol = Messages.protocol({ version: 1, schema: Message, maxFrameBytes: MAX_FRAME_BYTES })

const validMessages: fc.Arbitrary<typeof Message.Type> = fc.oneof(
  fc.record({ type: fc.constant("Offer" as const), name: fc.string({ maxLength: 64 }), size: fc.integer(), tags: fc.array(fc.string({ maxLength: 8 }), { maxLength: 4 }) }),
  fc.record({ type: fc.constant("Decision" as const), accept: fc.boolean(), note: fc.string({ maxLength: 20 }) }),
  fc.record({ type: fc.constant("Progress" as const), files: fc.dictionary(fc.string({ maxLength: 10 }), fc.record({ done: fc.double({ noNaN: true, noDefaultInfinity: true }), hash: fc.stringMatching(/^[0-9a-f]{0,16}$/) }), { maxKeys: 3 }) })
)

/** Frame bodies of any bytes: what the framing layer must cope with is the prefixes. */
const rawFrames = fc.uint8Array({ maxLength: 64 }).map((bytes) => new Fuzz.Case(bytes, ["raw"]))

describe("the plugin kit's message reader under structure-aware fuzzing", () => {
  it("Messages: every mutated stream of frames is messages or a typed error", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.frameStreams(Fuzz.json(validMessages.map((m) => Fuzzing.jsonMessage(protocol, m))), MAX_FRAME_BYTES),
      decode: (stream) => Fuzzing.readMessages(protocol, stream),
      isTypedError: Fuzzing.isKitError
    }), Fuzz.testTimeout())


  it("Framing.reader: every mutated stream of frames is frames or a typed error", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.frameStreams(rawFrames, 1024),
      decode: (stream) =>
        Effect.scoped(Effect.gen(function*() {
          const reader = yield* Framing.reader(Stream.fromIterable(stream.chunks), { maxFrameBytes: 1024 })
          let frames = 0
          while (Option.isSome(yield* reader.frame)) frames++
          return frames
        })),
      isTypedError: Fuzzing.isKitError
    }), Fuzz.testTimeout())

  it("Framing.decode: every mutated stream of frames is frames or a typed error", () =>
    Fuzz.assertDecoder({
      cases: Fuzz.frameStreams(rawFrames, 1024),
      decode: (stream) => Effect.map(Stream.runCollect(Framing.decode(1024)(Stream.fromIterable(stream.chunks))), Chunk.size),
      isTypedError: Fuzzing.isKitError
    }), Fuzz.testTimeout())
})
