/**
 * Throwaway identities for tests of slot fairness: stock js-libp2p nodes
 * that dial from a chosen loopback address (127.0.x.y), so the node under
 * test sees them as separate hosts.
 *
 * @since 0.1.0
 */
import { noise } from "@chainsafe/libp2p-noise"
import { yamux } from "@chainsafe/libp2p-yamux"
import { tcp } from "@libp2p/tcp"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { createLibp2p, type Libp2p } from "libp2p"

/** A throwaway identity: a stock js-libp2p node that dials from `from` (a loopback address) and listens nowhere. */
export const stranger = (from: string): Effect.Effect<Libp2p, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() =>
      createLibp2p({
        addresses: { listen: [] },
        // net.connect's own option, passed through by the TCP transport: the host the node sees
        transports: [tcp({ dialOpts: { localAddress: from } as Record<string, unknown> })],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()]
      })
    ),
    (node) => Effect.promise(async () => node.stop())
  )
