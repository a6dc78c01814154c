/**
 * Spacedrop's file-system work, on both sides; node's errors are translated
 * to `SpacedropError` here and nowhere else.
 *
 * Nothing here follows a link: the sender refuses them, the receiver checks
 * every component under the target with `lstat` and opens files with
 * `O_NOFOLLOW`; a received file is written to a temporary name beside its
 * target, synced, and linked into place (`link` fails rather than replace
 * an existing name), so an existing file is never overwritten.
 */
import * as Effect from "effect/Effect"
import { createHash } from "node:crypto"
import { constants } from "node:fs"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import * as Protocol from "../Protocol.js"

type SpacedropError = Protocol.SpacedropError

/** Who and what an error is about. */
export interface Where {
  readonly peer: string
  readonly transfer?: string
}

const codeOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : undefined

/** A node file-system failure as the typed error it is. */
export const ioError = (where: Where, path: string, what: string) => (cause: unknown): Protocol.SpacedropError =>
  new Protocol.SpacedropError({
    reason: codeOf(cause) === "ENOSPC" ? "NoSpace" : codeOf(cause) === "EEXIST" ? "Exists" : "Failed",
    ...where,
    path,
    detail: `${what}: ${cause instanceof Error ? cause.message.slice(0, 300) : String(cause).slice(0, 300)}`
  })

/** Runs a node promise, failing with a typed error. */
export const io = <A>(where: Where, path: string, what: string, run: () => Promise<A>): Effect.Effect<A, Protocol.SpacedropError> =>
  Effect.tryPromise({ try: run, catch: ioError(where, path, what) })

/** `lstat`, or `undefined` when nothing is there. */
export const lstatOrNone = (where: Where, path: string) =>
  io(where, path, "lstat", () => fs.lstat(path).catch((cause) => (codeOf(cause) === "ENOENT" ? undefined : Promise.reject(cause))))

const READ_BYTES = 1024 * 1024

/**
 * A file's hash as the manifest carries it (see `Protocol`): the SHA-256 of
 * the SHA-256 digests of its chunks of `chunkBytes` (the last one shorter),
 * one after the other. Fed bytes cut anywhere (`update`), or a chunk's
 * digest already computed (`addChunk`, at a chunk's boundary): the receiver
 * folds in the digests it verified its chunks with, so each byte is hashed
 * once on arrival, not once for its chunk and once more for its file.
 */
export class FileHash {
  private readonly outer = createHash("sha256")
  private chunk = createHash("sha256")
  /** Bytes of the current chunk fed so far. */
  private filled = 0

  constructor(private readonly chunkBytes: number) {}

  update(bytes: Uint8Array): void {
    let at = 0
    while (at < bytes.length) {
      const n = Math.min(this.chunkBytes - this.filled, bytes.length - at)
      this.chunk.update(at === 0 && n === bytes.length ? bytes : bytes.subarray(at, at + n))
      this.filled += n
      at += n
      if (this.filled === this.chunkBytes) this.endChunk()
    }
  }

  /** A whole chunk's digest (only at a chunk's boundary). */
  addChunk(digest: Uint8Array): void {
    this.outer.update(digest)
  }

  /** The file's hash, in hex. */
  digest(): string {
    if (this.filled > 0) this.endChunk()
    return this.outer.digest("hex")
  }

  private endChunk(): void {
    this.outer.update(this.chunk.digest())
    this.chunk = createHash("sha256")
    this.filled = 0
  }
}

/** The manifest's hash of `bytes`, in chunks of `chunkBytes` (`FileHash`). */
export const hashOfBytes = (bytes: Uint8Array, chunkBytes: number): string => {
  const hash = new FileHash(chunkBytes)
  hash.update(bytes)
  return hash.digest()
}

/** The manifest's hash of a file (`FileHash`), read in bounded pieces through a handle that does not follow links. */
const hashWhole = async (path: string, chunkBytes: number): Promise<string> => {
  const handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    const hash = new FileHash(chunkBytes)
    // a small file's size (and one byte to see its end), not a whole MiB per file
    const size = (await handle.stat()).size
    const buffer = Buffer.allocUnsafe(Math.max(1, Math.min(READ_BYTES, size + 1)))
    while (true) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null)
      hash.update(buffer.subarray(0, bytesRead))
      // a regular file reads short only at its end: a small file is one read, not a read and one more that
      // finds nothing (what it is when sent is checked again then: its size, its time, its hash)
      if (bytesRead < buffer.length) return hash.digest()
    }
  } finally {
    await handle.close().catch(() => undefined)
  }
}

