/**
 * Redial penalties: a peer disconnected for breaking a protocol is redialled
 * only after a wait, 1 minute doubled with each violation up to an hour, so
 * a misbehaving peer cannot keep this node busy reconnecting to it. The wait
 * applies to the drop that follows a violation only, and a connection that
 * then stays up an hour clears the count.
 *
 * Plain synchronous state (the caller decides which peers it tracks, and so
 * bounds it); `now` is given so the rules can be tested without waiting.
 *
 * @internal
 */

/** The wait after a first violation. */
export const FIRST_PENALTY_MILLIS = 60_000
/** The longest wait, and how long a connection must stay up to clear the count. */
export const MAX_PENALTY_MILLIS = 3_600_000

interface Record {
  readonly count: number
  /** A violation whose penalty the next redial has not yet waited out. */
  readonly pending: boolean
  /** Until when a penalty being waited out holds (epoch ms). */
  readonly until: number
}

/** The penalties of a set of peers. */
export interface Penalties {
  /** `peer` broke a protocol: its next redial waits. */
  readonly violated: (peer: string) => void
  /** Whether a violation of `peer` has not been waited out yet. */
  readonly pending: (peer: string) => boolean
  /** The wait before redialling `peer` now (0 when none is owed); the owed wait is taken. */
  readonly take: (peer: string, now: number) => number
  /** Whether `peer` is waiting out a penalty at `now` (not to be dialled meanwhile). */
  readonly held: (peer: string, now: number) => boolean
  /** A connection to `peer` opened at `now`. */
  readonly connected: (peer: string, now: number) => void
  /** The connection to `peer` closed at `now`; one that stayed up long enough clears its count. */
  readonly disconnected: (peer: string, now: number) => void
  /** `peer` is no longer tracked (no longer a member): what it owed goes. */
  readonly forget: (peer: string) => void
}

export const make = (): Penalties => {
  const records = new Map<string, Record>()
  const since = new Map<string, number>()
  return {
    violated: (peer) => {
      const before = records.get(peer)
      records.set(peer, { count: (before?.count ?? 0) + 1, pending: true, until: before?.until ?? 0 })
    },
    pending: (peer) => records.get(peer)?.pending === true,
    take: (peer, now) => {
      const record = records.get(peer)
      if (record?.pending !== true) return 0
      const wait = Math.min(FIRST_PENALTY_MILLIS * 2 ** (record.count - 1), MAX_PENALTY_MILLIS)
      records.set(peer, { ...record, pending: false, until: now + wait })
      return wait
    },
    held: (peer, now) => (records.get(peer)?.until ?? 0) > now,
    connected: (peer, now) => {
      since.set(peer, now)
    },
    disconnected: (peer, now) => {
      const from = since.get(peer)
      since.delete(peer)
      if (from !== undefined && now - from >= MAX_PENALTY_MILLIS && records.get(peer)?.pending !== true) records.delete(peer)
    },
    forget: (peer) => {
      records.delete(peer)
      since.delete(peer)
    }
  }
}
