import type BetterSqlite3 from 'better-sqlite3';
import { and, asc, count, desc, type SQL, type SQLWrapper, sql } from 'drizzle-orm';
import type { SQLiteTable } from 'drizzle-orm/sqlite-core';
import type { Bound, PageRequest } from '../paging.js';
import type { Db } from './database.js';

/**
 * What every SQLite store is built on: the drizzle handle, the driver's connection, a cache of
 * prepared statements and a transaction runner. One per open database.
 */
export interface SqliteHandle {
  db: Db;
  sqlite: BetterSqlite3.Database;
  /**
   * Builds a prepared query (drizzle's `.prepare()` with `sql.placeholder`s, or a raw driver
   * statement) once per `key` and returns the same one on every later call: building the SQL
   * and preparing it costs far more than running it. `key` must name one SQL text.
   */
  prepared<T>(key: string, build: () => T): T;
  /**
   * Runs `body` in one `BEGIN IMMEDIATE` transaction (the write lock is taken up front, so two
   * writers never deadlock on an upgrade) and returns its result; a throw rolls back. The body is
   * synchronous: nothing else runs on the connection until it returns.
   */
  transaction<T>(body: () => T): T;
  /**
   * Runs `body` in a transaction shared with every other body queued in the same turn of the
   * event loop: one `BEGIN IMMEDIATE … COMMIT` for all of them, each body in a savepoint of its
   * own, so a throw rolls back that body alone and rejects its promise. Every promise settles
   * after the commit, so nothing is answered or published before it is stored. A failed commit
   * rejects them all.
   *
   * Under load, requests that write come in bursts: an index page or the WAL frame of a page that
   * several of them change is then written once per burst instead of once per request.
   */
  grouped<T>(body: () => T): Promise<T>;
  /** Commits what {@link grouped} has queued at once, as before closing the connection. */
  flushGrouped(): void;
}

interface Queued {
  body: () => unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export function createSqliteHandle(db: Db, sqlite: BetterSqlite3.Database): SqliteHandle {
  const cache = new Map<string, unknown>();
  let queued: Queued[] = [];
  const flush = () => {
    const bodies = queued;
    queued = [];
    const settled: { ok: boolean; value: unknown }[] = [];
    try {
      sqlite
        .transaction(() => {
          for (const { body } of bodies) {
            // Called inside a transaction, a transaction function runs in a savepoint.
            try {
              settled.push({ ok: true, value: sqlite.transaction(body)() });
            } catch (error) {
              settled.push({ ok: false, value: error });
            }
          }
        })
        .immediate();
    } catch (error) {
      for (const { reject } of bodies) reject(error);
      return;
    }
    bodies.forEach(({ resolve, reject }, i) => {
      const { ok, value } = settled[i]!;
      if (ok) resolve(value);
      else reject(value);
    });
  };
  return {
    db,
    sqlite,
    prepared<T>(key: string, build: () => T): T {
      let query = cache.get(key) as T | undefined;
      if (query === undefined) {
        query = build();
        cache.set(key, query);
      }
      return query;
    },
    transaction<T>(body: () => T): T {
      return sqlite.transaction(body).immediate();
    },
    flushGrouped() {
      if (queued.length > 0) flush();
    },
    grouped<T>(body: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        if (queued.length === 0) {
          setImmediate(() => {
            if (queued.length > 0) flush();
          });
        }
        queued.push({ body, resolve: resolve as (value: unknown) => void, reject });
      });
    },
  };
}

/**
 * How many rows of `table` match `where`, through a statement prepared once per `key` (`key` must
 * name one SQL text, as for `prepared`). `where` is called only to build that statement; its
 * placeholders take their values from `params`.
 */
export function countRows(
  h: SqliteHandle,
  key: string,
  table: SQLiteTable,
  where: () => SQL | undefined,
  params: Record<string, unknown>,
): number {
  return (
    h
      .prepared(key, () => h.db.select({ n: count() }).from(table).where(where()).prepare())
      .get(params)?.n ?? 0
  );
}

/**
 * The constraint a failed write violated, as SQLite names it (`actions.entity_id, actions.name`),
 * when it was a UNIQUE or PRIMARY KEY constraint; null for any other error. drizzle may wrap the
 * driver's error, so its cause is looked at too.
 */
export function uniqueViolation(error: unknown): string | null {
  for (let e = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
      return /constraint failed: (.*)$/.exec(e.message)?.[1] ?? e.message;
    }
  }
  return null;
}

/** A list's sort order in SQL: its columns, compared left to right, in one direction. */
export interface SqlOrder {
  direction: 'asc' | 'desc';
  /** Columns or expressions; together unique per row (end with the id). */
  columns: readonly SQLWrapper[];
}

/** The parts of a keyset page query, with its values as named placeholders `k0…`. */
export interface KeysetQuery {
  /** Joined with the list's own conditions by `and`. */
  where: SQL | undefined;
  orderBy: SQL[];
  /** A name for this shape of query (which bounds, which direction), for {@link SqliteHandle.prepared} keys. */
  shape: string;
  /** The placeholders' values, plus `limit`. */
  params: Record<string, string | number>;
}

/**
 * Translates a {@link PageRequest} into SQL over `order`: a row-value comparison per bound, which
 * SQLite answers from a range of an index on the list's conditions and sort columns, and the
 * order to read in. Values are placeholders, so one prepared statement serves every page of a
 * shape; the limit is the placeholder `limit`.
 */
export function keyset(order: SqlOrder, request: PageRequest): KeysetQuery {
  const params: Record<string, string | number> = { limit: request.limit };
  let next = 0;
  const compare = (bound: Bound, side: 'after' | 'before'): SQL => {
    const ascending = (order.direction === 'asc') === (side === 'after');
    const operator = sql.raw(`${ascending ? '>' : '<'}${bound.inclusive ? '=' : ''}`);
    const values = bound.position.map((value) => {
      const name = `k${next++}`;
      params[name] = value;
      return sql.placeholder(name);
    });
    return sql`(${sql.join([...order.columns], sql`, `)}) ${operator} (${sql.join(values, sql`, `)})`;
  };
  const where = and(
    request.after ? compare(request.after, 'after') : undefined,
    request.before ? compare(request.before, 'before') : undefined,
  );
  const ascending = (order.direction === 'asc') !== request.backward;
  const orderBy = order.columns.map((c) => (ascending ? asc(c) : desc(c)));
  const bound = (b: Bound | null) => (b === null ? '-' : b.inclusive ? 'i' : 'x');
  const shape = `${bound(request.after)}${bound(request.before)}${request.backward ? 'b' : 'f'}`;
  return { where, orderBy, shape, params };
}
