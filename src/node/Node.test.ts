import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Model from "../engine/Model.js"
import { Libraries } from "../library/Libraries.js"
import * as Consent from "../plugins/Consent.js"
import { Pair } from "../plugins/pair/Pair.js"
import { PluginHost } from "../plugins/PluginHost.js"
import { Identity } from "../transport/Identity.js"
import type { PeerId } from "../transport/Transport.js"
import { join } from "node:path"
import * as Node from "./Node.js"
import { Reconnect } from "./Reconnect.js"
import * as Control from "./Control.js"
import * as ControlSocket from "./ControlSocket.js"
import * as Processes from "./testing/Processes.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String, body: Model.RichText }))

/** A full node on a fresh data directory, on loopback, in its own scope (closed with the test's). */
const startNode = (name: string, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const directory = yield* Processes.tempDir(`weft-node-${name}`)
    const context = yield* Layer.build(Node.layerDirectory({ directory, models: [notes], listen: ["/ip4/127.0.0.1/tcp/0"] })).pipe(Scope.extend(scope))
    return { directory, context, get: <I, S>(tag: Context.Tag<I, S>) => Context.get(context as Context.Context<I>, tag) }
  })

describe("an embedded node (no CLI)", () => {
  it.scopedLive("two nodes: one makes a library, pairs the other into it (its user approves), and a note syncs both ways", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const alice = yield* startNode("alice", scope)
      // what bob's node logs
      const logged: Array<string> = []
      const capture = Logger.make(({ message }) => {
        logged.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
      })
      const bob = yield* startNode("bob", scope).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
      // bob's app approves pairing requests
      yield* Consent.approveAll.pipe(Effect.provideService(Consent.Consent, bob.get(Consent.Consent)))

      const aliceId = alice.get(Identity).peerId
      const library = yield* alice.get(Libraries).create("Team notes", aliceId)
      const bobId = bob.get(Identity).peerId
      const [address] = yield* bob.get(Node.Node).addresses
      expect(yield* alice.get(Reconnect).dial(address!)).toBe(bobId)
      const paired = yield* alice.get(Pair).pair(bobId, library.id)
      expect([...paired.members].sort()).toEqual([aliceId, bobId].sort())

      // bob joined the library: the node opened its engine and syncs it
      yield* Effect.scoped(Effect.gen(function*() {
        const { engine: onAlice } = yield* alice.get(Node.Node).library(library.id)
        yield* onAlice.mutate([notes.create("n1", { title: "from alice", body: "hello" })])
        const { engine: onBob } = yield* bob.get(Node.Node).library(library.id)
        yield* Processes.eventually("alice's note on bob", Effect.map(onBob.get(notes, "n1"), Option.isSome), (there) => there)
        // bob's node says what sync applied from alice, and nothing of its own writes
        const applied = () => logged.filter((line) => line.includes("from sync"))
        yield* Processes.eventually("bob's log of alice's note", Effect.sync(applied), (lines) => lines.length > 0)
        expect(applied()[0]).toMatch(/^library Team notes: applied \d+ operation\(s\) from sync, 1 record\(s\) changed$/)
        const before = applied().length
        yield* onBob.mutate([notes.update("n1", { title: "edited by bob" })])
        yield* onBob.mutate([notes.create("n2", { title: "bob's own", body: "" })])
        expect(applied().length).toBe(before)
        yield* Processes.eventually("bob's edit on alice", Effect.map(onAlice.get(notes, "n1"), Option.map((n) => n.title)), (title) =>
          Option.getOrUndefined(title) === "edited by bob")
      }))

      const status = yield* alice.get(Node.Node).status
      expect(status.libraries.find((l) => l.id === library.id)?.members.length).toBe(2)
      expect(status.sessions.some((s) => s.library === library.id && s.state === "syncing")).toBe(true)
    }), 60_000)

  it.scopedLive("one process per data directory: a second node on it is refused Busy before it opens anything", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const first = yield* startNode("first", scope)
      const second = yield* Effect.either(Layer.build(Node.layerDirectory({
        directory: first.directory,
        models: [notes],
        listen: ["/ip4/127.0.0.1/tcp/0"],
        lockWait: Duration.millis(200)
      })).pipe(Effect.scoped))
      expect(Either.isLeft(second) && second.left).toMatchObject({ _tag: "DataDirError", reason: "Busy" })
    }), 60_000)

  it.scopedLive("with nobody attending its consent, a node refuses pairing requests at once", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const alice = yield* startNode("alice", scope)
      const bob = yield* startNode("bob", scope)
      const aliceId = alice.get(Identity).peerId
      const library = yield* alice.get(Libraries).create("Team notes", aliceId)
      const [address] = yield* bob.get(Node.Node).addresses
      yield* alice.get(PluginHost).connect(address!)
      const started = Date.now()
      const refused = yield* Effect.flip(alice.get(Pair).pair(bob.get(Identity).peerId, library.id))
      expect(refused).toMatchObject({ _tag: "PairError", reason: "Unattended" })
      expect(refused.message).toContain("nobody is there to approve it")
      expect(Date.now() - started).toBeLessThan(5000)
    }), 60_000)

  it.scopedLive("a question can be answered through the control socket by another front end; a second answer is a typed AlreadyDecided", () =>
    Effect.gen(function*() {
      const scope = yield* Effect.scope
      const alice = yield* startNode("alice", scope)
      // a front end that attends and never answers (a prompt nobody is at)
      yield* Consent.answerWith(() => Effect.never).pipe(Effect.provideService(Consent.Consent, alice.get(Consent.Consent)))
      const path = join(alice.directory, "control.sock")
      yield* ControlSocket.serve(path, Control.NodeControl).pipe(Effect.provide(Node.nodeControlHandlers), Effect.provide(alice.context))
      const client = yield* ControlSocket.client(path, Control.NodeControl)
      const asked = yield* Effect.fork(alice.get(Consent.Consent).ask({ kind: "test", peer: "12D3KooWpeer" as PeerId, text: "may I?" }))
      const [pending] = yield* Processes.eventually("the question, through the socket", client.ConsentPending(), (all) => all.length === 1)
      expect(pending).toMatchObject({ kind: "test", peer: "12D3KooWpeer", text: "may I?" })
      yield* client.ConsentAnswer({ id: pending!.id, approve: true })
      expect(yield* Fiber.join(asked)).toBe("approved")
      const again = yield* Effect.flip(client.ConsentAnswer({ id: pending!.id, approve: false }))
      expect(again).toBeInstanceOf(Consent.ConsentError)
      expect(again).toMatchObject({ reason: "AlreadyDecided" })
    }), 60_000)
})
