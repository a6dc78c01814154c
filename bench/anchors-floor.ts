/**
 * The physical floor of the side-by-side bench: plain better-sqlite3, no CRDT.
 * A write is an op-log row plus a projection row, in one transaction per
 * batch (WAL, synchronous NORMAL, as Weft's database). Catch-up copies the
 * same log rows from A's file into an empty B, 1000 per transaction, each with
 * its projection row. A live update is written on A, sent as one
 * length-prefixed MessagePack frame over a loopback TCP socket, written on B,
 * and B's listener is called.
 */
import SqliteDatabase from "better-sqlite3"
import { pack, unpack } from "msgpackr"
import { once } from "node:events"
import { createServer, connect, type Socket } from "node:net"
import { join } from "node:path"
import * as Workload from "./anchors-workload.js"

const PAGE = 1_000
const ORIGIN = "a"

/** A database with the floor's two tables and its prepared statements. */
const open = (filename: string) => {
  const db = new SqliteDatabase(filename)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  db.exec(`create table if not exists ops (origin text not null, seq integer not null, ts integer not null,
             record text not null, payload blob not null, primary key (origin, seq));
           create table if not exists files (id text primary key, name text not null, size integer not null,
             tags text not null, ts integer not null)`)
  const insertOp = db.prepare("insert into ops values (?, ?, ?, ?, ?)")
  const upsert = db.prepare(`insert into files values (?, ?, ?, ?, ?) on conflict (id) do update set
    name = excluded.name, size = excluded.size, tags = excluded.tags, ts = excluded.ts where excluded.ts >= files.ts`)
  /** Writes one op and its projection row (inside the caller's transaction). */
  const apply = (origin: string, seq: number, ts: number, id: string, payload: Uint8Array, fields: Workload.FileRecord) => {
    insertOp.run(origin, seq, ts, id, payload)
    upsert.run(id, fields.name, fields.size, JSON.stringify(fields.tags), ts)
  }
  const maxSeq = () => (db.prepare("select coalesce(max(seq), 0) as seq from ops where origin = ?").get(ORIGIN) as { seq: number }).seq
  return { db, apply, maxSeq }
}

/** A → B over one loopback socket: frames of [origin, seq, ts, id, payload], 4-byte length first. */
const loopback = async (onFrame: (frame: Buffer) => void) => {
  let receiving: Socket | undefined
  const server = createServer({ noDelay: true }, (socket) => {
    receiving = socket
    let pending: Buffer = Buffer.alloc(0)
    socket.on("data", (data: Buffer) => {
      pending = pending.length === 0 ? data : Buffer.concat([pending, data])
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
        const length = pending.readUInt32BE(0)
        onFrame(pending.subarray(4, 4 + length))
        pending = pending.subarray(4 + length)
      }
    })
  })
  server.listen(0, "127.0.0.1")
  await once(server, "listening")
  const address = server.address()
  const sending = connect({ port: typeof address === "object" && address !== null ? address.port : 0, host: "127.0.0.1", noDelay: true })
  await once(sending, "connect")
  const send = (body: Buffer) => {
    const header = Buffer.alloc(4)
    header.writeUInt32BE(body.length)
    sending.write(Buffer.concat([header, body]))
  }
  const close = () => {
    sending.destroy()
    receiving?.destroy()
    server.close()
  }
  return { send, close }
}

export const system: Workload.System = {
  write: async (dir, count, batch) => {
    const ids = Workload.recordIds(count)
    const a = open(join(dir, "a.db"))
    const write = a.db.transaction((from: number) => {
      for (let i = from; i < Math.min(from + batch, count); i++) {
        const fields = Workload.record(i)
        a.apply(ORIGIN, i + 1, Date.now(), ids[i]!, pack(fields), fields)
      }
    })
    const start = performance.now()
    for (let from = 0; from < count; from += batch) write(from)
    const seconds = (performance.now() - start) / 1000
    a.db.close()
    Workload.saveIds(dir, ids)
    return { records: count, recordsPerSec: count / seconds, diskBytes: Workload.filesBytes(dir, "a.db") }
  },

  catchUp: async (dir, count, live) => {
    const a = open(join(dir, "a.db"))
    const b = open(join(dir, `b-${process.pid}.db`))
    const read = a.db.prepare("select origin, seq, ts, record, payload from ops where (origin, seq) > (?, ?) order by origin, seq limit ?")
    type Row = { origin: string; seq: number; ts: number; record: string; payload: Uint8Array }
    const copy = b.db.transaction((rows: ReadonlyArray<Row>) => {
      for (const row of rows) b.apply(row.origin, row.seq, row.ts, row.record, row.payload, unpack(row.payload) as Workload.FileRecord)
    })
    const start = performance.now()
    let after: [string, number] = ["", 0]
    let copied = 0
    while (true) {
      const rows = read.all(after[0], after[1], PAGE) as Array<Row>
      if (rows.length === 0) break
      copy(rows)
      copied += rows.length
      const last = rows[rows.length - 1]!
      after = [last.origin, last.seq]
    }
    const recordsPerSec = copied / ((performance.now() - start) / 1000)

    const ids = Workload.loadIds(dir)
    let seq = a.maxSeq()
    let seen: (() => void) | undefined
    const applyOnB = b.db.transaction((frame: Buffer) => {
      const [origin, opSeq, ts, id, payload] = unpack(frame) as [string, number, number, string, Uint8Array]
      b.apply(origin, opSeq, ts, id, payload, unpack(payload) as Workload.FileRecord)
    })
    const link = await loopback((frame) => {
      applyOnB(frame)
      seen?.()
    })
    const writeOnA = a.db.transaction((id: string, fields: Workload.FileRecord, payload: Buffer) => {
      seq += 1
      const ts = Date.now()
      a.apply(ORIGIN, seq, ts, id, payload, fields)
      return [ORIGIN, seq, ts, id, payload] as const
    })
    const { liveMs, cpuMsPerUpdate } = await Workload.liveLoop(live, (i) =>
      new Promise<void>((resolve) => {
        seen = resolve
        const id = ids[(i * 7919) % ids.length]!
        const fields = { ...Workload.record(i), size: count + i }
        link.send(pack(writeOnA(id, fields, pack(fields))))
      }))
    const memory = Workload.memory()
    link.close()
    a.db.close()
    b.db.close()
    return { records: copied, recordsPerSec, liveMs, ...(cpuMsPerUpdate === undefined ? {} : { cpuMsPerUpdate }), ...memory }
  }
}
