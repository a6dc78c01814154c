import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import * as Protocol from "./Protocol.js"
import type * as Spacedrop from "./Spacedrop.js"
import * as Peers from "./testing/Peers.js"

const write = (path: string, content: Uint8Array | string) =>
  Effect.promise(async () => {
    await fs.mkdir(nodePath.dirname(path), { recursive: true })
    await fs.writeFile(path, content)
  })

const failure = <A, E>(outcome: Either.Either<A, E>): E => {
  expect(Either.isLeft(outcome), "expected a failure").toBe(true)
  return (outcome as Either.Left<E, A>).left
}

/** Accepts every offer on `receiver` into `target` (with `options`), handing each transfer to `transfers`. */
const acceptAll = (receiver: Peers.Peer, target: string, options?: Spacedrop.AcceptOptions) =>
  Effect.gen(function*() {
    const transfers = yield* Queue.unbounded<Spacedrop.Transfer>()
    const offers = yield* receiver.spacedrop.offers
    yield* Effect.forkScoped(Stream.runForEach(offers, (offer) => Effect.flatMap(offer.accept(target, options), (t) => Queue.offer(transfers, t))))
    return transfers
  })

describe("Spacedrop over the memory transport", () => {
  it.scopedLive("a folder tree arrives byte-identical: nested and empty directories, empty files, a few MiB, Unicode names", () =>
    Effect.gen(function*() {
      const { sender, receiver } = yield* Peers.make()
      const source = yield* Peers.tempDir()
      const target = yield* Peers.tempDir()
      const tree = nodePath.join(source, "tree")
      yield* write(nodePath.join(tree, "a/b/c/deep.txt"), "deep")
      yield* write(nodePath.join(tree, "empty.txt"), "")
      yield* write(nodePath.join(tree, "big.bin"), randomBytes(3 * 1024 * 1024 + 17))
      yield* write(nodePath.join(tree, "ünïcødé/日本語 ファイル.txt"), "こんにちは")
      yield* write(nodePath.join(tree, "emoji 🎉/ok.md"), "# party")
      yield* Effect.promise(() => fs.mkdir(nodePath.join(tree, "empty-dir/inner-empty"), { recursive: true }))
      yield* write(nodePath.join(source, "loose.txt"), "a file sent beside the folder")

      const transfers = yield* acceptAll(receiver, target)
      const outgoing = yield* sender.spacedrop.send(receiver.id, [tree, nodePath.join(source, "loose.txt")])
      const sent = yield* outgoing.result
      const incoming = yield* Queue.take(transfers)
      const received = yield* incoming.result
      expect(sent.files.length).toBe(6)
      expect(received.files.length).toBe(6)
      expect(received.bytes).toBe(sent.bytes)
      expect(yield* Peers.snapshot(target)).toEqual(yield* Peers.snapshot(source))
      // modification times come along
      const [a, b] = yield* Effect.promise(() => Promise.all([fs.stat(nodePath.join(tree, "big.bin")), fs.stat(nodePath.join(target, "tree/big.bin"))]))
      expect(Math.abs(a!.mtimeMs - b!.mtimeMs)).toBeLessThan(1)
    }), 60_000)
})
