import { describe, expect, it } from "vitest"
import { loggerFor, quietLogger } from "./quietLogger.js"

describe("loggerFor", () => {
  it("keeps libp2p's own logger when DEBUG asks for logs", () => {
    expect(loggerFor({ DEBUG: "libp2p:*" })).toBeUndefined()
  })

  it("logs nothing, in every component and scope, when DEBUG is not set", () => {
    expect(loggerFor({})).toBe(quietLogger)
    expect(loggerFor({ DEBUG: "" })).toBe(quietLogger)
    const log = quietLogger.forComponent("libp2p:yamux").newScope("stream:1")
    expect(log.enabled).toBe(false)
    expect(() => {
      log("hello %s", "world")
      log.trace("trace")
      log.error("error")
    }).not.toThrow()
  })
})
