/**
 * A hostile rich-text change for tests and benchmarks: an uncompressed
 * Automerge change of about a hundred bytes whose run-length encoding stands
 * for `n` inserts into the base's text (the expansion of issue 12, finding 2).
 *
 * @since 0.1.0
 */
import * as Automerge from "@automerge/automerge"
import { createHash } from "node:crypto"
import * as RichText from "../RichText.js"

const uleb = (n: number): Array<number> => {
  const out: Array<number> = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    out.push(byte)
  } while (n > 0)
  return out
}
const sleb = (n: number): Array<number> => {
  const out: Array<number> = []
  while (true) {
    const byte = ((n % 128) + 128) % 128
    n = Math.floor(n / 128)
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return [...out, byte]
    out.push(byte | 0x80)
  }
}

/**
 * An uncompressed change by actor `aa` after the base change, inserting `n`
 * null elements one after another into the text: every column is one run.
 */
export const expanding = (n: number): Uint8Array => {
  const base = Buffer.from(Automerge.decodeChange(RichText.baseChange).hash, "hex")
  const columns: Array<readonly [number, Array<number>]> = [
    [0x01, [...sleb(n), ...uleb(1)]], // obj actor: the text's actor ("00", the other actor)
    [0x02, [...sleb(n), ...uleb(1)]], // obj counter: 1
    [0x11, [0, ...uleb(1), ...sleb(n - 1), ...uleb(0)]], // key actor: _head, then our own inserts
    [0x13, [...sleb(-2), ...sleb(0), ...sleb(2), ...sleb(n - 2), ...sleb(1)]], // key counter (delta)
    [0x34, [...uleb(0), ...uleb(n)]], // insert: all true
    [0x42, [...sleb(n), ...uleb(1)]], // action: set
    [0x56, [...sleb(n), ...uleb(0)]], // value: null
    [0x70, [...sleb(n), ...uleb(0)]] // no predecessors
  ]
  const data = [
    1, ...base, // deps
    1, 0xaa, // actor
    1, 2, 0, 0, // seq, start op, time, message
    1, 1, 0x00, // other actors: "00"
    columns.length, ...columns.flatMap(([spec, bytes]) => [spec, ...uleb(bytes.length)]),
    ...columns.flatMap(([, bytes]) => bytes)
  ]
  const body = [1, ...uleb(data.length), ...data]
  const checksum = createHash("sha256").update(Uint8Array.from(body)).digest().subarray(0, 4)
  return Uint8Array.from([0x85, 0x6f, 0x4a, 0x83, ...checksum, ...body])
}

