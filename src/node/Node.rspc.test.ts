import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { existsSync } from "node:fs"
import { join } from "node:path"
import * as Model from "../engine/Model.js"
import { Libraries } from "../library/Libraries.js"
import * as Consent from "../plugins/Consent.js"
import { Pair } from "../plugins/pair/Pair.js"
import { Caller, CallerMiddleware } from "../plugins/RpcPlugin.js"
import * as Grants from "../plugins/rspc/Grants.js"
import * as Protocol from "../plugins/rspc/Protocol.js"
import * as Rspc from "../plugins/rspc/Rspc.js"
import { Identity } from "../transport/Identity.js"
import * as Node from "./Node.js"
import { Reconnect } from "./Reconnect.js"
import * as Processes from "./testing/Processes.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String }))

/** An app's procedure: how many notes its library holds, and who asked. */
class App extends RpcGroup.make(
  Rpc.make("Count", { success: Schema.Struct({ count: Schema.Number, caller: Schema.String }) }).pipe(Protocol.capability("notes.count"))
).middleware(Protocol.Guard).middleware(CallerMiddleware) {}

/** The handler reads the node it is embedded in: the engine of the caller's library. */
const handlers = App.toLayer(Effect.gen(function*() {
  const node = yield* Node.Node
  return {
    Count: () =>
      Effect.scoped(Effect.gen(function*() {
        const caller = yield* Caller
        const { engine } = yield* Effect.orDie(node.library(caller.library))
        const all = yield* Effect.orDie(engine.query(notes))
        return { count: all.length, caller: caller.peer }
      }))
  }
}))

const startNode = (name: string, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const directory = yield* Processes.tempDir(`weft-node-rspc-${name}`)
    const context = yield* Layer.build(Node.layerDirectory({
      directory,
      models: [notes],
      listen: ["/ip4/127.0.0.1/tcp/0"],
      rspc: Node.rspc({ group: App, handlers })
    })).pipe(Scope.extend(scope))
    return { directory, context, get: <I, S>(tag: Context.Tag<I, S>) => Context.get(context as Context.Context<I>, tag) }
  })

describe("an embedded node with rspc (no CLI)", () => {
  it.scopedLive("serves the app's procedures to the peers it granted, default deny, grants kept in its directory", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const alice = yield* startNode("alice", scope)
      const bob = yield* startNode("bob", scope)
      yield* Consent.approveAll.pipe(Effect.provideService(Consent.Consent, bob.get(Consent.Consent)))
      const aliceId = alice.get(Identity).peerId
      const bobId = bob.get(Identity).peerId
      const library = yield* alice.get(Libraries).create("Team", aliceId)
      const [address] = yield* bob.get(Node.Node).addresses
      yield* alice.get(Reconnect).dial(address!)
      yield* alice.get(Pair).pair(bobId, library.id)
      yield* Effect.scoped(Effect.flatMap(bob.get(Node.Node).library(library.id), ({ engine }) => engine.mutate([notes.create("n1", { title: "on bob" })])))

      const call = Effect.scoped(Effect.flatMap(Rspc.client(App, { peer: bobId, library: library.id }), (app) => app.Count())).pipe(
        Effect.provide(alice.context)
      )
      const refused = yield* Effect.either(call)
      expect(Either.isLeft(refused) && refused.left).toMatchObject({ _tag: "Forbidden", reason: "NotGranted", procedure: "Count" })

      yield* bob.get(Grants.Grants).grant(aliceId, library.id, ["notes.count"])
      expect(yield* call).toEqual({ count: 1, caller: aliceId })
      expect(existsSync(join(bob.directory, "grants.json"))).toBe(true)
      expect((yield* bob.get(Rspc.Rspc).active).calls).toBe(0)
    }), 60_000)
})
