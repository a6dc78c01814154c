/**
 * Bytes received and not yet read: the pieces a stream delivered, in order,
 * for the readers that cut a byte stream into frames (`Framing.reader`,
 * `Framing.decode`, Spacedrop's wire). A read copies each byte at most once:
 * `take` of exactly one whole piece, and `views`, copy nothing.
 *
 * @since 0.1.0
 */
import type * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/** A queue of received bytes (see the module's comment). */
export class ByteQueue {
  private pieces: Array<Uint8Array> = []
  // pieces before `head` are read: dropped from `pieces` once they are half of it
  private head = 0
  /** Bytes queued. */
  length = 0

  push(piece: Uint8Array): void {
    if (piece.length === 0) return
    this.pieces.push(piece)
    this.length += piece.length
  }

  /** The first `n` bytes (`n` at most `length`) as views of the pieces: nothing copied. */
  views(n: number): Array<Uint8Array> {
    const out: Array<Uint8Array> = []
    this.length -= n
    while (n > 0) {
      const first = this.pieces[this.head]!
      if (first.length <= n) {
        out.push(first)
        n -= first.length
        this.head++
      } else {
        out.push(first.subarray(0, n))
        this.pieces[this.head] = first.subarray(n)
        n = 0
      }
    }
    this.compact()
    return out
  }

  /**
   * The first `n` bytes (`n` at most `length`) in one buffer of their own: a
   * piece of exactly `n` bytes as it is, else a copy (a short read never holds
   * on to the larger piece it came from).
   */
  take(n: number): Uint8Array {
    const first = this.pieces[this.head]
    if (first !== undefined && first.length === n) {
      this.length -= n
      this.head++
      this.compact()
      return first
    }
    const out = new Uint8Array(n)
    let at = 0
    for (const view of this.views(n)) {
      out.set(view, at)
      at += view.length
    }
    return out
  }

  /** Drops the first `n` bytes (`n` at most `length`). */
  drop(n: number): void {
    this.views(n)
  }

  /** The byte at `at` (`at` below `length`). */
  byteAt(at: number): number {
    for (let i = this.head;; i++) {
      const piece = this.pieces[i]!
      if (at < piece.length) return piece[at]!
      at -= piece.length
    }
  }

  /** The big-endian u32 the queue starts with (`length` at least 4). */
  peekUint32(): number {
    const first = this.pieces[this.head]!
    if (first.length >= 4) return new DataView(first.buffer, first.byteOffset, 4).getUint32(0)
    return ((this.byteAt(0) << 24) | (this.byteAt(1) << 16) | (this.byteAt(2) << 8) | this.byteAt(3)) >>> 0
  }

  /** Where `byte` first occurs, or -1. */
  indexOf(byte: number): number {
    let offset = 0
    for (let i = this.head; i < this.pieces.length; i++) {
      const piece = this.pieces[i]!
      const at = piece.indexOf(byte)
      if (at >= 0) return offset + at
      offset += piece.length
    }
    return -1
  }

  /** Everything, emptying the queue. */
  drain(): Array<Uint8Array> {
    const all = this.head === 0 ? this.pieces : this.pieces.slice(this.head)
    this.pieces = []
    this.head = 0
    this.length = 0
    return all
  }

  private compact(): void {
    if (this.head === this.pieces.length) {
      this.pieces = []
      this.head = 0
    } else if (this.head > 64 && this.head * 2 > this.pieces.length) {
      this.pieces = this.pieces.slice(this.head)
      this.head = 0
    }
  }
}

/** What fills a queue from a stream: `more` pulls one delivery in; `ended` once the stream has ended. */
export interface Filler<E> {
  /** Pulls one more delivery into the queue: true when it did, false once the stream has ended (and ever after). */
  readonly more: Effect.Effect<boolean, E>
  readonly ended: () => boolean
}

/** The filler of `queue` from `pull` (a `Stream.toPull`). */
export const filler = <E>(pull: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<E>>, queue: ByteQueue): Filler<E> => {
  let ended = false
  const more: Effect.Effect<boolean, E> = Effect.suspend(() =>
    ended ? Effect.succeed(false) : Effect.matchEffect(pull, {
      onFailure: Option.match({
        onNone: () => {
          ended = true
          return Effect.succeed(false)
        },
        onSome: Effect.fail
      }),
      onSuccess: (chunk) => {
        for (const piece of chunk) queue.push(piece)
        return Effect.succeed(true)
      }
    })
  )
  return { more, ended: () => ended }
}
