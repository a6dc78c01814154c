import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import Sqlite from "better-sqlite3"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Binary from "../../crdt/Binary.js"
import * as Operation from "../../crdt/Operation.js"
import * as Timestamp from "../../crdt/Timestamp.js"
import type * as Engine from "../../engine/Engine.js"
import * as Model from "../../engine/Model.js"
import * as Engines from "../../engine/testing/Engines.js"
import * as MemoryTransport from "../../transport/MemoryTransport.js"
import { Transport } from "../../transport/Transport.js"
import * as Libraries from "../../library/Libraries.js"
import * as PluginHost from "../PluginHost.js"
import type { NodeId } from "../../crdt/Timestamp.js"
import * as SyncProtocol from "../../sync/SyncProtocol.js"
import * as Framing from "../../transport/Framing.js"
import type { PeerId } from "../../transport/Transport.js"
import * as Protocol from "./Protocol.js"
import * as Sync from "./Sync.js"

const notes = Model.make("notes", Schema.Struct({ title: Schema.String }))
const secrets = Model.make("secrets", Schema.Struct({ value: Schema.String }))
const LIBRARY = "lib"

const peer = (
  network: MemoryTransport.MemoryNetwork,
  id: string,
  models: ReadonlyArray<Model.Any>,
  members: ReadonlyArray<string>,
  options: { readonly synced?: boolean; readonly filename?: string; readonly failureBuffer?: number } = {}
) =>
  Effect.gen(function*() {
    const engine = yield* Engines.open({ models, node: id, ...(options.filename === undefined ? {} : { filename: options.filename }) })
    const transport = yield* network.transport(id)
    const libraries = yield* Effect.provide(Libraries.Libraries, Libraries.layerMemory([{ id: LIBRARY, name: "lib", members: members as Array<never> }]))
    const host = yield* PluginHost.make({ connectDiscovered: false }).pipe(
      Effect.provideService(Transport, transport),
      Effect.provideService(Libraries.Libraries, libraries)
    )
    const sync = yield* Sync.make({
      libraries: options.synced === false ? [] : [{ id: LIBRARY, engine }],
      retry: Schedule.spaced(Duration.millis(20)),
      ...(options.failureBuffer === undefined ? {} : { failureBuffer: options.failureBuffer })
    }).pipe(Effect.provideService(PluginHost.PluginHost, host), Effect.provideService(Libraries.Libraries, libraries))
    return { engine, transport, host, sync, libraries }
  })

const eventually = (check: Effect.Effect<boolean, unknown>) =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep(Duration.millis(5))
  }).pipe(Effect.timeoutFail({ duration: Duration.seconds(10), onTimeout: () => new Error("condition not reached in time") }))

const has = (engine: Engine.Service, id: string) => Effect.map(engine.get(notes, id), Option.isSome)

