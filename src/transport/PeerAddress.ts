/**
 * Addresses bound to a peer: a multiaddr ending in `/p2p/<id>` can only be
 * dialled to that very peer (the handshake fails for any other key), so an
 * address learned from an unauthenticated source (an advert, a file) is
 * always dialled with the id it was learned for.
 *
 * @since 0.1.0
 */
import type { PeerId } from "./Transport.js"

/** `address` without a trailing `/p2p/<id>`. */
export const withoutPeer = (address: string): string => address.replace(/\/p2p\/[^/]+$/, "")

/** `address` ending in `/p2p/<peer>` (a trailing id is replaced; addresses that are not multiaddrs are returned as they are). */
export const withPeer = (address: string, peer: PeerId): string =>
  address.startsWith("/") ? `${withoutPeer(address)}/p2p/${peer}` : address

/** The groups of an IPv6 address, `::` expanded (undefined if it is not one). */
const ipv6Groups = (text: string): ReadonlyArray<number> | undefined => {
  const halves = text.toLowerCase().split("::")
  if (halves.length > 2) return undefined
  const parse = (part: string) => (part === "" ? [] : part.split(":"))
  const head = parse(halves[0]!)
  const tail = halves.length === 2 ? parse(halves[1]!) : []
  // an embedded IPv4 address (`::ffff:1.2.3.4`) takes the last two groups
  const last = tail.length > 0 ? tail : head
  const v4 = last.length > 0 && last[last.length - 1]!.includes(".") ? last.pop()!.split(".").map(Number) : undefined
  if (v4 !== undefined && (v4.length !== 4 || v4.some((n) => !Number.isInteger(n) || n < 0 || n > 255))) return undefined
  const embedded = v4 === undefined ? [] : [v4[0]! * 256 + v4[1]!, v4[2]! * 256 + v4[3]!]
  const given = head.length + tail.length + embedded.length
  if (halves.length === 1 ? given !== 8 : given > 7) return undefined
  const groups = [...head, ...Array.from({ length: 8 - given }, () => "0"), ...tail].map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16) : NaN))
  const all = [...groups, ...embedded]
  return all.length === 8 && all.every((g) => !Number.isNaN(g)) ? all : undefined
}

/**
 * The host a connection comes from, as bounds per host count it: an IPv4
 * address whole; an IPv6 address by its /64 prefix (one host, or one home
 * network, is given a /64, and can use any address in it); an IPv4-mapped
 * IPv6 address as the IPv4 address it maps. Any other address (`memory://…`,
 * a Unix socket) is its own host. Undefined for no address.
 */
export const host = (address: string | undefined): string | undefined => {
  if (address === undefined) return undefined
  const ip4 = /^\/ip4\/([0-9.]+)(\/|$)/.exec(address)
  if (ip4 !== null) return `ip4/${ip4[1]}`
  const ip6 = /^\/ip6\/([0-9a-fA-F:.]+)(\/|$)/.exec(address)
  const groups = ip6 === null ? undefined : ipv6Groups(ip6[1]!)
  if (groups === undefined) return withoutPeer(address)
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `ip4/${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`
  }
  return `ip6/${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`
}
