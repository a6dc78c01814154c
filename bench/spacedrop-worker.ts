/**
 * Spacedrop benchmarks, one role per process (each end on its own core, as
 * on two machines; each process's peak RSS is its own):
 *
 *   servers (print one JSON line when ready, then one per transfer received, until killed)
 *     sd-receive <dir>          libp2p transport + plugin host + Spacedrop, accepting every offer
 *                               into a fresh folder under <dir> (removed once reported)
 *     tar-receive <dir>         node:net: each connection piped into `tar -x` in a fresh folder under
 *                               <dir>; answers one byte once tar has exited
 *   clients (print one JSON line with their figures)
 *     make-file <path> <bytes>                 a file of incompressible bytes
 *     make-tree <dir> <files> <seed>           files of 1–64 KiB, 100 to a folder
 *     sd-send <address> <path>                 sends <path> (file or folder) with Spacedrop
 *     tar-send <port> <dir>                    `tar -c` of <dir> piped over node:net
 *
 * Times are wall clock from the start of the send (Spacedrop's hashing of
 * the sources included: it is what a user waits for) to the end the other
 * side confirms (Spacedrop: every file verified, synced and in place; tar:
 * tar -x has exited).
 */
import "../src/transport/internal/promiseWithResolvers.js"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { mkdirSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from "node:fs"
import { connect, createServer } from "node:net"
import { rm } from "node:fs/promises"
import { join } from "node:path"
import * as Libraries from "../src/library/Libraries.js"
import * as PluginHost from "../src/plugins/PluginHost.js"
import * as Spacedrop from "../src/plugins/spacedrop/Spacedrop.js"
import * as Identity from "../src/transport/Identity.js"
import * as Libp2pTransport from "../src/transport/Libp2pTransport.js"
import * as Transport from "../src/transport/Transport.js"

const [role, ...args] = process.argv.slice(2) as [string, ...Array<string>]

const LOOPBACK = "127.0.0.1"

const line = (figures: Record<string, unknown>) => console.log(JSON.stringify(figures))
const peakRssMb = () => process.resourceUsage().maxRSS / 1024
const cpuMs = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

/** A node: libp2p on loopback (fresh identity, default window), the plugin host, Spacedrop. */
const node = Effect.gen(function*() {
  const transport = yield* Libp2pTransport.make({ identity: yield* Identity.generate(), listen: [`/ip4/${LOOPBACK}/tcp/0`] })
  const context = yield* Layer.build(Layer.provideMerge(Spacedrop.layer({ name: `bench-${process.pid}` }), PluginHost.layer()).pipe(
    Layer.provide(Layer.merge(Layer.succeed(Transport.Transport, transport), Libraries.layerMemory()))
  ))
  const [address] = yield* transport.addresses
  return { transport, address: address!, spacedrop: Context.get(context, Spacedrop.Spacedrop) }
})

/** Runs a server until SIGTERM. */
const serveForever = <E>(effect: Effect.Effect<unknown, E, Scope.Scope>) => {
  const fiber = Effect.runFork(Effect.scoped(Effect.zipRight(effect, Effect.never)))
  process.once("SIGTERM", () => {
    Effect.runPromise(Fiber.interrupt(fiber)).finally(() => process.exit(0))
  })
  return Effect.runPromise(Fiber.join(fiber))
}

let received = 0
const freshFolder = (dir: string) => {
  const target = join(dir, `r${process.pid}-${received++}`)
  mkdirSync(target, { recursive: true })
  return target
}

const roles: Record<string, () => unknown> = {
  "make-file": () => {
    const [path, bytes] = [args[0]!, Number(args[1])]
    // incompressible, and quick to write: one random MiB over and over (no layer compresses)
    const block = randomBytes(1024 * 1024)
    const fd = openSync(path, "w")
    for (let written = 0; written < bytes; written += block.length) writeSync(fd, block, 0, Math.min(block.length, bytes - written))
    closeSync(fd)
    line({ bytes })
  },

  "make-tree": () => {
    const [dir, files, seed] = [args[0]!, Number(args[1]), args[2]!]
    let bytes = 0
    const pool = randomBytes(64 * 1024 + 4096)
    for (let i = 0; i < files; i++) {
      // sizes from 1 to 64 KiB, spread evenly, fixed by the seed
      const digest = createHash("sha256").update(`${seed}:${i}`).digest()
      const size = 1024 + (digest.readUInt32BE(0) % (63 * 1024 + 1))
      const folder = join(dir, `d${Math.floor(i / 100)}`)
      if (i % 100 === 0) mkdirSync(folder, { recursive: true })
      writeFileSync(join(folder, `f${i}.bin`), pool.subarray(digest[4]! * 16, digest[4]! * 16 + size))
      bytes += size
    }
    line({ files, bytes })
  },

  "sd-receive": () =>
    serveForever(Effect.gen(function*() {
      const dir = args[0]!
      const { address, spacedrop, transport } = yield* node
      const offers = yield* spacedrop.offers
      yield* Effect.forkScoped(Stream.runForEach(offers, (offer) =>
        Effect.gen(function*() {
          const target = freshFolder(dir)
          const cpu = cpuMs()
          const transfer = yield* offer.accept(target)
          const summary = yield* transfer.result
          const figures = { files: summary.files.length, bytes: summary.bytes, receiverCpuMs: cpuMs() - cpu, peakRssMb: peakRssMb() }
          // removed before the report (the next round waits for it), and not synchronously: 10 000 unlinks would
          // block this node's loop for seconds, and the next sender's handshake timed out
          yield* Effect.promise(() => rm(target, { recursive: true, force: true }))
          line(figures)
        }).pipe(Effect.catchAll((error) => Effect.sync(() => line({ error: String(error) }))))))
      line({ ready: true, address, peer: transport.peerId })
    })),

  "sd-send": () =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const [address, path] = [args[0]!, args[1]!]
      const { spacedrop, transport } = yield* node
      const peer = yield* transport.connect(address)
      const started = performance.now()
      const cpu = cpuMs()
      const transfer = yield* spacedrop.send(peer, [path])
      const summary = yield* transfer.result
      const seconds = (performance.now() - started) / 1000
      line({ files: summary.files.length, bytes: summary.bytes, seconds, mbPerSec: summary.bytes / 1e6 / seconds, senderCpuMs: cpuMs() - cpu, peakRssMb: peakRssMb() })
    }))),

  "tar-receive": () => {
    const dir = args[0]!
    process.once("SIGTERM", () => process.exit(0))
    // half open: the sender's end of the archive is not the end of the answer
    const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
      const target = freshFolder(dir)
      const tar = spawn("tar", ["-x", "-C", target], { stdio: ["pipe", "ignore", "inherit"] })
      socket.pipe(tar.stdin)
      tar.once("exit", (code) => {
        socket.end(Buffer.of(code === 0 ? 1 : 0))
        rmSync(target, { recursive: true, force: true })
      })
    })
    server.listen(0, LOOPBACK, () => {
      const address = server.address()
      line({ ready: true, port: typeof address === "object" && address !== null ? address.port : 0 })
    })
  },

  "tar-send": () => {
    const [port, dir] = [Number(args[0]), args[1]!]
    const started = performance.now()
    const socket = connect({ port, host: LOOPBACK, noDelay: true }, () => {
      const tar = spawn("tar", ["-c", "-C", dir, "."], { stdio: ["ignore", "pipe", "inherit"] })
      tar.stdout.pipe(socket, { end: true })
    })
    socket.once("data", (answer: Buffer) => {
      const seconds = (performance.now() - started) / 1000
      if (answer[0] !== 1) {
        console.error("tar -x failed")
        process.exitCode = 1
      }
      line({ seconds })
      socket.destroy()
    })
  }
}

const main = roles[role]
if (main === undefined) {
  console.error(`unknown role ${role}`)
  process.exitCode = 2
} else {
  Promise.resolve(main()).catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
