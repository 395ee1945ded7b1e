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
   * Group commit: runs `body` in a transaction shared with the other writes asked for close to it,
   * and settles once that transaction has committed, so nothing is answered or published before
   * it is stored.
   *
   * Under load, writes come in bursts (dozens of attempts start and end per turn of the event loop
   * while a backlog drains; concurrent emits arrive together), and a commit costs far more than
   * the statements in it: its pages go to the WAL, and the writes of one burst share most of
   * their pages (the same index pages, the same table pages).
   *
   * A write that something waits on before it can go on (a claim, the start of an attempt) is
   * `urgent`: it commits as soon as the code that asked for it yields (a microtask), together
   * with everything asked for until then, such as the other starts of one claim. Other writes
   * (the end of an attempt, an event and its runs) wait for the end of the turn (`setImmediate`),
   * so everything asked for in one turn commits together, or goes along with an urgent write.
   *
   * Should any body throw, the batch is rolled back and each body runs again in a transaction of
   * its own, so one failure fails only its own write; a body must therefore be safe to run again
   * after a rollback. (Not a savepoint per body: rolling back to one needs a copy of every page it
   * changes, which costs more than the changes.)
   */
  grouped<T>(body: () => T, urgent?: boolean): Promise<T>;
  /** Commits what {@link grouped} has queued at once, as before closing the connection. */
  flushGrouped(): void;
}

/** Milliseconds without a group commit after which a connection counts as quiet. */
const QUIET_MS = 5;

interface Queued {
  body: () => unknown;
  resolve: (value: never) => void;
  reject: (error: unknown) => void;
}

export function createSqliteHandle(db: Db, sqlite: BetterSqlite3.Database): SqliteHandle {
  const cache = new Map<string, unknown>();
  const transaction = <T>(body: () => T): T => sqlite.transaction(body).immediate();
  let queue: Queued[] = [];
  let soon = false;
  let later = false;
  const settle = (write: Queued, run: () => unknown): void => {
    let value: unknown;
    try {
      value = run();
    } catch (error) {
      write.reject(error);
      return;
    }
    write.resolve(value as never);
  };
  let lastFlush = Number.NEGATIVE_INFINITY;
  const flush = (): void => {
    const batch = queue;
    if (batch.length === 0) return;
    queue = [];
    let values: unknown[];
    try {
      values = transaction(() => batch.map((write) => write.body()));
    } catch {
      for (const write of batch) settle(write, () => transaction(write.body));
      return;
    } finally {
      lastFlush = performance.now();
    }
    for (const [index, write] of batch.entries()) write.resolve(values[index] as never);
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
    transaction,
    flushGrouped: flush,
    grouped<T>(body: () => T, asked = false): Promise<T> {
      // A write asked for on a quiet connection commits as soon as its caller yields: nothing
      // is likely to join it, and an emit waiting for the end of the turn reached its receiver
      // about 2 ms later at 50 events a second. Under load, writes come closer together than
      // this and wait for the end of the turn, to commit with the others.
      const urgent = asked || performance.now() - lastFlush > QUIET_MS;
      return new Promise<T>((resolve, reject) => {
        queue.push({ body, resolve: resolve as (value: never) => void, reject });
        if (urgent && !soon) {
          soon = true;
          queueMicrotask(() => {
            soon = false;
            flush();
          });
        } else if (!urgent && !later) {
          later = true;
          setImmediate(() => {
            later = false;
            flush();
          });
        }
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
