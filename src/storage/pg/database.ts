import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import * as schema from './schema.js';
import type { Db } from './support.js';

/** Where drizzle-kit writes the PostgreSQL migrations, with their journal in `meta/_journal.json`. */
export const migrationsFolder = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'drizzle',
  'pg',
);

/**
 * The key of the advisory lock held while migrations are applied, so instances starting together
 * apply each migration once: the others wait, then find nothing pending. Any constant works; this
 * one spells "tripline" in ASCII, in case an operator wonders whose lock it is.
 */
export const MIGRATION_LOCK_KEY = 0x7472_6970_6c69_6e65n;

export interface PgPoolOptions {
  /** The most connections the pool opens (TRIPLINE_DATABASE_POOL_SIZE). */
  poolSize?: number;
  /** Names the connections in `pg_stat_activity`. */
  applicationName?: string;
}

/** A pool on `url`; connections are opened on first use. */
export function createPool(url: string, options: PgPoolOptions = {}): pg.Pool {
  return new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    application_name: options.applicationName ?? 'tripline',
    connectionTimeoutMillis: 10_000,
  });
}

export function drizzleOver(pool: pg.Pool): Db {
  return drizzle({ client: pool, schema });
}

/** The migrations this version of Tripline knows, oldest first, by tag (`0000_init`). */
export function knownMigrations(): { tag: string; when: number }[] {
  const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8'));
  return (journal.entries as { tag: string; when: number }[]).map(({ tag, when }) => ({
    tag,
    when,
  }));
}

/**
 * Which migrations the database has and lacks, by drizzle's own rule: a migration is applied when
 * it is no newer than the newest one the database records (drizzle's `created_at` is the journal's
 * `when`). `newer`: the database has a migration newer than any this version knows.
 */
export async function migrationStatus(
  db: pg.Pool | pg.PoolClient,
): Promise<{ applied: string[]; pending: string[]; newer: boolean }> {
  const exists = await db.query<{ t: string | null }>(
    `SELECT to_regclass('drizzle.__drizzle_migrations')::text AS t`,
  );
  let latest = 0;
  if (exists.rows[0]?.t) {
    const rows = await db.query<{ latest: string | null }>(
      'SELECT max(created_at)::text AS latest FROM drizzle.__drizzle_migrations',
    );
    latest = Number(rows.rows[0]?.latest ?? 0);
  }
  const known = knownMigrations();
  return {
    applied: known.filter((m) => m.when <= latest).map((m) => m.tag),
    pending: known.filter((m) => m.when > latest).map((m) => m.tag),
    newer: known.every((m) => m.when < latest),
  };
}

/**
 * Applies every pending migration in `drizzle/pg/`, in one transaction, while holding a
 * session advisory lock ({@link MIGRATION_LOCK_KEY}): of several instances starting at once, one
 * migrates and the others wait for it, then find nothing left to apply. Returns the tags it
 * applied. Throws if a migration fails; the database is then left as it was.
 */
export async function applyMigrations(pool: pg.Pool): Promise<string[]> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    try {
      const before = await migrationStatus(client);
      if (before.pending.length === 0) return [];
      await migrate(drizzle({ client, schema }), { migrationsFolder });
      return before.pending;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]);
    }
  } finally {
    client.release();
  }
}
