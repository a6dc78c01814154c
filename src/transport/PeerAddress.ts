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
