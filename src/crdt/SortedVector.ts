/**
 * A version vector as sorted columns, with no object per entry: what a
 * vector from the wire decodes to.
 *
 * Why not a `Map`: a `Map` of 100 000 origins read off the wire is 100 000
 * strings hashed and inserted one by one, an entry object and a timestamp
 * string each, and the garbage collector then copies all of them (it was
 * most of the time of a decode). Here every column is a typed array: an
 * origin is a range of the bytes it arrived in (a string is made only when
 * one is asked for), a timestamp two 32-bit halves, a seq a float64. The page
 * decoder hashes each origin in the loop that checks its bytes, a radix sort
 * orders the hashes (O(n), no comparator), and a repeated origin is then a
 * neighbour: no lookup is needed to refuse it. A lookup is a binary search on
 * the hashes; two vectors merge by one sort of both.
 *
 * Order: (hash, origin bytes). The hash is fixed (FNV-1a, then murmur3's
 * final mix), so the order is the same in every process and run. A peer
 * that picks origins with equal hashes only makes runs ordered by the
 * origin itself: sorting a run and looking up in it stay O(log n)
 * comparisons, never a scan.
 *
 * It is mutable like a `Map` (a session raises what it knows the remote
 * holds): an origin it holds is updated in its column, a new one goes to a
 * small `Map` beside the columns, folded into them once that grows as large
 * as they are. Origins are latin1 in the columns (node ids are ASCII); one
 * that is not stays in the `Map`.
 *
 * @since 0.1.0
 */
import type { Timestamp } from "./Timestamp.js"

/** The last operation held from one origin (as `VersionVector.Entry`). */
export interface Entry {
  readonly seq: number
  readonly ts: Timestamp
}

/** 32-bit FNV-1a of a string's code units, then murmur3's final mix (so every bit of the hash spreads). */
export const hashOf = (origin: string): number => {
  let h = 0x811c9dc5 | 0 // an int32 from the start: a double here keeps the loop off the fast path
  for (let i = 0; i < origin.length; i++) h = Math.imul(h ^ origin.charCodeAt(i), 0x01000193)
  return mixHash(h)
}

/**
 * The last step of `hashOf`, for a decoder that runs FNV-1a over an origin's bytes itself
 * (`h = 0x811c9dc5 | 0`, then `h = Math.imul(h ^ byte, 0x01000193)` per byte; latin1: a byte is the code unit).
 */
