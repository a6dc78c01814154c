import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { connect, type Socket } from "node:net"
import { join } from "node:path"
import * as Framing from "../transport/Framing.js"
import * as ControlSocket from "./ControlSocket.js"
import * as Processes from "./testing/Processes.js"

class Probe extends RpcGroup.make(
  Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String }),
  Rpc.make("Big", { payload: { bytes: Schema.Number }, success: Schema.String }),
  Rpc.make("Never", {})
) {}

let echoed = 0
const handlers = Probe.toLayer({
  Echo: ({ text }) => Effect.sync(() => {
    echoed++
    return text
  }),
  Big: ({ bytes }) => Effect.succeed("b".repeat(bytes)),
  Never: () => Effect.never
})

const socketPath = Effect.map(Processes.tempDir("weft-control"), (dir) => join(dir, ControlSocket.SOCKET_NAME))

const serving = (options: ControlSocket.ServeOptions = {}) =>
  Effect.gen(function*() {
    const path = yield* socketPath
    yield* ControlSocket.serve(path, Probe, options).pipe(Effect.provide(handlers))
    return path
  })

/** A raw connection: frames written as given, frames read one by one. */
const rawClient = (path: string) =>
  Effect.gen(function*() {
    const socket = yield* Effect.acquireRelease(
      Effect.async<Socket>((resume) => {
        const socket = connect({ path }, () => resume(Effect.succeed(socket)))
      }),
      (socket) => Effect.sync(() => socket.destroy())
    )
    const send = (message: unknown) => socket.write(Framing.encode(new TextEncoder().encode(typeof message === "string" ? message : JSON.stringify(message))))
    return { socket, send }
  })

const eventually = <A>(effect: Effect.Effect<A>, done: (a: A) => boolean, timeout: Duration.DurationInput = "10 seconds") =>
  Effect.repeat(effect, { until: done, schedule: Schedule.spaced("10 millis") }).pipe(Effect.timeout(timeout))

