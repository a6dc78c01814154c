/**
 * automerge-repo in the side-by-side bench, two ways: one document holding
 * every record (`records[id]`), or one document per record. Each repo stores
 * through the NodeFS storage adapter; two repos talk through the
 * MessageChannel network adapter (one process, as Weft's two engines).
 *
 * A batch is one `change` (one document: every record of the batch in one
 * change; a document per record: a `create` per record) followed by
 * `repo.flush` of the documents it touched, so that, as with the other
 * systems, each batch is on disk before the next starts (the repo on its own
 * saves at most every 100 ms). Catch-up ends when B holds every record and
 * has flushed them. A live update is a `change` on A's handle; it has arrived
 * when B's handle of that document emits a change holding the new value.
 */
import * as Automerge from "@automerge/automerge"
import { type AutomergeUrl, type DocHandle, Repo } from "@automerge/automerge-repo"
import { MessageChannelNetworkAdapter } from "@automerge/automerge-repo-network-messagechannel"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { MessageChannel } from "node:worker_threads"
import * as Workload from "./anchors-workload.js"

type Records = { records: { [id: string]: Workload.FileRecord } }

const saveUrls = (dir: string, urls: ReadonlyArray<AutomergeUrl>) => writeFileSync(join(dir, "urls.json"), JSON.stringify(urls))
const loadUrls = (dir: string): Array<AutomergeUrl> => JSON.parse(readFileSync(join(dir, "urls.json"), "utf8"))

/** Resolves once `handle`'s document satisfies `done` (checked now and on each change). */
const until = <T>(handle: DocHandle<T>, done: (doc: T) => boolean) =>
  new Promise<void>((resolve) => {
    if (done(handle.doc())) return resolve()
    const listener = () => {
      if (!done(handle.doc())) return
      handle.off("change", listener)
      resolve()
    }
    handle.on("change", listener)
  })

/**
 * `f` over every item, at most `limit` at a time: thousands of simultaneous `find`s
 * leave some documents waiting until the repo gives up on them as unavailable.
 */
const mapLimit = async <A, B>(items: ReadonlyArray<A>, limit: number, f: (a: A) => Promise<B>): Promise<Array<B>> => {
  const out: Array<B> = new Array(items.length)
  let next = 0
  const lane = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await f(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
  return out
}

const FINDS = 64

/** Two repos over a MessageChannel, each on its own NodeFS store; B's is empty. */
const peers = (dir: string) => {
  const { port1, port2 } = new MessageChannel()
  const a = new Repo({ peerId: "a" as never, storage: new NodeFSStorageAdapter(join(dir, "a")), network: [] })
  return {
    a,
    port1,
    connect: () => {
      a.networkSubsystem.addNetworkAdapter(new MessageChannelNetworkAdapter(port1 as never))
      return new Repo({ peerId: "b" as never, storage: new NodeFSStorageAdapter(join(dir, `b-${process.pid}`)), network: [new MessageChannelNetworkAdapter(port2 as never)] })
    },
    close: async (b: Repo) => {
      await Promise.all([a.shutdown(), b.shutdown()])
      port1.close()
      port2.close()
    }
  }
}

/** One document holding every record. */
export const oneDocument: Workload.System = {
  write: async (dir, count, batch) => {
    const ids = Workload.recordIds(count)
    const repo = new Repo({ storage: new NodeFSStorageAdapter(join(dir, "a")), network: [] })
    const handle = repo.create<Records>({ records: {} })
    const start = performance.now()
    for (let from = 0; from < count; from += batch) {
      handle.change((doc) => {
        for (let i = from; i < Math.min(from + batch, count); i++) doc.records[ids[i]!] = Workload.record(i)
      })
      await repo.flush([handle.documentId])
    }
    const seconds = (performance.now() - start) / 1000
    const savedDocBytes = Automerge.save(handle.doc()).byteLength
    await repo.shutdown()
    Workload.saveIds(dir, ids)
    saveUrls(dir, [handle.url])
    return { records: count, recordsPerSec: count / seconds, diskBytes: Workload.diskBytes(join(dir, "a")), savedDocBytes }
  },

  catchUp: async (dir, count, live) => {
    const [url] = loadUrls(dir)
    const ids = Workload.loadIds(dir)
    const net = peers(dir)
    const a = await net.a.find<Records>(url!)
    const start = performance.now()
    const b = net.connect()
    const handle = await b.find<Records>(url!)
    await until(handle, (doc) => Object.keys(doc.records).length >= count)
    await b.flush()
    const recordsPerSec = count / ((performance.now() - start) / 1000)

    const { liveMs, cpuMsPerUpdate } = await Workload.liveLoop(live, (i) => {
      const id = ids[(i * 7919) % ids.length]!
      const size = count + i
      const seen = until(handle, (doc) => doc.records[id]?.size === size)
      a.change((doc) => {
        doc.records[id]!.size = size
      })
      return seen
    })
    const memory = Workload.memory()
    await net.close(b)
    return { records: count, recordsPerSec, liveMs, ...(cpuMsPerUpdate === undefined ? {} : { cpuMsPerUpdate }), ...memory }
  }
}

/** One document per record. */
export const documentPerRecord: Workload.System = {
  write: async (dir, count, batch) => {
    // the record's id is its document's
    const repo = new Repo({ storage: new NodeFSStorageAdapter(join(dir, "a")), network: [] })
    const urls: Array<AutomergeUrl> = []
    const start = performance.now()
    for (let from = 0; from < count; from += batch) {
      const handles: Array<DocHandle<Workload.FileRecord>> = []
      for (let i = from; i < Math.min(from + batch, count); i++) handles.push(repo.create<Workload.FileRecord>(Workload.record(i)))
      await repo.flush(handles.map((h) => h.documentId))
      for (const h of handles) urls.push(h.url)
    }
    const seconds = (performance.now() - start) / 1000
    await repo.shutdown()
    saveUrls(dir, urls)
    return { records: count, recordsPerSec: count / seconds, diskBytes: Workload.diskBytes(join(dir, "a")) }
  },

  catchUp: async (dir, count, live) => {
    const urls = loadUrls(dir)
    const net = peers(dir)
    const as = await mapLimit(urls, FINDS, (url) => net.a.find<Workload.FileRecord>(url))
    const start = performance.now()
    const b = net.connect()
    const bs = await mapLimit(urls, FINDS, (url) => b.find<Workload.FileRecord>(url))
    await b.flush()
    const recordsPerSec = count / ((performance.now() - start) / 1000)

    const { liveMs, cpuMsPerUpdate } = await Workload.liveLoop(live, (i) => {
      const k = (i * 7919) % urls.length
      const size = count + i
      const seen = until(bs[k]!, (doc) => doc.size === size)
      as[k]!.change((doc) => {
        doc.size = size
      })
      return seen
    })
    const memory = Workload.memory()
    await net.close(b)
    return { records: count, recordsPerSec, liveMs, ...(cpuMsPerUpdate === undefined ? {} : { cpuMsPerUpdate }), ...memory }
  }
}
