import { and, asc, count, desc, type SQL, type SQLWrapper, sql } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { PgTable } from 'drizzle-orm/pg-core';
import type pg from 'pg';
import { DuplicateError } from '../errors.js';
import type { Bound, PageRequest } from '../paging.js';
import type * as schema from './schema.js';

export type Db = NodePgDatabase<typeof schema>;
/** A transaction opened by {@link PgHandle.transaction}. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
/** Where a statement runs: the pool (one statement, its own transaction) or a transaction. */
export type Executor = Db | Tx;

/**
 * What every PostgreSQL store is built on: the drizzle handle over the pool, the pool itself, a
 * cache of named prepared queries and a transaction runner. One per open database.
 */
export interface PgHandle {
  db: Db;
  pool: pg.Pool;
  /**
   * A query named `key`, prepared by PostgreSQL once per connection (a named statement) and
   * built once per handle when it runs on the pool. Inside a transaction (`tx` given) the query is
   * built on it each time, under the same name, so the server still parses it once per
   * connection. `key` must name one SQL text.
   */
  prepared<P>(key: string, build: (x: Executor) => { prepare(name: string): P }, tx?: Tx): P;
  /**
   * Runs `body` in one transaction (READ COMMITTED unless told otherwise) and returns its result;
   * a throw rolls back. Serialization failures and deadlocks (SQLSTATE 40001, 40P01) are retried
   * a few times, so a SERIALIZABLE body must be safe to run again.
   */
  transaction<T>(
    body: (tx: Tx) => Promise<T>,
    options?: { isolationLevel?: IsolationLevel; accessMode?: 'read only' | 'read write' },
  ): Promise<T>;
}

/** Isolation levels an operation may ask for. */
export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

/** SQLSTATEs after which the whole transaction may simply run again. */
const RETRYABLE = new Set(['40001', '40P01']);

export function createPgHandle(db: Db, pool: pg.Pool): PgHandle {
  const cache = new Map<string, unknown>();
  return {
    db,
    pool,
    prepared<P>(key: string, build: (x: Executor) => { prepare(name: string): P }, tx?: Tx): P {
      if (tx) return build(tx).prepare(key);
      let query = cache.get(key) as P | undefined;
      if (query === undefined) {
        query = build(db).prepare(key);
        cache.set(key, query);
      }
      return query;
    },
    async transaction<T>(
      body: (tx: Tx) => Promise<T>,
      options: { isolationLevel?: IsolationLevel; accessMode?: 'read only' | 'read write' } = {},
    ): Promise<T> {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await db.transaction(body, options);
        } catch (error) {
          const code = sqlState(error);
          if (attempt >= 5 || code === null || !RETRYABLE.has(code)) throw error;
        }
      }
    },
  };
}

/** The SQLSTATE of a failed statement, looked for through drizzle's wrapping; null if none. */
export function sqlState(error: unknown): string | null {
  for (let e = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return null;
}

/**
 * The constraint a failed write violated (its index name, such as `actions_entity_name_idx`) when
 * it was a unique or primary key constraint (SQLSTATE 23505); null for any other error.
 */
export function uniqueViolation(error: unknown): string | null {
  for (let e = error; e instanceof Error; e = e.cause) {
    if ((e as { code?: unknown }).code === '23505') {
      return (e as { constraint?: string }).constraint ?? e.message;
    }
  }
  return null;
}

/** Runs `write`; a violated unique constraint becomes a DuplicateError naming `what`. */
export async function unique<T>(what: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (uniqueViolation(error) !== null) throw new DuplicateError(what);
    throw error;
  }
}

/** The first row of a result; a write with RETURNING that gave none is a bug. */
export function single<T>(rows: readonly T[], what: string): T {
  const row = rows[0];
  if (row === undefined) throw new Error(`${what} gave no row`);
  return row;
}

/**
 * How many rows of `table` match `where`, through a query prepared once per `key` (`key` must
 * name one SQL text). `where` is called only to build it; its placeholders take `params`.
 */
export async function countRows(
  h: PgHandle,
  key: string,
  table: PgTable,
  where: () => SQL | undefined,
  params: Record<string, unknown>,
): Promise<number> {
  const rows = await h
    .prepared(key, (x) => x.select({ n: count() }).from(table).where(where()))
    .execute(params);
  return Number(rows[0]?.n ?? 0);
}

/** A list's sort order in SQL: its columns, compared left to right, in one direction. */
export interface SqlOrder {
  direction: 'asc' | 'desc';
  /** Columns or expressions; together unique per row (end with the id). */
  columns: readonly SQLWrapper[];
}

/** The parts of a keyset page query, with its values as named placeholders `k0…`. */
export interface KeysetQuery {
  where: SQL | undefined;
  orderBy: SQL[];
  /** A name for this shape of query (which bounds, which direction), for prepared query keys. */
  shape: string;
  /** The placeholders' values, plus `limit`. */
  params: Record<string, string | number>;
}

/**
 * Translates a {@link PageRequest} into SQL over `order`: a row-value comparison per bound (which
 * PostgreSQL answers from a range of a btree index on the sort columns) and the order to read in.
 * Values are placeholders, so one prepared query serves every page of a shape.
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
