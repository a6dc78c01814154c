import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schedule from "effect/Schedule"
import type * as Control from "../node/Control.js"
import * as Grants from "../plugins/rspc/Grants.js"
import * as Rspc from "../plugins/rspc/Rspc.js"
import * as Hosts from "../plugins/testing/Hosts.js"
import type { PeerId } from "../transport/Transport.js"
import * as RemoteNode from "./RemoteNode.js"
import { TransfersError } from "./TransfersControl.js"

const status: Control.StatusInfo = {
  peerId: "bob" as PeerId,
  addresses: [],
  libraries: [],
  sessions: [],
  connections: [],
  streams: [],
  counts: { connections: 0, streams: 0, handlers: 0, sessions: 0 },
  resources: {}
}

/** Handlers that count what ran; the status names bob, and no transfer exists. */
const procedures = (ran: Array<string>): RemoteNode.Procedures => ({
  Status: () => Effect.sync(() => (ran.push("Status"), status)),
  Transfers: () => Effect.sync(() => (ran.push("Transfers"), [])),
  TransferPause: ({ id }) => Effect.zipRight(Effect.sync(() => ran.push("TransferPause")), Effect.fail(new TransfersError({ reason: "NotFound", id, detail: "none" }))),
  TransferResume: ({ id }) => Effect.zipRight(Effect.sync(() => ran.push("TransferResume")), Effect.fail(new TransfersError({ reason: "NotFound", id, detail: "none" }))),
  TransferCancel: ({ id }) => Effect.zipRight(Effect.sync(() => ran.push("TransferCancel")), Effect.fail(new TransfersError({ reason: "NotFound", id, detail: "none" })))
})

describe("RemoteNode", () => {
  it.scopedLive("status and transfers are denied by default; each needs its own capability; no handler runs for what is refused", () =>
    Effect.gen(function*() {
      const network = yield* Hosts.network({ seed: 6 })
      const libraries = [{ id: "l", name: "l", members: ["alice", "bob"] as Array<PeerId> }]
      const alice = yield* network.host("alice", { libraries })
      const bob = yield* network.host("bob", { libraries })
      const ran: Array<string> = []
      const grants = yield* Effect.provide(Grants.Grants, Grants.layerMemory())
      yield* bob.provide(Rspc.serve({ group: RemoteNode.group })).pipe(
        Effect.provide(RemoteNode.handlers(Effect.succeed(procedures(ran)))),
        Effect.provideService(Grants.Grants, grants)
      )
      yield* alice.connect(bob)
      yield* Effect.repeat(alice.host.available, { until: (peers) => peers.includes(bob.id), schedule: Schedule.spaced("5 millis") })
      const node = yield* alice.provide(Rspc.client(RemoteNode.group, { peer: bob.id, library: "l" }))
      const forbidden = (procedure: string) => ({ _tag: "Forbidden", reason: "NotGranted", procedure })
      for (const [tag, call] of [["Status", node.Status()], ["Transfers", node.Transfers()], ["TransferCancel", node.TransferCancel({ id: "t" })]] as const) {
        const outcome = yield* Effect.either(call as Effect.Effect<unknown, unknown>)
        expect(Either.isLeft(outcome) && outcome.left).toMatchObject(forbidden(tag))
      }
      expect(ran).toEqual([])

      yield* grants.grant(alice.id, "l", ["node.status", "spacedrop.transfers.read"])
      expect((yield* node.Status()).peerId).toBe("bob")
      expect(yield* node.Transfers()).toEqual([])
      const pause = yield* Effect.either(node.TransferPause({ id: "t" }))
      expect(Either.isLeft(pause) && pause.left).toMatchObject(forbidden("TransferPause"))
      expect(ran).toEqual(["Status", "Transfers"])

      yield* grants.grant(alice.id, "l", ["spacedrop.transfers.write"])
      const cancel = yield* Effect.either(node.TransferCancel({ id: "t" }))
      expect(Either.isLeft(cancel) && cancel.left).toMatchObject({ _tag: "TransfersError", reason: "NotFound", id: "t" })
      expect(ran).toEqual(["Status", "Transfers", "TransferCancel"])
    }))
})
