/**
 * Connection slots: who may take one. Members (peers of a library this node
 * belongs to) may use every slot; strangers (any other peer: they can only
 * ask to pair, or ping) are held to a bound of their own, and to a smaller
 * one per host, so that throwaway identities cannot take the slots members
 * need; when the slots are full, a member takes a stranger's, and a stranger
 * takes the place of one from a host that holds more (so a few crowded hosts
 * cannot keep out someone who came to pair). Identities from many hosts
 * (many addresses) can still fill the strangers' slots: never the members'.
 *
 * Pure: the transport describes the connections it holds and asks.
 *
 * @internal
 */

/** The bounds. */
export interface Limits {
  /** Most connections, members and strangers together. */
  readonly maxConnections: number
  /** Most inbound connections of strangers. */
  readonly maxStrangers: number
  /** Most inbound connections of strangers from one host (see `PeerAddress.host`). */
  readonly maxStrangersPerHost: number
}

/** A connection held (or admitted and about to open). */
export interface Held {
  readonly id: string
  readonly member: boolean
  readonly inbound: boolean
  /** The remote's host (`PeerAddress.host`), for inbound connections. */
  readonly host: string | undefined
  /** Open streams: a connection at work is evicted last. */
  readonly streams: number
  /** When it opened (ms): among equals, the newest is evicted first, so a flood does not push out who came before it. */
  readonly openedAt: number
  /** False for one admitted but not open yet. */
  readonly evictable: boolean
}

/** What to do with a new inbound connection. */
export type Admission =
  | { readonly _tag: "Admit" }
  /** Admit it once `victim` (a stranger's connection) is closed. */
  | { readonly _tag: "Evict"; readonly victim: string }
  | { readonly _tag: "Refuse"; readonly reason: string }

/** The stranger connection to close first, if any: inbound before outbound, fewest streams, newest. */
export const victim = (held: ReadonlyArray<Held>): Held | undefined => {
  let chosen: Held | undefined = undefined
  for (const connection of held) {
    if (connection.member || !connection.evictable) continue
    if (chosen === undefined) {
      chosen = connection
      continue
    }
    const better = connection.inbound !== chosen.inbound
      ? connection.inbound
      : connection.streams !== chosen.streams
      ? connection.streams < chosen.streams
      : connection.openedAt > chosen.openedAt
    if (better) chosen = connection
  }
  return chosen
}

/** Whether an inbound connection from a member (or a stranger from `host`) may open, given what is held. */
export const admit = (
  limits: Limits,
  held: ReadonlyArray<Held>,
  candidate: { readonly member: boolean; readonly host: string | undefined }
): Admission => {
  const full = held.length >= limits.maxConnections
  if (candidate.member) {
    if (!full) return { _tag: "Admit" }
    const chosen = victim(held)
    return chosen === undefined
      ? { _tag: "Refuse", reason: `all ${limits.maxConnections} connection slots are held by members` }
      : { _tag: "Evict", victim: chosen.id }
  }
  // strangers' inbound connections, by host
  let strangers = 0
  const byHost = new Map<string, Array<Held>>()
  for (const connection of held) {
    if (connection.member || !connection.inbound) continue
    strangers++
    const key = connection.host ?? connection.id
    const group = byHost.get(key)
    if (group === undefined) byHost.set(key, [connection])
    else group.push(connection)
  }
  const mine = candidate.host === undefined ? 0 : (byHost.get(candidate.host)?.length ?? 0)
  if (mine >= limits.maxStrangersPerHost) {
    return { _tag: "Refuse", reason: `${mine} connections of peers that are not members from ${candidate.host}, the most allowed from one host` }
  }
  if (strangers < limits.maxStrangers && !full) return { _tag: "Admit" }
  // no room: a stranger from a host that holds more than this one would takes the place, so a few
  // crowded hosts cannot keep out a stranger from elsewhere (one who came to pair)
  let crowded: Array<Held> = []
  for (const group of byHost.values()) if (group.length > crowded.length) crowded = group
  const chosen = crowded.length > mine + 1 ? victim(crowded) : undefined
  if (chosen !== undefined) return { _tag: "Evict", victim: chosen.id }
  return {
    _tag: "Refuse",
    reason: full
      ? `all ${limits.maxConnections} connection slots are taken`
      : `${strangers} connections of peers that are not members, the most allowed`
  }
}
