/**
 * Multi-row statements on the write path, compiled once per shape.
 *
 * Building a 256-row insert with Kysely's query builder costs more than
 * SQLite's execution of it. The SQL of a shape (table, columns, row count,
 * conflict clause) is compiled once by the dialect's own Kysely compiler,
 * so it stays dialect-neutral, and then run with fresh parameters.
 * Row counts are split into a few fixed sizes so that few shapes exist and
 * prepared statements are reused. Where the database gives a `Direct` path
 * (SQLite), statements inside a transaction run on its connection straight
 * away, not through Kysely's executor (a connection hand-off and a few
 * promise turns per statement), and `sync` runs the same statements
 * synchronously, for a write that runs from BEGIN to COMMIT in one turn of
 * the event loop (`Database.sync`). There, an insert runs one prepared
 * single-row statement per row (`Direct.runEach`) instead of multi-row ones:
 * SQLite executes a multi-row `VALUES` list as a co-routine over its rows, and
 * better-sqlite3 binds one array of every row's values, which together cost
 * twice the per-row runs (1000 upserts of a projection row: 6.8 against 3.4 µs
 * per row, CPU).
 */
import { CompiledQuery, type Kysely, sql as kyselySql } from "kysely"

const SIZES = [256, 64, 16, 4, 1] as const

/** Splits `n` into fixed chunk sizes, largest first. */
const plan = (n: number, maxRows: number): Array<number> => {
  const out: Array<number> = []
  let left = n
  for (const size of SIZES) {
    if (size > maxRows) continue
    while (left >= size) {
      out.push(size)
      left -= size
    }
  }
  return out
}

/** What to do when an inserted row's key exists. */
export interface OnConflict {
  readonly target: ReadonlyArray<string>
  readonly update: ReadonlyArray<string>
}

/** Compiled multi-row statements for one database. */
export interface Bulk {
  /** Inserts rows (arrays of values in `columns` order). */
  readonly insert: (
    db: Kysely<any>,
    table: string,
    columns: ReadonlyArray<string>,
    rows: ReadonlyArray<ReadonlyArray<unknown>>,
    onConflict?: OnConflict
  ) => Promise<void>
  /** Selects `columns` of rows whose `key` is one of `values` (and `where` columns equal their values). */
  readonly selectIn: <Row>(
    db: Kysely<any>,
    table: string,
    columns: ReadonlyArray<string>,
    key: string,
    values: ReadonlyArray<unknown>,
    where?: Readonly<Record<string, unknown>>
  ) => Promise<Array<Row>>
  /** Deletes rows whose `key` is one of `values` (and `where` columns equal their values). */
  readonly deleteIn: (
    db: Kysely<any>,
    table: string,
    key: string,
    values: ReadonlyArray<unknown>,
    where?: Readonly<Record<string, unknown>>
  ) => Promise<void>
}

/** The same statements as `Bulk`, run synchronously; only inside `Database.sync`'s transaction. */
export interface SyncBulk {
  readonly insert: (
    db: Kysely<any>,
    table: string,
    columns: ReadonlyArray<string>,
    rows: ReadonlyArray<ReadonlyArray<unknown>>,
    onConflict?: OnConflict
  ) => void
  readonly selectIn: <Row>(
    db: Kysely<any>,
    table: string,
    columns: ReadonlyArray<string>,
    key: string,
    values: ReadonlyArray<unknown>,
    where?: Readonly<Record<string, unknown>>
  ) => Array<Row>
  readonly deleteIn: (
    db: Kysely<any>,
    table: string,
    key: string,
    values: ReadonlyArray<unknown>,
    where?: Readonly<Record<string, unknown>>
  ) => void
  /**
   * Records of a model among `ids`, wherever they are, in one statement (per chunk) instead of one
   * for its table and one for the tombstones: the table's `columns` (starting with `id`,
   * `weft_state`) with `weft_hidden` 0, and tombstones as `id`, `weft_state` (the other columns
   * null) with `weft_hidden` 1.
   */
  readonly selectRecords: <Row>(db: Kysely<any>, model: string, columns: ReadonlyArray<string>, ids: ReadonlyArray<string>) => Array<Row>
}

/**
 * Runs compiled SQL on the database's one connection, synchronously. Only a
 * transaction may use it: the transaction holds that connection, so nothing
 * else runs on it meanwhile.
 */
