/**
 * `weft grant`, `weft revoke`, `weft grants` and `weft --peer <id> notes …`
 * with two real `weft serve` processes paired in one library.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Cli from "./testing/Cli.js"

const { serve, twoDirs, weft, weftJson } = Cli

describe("weft --peer (rspc between two real nodes)", () => {
  it.scopedLive("A grants B notes.read only: from B, `weft --peer A notes list` works and `notes add` is refused", () =>
    Effect.gen(function*() {
      const { a, alpha, b } = yield* twoDirs
      // one after the other: on a loaded machine two starting at once can take longer than serve waits
      const nodeA = yield* serve(a)
      const nodeB = yield* serve(b, "--yes")
      const [statusA, statusB] = [yield* nodeA.status, yield* nodeB.status]
      // both become members of Alpha
      yield* weftJson("pair", statusB.addresses[0]!, "--dir", a)
      const peerA = statusA.peerId
      const peerB = statusB.peerId
      yield* weftJson("notes", "add", "on a", "--dir", a)

      // nothing granted yet: refused, with a clear message, and nothing falls back to B's own notes
      const before = yield* weft("--peer", peerA, "notes", "list", "--library", alpha, "--dir", b)
      expect(before.code).toBe(1)
      expect(before.stderr).toBe("weft: Forbidden: forbidden (NotGranted): NotesList is not granted to you here\n")

      expect(yield* weftJson("grant", peerB, "notes.read", "--library", alpha, "--dir", a)).toEqual({ peer: peerB, library: alpha, capabilities: ["notes.read"] })
      expect(yield* weftJson("grants", "--dir", a)).toEqual([{ peer: peerB, library: alpha, capabilities: ["notes.read"] }])

      const listed = yield* weftJson("--peer", peerA, "notes", "list", "--library", alpha, "--dir", b)
      expect(listed.map((n: { title: string }) => n.title)).toContain("on a")
      const text = yield* weft("--peer", peerA, "notes", "list", "--library", alpha, "--dir", b)
      expect(text.code).toBe(0)
      expect(text.stdout).toContain("on a")

      const add = yield* weft("--peer", peerA, "notes", "add", "from b", "--library", alpha, "--dir", b)
      expect(add.code).toBe(1)
      expect(add.stderr).toBe("weft: Forbidden: forbidden (NotGranted): NotesAdd is not granted to you here\n")
      // the note was made nowhere
      const onA = yield* nodeA.call({ _tag: "NotesList" })
      expect(onA.notes.map((n) => n.title)).toEqual(["on a"])

      // a command that does not run remotely refuses --peer instead of answering for this node
      const peers = yield* weft("--peer", peerA, "peers", "--dir", b)
      expect(peers.code).toBe(1)
      expect(peers.stderr).toMatch(/^weft: PeerOptionError: --peer works with `weft notes …`, `weft status` and `weft transfers …` only/)

      // status and transfers run on A once granted, each by its own capability, and never on B
      const statusBefore = yield* weft("--peer", peerA, "status", "--dir", b)
      expect(statusBefore.code).toBe(1)
      expect(statusBefore.stderr).toBe("weft: Forbidden: forbidden (NotGranted): Status is not granted to you here\n")
      yield* weftJson("grant", peerB, "node.status", "spacedrop.transfers.read", "--library", alpha, "--dir", a)
      expect((yield* weftJson("--peer", peerA, "status", "--dir", b)).peerId).toBe(peerA)
      expect(yield* weftJson("--peer", peerA, "transfers", "--dir", b)).toEqual([])
      const cancel = yield* weft("--peer", peerA, "transfers", "cancel", "t1", "--dir", b)
      expect(cancel.code).toBe(1)
      expect(cancel.stderr).toBe("weft: Forbidden: forbidden (NotGranted): TransferCancel is not granted to you here\n")

      // revoked: refused again; the grants survive a restart of A (checked by the file the node reads)
      expect(yield* weftJson("revoke", peerB, "--library", alpha, "--dir", a)).toEqual({ peer: peerB, library: alpha, capabilities: [] })
      const after = yield* weft("--peer", peerA, "notes", "list", "--library", alpha, "--dir", b)
      expect(after.code).toBe(1)
      expect(after.stderr).toContain("Forbidden")
      // an unknown peer is Unavailable, not a local call
      const nobody = yield* weft("--peer", "12D3KooWAbCdEfGhJkLmNpQrStUvWxYz123456789aBcDeFgHjKm", "notes", "list", "--library", alpha, "--dir", b)
      expect(nobody.code).toBe(1)
      expect(nobody.stderr).toMatch(/^weft: Unavailable: peer 12D3KooW\w+ unavailable \(NotConnected\)/)
    }), 180_000)
})
