import { describe, expect, it } from "@effect/vitest"
import { StreamCloseEvent, StreamMessageEvent, type MessageStream } from "@libp2p/interface"
import { Uint8ArrayList } from "uint8arraylist"
import { FrameTooLargeError, watchFrames } from "./yamuxGuard.js"
import * as Bytes from "../../internal/bytes.js"

const MAX = 96
const DATA = 0
const WINDOW_UPDATE = 1
const PING = 2

/** The connection side `watchFrames` touches: message and close events, and `abort`. */
class FakeConnection extends EventTarget {
  readonly aborts: Array<Error> = []
  abort(error: Error): void {
    this.aborts.push(error)
  }
  /** One "message" event per argument, as libp2p dispatches them. */
  deliver(...messages: Array<Uint8Array | Uint8ArrayList>): void {
    // the hoisted uint8arraylist is 2.x; @libp2p/interface types `data` with its own 3.x copy
    for (const data of messages) this.dispatchEvent(new StreamMessageEvent(data as StreamMessageEvent["data"]))
  }
}

const guarded = () => {
  const connection = new FakeConnection()
  watchFrames(connection as unknown as MessageStream, MAX)
  return connection
}

/** A 12-byte Yamux header: version, type, flags, stream id, length, big-endian. */
const header = (type: number, length: number, streamId = 1): Uint8Array => {
  const bytes = new Uint8Array(12)
  const view = new DataView(bytes.buffer)
  view.setUint8(0, 0)
  view.setUint8(1, type)
  view.setUint16(2, 0)
  view.setUint32(4, streamId)
  view.setUint32(8, length)
  return bytes
}

const concat = (...parts: Array<Uint8Array>): Uint8Array => Bytes.concat(parts)

// a body made of oversize data headers: any guard that reads body bytes as a header aborts on it
const decoyBody = (length: number): Uint8Array => {
  const decoy = header(DATA, 0xffffffff)
  return Uint8Array.from({ length }, (_, i) => decoy[i % decoy.byteLength]!)
}

const dataFrame = (body: Uint8Array): Uint8Array => concat(header(DATA, body.byteLength), body)

/** `bytes` cut at each of `offsets`, in increasing order. */
const splitAt = (bytes: Uint8Array, offsets: ReadonlyArray<number>): Array<Uint8Array> =>
  [0, ...offsets].map((start, i) => bytes.subarray(start, offsets[i] ?? bytes.byteLength))

const chunksOf = (bytes: Uint8Array, size: number): Array<Uint8Array> =>
  Array.from({ length: Math.ceil(bytes.byteLength / size) }, (_, i) => bytes.subarray(i * size, (i + 1) * size))

const expectAbortedAt = (connection: FakeConnection, length: number) => {
  expect(connection.aborts).toHaveLength(1)
  const error = connection.aborts[0]
  expect(error).toBeInstanceOf(FrameTooLargeError)
  expect(error?.message).toContain(`${length} bytes`)
}

const legalFrames = concat(
  dataFrame(decoyBody(MAX)),
  header(WINDOW_UPDATE, 256 * 1024),
  dataFrame(new Uint8Array(MAX).fill(0xff)),
  header(PING, 7, 0),
  dataFrame(new Uint8Array(0)),
  dataFrame(decoyBody(MAX - 1))
)

describe("watchFrames", () => {
  it("never aborts legal frames, data bodies of exactly the limit included", () => {
    const connection = guarded()
    connection.deliver(legalFrames)
    connection.deliver(...chunksOf(legalFrames, 5))
    connection.deliver(...chunksOf(legalFrames, 1))
    expect(connection.aborts).toEqual([])
  })

  it("aborts at a data frame one byte over the limit, naming its length", () => {
    const connection = guarded()
    connection.deliver(header(DATA, MAX + 1))
    expectAbortedAt(connection, MAX + 1)
  })

  it("aborts at a data frame announcing 0xffffffff bytes", () => {
    const connection = guarded()
    connection.deliver(header(DATA, 0xffffffff))
    expectAbortedAt(connection, 0xffffffff)
  })

  it("aborts at an oversize header split at any byte offset", () => {
    for (let cut = 1; cut < 12; cut++) {
      const connection = guarded()
      connection.deliver(...splitAt(header(DATA, MAX + 1), [cut]))
      expectAbortedAt(connection, MAX + 1)
    }
  })

  it("aborts at an oversize header split across chunks after a long body split across many chunks", () => {
    const bytes = concat(dataFrame(decoyBody(MAX)), header(DATA, 0xffffffff))
    for (const size of [1, 5, 7, 11, 13]) {
      const connection = guarded()
      connection.deliver(...chunksOf(bytes, size))
      expectAbortedAt(connection, 0xffffffff)
    }
  })

  it("aborts at an oversize frame that follows legal frames in the same chunk", () => {
    const connection = guarded()
    connection.deliver(concat(legalFrames, header(DATA, MAX + 1)))
    expectAbortedAt(connection, MAX + 1)
  })

  it("aborts at an oversize header right after a legal data body in the same chunk", () => {
    const connection = guarded()
    connection.deliver(concat(dataFrame(decoyBody(MAX)), header(DATA, MAX + 1), decoyBody(MAX + 1)))
    expectAbortedAt(connection, MAX + 1)
  })

  it("reads a Uint8ArrayList chunk by chunk, headers split between its chunks", () => {
    const bytes = concat(legalFrames, header(DATA, MAX + 1))
    const connection = guarded()
    // cuts inside the first header, a decoy body, the window update header and the oversize header
    connection.deliver(new Uint8ArrayList(...splitAt(bytes, [3, 12 + 20, 12 + MAX + 6, bytes.byteLength - 5])))
    expectAbortedAt(connection, MAX + 1)
  })

  it("reads Uint8ArrayLists with consumed prefixes, as libp2p's read buffer hands them over", () => {
    const bytes = concat(legalFrames, header(DATA, MAX + 1))
    const connection = guarded()
    let offset = 0
    for (const size of [1, 17, 40, 3, 200, 9]) {
      const [first, ...rest] = chunksOf(bytes.subarray(offset, offset + size), 6)
      // four bytes already read off the front of the first chunk
      const list = new Uint8ArrayList(concat(new Uint8Array(4).fill(0xee), first!), ...rest)
      list.consume(4)
      connection.deliver(list.sublist())
      offset += size
    }
    connection.deliver(new Uint8ArrayList(...chunksOf(bytes.subarray(offset), 2)))
    expectAbortedAt(connection, MAX + 1)
  })

  it("aborts once, whatever arrives after the abort", () => {
    const connection = guarded()
    connection.deliver(header(DATA, MAX + 1))
    connection.deliver(header(DATA, 0xffffffff), header(DATA, MAX + 1))
    expectAbortedAt(connection, MAX + 1)
  })

  it("stops listening once the connection closes", () => {
    const connection = guarded()
    connection.deliver(dataFrame(decoyBody(MAX)))
    connection.dispatchEvent(new StreamCloseEvent())
    connection.deliver(header(DATA, 0xffffffff))
    expect(connection.aborts).toEqual([])
  })

  it("treats the length of other frame types as a value, not a body", () => {
    // a window update's length is a window delta and a ping's an opaque value: no body follows
    const connection = guarded()
    connection.deliver(concat(header(WINDOW_UPDATE, 0xffffffff), header(PING, 0xffffffff), dataFrame(decoyBody(MAX))))
    expect(connection.aborts).toEqual([])
    connection.deliver(concat(header(WINDOW_UPDATE, 0xffffffff), header(DATA, MAX + 1)))
    expectAbortedAt(connection, MAX + 1)
  })
})