export interface Direct {
  readonly run: (sql: string, parameters: ReadonlyArray<unknown>) => void
  readonly all: <Row>(sql: string, parameters: ReadonlyArray<unknown>) => Array<Row>
  /** Runs one statement once per row of parameters (prepared once). */
  readonly runEach: (sql: string, rows: ReadonlyArray<ReadonlyArray<unknown>>) => void
}

/** Compiled statements over a dialect allowing `maxParameters` per statement. */
export const make = (maxParameters: number, direct?: Direct): Bulk & { readonly sync: SyncBulk | undefined } => {
  const run = async (db: Kysely<any>, sql: string, parameters: ReadonlyArray<unknown>): Promise<void> => {
    if (direct !== undefined && db.isTransaction) direct.run(sql, parameters)
    else await db.executeQuery(CompiledQuery.raw(sql, [...parameters]))
  }
  const all = async <Row>(db: Kysely<any>, sql: string, parameters: ReadonlyArray<unknown>): Promise<Array<Row>> =>
    direct !== undefined && db.isTransaction
      ? direct.all<Row>(sql, parameters)
      : (await db.executeQuery<Row>(CompiledQuery.raw(sql, [...parameters]))).rows as Array<Row>
  const shapes = new Map<string, string>()
  const compiled = (key: string, build: () => CompiledQuery) => {
    let sql = shapes.get(key)
    if (sql === undefined) {
      sql = build().sql
      shapes.set(key, sql)
    }
    return sql
  }
  type Statement = readonly [sql: string, parameters: ReadonlyArray<unknown>]

  /** The SQL inserting `size` rows of `columns` into `table`. */
  const insertSql = (db: Kysely<any>, table: string, columns: ReadonlyArray<string>, size: number, onConflict: OnConflict | undefined) =>
    compiled(`i|${table}|${columns.join(",")}|${size}|${onConflict?.target.join(",") ?? ""}|${onConflict?.update.join(",") ?? ""}`, () => {
      const placeholder = Object.fromEntries(columns.map((c) => [c, 0]))
      const query = db.insertInto(table).values(Array.from({ length: size }, () => placeholder))
      return onConflict === undefined
        ? query.compile()
        : query.onConflict((oc) =>
          oc.columns(onConflict.target as Array<string>).doUpdateSet((eb) =>
            Object.fromEntries(onConflict.update.map((c) => [c, eb.ref(`excluded.${c}`)]))
          )
        ).compile()
    })

  // each method plans its statements (compiled once per shape), then runs them in turn
  const insertStatements = (
    db: Kysely<any>,
    table: string,
    columns: ReadonlyArray<string>,
    rows: ReadonlyArray<ReadonlyArray<unknown>>,
    onConflict?: OnConflict
  ): Array<Statement> => {
    const out: Array<Statement> = []
    const maxRows = Math.max(1, Math.floor(maxParameters / columns.length))
    let offset = 0
    for (const size of plan(rows.length, maxRows)) {
      const sql = insertSql(db, table, columns, size, onConflict)
      const parameters: Array<unknown> = []
      for (let r = offset; r < offset + size; r++) for (const value of rows[r]!) parameters.push(value)
      offset += size
      out.push([sql, parameters])
    }
    return out
  }

  /** Statements keyed by `key IN (…)` (and `where` columns equal their values) over `values`, in planned chunks. */
  const inStatements = (
    shape: string,
    values: ReadonlyArray<unknown>,
    where: Readonly<Record<string, unknown>> | undefined,
    build: (size: number, whereColumns: ReadonlyArray<string>) => CompiledQuery
  ): Array<Statement> => {
    const extra = where === undefined ? [] : Object.entries(where)
    const whereColumns = extra.map(([column]) => column)
    const out: Array<Statement> = []
    let offset = 0
    for (const size of plan(values.length, Math.min(512, maxParameters - extra.length))) {
      const sql = compiled(`${shape}|${size}|${whereColumns.join(",")}`, () => build(size, whereColumns))
      const parameters = values.slice(offset, offset + size)
      for (const [, value] of extra) parameters.push(value)
      out.push([sql, parameters])
      offset += size
    }
    return out
  }

  const selectStatements = (
    db: Kysely<any>,
    table: string,
    columns: ReadonlyArray<string>,
    key: string,
    values: ReadonlyArray<unknown>,
    where?: Readonly<Record<string, unknown>>
  ) =>
    inStatements(`s|${table}|${columns.join(",")}|${key}`, values, where, (size, whereColumns) => {
      let query = db.selectFrom(table).select(columns as Array<string>).where(key, "in", Array(size).fill(0))
      for (const column of whereColumns) query = query.where(column, "=", 0)
      return query.compile()
    })

  const deleteStatements = (
    db: Kysely<any>,
    table: string,
    key: string,
    values: ReadonlyArray<unknown>,
    where?: Readonly<Record<string, unknown>>
  ) =>
    inStatements(`d|${table}|${key}`, values, where, (size, whereColumns) => {
      let query = db.deleteFrom(table).where(key, "in", Array(size).fill(0))
      for (const column of whereColumns) query = query.where(column, "=", 0)
      return query.compile()
    })

  const recordStatements = (db: Kysely<any>, model: string, columns: ReadonlyArray<string>, ids: ReadonlyArray<string>): Array<Statement> => {
    const out: Array<Statement> = []
    let offset = 0
    for (const size of plan(ids.length, Math.min(512, Math.floor((maxParameters - 1) / 2)))) {
      const sql = compiled(`r|${model}|${columns.join(",")}|${size}`, () => {
        const placeholders = Array(size).fill("")
        const live = db.selectFrom(model).select([...columns, kyselySql.lit(0).as("weft_hidden")] as Array<any>).where("id", "in", placeholders)
        const hidden = db.selectFrom("weft_tombstones")
          .select([
            "id",
            "state as weft_state",
            ...columns.slice(2).map((c) => kyselySql`null`.as(c)),
            kyselySql.lit(1).as("weft_hidden")
          ] as Array<any>)
          .where("model", "=", "")
          .where("id", "in", placeholders)
        return live.unionAll(hidden).compile()
      })
      const chunk = ids.slice(offset, offset + size)
      out.push([sql, [...chunk, model, ...chunk]])
      offset += size
    }
    return out
  }

  // the rows of every statement, in order (one statement, the common case, with no copy)
  const allOf = <Row>(direct: Direct, statements: ReadonlyArray<Statement>): Array<Row> =>
    statements.length === 1
      ? direct.all<Row>(statements[0]![0], statements[0]![1])
      : statements.flatMap(([sql, parameters]) => direct.all<Row>(sql, parameters))

  const sync: SyncBulk | undefined = direct === undefined ? undefined : {
    insert: (db, table, columns, rows, onConflict) => {
      if (rows.length > 0) direct.runEach(insertSql(db, table, columns, 1, onConflict), rows)
    },
    selectIn: <Row>(
      db: Kysely<any>,
      table: string,
      columns: ReadonlyArray<string>,
      key: string,
      values: ReadonlyArray<unknown>,
      where?: Readonly<Record<string, unknown>>
    ) => {
      return allOf<Row>(direct, selectStatements(db, table, columns, key, values, where))
    },
    deleteIn: (db, table, key, values, where) => {
      for (const [sql, parameters] of deleteStatements(db, table, key, values, where)) direct.run(sql, parameters)
    },
    selectRecords: <Row>(db: Kysely<any>, model: string, columns: ReadonlyArray<string>, ids: ReadonlyArray<string>) => {
      return allOf<Row>(direct, recordStatements(db, model, columns, ids))
    }
  }

  return {
    sync,
    insert: async (db, table, columns, rows, onConflict) => {
      if (direct !== undefined && db.isTransaction) {
        if (rows.length > 0) direct.runEach(insertSql(db, table, columns, 1, onConflict), rows)
        return
      }
      for (const [sql, parameters] of insertStatements(db, table, columns, rows, onConflict)) await run(db, sql, parameters)
    },
    selectIn: async <Row>(
      db: Kysely<any>,
      table: string,
      columns: ReadonlyArray<string>,
      key: string,
      values: ReadonlyArray<unknown>,
      where?: Readonly<Record<string, unknown>>
    ) => {
      const out: Array<Row> = []
      for (const [sql, parameters] of selectStatements(db, table, columns, key, values, where)) out.push(...await all<Row>(db, sql, parameters))
      return out
    },
    deleteIn: async (db, table, key, values, where) => {
      for (const [sql, parameters] of deleteStatements(db, table, key, values, where)) await run(db, sql, parameters)
    }
  }
}