/**
 * Feeds the first `length` bytes of an open file to `hash` (a resumed or
 * rewound file: its whole-file hash covers what was sent before); the bytes
 * read, less than `length` if the file is shorter.
 */
export const hashPrefix = async (handle: fs.FileHandle, hash: FileHash, length: number): Promise<number> => {
  const buffer = Buffer.allocUnsafe(Math.min(READ_BYTES, Math.max(1, length)))
  let done = 0
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - done), done)
    if (bytesRead === 0) break
    hash.update(buffer.subarray(0, bytesRead))
    done += bytesRead
  }
  return done
}

/** A source entry: what goes in the manifest, and where it is read from. */
export interface Source {
  readonly entry: Protocol.Entry
  /** The file on this disk (files only). */
  readonly file: string | undefined
}

/**
 * The manifest of `paths` (files and folders, each sent under its own name,
 * folders with everything in them), hashed in chunks of the size
 * `chunkBytesFor` gives for the files' total (`FileHash`). A link, or
 * anything neither file nor folder, fails with `Unsupported`: Spacedrop
 * never sends what a link points to without being asked.
 */
export const manifest = (
  where: Where,
  paths: ReadonlyArray<string>,
  chunkBytesFor: (totalBytes: number) => number
): Effect.Effect<{ readonly sources: ReadonlyArray<Source>; readonly chunkBytes: number }, Protocol.SpacedropError> =>
  Effect.flatMap(
    Effect.promise(() => walk(where, paths, chunkBytesFor)),
    (walked) => (walked instanceof Protocol.SpacedropError ? Effect.fail(walked) : Effect.succeed(walked))
  )

/** Files (and folders) read at once while a manifest is made. */
const MANIFEST_CONCURRENCY = 8

/**
 * The walk behind `manifest`, as plain promises (an Effect per step costs
 * more than the step for thousands of small files): files hashed several at
 * a time, the order the walk's. The first failure, as a value.
 */
const walk = async (
  where: Where,
  paths: ReadonlyArray<string>,
  chunkBytesFor: (totalBytes: number) => number
): Promise<{ readonly sources: Array<Source>; readonly chunkBytes: number } | Protocol.SpacedropError> => {
  let failure: Protocol.SpacedropError | undefined
  // at most MANIFEST_CONCURRENCY steps touch the disk at once; a folder holds no place while its entries wait
  let active = 0
  const waiting: Array<() => void> = []
  const step = async <A>(path: string, what: string, run: () => Promise<A>): Promise<A | undefined> => {
    while (active >= MANIFEST_CONCURRENCY) await new Promise<void>((resume) => waiting.push(resume))
    active++
    try {
      return failure === undefined ? await run() : undefined
    } catch (cause) {
      failure ??= ioError(where, path, what)(cause)
      return undefined
    } finally {
      active--
      waiting.shift()?.()
    }
  }
  const visit = async (absolute: string, relative: string): Promise<Array<Source>> => {
    const stat = await step(absolute, "lstat", () => fs.lstat(absolute))
    if (stat === undefined) return []
    const mtime = stat.mtimeMs
    if (stat.isSymbolicLink()) {
      failure ??= new Protocol.SpacedropError({ reason: "Unsupported", ...where, path: absolute, detail: "a symbolic link (Spacedrop sends no links)" })
      return []
    }
    if (stat.isDirectory()) {
      const names = await step(absolute, "readdir", () => fs.readdir(absolute))
      if (names === undefined) return []
      const inside = await Promise.all(names.sort().map((name) => visit(nodePath.join(absolute, name), `${relative}/${name}`)))
      const out: Array<Source> = [{ entry: { path: relative, kind: "directory", size: 0, mtime }, file: undefined }]
      for (const sources of inside) for (const source of sources) out.push(source)
      return out
    }
    if (!stat.isFile()) {
      failure ??= new Protocol.SpacedropError({ reason: "Unsupported", ...where, path: absolute, detail: "neither a file nor a folder" })
      return []
    }
    // hashed once the walk is done: the chunk size the hash is made in depends on the total
    return [{ entry: { path: relative, kind: "file", size: stat.size, mtime }, file: absolute }]
  }
  const walked: Array<Source> = []
  for (const path of paths) {
    const absolute = nodePath.resolve(path)
    for (const source of await visit(absolute, nodePath.basename(absolute))) walked.push(source)
  }
  if (failure !== undefined) return failure
  const chunkBytes = chunkBytesFor(walked.reduce((n, s) => n + (s.entry.kind === "file" ? s.entry.size : 0), 0))
  const sources = await Promise.all(walked.map(async (source): Promise<Source> => {
    if (source.file === undefined) return source
    const file = source.file
    const hash = await step(file, "read", () => hashWhole(file, chunkBytes))
    return { entry: { ...source.entry, hash: hash ?? "" }, file }
  }))
  return failure ?? { sources, chunkBytes }
}

