import { describe, expect, it } from "@effect/vitest"
import * as Schema from "effect/Schema"
import * as ProtocolError from "./ProtocolError.js"
import { TransportError } from "./Transport.js"

describe("protocol violations", () => {
  it("are known by their type, never by a reason's name", () => {
    expect(ProtocolError.isViolation(new ProtocolError.ProtocolError({ reason: "Oversize", detail: "a frame of 5 MiB" }))).toBe(true)
    // local errors that happen to be called Oversize or ProtocolViolation disconnect nobody
    expect(ProtocolError.isViolation(new TransportError({ reason: "Oversize", detail: "our own frame" }))).toBe(false)
    expect(ProtocolError.isViolation({ _tag: "GameError", reason: "ProtocolViolation" })).toBe(false)
    expect(ProtocolError.isViolation(undefined)).toBe(false)
  })

  it("a plugin's own error class can carry the marker", () => {
    class GameError extends Schema.TaggedError<GameError>()("GameError", { detail: Schema.String }) {
      readonly [ProtocolError.ViolationTypeId] = ProtocolError.ViolationTypeId
    }
    expect(ProtocolError.isViolation(new GameError({ detail: "a move out of turn" }))).toBe(true)
  })

  it("a ProtocolError that crossed a wire as data is a violation again once decoded", () => {
    const sent = new ProtocolError.ProtocolError({ reason: "Malformed", peer: "bob", protocol: "/x/y/1.0.0", detail: "not JSON" })
    const encoded = JSON.parse(JSON.stringify(Schema.encodeSync(ProtocolError.ProtocolError)(sent)))
    const received = Schema.decodeUnknownSync(ProtocolError.ProtocolError)(encoded)
    expect(ProtocolError.isViolation(received)).toBe(true)
    expect(received.message).toBe("protocol Malformed (peer bob) [/x/y/1.0.0]: not JSON")
  })
})
