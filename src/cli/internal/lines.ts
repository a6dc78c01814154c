/**
 * Newline-delimited input, bounded: the control socket's requests and
 * answers, and pairing answers typed on standard input.
 *
 * @internal
 */

/** What to do with the lines of a byte stream. */
export interface Handlers {
  /** A line, without its newline (blank ones too: at a prompt, Enter alone is an answer). */
  readonly onLine: (line: string) => void
  /**
   * A line passed the bound: `"skip"` drops it up to its newline and reads
   * on; `"stop"` reads nothing more.
   */
  readonly onOversize: () => "skip" | "stop"
}

/**
 * A `data` listener splitting bytes into lines of at most `maxBytes`. Lines
 * are cut on the newline byte and decoded whole, so a character split
 * between two reads arrives intact; at most `maxBytes` of a line are held.
 */
export const split = (maxBytes: number, handlers: Handlers): (data: Buffer) => void => {
  let pending: Array<Buffer> = []
  let pendingBytes = 0
  // inside a line over the bound, until its newline
  let skipping = false
  let stopped = false
  const oversize = () => {
    pending = []
    pendingBytes = 0
    if (handlers.onOversize() === "stop") stopped = true
    else skipping = true
  }
  return (data) => {
    let start = 0
    while (!stopped) {
      const newline = data.indexOf(0x0a, start)
      const piece = data.subarray(start, newline < 0 ? data.length : newline)
      if (!skipping) {
        if (pendingBytes + piece.length > maxBytes) oversize()
        else if (newline >= 0) {
          const line = (pending.length === 0 ? piece : Buffer.concat([...pending, piece])).toString("utf8")
          pending = []
          pendingBytes = 0
          handlers.onLine(line)
        } else if (piece.length > 0) {
          pending.push(piece)
          pendingBytes += piece.length
        }
      }
      if (newline < 0) return
      skipping = false
      start = newline + 1
    }
  }
}