/** How the receiver treats a file that already exists where one arrives. */
export type OnExisting = "rename" | "refuse"

/**
 * Checks a target before accepting: it is a directory; no accepted entry
 * meets a link, or a file where it needs a directory, on its way down;
 * with `refuse`, no accepted file exists; the file system has room.
 * Resolves the target's own links once (the user chose it), and returns it.
 */
export const checkTarget = (
  where: Where,
  target: string,
  entries: ReadonlyArray<Protocol.Entry>,
  onExisting: OnExisting
): Effect.Effect<string, Protocol.SpacedropError> =>
  Effect.gen(function*() {
    const root = yield* io(where, target, "resolve the target", () => fs.realpath(target))
    const stat = yield* io(where, root, "stat the target", () => fs.stat(root))
    if (!stat.isDirectory()) return yield* new Protocol.SpacedropError({ reason: "Failed", ...where, path: target, detail: "the target is not a directory" })
    const checked = new Map<string, "directory" | "missing">()
    const refuse = (reason: "UnsafePath" | "Exists", path: string, detail: string) =>
      new Protocol.SpacedropError({ reason, ...where, path, detail })
    let bytes = 0
    for (const entry of entries) {
      const names = entry.path.split("/")
      for (let i = 1; i <= names.length; i++) {
        const relative = names.slice(0, i).join("/")
        const last = i === names.length
        const known = checked.get(relative)
        if (known === "missing") break
        if (known === "directory" && !last) continue
        const here = yield* lstatOrNone(where, nodePath.join(root, relative))
        if (here === undefined) {
          checked.set(relative, "missing")
          break
        }
        if (here.isSymbolicLink()) {
          if (last && entry.kind === "file" && onExisting === "rename") break // a numbered name beside it; the link is never followed
          return yield* refuse("UnsafePath", entry.path, `${JSON.stringify(relative)} is a symbolic link inside the target (never followed)`)
        }
        if (here.isDirectory()) {
          checked.set(relative, "directory")
          if (last && entry.kind === "file") return yield* refuse("Exists", entry.path, "a directory exists where the file goes")
          continue
        }
        if (!last || entry.kind === "directory") return yield* refuse("Exists", entry.path, `a file exists at ${JSON.stringify(relative)}, where a directory goes`)
        if (onExisting === "refuse") return yield* refuse("Exists", entry.path, "the file exists in the target")
      }
      bytes += entry.size
    }
    const space = yield* io(where, root, "statfs", () => fs.statfs(root))
    const free = space.bavail * space.bsize
    if (free < bytes) {
      return yield* new Protocol.SpacedropError({ reason: "NoSpace", ...where, path: target, detail: `${bytes} bytes offered, ${free} free` })
    }
    return root
  })

/**
 * Makes `relative` a directory under `root`, one component at a time, each
 * checked with `lstat` after it exists: a link put there meanwhile is
 * refused, never followed. `made` remembers directories already checked.
 */
export const ensureDirectory = (where: Where, root: string, relative: string, made: Set<string>): Effect.Effect<void, Protocol.SpacedropError> =>
  Effect.gen(function*() {
    if (relative === "" || made.has(relative)) return
    const names = relative.split("/")
    for (let i = 1; i <= names.length; i++) {
      const part = names.slice(0, i).join("/")
      if (made.has(part)) continue
      const absolute = nodePath.join(root, part)
      yield* io(where, absolute, "mkdir", () => fs.mkdir(absolute).catch((cause) => (codeOf(cause) === "EEXIST" ? undefined : Promise.reject(cause))))
      const stat = yield* io(where, absolute, "lstat", () => fs.lstat(absolute))
      if (stat.isSymbolicLink() || !stat.isDirectory()) {
        return yield* new Protocol.SpacedropError({ reason: "UnsafePath", ...where, path: part, detail: "not a directory (a link or a file) inside the target" })
      }
      made.add(part)
    }
  })

/** `a.txt` → `a (n).txt`; a name without an extension (or a dotfile) gets ` (n)` at its end. */
export const numbered = (name: string, n: number): string => {
  const dot = name.lastIndexOf(".")
  return dot > 0 ? `${name.slice(0, dot)} (${n})${name.slice(dot)}` : `${name} (${n})`
}

