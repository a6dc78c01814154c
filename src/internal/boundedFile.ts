/**
 * Reads a small state file (an identity, the libraries, the address book)
 * with the checks that untrusted disk input needs: the path must be a
 * regular file (a FIFO or a device would block the read forever or never
 * end), at most `maxBytes` long, and it is checked and read through one open
 * handle, so it cannot be swapped in between.
 *
 * @internal
 */
import { constants, type Stats } from "node:fs"
import { open } from "node:fs/promises"

/** The file is not one to read: not a regular file, or too large. */
export class UnreadableFileError extends Error {
  override readonly name = "UnreadableFileError"
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * The file's text (UTF-8) and what `fstat` said of it; `undefined` when there
 * is no file (other failures reject, with Node's error code where it has one).
 */
export const read = async (path: string, maxBytes: number): Promise<{ readonly text: string; readonly stats: Stats } | undefined> => {
  let handle
  try {
    // non-blocking: opening a FIFO with no writer would wait for one
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException)?.code === "ENOENT") return undefined
    throw cause
  }
  try {
    const stats = await handle.stat()
    if (!stats.isFile()) throw new UnreadableFileError(`${path} is not a regular file`)
    if (stats.size > maxBytes) throw new UnreadableFileError(`${path} has ${stats.size} bytes; at most ${maxBytes} are read`)
    // one byte more than `stat` said: a file that grew meanwhile is refused, not cut
    const buffer = Buffer.alloc(stats.size + 1)
    let length = 0
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null)
      if (bytesRead === 0) break
      length += bytesRead
      if (length === buffer.length) throw new UnreadableFileError(`${path} grew while it was read`)
    }
    let text: string
    try {
      text = utf8.decode(buffer.subarray(0, length))
    } catch {
      // not turned into U+FFFD: a file that is not UTF-8 is not ours, and is said to be so
      throw new UnreadableFileError(`${path} is not UTF-8 text`)
    }
    return { text, stats }
  } finally {
    await handle.close()
  }
}