describe("the control socket", () => {
  it.scopedLive("a call whose payload is JSON nested thousands deep is answered Malformed, and the connection serves on", () =>
    Effect.gen(function*() {
      const path = yield* serving()
      const { socket, send } = yield* rawClient(path)
      const answers: Array<unknown> = []
      let received = Buffer.alloc(0)
      socket.on("data", (data: Buffer) => {
        received = Buffer.concat([received, data])
        while (received.length >= 4 && received.length >= 4 + received.readUInt32BE(0)) {
          const length = received.readUInt32BE(0)
          answers.push(JSON.parse(received.subarray(4, 4 + length).toString("utf8")))
          received = received.subarray(4 + length)
        }
      })
      const nested = "[".repeat(5000) + "]".repeat(5000)
      send(`{"_tag":"Request","id":"7","tag":"Echo","payload":{"text":${nested}}}`)
      send({ _tag: "Request", id: "8", tag: "Echo", payload: { text: "still here" } })
      yield* eventually(Effect.sync(() => answers.length), (n) => n === 2)
      expect(answers[0]).toMatchObject({ _tag: "Refused", requestId: "7", reason: "Malformed" })
      expect(answers[1]).toEqual({ _tag: "Exit", requestId: "8", exit: { _tag: "Success", value: "still here" } })
    }))

  it.scopedLive("multi-byte characters arrive intact whichever read boundary splits them, both ways", () =>
    Effect.gen(function*() {
      const path = yield* serving()
      const client = yield* ControlSocket.client(path, Probe)
      // 90 KB of 3-byte characters cross 64 KiB reads; three prefixes shift the boundary
      const text = "€".repeat(30_000)
      for (const prefix of ["", "x", "xy"]) expect(yield* client.Echo({ text: prefix + text })).toBe(prefix + text)
    }))

  it.scopedLive("a client that sends calls and never reads the answers stops being read; once it reads, every call is answered", () =>
    Effect.gen(function*() {
      const path = yield* serving()
      const { socket } = yield* rawClient(path)
      echoed = 0
      let answered = 0
      socket.pause()
      // about 1 KB per answer
      const calls = Array.from({ length: 20_000 }, (_, i) =>
        Framing.encode(new TextEncoder().encode(JSON.stringify({ _tag: "Request", id: String(i + 1), tag: "Echo", payload: { text: "p".repeat(1000) } }))))
      socket.write(Buffer.concat(calls))
      yield* Effect.sleep(Duration.seconds(2))
      const early = echoed
      yield* Effect.sleep(Duration.seconds(1))
      // a few socket buffers' worth of answers, then nothing more until the client reads
      expect(echoed).toBe(early)
      expect(echoed).toBeLessThan(2_000)
      let pending = Buffer.alloc(0)
      socket.on("data", (data: Buffer) => {
        pending = Buffer.concat([pending, data])
        while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
          pending = pending.subarray(4 + pending.readUInt32BE(0))
          answered++
        }
      })
      socket.resume()
      yield* eventually(Effect.sync(() => answered), (n) => n === 20_000, "60 seconds")
    }), 90_000)

  it.scopedLive("an answer over the frame bound is a typed RpcError TooLarge for that call only", () =>
    Effect.gen(function*() {
      const path = yield* serving()
      const client = yield* ControlSocket.client(path, Probe)
      const refused = yield* Effect.flip(client.Big({ bytes: ControlSocket.MAX_FRAME_BYTES + 1 }))
      expect(refused).toMatchObject({ _tag: "RpcError", reason: "TooLarge" })
      expect(yield* client.Echo({ text: "after" })).toBe("after")
    }))

  it.scopedLive("a frame over the bound, or one that is not a message, closes the connection", () =>
    Effect.gen(function*() {
      const path = yield* serving()
      for (const frame of [Uint8Array.of(0, 0x20, 0, 0, 1), Framing.encode(Uint8Array.of(0xff, 0xfe))]) {
        const { socket } = yield* rawClient(path)
        const closed = Effect.async<void>((resume) => {
          socket.once("close", () => resume(Effect.void))
        })
        socket.write(frame)
        yield* closed.pipe(Effect.timeout(Duration.seconds(5)))
      }
    }))

  it.scopedLive("at most maxConnections are served; an idle connection is closed after idleTimeout, a busy one is not", () =>
    Effect.gen(function*() {
      const path = yield* serving({ maxConnections: 2, idleTimeout: Duration.millis(300) })
      const first = yield* ControlSocket.client(path, Probe)
      const second = yield* ControlSocket.client(path, Probe)
      expect(yield* first.Echo({ text: "1" })).toBe("1")
      expect(yield* second.Echo({ text: "2" })).toBe("2")
      const third = yield* ControlSocket.client(path, Probe)
      expect(yield* Effect.flip(third.Echo({ text: "3" }))).toMatchObject({ _tag: "RpcError", reason: "Closed" })
      // a call that runs longer than the idle timeout keeps its connection
      const busy = yield* Effect.fork(first.Never())
      yield* Effect.sleep(Duration.millis(800))
      expect(Option.isNone(yield* busy.poll)).toBe(true)
      // the other one, idle, was closed
      expect(yield* Effect.flip(second.Echo({ text: "2" }))).toMatchObject({ _tag: "RpcError", reason: "Closed" })
    }))

  it.scopedLive("a second server on a served socket is refused AlreadyRunning; a stale socket file is replaced", () =>
    Effect.gen(function*() {
      const path = yield* serving()
      const again = yield* Effect.either(Effect.scoped(ControlSocket.serve(path, Probe).pipe(Effect.provide(handlers))))
      expect(Either.isLeft(again) && again.left).toMatchObject({ _tag: "ControlError", reason: "AlreadyRunning" })
      expect(yield* ControlSocket.answers(path)).toBe(true)
      const nothing = yield* socketPath
      expect(yield* Effect.flip(Effect.scoped(ControlSocket.client(nothing, Probe)))).toMatchObject({ _tag: "ControlError", reason: "NotRunning" })
    }))
})