export const mixHash = (h: number): number => {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * Columns of entries in any order, as a decoder gathers them (only the first `length` rows are
 * used). Origin `i` is bytes `starts[i]`…`starts[i] + lengths[i]` of `buffers[sources[i]]`;
 * its timestamp is the 16 hex digits of `tsHigh[i]` and `tsLow[i]`.
 */
export interface Columns {
  readonly length: number
  readonly hashes: Uint32Array
  readonly seqs: Float64Array
  readonly tsHigh: Uint32Array
  readonly tsLow: Uint32Array
  readonly sources: Uint32Array
  readonly starts: Uint32Array
  readonly lengths: Uint8Array
  readonly buffers: ReadonlyArray<Buffer>
}

/**
 * Columns from their parts. Every `Columns` is made here, so all have one shape: the loops over
 * them are optimised once, not deoptimised by each new object layout they meet.
 */
export const makeColumns = (
  length: number,
  hashes: Uint32Array,
  seqs: Float64Array,
  tsHigh: Uint32Array,
  tsLow: Uint32Array,
  sources: Uint32Array,
  starts: Uint32Array,
  lengths: Uint8Array,
  buffers: ReadonlyArray<Buffer>
): Columns => ({ length, hashes, seqs, tsHigh, tsLow, sources, starts, lengths, buffers })

/** The same columns with `length` or `buffers` changed. */
export const withColumns = (c: Columns, length: number, buffers: ReadonlyArray<Buffer> = c.buffers): Columns =>
  makeColumns(length, c.hashes, c.seqs, c.tsHigh, c.tsLow, c.sources, c.starts, c.lengths, buffers)

/** Columns of `n` zeroed rows over `buffers`. */
const allocate = (n: number, buffers: ReadonlyArray<Buffer>): Columns =>
  makeColumns(
    n,
    new Uint32Array(n),
    new Float64Array(n),
    new Uint32Array(n),
    new Uint32Array(n),
    new Uint32Array(n),
    new Uint32Array(n),
    new Uint8Array(n),
    buffers
  )

/** Copies row `i` of `from` to row `k` of `to` (the same buffers). */
const copyRow = (to: Columns, k: number, from: Columns, i: number): void => {
  to.hashes[k] = from.hashes[i]!
  to.seqs[k] = from.seqs[i]!
  to.tsHigh[k] = from.tsHigh[i]!
  to.tsLow[k] = from.tsLow[i]!
  to.sources[k] = from.sources[i]!
  to.starts[k] = from.starts[i]!
  to.lengths[k] = from.lengths[i]!
}

/** Compares the origins of rows `i` of `a` and `j` of `b` by their bytes. */
const compareRows = (a: Columns, i: number, b: Columns, j: number): number => {
  const x = a.buffers[a.sources[i]!]!
  const y = b.buffers[b.sources[j]!]!
  const xs = a.starts[i]!
  const ys = b.starts[j]!
  const xn = a.lengths[i]!
  const yn = b.lengths[j]!
  const n = Math.min(xn, yn)
  for (let k = 0; k < n; k++) {
    const d = x[xs + k]! - y[ys + k]!
    if (d !== 0) return d
  }
  return xn - yn
}

/** Compares `origin` with the origin of row `i` (code units against bytes). */
const compareOrigin = (origin: string, c: Columns, i: number): number => {
  const y = c.buffers[c.sources[i]!]!
  const ys = c.starts[i]!
  const yn = c.lengths[i]!
  const n = Math.min(origin.length, yn)
  for (let k = 0; k < n; k++) {
    const d = origin.charCodeAt(k) - y[ys + k]!
    if (d !== 0) return d
  }
  return origin.length - yn
}

const DIGIT_BITS = 11
const DIGITS = 1 << DIGIT_BITS

/**
 * Rows a page's worth of columns is gathered in and sorted with, reused (decoding and sorting
 * are synchronous): a page allocates only the columns it keeps.
 */
export const SCRATCH_ROWS = 8192
const scratchRows = { picks: new Uint32Array(SCRATCH_ROWS), index: new Uint32Array(SCRATCH_ROWS), keys: new Uint32Array(SCRATCH_ROWS), nextIndex: new Uint32Array(SCRATCH_ROWS), nextKeys: new Uint32Array(SCRATCH_ROWS) }
const counts = new Uint32Array(DIGITS)
let scratchColumns: Columns | undefined

/**
 * Columns of `capacity` rows to gather unsorted entries in, for `fromColumns`: scratch ones (reused
 * by the next call) up to `SCRATCH_ROWS`, fresh ones past it.
 */
export const gatherColumns = (capacity: number, buffers: ReadonlyArray<Buffer>): Columns => {
  const fresh = capacity > SCRATCH_ROWS
  const rows = fresh ? capacity : SCRATCH_ROWS
  const c = fresh || scratchColumns === undefined
    ? allocate(rows, buffers)
    : scratchColumns
  if (!fresh) scratchColumns = c
  return withColumns(c, c.length, buffers)
}

/**
 * Row numbers ordered by (hash, origin), and the hashes in that order: LSD radix sort on the hashes,
 * then runs of equal hashes by origin. Scratch arrays (reused by the next call) up to `SCRATCH_ROWS`.
 */
const order = (c: Columns): { readonly index: Uint32Array; readonly keys: Uint32Array } => {
  const n = c.length
  const scratch = n <= SCRATCH_ROWS
  let index = scratch ? scratchRows.index.subarray(0, n) : new Uint32Array(n)
  for (let i = 0; i < n; i++) index[i] = i
  let keys = scratch ? scratchRows.keys.subarray(0, n) : new Uint32Array(n)
  keys.set(c.hashes.subarray(0, n))
  if (n < 2) return { index, keys }
  // already in order (a vector encoded from sorted columns): nothing to sort
  let sorted = true
  for (let i = 1; i < n && sorted; i++) sorted = keys[i - 1]! <= keys[i]!
  if (!sorted) {
    let nextIndex = scratch ? scratchRows.nextIndex.subarray(0, n) : new Uint32Array(n)
    let nextKeys = scratch ? scratchRows.nextKeys.subarray(0, n) : new Uint32Array(n)
    for (let shift = 0; shift < 32; shift += DIGIT_BITS) {
      counts.fill(0)
      for (let i = 0; i < n; i++) counts[(keys[i]! >>> shift) & (DIGITS - 1)]!++
      let sum = 0
      for (let d = 0; d < DIGITS; d++) {
        const count = counts[d]!
        counts[d] = sum
        sum += count
      }
      for (let i = 0; i < n; i++) {
        const k = keys[i]!
        const at = counts[(k >>> shift) & (DIGITS - 1)]!++
        nextIndex[at] = index[i]!
        nextKeys[at] = k
      }
      ;[index, nextIndex] = [nextIndex, index]
      ;[keys, nextKeys] = [nextKeys, keys]
    }
  }
  // equal hashes (rare by chance, or chosen by a peer): that run by origin
  for (let i = 0; i < n;) {
    let j = i + 1
    while (j < n && keys[j] === keys[i]) j++
    if (j - i > 1) index.set(Array.from(index.subarray(i, j)).sort((x, y) => compareRows(c, x, c, y)), i)
    i = j
  }
  return { index, keys }
}

/** How `fromColumns` treats an origin named more than once. */
export type Repeated = "refuse" | "max"

/**
 * The vector of some columns. An origin named more than once keeps its largest seq
 * (`"max"`: pages of one vector, joined), or is refused and returned (`"refuse"`: one page).
 */
export const fromColumns = (c: Columns, repeated: Repeated): SortedVector | { readonly repeated: string } => {
  const { index, keys } = order(c)
  const n = c.length
  // the rows kept, in order (of an origin named more than once, the one of largest seq, the first on
  // equal seqs), and their hashes; then each column gathered by them in a loop of its own
  const picks = n <= SCRATCH_ROWS ? scratchRows.picks.subarray(0, n) : new Uint32Array(n)
  // the kept rows' hashes are moved down in `keys` itself (a kept row is never after the one read)
  const hashes = keys
  const seqs = c.seqs
  let rows = 0
  for (let k = 0; k < n; k++) {
    const i = index[k]!
    const hash = keys[k]!
    if (rows > 0 && hashes[rows - 1] === hash && compareRows(c, picks[rows - 1]!, c, i) === 0) {
      if (repeated === "refuse") return { repeated: originAt(c, i) }
      if (seqs[picks[rows - 1]!]! < seqs[i]!) picks[rows - 1] = i
      continue
    }
    picks[rows] = i
    hashes[rows] = hash
    rows++
  }
  const out = allocate(rows, c.buffers)
  // one column at a time: each loop reads one column (a few MB at a million rows) and writes another
  const outSeqs = out.seqs
  for (let k = 0; k < rows; k++) outSeqs[k] = seqs[picks[k]!]!
  const tsHigh = c.tsHigh
  const outHigh = out.tsHigh
  for (let k = 0; k < rows; k++) outHigh[k] = tsHigh[picks[k]!]!
  const tsLow = c.tsLow
  const outLow = out.tsLow
  for (let k = 0; k < rows; k++) outLow[k] = tsLow[picks[k]!]!
  const sources = c.sources
  const outSources = out.sources
  for (let k = 0; k < rows; k++) outSources[k] = sources[picks[k]!]!
  const starts = c.starts
  const outStarts = out.starts
  for (let k = 0; k < rows; k++) outStarts[k] = starts[picks[k]!]!
  const lengths = c.lengths
  const outLengths = out.lengths
  for (let k = 0; k < rows; k++) outLengths[k] = lengths[picks[k]!]!
  out.hashes.set(hashes.subarray(0, rows))
  return new SortedVector(out)
}


const truncate = (c: Columns, length: number): Columns =>
  makeColumns(
    length,
    c.hashes.subarray(0, length),
    c.seqs.subarray(0, length),
    c.tsHigh.subarray(0, length),
    c.tsLow.subarray(0, length),
    c.sources.subarray(0, length),
    c.starts.subarray(0, length),
    c.lengths.subarray(0, length),
    c.buffers
  )

const originAt = (c: Columns, i: number): string => c.buffers[c.sources[i]!]!.toString("latin1", c.starts[i]!, c.starts[i]! + c.lengths[i]!)

const hex8 = (n: number): string => n.toString(16).padStart(8, "0")

const tsAt = (c: Columns, i: number): Timestamp => (hex8(c.tsHigh[i]!) + hex8(c.tsLow[i]!)) as Timestamp

/**
 * The entry of row `i`. Its seq is a small integer where it is one: a seq read from a Float64Array
 * otherwise goes in as a double, and the first such entry changes the field's representation for
 * every `{ seq, ts }` object (the engine's vectors' entries too), each of which then migrates when
 * next read (measured: the two vector encodes after a lookup here ran 2-3x slower, deoptimised on them).
 */
const entryAt = (c: Columns, i: number): Entry => {
  const seq = c.seqs[i]!
  return { seq: seq <= 0x3fffffff ? seq | 0 : seq, ts: tsAt(c, i) }
}

/** Whether an origin can live in the columns: latin1, at most 255 characters. */
const fitsColumns = (origin: string): boolean => {
  if (origin.length > 255) return false
  for (let i = 0; i < origin.length; i++) if (origin.charCodeAt(i) > 0xff) return false
  return true
}

/** Whether a timestamp can live in the columns: 16 lowercase hex digits. */
const TS_COLUMN = /^[0-9a-f]{16}$/

/** Columns of entries that fit them (each origin hashed; latin1 origins, timestamps as `TS_COLUMN`). */
const columnsOf = (entries: ReadonlyArray<readonly [string, Entry]>, base: number): Columns => {
  const n = entries.length
  const c = allocate(n, [Buffer.from(entries.map(([origin]) => origin).join(""), "latin1")])
  c.sources.fill(base)
  let at = 0
  for (let i = 0; i < n; i++) {
    const [origin, entry] = entries[i]!
    c.hashes[i] = hashOf(origin)
    c.seqs[i] = entry.seq
    c.tsHigh[i] = parseInt(entry.ts.slice(0, 8), 16)
    c.tsLow[i] = parseInt(entry.ts.slice(8), 16)
    c.starts[i] = at
    c.lengths[i] = origin.length
    at += origin.length
  }
  return c
}

/** Concatenates columns (buffers renumbered). */
const concat = (parts: ReadonlyArray<Columns>): Columns => {
  let n = 0
  for (const p of parts) n += p.length
  const buffers: Array<Buffer> = []
  const out = allocate(n, buffers)
  let at = 0
  for (const p of parts) {
    const m = p.length
    out.hashes.set(p.hashes.subarray(0, m), at)
    out.seqs.set(p.seqs.subarray(0, m), at)
    out.tsHigh.set(p.tsHigh.subarray(0, m), at)
    out.tsLow.set(p.tsLow.subarray(0, m), at)
    out.starts.set(p.starts.subarray(0, m), at)
    out.lengths.set(p.lengths.subarray(0, m), at)
    const shift = buffers.length
    for (let i = 0; i < m; i++) out.sources[at + i] = p.sources[i]! + shift
    buffers.push(...p.buffers)
    at += m
  }
  return out
}

/** Some vectors as one: every origin at its largest seq among them. */
export const union = (vectors: ReadonlyArray<ReadonlyMap<string, Entry>>): SortedVector => {
  const sorted = vectors.map((v) => (v instanceof SortedVector ? v : fromEntries(v)))
  const extra = sorted.flatMap((v) => [...v.outside()])
  const joined = fromColumns(concat(sorted.map((v) => v.columns())), "max") as SortedVector
  for (const [origin, entry] of extra) {
    if ((joined.get(origin)?.seq ?? 0) < entry.seq) joined.set(origin, entry)
  }
  return joined
}

const EMPTY: Columns = truncate(concat([]), 0)

/** A vector of the given entries (a repeated origin keeps the last given, as a `Map` would). */
export const fromEntries = (entries: Iterable<readonly [string, Entry]>): SortedVector => {
  const vector = new SortedVector(EMPTY)
  for (const [origin, entry] of entries) vector.set(origin, entry)
  vector.columns()
  return vector
}

/** A version vector as sorted columns; see the module's comment. */
export class SortedVector implements Map<string, Entry> {
  // seq 0 in a column marks an origin deleted since (a vector holds no seq below 1)
  private deleted = 0
  /** Origins set after construction that the columns lack (and those that cannot live in them). */
  private readonly added = new Map<string, Entry>()

  /** Slots of a hash table over the rows (row + 1, 0 empty), built once lookups are many; see `indexOf`. */
  private table: Int32Array | undefined
  private lookups = 0

  constructor(private c: Columns) {}

  /**
   * Row of `origin` in the columns, or -1. After `TABLE_AFTER` lookups, a table of the rows by hash
   * answers first (a binary search costs about three `Map` lookups; a sender looks up every origin it
   * holds per batch): at most `MAX_PROBES` slots, and where those are all full (hashes chosen to
   * collide), the binary search.
   */
  private indexOf(origin: string): number {
    const c = this.c
    const hash = hashOf(origin)
    const hashes = c.hashes
    if (this.table === undefined && ++this.lookups > TABLE_AFTER && c.length > TABLE_AFTER) this.table = tableOf(c)
    const table = this.table
    if (table !== undefined) {
      const mask = table.length - 1
      for (let probe = 0, slot = hash & mask; probe < MAX_PROBES; probe++, slot = (slot + 1) & mask) {
        const row = table[slot]! - 1
        if (row < 0) return -1
        if (hashes[row] === hash && compareOrigin(origin, c, row) === 0) return row
      }
    }
    let lo = 0
    let hi = c.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const h = hashes[mid]!
      if (h < hash || (h === hash && compareOrigin(origin, c, mid) > 0)) lo = mid + 1
      else hi = mid
    }
    return lo < c.length && hashes[lo] === hash && compareOrigin(origin, c, lo) === 0 ? lo : -1
  }

  /** Sequence number of the last operation held from `origin` (0 for none), without an entry object. */
  seqOf(origin: string): number {
    const i = this.indexOf(origin)
    if (i >= 0 && this.c.seqs[i] !== 0) return this.c.seqs[i]!
    return this.added.size === 0 ? 0 : this.added.get(origin)?.seq ?? 0
  }

  /** The columns, sorted, with what was set since folded in (later changes do not show in them). */
  columns(): Columns {
    this.compact(true)
    return this.c
  }

  /** Entries that cannot live in the columns (origins that are not latin1, odd timestamps or seqs). */
  outside(): ReadonlyMap<string, Entry> {
    this.compact(true)
    return this.added
  }

  /** Folds `added` and deletions into the columns: always when `force`, else once `added` is as large as the columns. */
  private compact(force: boolean): void {
    if (!force && this.added.size < Math.max(1024, this.c.length)) return
    if (this.added.size === 0 && this.deleted === 0) return
    const c = this.c
    const kept = new Uint32Array(c.length - this.deleted)
    let k = 0
    for (let i = 0; i < c.length; i++) if (c.seqs[i] !== 0) kept[k++] = i
    const base = permute(c, kept)
    const fits: Array<readonly [string, Entry]> = []
    for (const [origin, entry] of this.added) {
      if (fitsColumns(origin) && TS_COLUMN.test(entry.ts) && entry.seq >= 1) {
        fits.push([origin, entry])
        this.added.delete(origin)
      }
    }
    this.c = bounded((fromColumns(concat([base, columnsOf(fits, 0)]), "max") as SortedVector).c)
    this.deleted = 0
    this.table = undefined
    this.lookups = 0
  }

  /**
   * Raises entries to those of `other` where it holds more, in place (as `VersionVector.mergeInPlace`).
   * A few entries (a session's Ack) are looked up one by one: O(m log n), no copy of the columns, and
   * nothing of `other` kept. Many entries: one sort of both, their origin bytes copied into one buffer
   * once the columns point into many (they would otherwise keep every vector ever merged in).
   */
  mergeFrom(other: SortedVector): void {
    if (other.size <= SMALL_MERGE || other.size * SMALL_MERGE_RATIO <= this.size) {
      for (const [origin, entry] of other) if (this.seqOf(origin) < entry.seq) this.set(origin, entry)
      return
    }
    const theirs = [...other.outside()]
    const mine = [...this.outside()]
    this.added.clear()
    // both sides' rows, ours first: on equal seqs ours stay (the sort keeps rows of equal keys in order)
    this.c = bounded((fromColumns(concat([this.c, other.columns()]), "max") as SortedVector).c)
    this.table = undefined
    this.lookups = 0
    // entries beside the columns (never from an honest peer): ours stand unless theirs hold more
    for (const [origin, entry] of mine) if (this.seqOf(origin) <= entry.seq) this.set(origin, entry)
    for (const [origin, entry] of theirs) if (this.seqOf(origin) < entry.seq) this.set(origin, entry)
  }

  /** Whether this holds everything `other` holds (as `VersionVector.covers`): one walk over both, in order. */
  covers(other: SortedVector): boolean {
    const b = other.columns()
    const a = this.columns()
    if (this.added.size > 0 || other.outside().size > 0) {
      for (const [origin, entry] of other) if (this.seqOf(origin) < entry.seq) return false
      return true
    }
    let i = 0
    for (let j = 0; j < b.length; j++) {
      const hash = b.hashes[j]!
      while (i < a.length && (a.hashes[i]! < hash || (a.hashes[i] === hash && compareRows(a, i, b, j) < 0))) i++
      if (i >= a.length || a.hashes[i] !== hash || compareRows(a, i, b, j) !== 0 || a.seqs[i]! < b.seqs[j]!) return false
    }
    return true
  }

  get size(): number {
    return this.c.length - this.deleted + this.added.size
  }

  get(origin: string): Entry | undefined {
    const i = this.indexOf(origin)
    if (i >= 0 && this.c.seqs[i] !== 0) return entryAt(this.c, i)
    // a deleted row's origin may live beside the columns since (set to a value they cannot hold)
    return this.added.size === 0 ? undefined : this.added.get(origin)
  }

  has(origin: string): boolean {
    return this.get(origin) !== undefined
  }

  set(origin: string, entry: Entry): this {
    const i = this.indexOf(origin)
    if (i >= 0) {
      if (entry.seq >= 1 && TS_COLUMN.test(entry.ts)) {
        if (this.c.seqs[i] === 0) {
          this.deleted--
          this.added.delete(origin)
        }
        this.c.seqs[i] = entry.seq
        ;(this.c.tsHigh as Uint32Array)[i] = parseInt(entry.ts.slice(0, 8), 16)
        ;(this.c.tsLow as Uint32Array)[i] = parseInt(entry.ts.slice(8), 16)
        return this
      }
      // not a value the columns hold: the row goes, the entry lives beside them
      if (this.c.seqs[i] !== 0) this.deleted++
      this.c.seqs[i] = 0
    }
    this.added.set(origin, entry)
    this.compact(false)
    return this
  }

  delete(origin: string): boolean {
    const i = this.indexOf(origin)
    if (i >= 0 && this.c.seqs[i] !== 0) {
      this.c.seqs[i] = 0
      this.deleted++
      return true
    }
    return this.added.delete(origin)
  }

  clear(): void {
    this.c = EMPTY
    this.table = undefined
    this.lookups = 0
    this.deleted = 0
    this.added.clear()
  }

  *entries(): MapIterator<[string, Entry]> {
    const c = this.c
    for (let i = 0; i < c.length; i++) {
      if (c.seqs[i] !== 0) yield [originAt(c, i), entryAt(c, i)]
    }
    yield* this.added
  }

  *keys(): MapIterator<string> {
    for (const [origin] of this.entries()) yield origin
  }

  *values(): MapIterator<Entry> {
    for (const [, entry] of this.entries()) yield entry
  }

  [Symbol.iterator](): MapIterator<[string, Entry]> {
    return this.entries()
  }

  forEach(callback: (value: Entry, key: string, map: Map<string, Entry>) => void, thisArg?: unknown): void {
    for (const [origin, entry] of this.entries()) callback.call(thisArg, entry, origin, this)
  }

  get [Symbol.toStringTag](): string {
    return "SortedVector"
  }
}

