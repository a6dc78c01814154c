/**
 * A bound on Yamux data frames, checked as their headers arrive.
 *
 * @chainsafe/libp2p-yamux 8 checks a data frame against the stream's receive
 * window only once the whole frame has arrived: its decoder buffers the
 * `length` bytes a header announces first. A header announcing 4 GiB would
 * have the connection buffer whatever follows, up to 4 GiB, while it stays
 * open. This wrapper reads the frame headers on the secured connection
 * before Yamux does (its listener is added first, so it runs first) and
 * aborts the connection with `FrameTooLargeError` at the first data frame
 * longer than any window this node grants. It only counts bytes: every
 * other check stays Yamux's.
 *
 * @internal
 */
import { yamux, type YamuxMuxerInit } from "@chainsafe/libp2p-yamux"
import type { MessageStream, StreamMessageEvent, StreamMuxerFactory } from "@libp2p/interface"

const HEADER_BYTES = 12
const DATA_FRAME = 0

/** A data frame announced more bytes than the largest window this node grants. */
export class FrameTooLargeError extends Error {
  override readonly name = "FrameTooLargeError"
}

/**
 * Follows the frame boundaries of one connection's Yamux byte stream and
 * aborts the connection at the first data frame longer than `maxDataBytes`.
 * Exported for its unit test.
 *
 * @internal
 */
export const watchFrames = (connection: MessageStream, maxDataBytes: number): void => {
  const header = new Uint8Array(HEADER_BYTES)
  const view = new DataView(header.buffer)
  let filled = 0
  // body bytes of the current data frame still to come
  let body = 0
  let done = false
  const scan = (chunk: Uint8Array) => {
    let offset = 0
    while (offset < chunk.byteLength && !done) {
      if (body > 0) {
        const n = Math.min(body, chunk.byteLength - offset)
        body -= n
        offset += n
        continue
      }
      const n = Math.min(HEADER_BYTES - filled, chunk.byteLength - offset)
      header.set(chunk.subarray(offset, offset + n), filled)
      filled += n
      offset += n
      if (filled < HEADER_BYTES) return
      filled = 0
      if (header[1] !== DATA_FRAME) continue
      const length = view.getUint32(8)
      if (length > maxDataBytes) {
        done = true
        connection.abort(new FrameTooLargeError(`a Yamux data frame of ${length} bytes exceeds the largest window, ${maxDataBytes} bytes`))
        return
      }
      body = length
    }
  }
  const onMessage = (event: StreamMessageEvent) => {
    if (done) return
    if (event.data instanceof Uint8Array) scan(event.data)
    // a Uint8ArrayList iterates over its Uint8Array chunks, in order
    else for (const chunk of event.data) scan(chunk)
  }
  connection.addEventListener("message", onMessage)
  connection.addEventListener("close", () => connection.removeEventListener("message", onMessage), { once: true })
}

/** Yamux with data frames bounded by `maxDataBytes` before they are buffered. */
export const guardedYamux = (init: YamuxMuxerInit, maxDataBytes: number) => (): StreamMuxerFactory => {
  const inner = yamux(init)()
  return {
    protocol: inner.protocol,
    createStreamMuxer: (connection) => {
      watchFrames(connection, maxDataBytes)
      return inner.createStreamMuxer(connection)
    }
  }
}
