// `npm run bench -- --database postgres`: every figure on PostgreSQL. The bench sets up and seeds
// SQLite data directories as it always does (lib/setup.ts, lib/seed.ts); just before a server
// starts on one, its database is copied into a fresh PostgreSQL database (migrated by the
// project's own migrations), and the server starts with TRIPLINE_DATABASE_URL naming it. So the
// same rows, in the same insertion order, are measured on both engines. The databases are dropped
// when the bench ends.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { applyMigrations, createPool } from '../../src/storage/pg/database.js';
import { openDatabase } from '../../src/storage/sqlite/database.js';

/** The server the databases are created on (its maintenance database): BENCH_POSTGRES_URL. */
export const BENCH_POSTGRES_URL =
  process.env.BENCH_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

const created: string[] = [];
/** The PostgreSQL database made for each data directory, so a restart finds its state. */
const byDataDir = new Map<string, string>();

async function onServer(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: BENCH_POSTGRES_URL });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** Rows copied per INSERT (PostgreSQL takes at most 65,535 parameters in one statement). */
const BATCH = 1_000;

/**
 * The URL of the PostgreSQL database holding a copy of `dataDir`'s SQLite database, created and
 * filled on first use for that directory. SQLite's integer booleans and JSON text go in as
 * PostgreSQL reads them (`1` is true; JSON text stays as written); generated and identity columns are
 * computed by PostgreSQL, the identity in SQLite's rowid order.
 */
export async function postgresCopyOf(dataDir: string): Promise<string> {
  const existing = byDataDir.get(dataDir);
  if (existing) return existing;
  const name = `tripline_bench_${randomBytes(6).toString('hex')}`;
  await onServer(`CREATE DATABASE ${name}`);
  created.push(name);
  const url = new URL(BENCH_POSTGRES_URL);
  url.pathname = `/${name}`;
  const pool = createPool(url.toString(), { poolSize: 1 });
  const sqlite = openDatabase(join(dataDir, 'tripline.db'), { migrate: false });
  try {
    await applyMigrations(pool);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      // Rows reference rows of tables copied later; the copy is whole when it commits.
      await client.query('SET LOCAL session_replication_role = replica');
      const tables = await client.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`,
      );
      for (const { table_name: table } of tables.rows) {
        const columns = (
          await client.query<{ column_name: string }>(
            `SELECT column_name FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1
               AND is_generated = 'NEVER' AND is_identity = 'NO'
             ORDER BY ordinal_position`,
            [table],
          )
        ).rows.map((row) => row.column_name);
        const list = columns.map((c) => `"${c}"`).join(', ');
        const rows = sqlite.sqlite
          .prepare(`SELECT ${list} FROM "${table}" ORDER BY rowid`)
          .raw(true)
          .all() as unknown[][];
        for (let start = 0; start < rows.length; start += BATCH) {
          const chunk = rows.slice(start, start + BATCH);
          const values: unknown[] = [];
          const tuples = chunk.map((row) => {
            const placeholders = row.map((value) => {
              values.push(value);
              return `$${values.length}`;
            });
            return `(${placeholders.join(', ')})`;
          });
          await client.query(
            `INSERT INTO "${table}" (${list}) VALUES ${tuples.join(', ')}`,
            values,
          );
        }
      }
      await client.query('COMMIT');
      await client.query('ANALYZE');
    } finally {
      client.release();
    }
  } finally {
    sqlite.close();
    await pool.end();
  }
  byDataDir.set(dataDir, url.toString());
  return url.toString();
}

/** Drops every database the bench created. */
export async function dropBenchDatabases(): Promise<void> {
  for (const name of created.splice(0)) {
    await onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
  }
}