/** Most numbered names tried before giving up. */
const MAX_NUMBER = 10_000

/**
 * Puts `temp` in place at `final` (or a numbered name beside it, with
 * `rename`) without ever replacing an existing name: `link` fails with
 * `EEXIST` where `rename` would overwrite. Returns the name used; the
 * caller syncs its directory (`syncDirectory`) before it counts on it.
 */
export const place = (where: Where, temp: string, final: string, onExisting: OnExisting): Effect.Effect<string, Protocol.SpacedropError> =>
  io(where, final, "put the file in place", async () => {
    const directory = nodePath.dirname(final)
    const name = nodePath.basename(final)
    for (let n = 0; n <= MAX_NUMBER; n++) {
      const candidate = n === 0 ? final : nodePath.join(directory, numbered(name, n))
      try {
        await fs.link(temp, candidate)
        await fs.unlink(temp)
        return candidate
      } catch (cause) {
        if (codeOf(cause) !== "EEXIST") throw cause
        if (onExisting === "refuse") throw Object.assign(new Error("the file exists in the target"), { code: "EEXIST" })
      }
    }
    throw new Error(`${MAX_NUMBER} numbered names are taken`)
  })

/**
 * Writes `pieces` at `position`, in one `writev` (and again for what a
 * short write left).
 */
export const writeAll = async (handle: fs.FileHandle, pieces: ReadonlyArray<Uint8Array>, position: number): Promise<void> => {
  let rest = pieces
  let at = position
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest as Array<Uint8Array>, at)
    at += bytesWritten
    let skip = bytesWritten
    let i = 0
    while (i < rest.length && skip >= rest[i]!.length) skip -= rest[i++]!.length
    rest = i < rest.length && skip > 0 ? [rest[i]!.subarray(skip), ...rest.slice(i + 1)] : rest.slice(i)
    if (bytesWritten === 0 && rest.length > 0) throw new Error("the disk took none of a write")
  }
}

/** A new file to write, opened exclusively (never an existing name, never through a link). */
export const createExclusive = (where: Where, path: string) => io(where, path, "create", () => openExclusive(path))

/** `createExclusive` as a plain promise (for work queued on a file without an Effect per step). */
export const openExclusive = (path: string): Promise<fs.FileHandle> =>
  fs.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644)

/**
 * `place` for many files at once (a group of small files): every file is
 * first linked to its own name, all at once; those whose name is taken then
 * get numbered names one after the other, in order. Never replaces a name.
 * The names used, in the order given.
 */
export const placeAll = (
  where: Where,
  files: ReadonlyArray<{ readonly temp: string; readonly final: string }>,
  onExisting: OnExisting
): Effect.Effect<ReadonlyArray<string>, SpacedropError> =>
  Effect.gen(function*() {
    const first = yield* Effect.promise(() =>
      Promise.all(files.map(({ final, temp }) =>
        fs.link(temp, final).then(() => true, (cause: unknown) => (codeOf(cause) === "EEXIST" ? false : cause))
      ))
    )
    const names: Array<string> = []
    for (const [i, file] of files.entries()) {
      const outcome = first[i]
      if (outcome === true) names.push(file.final)
      else if (outcome === false) names.push(yield* place(where, file.temp, file.final, onExisting))
      else return yield* Effect.fail(ioError(where, file.final, "put the file in place")(outcome))
    }
    // the temporary names of those linked at first go, all at once
    const unlinked = yield* Effect.promise(() =>
      Promise.all(files.map((file, i) => (first[i] === true ? fs.unlink(file.temp).then(() => undefined, (cause: unknown) => ({ cause, file })) : undefined)))
    )
    const failed = unlinked.find((u) => u !== undefined)
    if (failed !== undefined) return yield* Effect.fail(ioError(where, failed.file.temp, "remove the temporary name")(failed.cause))
    return names
  })

/** Syncs a directory's entries (a new name in it is then durable); where the platform cannot (Windows, some file systems), nothing. */
export const syncDirectory = async (dir: string): Promise<void> => {
  let handle: fs.FileHandle | undefined
  try {
    handle = await fs.open(dir, constants.O_RDONLY)
    await handle.sync()
  } catch {
    // the file's own bytes were synced before it was linked: only the name's durability is at stake
  } finally {
    await handle?.close().catch(() => undefined)
  }
}

export const removeQuietly = (path: string): Effect.Effect<void> => Effect.promise(() => fs.rm(path, { force: true }).catch(() => undefined))

export type FileHandle = fs.FileHandle