/** At most this many entries, or this ratio fewer than the target holds, are merged one by one (`mergeFrom`). */
const SMALL_MERGE = 64
const SMALL_MERGE_RATIO = 16
/** Most buffers columns point into before their origins are copied into one (`bounded`). */
const MAX_BUFFERS = 8

/**
 * `c`, or the same rows with every origin's bytes copied into one buffer when `c` points into more
 * than `MAX_BUFFERS`: what a merge keeps is its own rows' bytes, not every buffer they came from.
 */
const bounded = (c: Columns): Columns => {
  if (c.buffers.length <= MAX_BUFFERS) return c
  let total = 0
  for (let i = 0; i < c.length; i++) total += c.lengths[i]!
  const buffer = Buffer.allocUnsafeSlow(total)
  const starts = new Uint32Array(c.length)
  let at = 0
  for (let i = 0; i < c.length; i++) {
    const from = c.buffers[c.sources[i]!]!
    const start = c.starts[i]!
    const length = c.lengths[i]!
    for (let k = 0; k < length; k++) buffer[at + k] = from[start + k]!
    starts[i] = at
    at += length
  }
  return makeColumns(c.length, c.hashes, c.seqs, c.tsHigh, c.tsLow, new Uint32Array(c.length), starts, c.lengths, [buffer])
}

const TABLE_AFTER = 64
const MAX_PROBES = 16

/**
 * The rows of `c` in an open-addressing table (linear probing, at most half full). A row whose
 * `MAX_PROBES` slots from its hash's are all taken is left out: a lookup of it finds them all full
 * too, and falls back to the binary search. So equal hashes cost at most `MAX_PROBES` per row.
 */
const tableOf = (c: Columns): Int32Array => {
  let size = 1
  while (size < 2 * c.length) size <<= 1
  const table = new Int32Array(size)
  const mask = size - 1
  for (let row = 0; row < c.length; row++) {
    for (let probe = 0, slot = c.hashes[row]! & mask; probe < MAX_PROBES; probe++, slot = (slot + 1) & mask) {
      if (table[slot] === 0) {
        table[slot] = row + 1
        break
      }
    }
  }
  return table
}

/** Rows `rows` of `c`, in that order. */
const permute = (c: Columns, rows: Uint32Array): Columns => {
  const n = rows.length
  const out = allocate(n, c.buffers)
  for (let k = 0; k < n; k++) copyRow(out, k, c, rows[k]!)
  return out
}