describe("Sync plugin", () => {
  it.scopedLive("starts sessions on connect, in both directions, and carries later writes", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 1 })
      const a = yield* peer(network, "a", [notes], ["a", "b"])
      const b = yield* peer(network, "b", [notes], ["a", "b"])
      yield* a.engine.mutate([notes.create("n1", { title: "from a" })])
      yield* b.engine.mutate([notes.create("n2", { title: "from b" })])
      yield* b.transport.connect("memory://a")
      yield* eventually(Effect.zipWith(has(a.engine, "n2"), has(b.engine, "n1"), (x, y) => x && y))
      yield* a.engine.mutate([notes.update("n2", { title: "edited by a" })])
      yield* eventually(Effect.map(b.engine.get(notes, "n2"), (row) => Option.isSome(row) && row.value.title === "edited by a"))
      const status = yield* a.sync.status
      expect(status).toMatchObject([{ peer: "b", library: LIBRARY, state: "syncing" }])
    }))

  it.scopedLive("a batch that cannot be applied is a typed failure the app sees; nothing of it is applied", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 2 })
      // b has a model a does not declare
      const a = yield* peer(network, "a", [notes], ["a", "b"])
      const b = yield* peer(network, "b", [notes, secrets], ["a", "b"])
      const failures = yield* a.sync.failures
      yield* b.engine.mutate([notes.create("n1", { title: "fine" }), secrets.create("s1", { value: "unknown to a" })])
      yield* b.transport.connect("memory://a")
      const failure = yield* failures.pipe(Stream.runHead, Effect.map(Option.getOrThrow))
      expect(failure.peer).toBe("b")
      expect(failure.error).toMatchObject({ _tag: "ValidationError", reason: "UnknownModel", model: "secrets" })
      // the failed batch was refused whole: a holds nothing of b's
      expect(yield* has(a.engine, "n1")).toBe(false)
      expect((yield* a.engine.versionVector).get("b")).toBeUndefined()
    }))

  for (const [name, frame] of [
    ["an oversize frame", Framing.encode(new Uint8Array(0)).map((_, i) => (i === 0 ? 0xff : 0))],
    ["a malformed frame", Framing.encode(new Uint8Array([0xc1, 0x00, 0xff]))]
  ] as const) {
    it.scopedLive(`a peer that sends ${name} is disconnected, with a typed error, and nothing is written`, () =>
      Effect.gen(function*() {
        const network = yield* MemoryTransport.make({ seed: 4 })
        const a = yield* peer(network, "a", [notes], ["a", "z"])
        // z is a member but speaks garbage: it drives the stream itself instead of running a session
        const z = yield* peer(network, "z", [notes], [])
        const events = yield* a.host.events
        const failures = yield* a.sync.failures
        yield* z.transport.connect("memory://a")
        const stream = yield* z.host.open("a" as PeerId, Protocol.protocol, LIBRARY)
        const framed = Framing.make(stream)
        yield* framed.send(SyncProtocol.encode({ _tag: "Hello", node: "z" as NodeId, library: LIBRARY, entries: new Map(), more: false }))
        yield* stream.write(frame)
        const violation = yield* events.pipe(Stream.filter((e) => e._tag === "Violation"), Stream.runHead, Effect.map(Option.getOrThrow))
        expect(violation).toMatchObject({ _tag: "Violation", peer: "z", protocol: Protocol.protocol.protocol })
        // (a's own opening to z is refused, z not counting a as a member: that failure is not this one)
        const failure = yield* failures.pipe(
          Stream.filter((f) => f.error._tag !== "PermissionError"),
          Stream.runHead,
          Effect.map(Option.getOrThrow)
        )
        expect(failure.error).toMatchObject(name === "an oversize frame" ? { _tag: "ProtocolError", reason: "Oversize" } : { _tag: "ProtocolError", reason: "Malformed" })
        yield* eventually(Effect.map(a.transport.connections, (peers) => !peers.includes("z" as PeerId)))
        expect((yield* a.engine.versionVector).get("z")).toBeUndefined()
      }))
  }

  it.scopedLive("a peer that is not a member of the library gets no session", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 3 })
      const a = yield* peer(network, "a", [notes], ["a", "c"])
      const b = yield* peer(network, "b", [notes], ["a", "b"])
      yield* b.engine.mutate([notes.create("n1", { title: "from b" })])
      yield* b.transport.connect("memory://a")
      yield* Effect.sleep(Duration.millis(300))
      expect(yield* has(a.engine, "n1")).toBe(false)
      expect((yield* a.sync.status).filter((s) => s.state === "syncing")).toEqual([])
    }))

  it.scopedLive("a library added while running syncs with the members already connected", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 5 })
      const a = yield* peer(network, "a", [notes], ["a", "b"], { synced: false })
      const b = yield* peer(network, "b", [notes], ["a", "b"])
      yield* b.engine.mutate([notes.create("n1", { title: "from b" })])
      yield* b.transport.connect("memory://a")
      yield* Effect.sleep(Duration.millis(100))
      expect(yield* has(a.engine, "n1")).toBe(false)
      expect(yield* a.sync.libraries).toEqual([])
      yield* a.sync.add({ id: LIBRARY, engine: a.engine })
      yield* eventually(has(a.engine, "n1"))
      expect(yield* a.sync.libraries).toEqual([LIBRARY])
    }))

  it.scopedLive("a session opened for a library the remote has joined but not yet added waits for it instead of failing", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 6 })
      // a opens (smaller id); b is a member but opens its engine only later, as after a pairing
      const a = yield* peer(network, "a", [notes], ["a", "b"])
      const b = yield* peer(network, "b", [notes], ["a", "b"], { synced: false })
      const failures = yield* a.sync.failures
      const failed = yield* Effect.fork(Stream.runHead(failures))
      yield* a.engine.mutate([notes.create("n1", { title: "from a" })])
      yield* b.transport.connect("memory://a")
      yield* Effect.sleep(Duration.millis(200))
      yield* b.sync.add({ id: LIBRARY, engine: b.engine })
      yield* eventually(has(b.engine, "n1"))
      expect(failed.unsafePoll()).toBeNull()
    }))

  it.scopedLive("a member removed while its stream waits for the library to be added gets no session", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 9 })
      const a = yield* peer(network, "a", [notes], ["a", "b"])
      const b = yield* peer(network, "b", [notes], ["a", "b"], { synced: false })
      yield* a.engine.mutate([notes.create("n1", { title: "from a" })])
      yield* b.transport.connect("memory://a")
      // a's stream is admitted (a's session has started): it waits for b to add the library (joinWait); meanwhile b removes a
      yield* eventually(Effect.map(a.sync.status, (all) => all.some((s) => s.peer === "b" && s.state === "syncing")))
      yield* b.libraries.removeMember(LIBRARY, "a" as PeerId)
      yield* b.sync.add({ id: LIBRARY, engine: b.engine })
      yield* Effect.sleep(Duration.millis(300))
      expect(yield* has(b.engine, "n1")).toBe(false)
      expect((yield* b.sync.status).filter((s) => s.state === "syncing")).toEqual([])
    }))

  it.scopedLive("a refused opening is a typed failure on `failures`", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 7 })
      // a thinks b is a member; b does not count a as one
      const a = yield* peer(network, "a", [notes], ["a", "b"])
      yield* peer(network, "b", [notes], ["b"])
      const failures = yield* a.sync.failures
      yield* a.transport.connect("memory://b")
      const failure = yield* failures.pipe(Stream.runHead, Effect.map(Option.getOrThrow))
      expect(failure).toMatchObject({ peer: "b", library: LIBRARY, error: { _tag: "PermissionError", reason: "NotAMember" } })
      expect(yield* a.sync.status).toMatchObject([{ peer: "b", library: LIBRARY, state: "failed" }])
    }))

  it.scopedLive("a watcher of `failures` that does not read holds only the latest few", () =>
    Effect.gen(function*() {
      const network = yield* MemoryTransport.make({ seed: 7 })
      // a's retries of a refused opening fail every 20 ms for as long as b stays connected
      const a = yield* peer(network, "a", [notes], ["a", "b"], { failureBuffer: 4 })
      yield* peer(network, "b", [notes], ["b"])
      const idle = yield* a.sync.failures
      const reader = yield* a.sync.failures
      yield* a.transport.connect("memory://b")
      yield* reader.pipe(Stream.take(12), Stream.runDrain)
      yield* a.sync.remove(LIBRARY)
      const held = yield* idle.pipe(Stream.interruptWhen(Effect.sleep(Duration.millis(200))), Stream.runCollect)
      expect(held.length).toBe(4)
      for (const failure of held) expect(failure).toMatchObject({ peer: "b", error: { reason: "NotAMember" } })
    }))

  for (const how of ["the library is removed", "the peer loses its membership"] as const) {
    it.scopedLive(`sessions in both directions end when ${how}`, () =>
      Effect.gen(function*() {
        const network = yield* MemoryTransport.make({ seed: 8 })
        const a = yield* peer(network, "a", [notes], ["a", "b"])
        const b = yield* peer(network, "b", [notes], ["a", "b"])
        yield* a.transport.connect("memory://b")
        yield* a.engine.mutate([notes.create("n1", { title: "first" })])
        yield* eventually(has(b.engine, "n1"))
        // b ends it: b's (inbound) session must stop, and a's reopening must not carry data to b
        yield* (how === "the library is removed" ? b.sync.remove(LIBRARY) : b.libraries.removeMember(LIBRARY, "a" as PeerId))
        const syncing = (s: ReadonlyArray<Sync.SessionStatus>) => s.some((x) => x.state === "syncing")
        yield* eventually(Effect.map(b.sync.status, (s) => !syncing(s)))
        yield* a.engine.mutate([notes.create("n2", { title: "after" })])
        yield* Effect.sleep(Duration.millis(200))
        expect(yield* has(b.engine, "n2")).toBe(false)
        expect(syncing(yield* b.sync.status)).toBe(false)
      }))
  }

  it.scopedLive("peers holding operations of 100 000 origins (128 characters each) exchange their vectors in bounded frames and keep syncing", () =>
    Effect.gen(function*() {
      const origins = Array.from({ length: 100_000 }, (_, i) => `${String(i).padStart(8, "0")}${"x".repeat(120)}`)
      const filenames = yield* Effect.forEach(["a", "b"], (id) => historyOf(id, origins))
      const network = yield* MemoryTransport.make({ seed: 7 })
      const a = yield* peer(network, "a", [notes], ["a", "b"], { filename: filenames[0]! })
      const b = yield* peer(network, "b", [notes], ["a", "b"], { filename: filenames[1]! })
      const failures: Array<unknown> = []
      yield* Effect.forkScoped(Stream.runForEach(yield* a.sync.failures, (f) => Effect.sync(() => failures.push(f.error))))
      yield* Effect.forkScoped(Stream.runForEach(yield* b.sync.failures, (f) => Effect.sync(() => failures.push(f.error))))
      yield* a.transport.connect("memory://b")
      yield* a.engine.mutate([notes.create("from-a", { title: "a" })])
      yield* b.engine.mutate([notes.create("from-b", { title: "b" })])
      yield* eventually(Effect.zipWith(has(a.engine, "from-b"), has(b.engine, "from-a"), (x, y) => x && y))
      expect((yield* a.engine.versionVector).size).toBe(100_002)
      expect((yield* b.engine.versionVector).size).toBe(100_002)
      expect(failures).toEqual([])
    }), { timeout: 60_000 })
})

/**
 * A database file whose log holds one operation (a delete) from each of `origins`, written
 * straight into SQLite: the same history on both peers, so a session exchanges vectors only.
 */
const historyOf = (node: string, origins: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const filename = join(mkdtempSync(join(tmpdir(), "weft-vectors-")), `${node}.db`)
    yield* Effect.scoped(Engines.open({ models: [notes], node, filename }))
    const db = new Sqlite(filename)
    const ts = Timestamp.make(Date.now() - 60_000, 0)
    // the layout since migration 0005: origins numbered in weft_origins (the vector is the log's), timestamps as 8 bytes
    const op = db.prepare("INSERT INTO weft_log (origin, seq, ts, kind, model, record, payload) VALUES (?, 1, ?, ?, 'notes', ?, ?)")
    const entry = db.prepare("INSERT INTO weft_origins (n, origin) VALUES (?, ?)")
    const payload = Buffer.from(Binary.encode(null))
    db.transaction(() => {
      for (const [i, origin] of origins.entries()) {
        op.run(i + 1, Buffer.from(ts, "hex"), Operation.kindOf({ _tag: "Delete" }), `r${i}`, payload)
        entry.run(i + 1, origin)
      }
    })()
    db.close()
    return filename
  })
