import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type BetterSqlite3 from 'better-sqlite3';
import { type BetterSQLite3Database, drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import * as schema from './schema.js';

export type Db = BetterSQLite3Database<typeof schema>;

export interface SqliteDatabase {
  db: Db;
  sqlite: BetterSqlite3.Database;
  close(): void;
}

/**
 * The SQLite driver for the running Node.js; both versions have the same API. better-sqlite3 12
 * wraps its objects with node::ObjectWrap, which, compiled against Node 24.19+ headers, aborts
 * the process whenever the garbage collector frees a statement outside JavaScript
 * (nodejs/node#65446; not fixed in 12.x). better-sqlite3 13 is built on Node-API and ships its
 * binaries, but needs Node-API 10 (Node 22.14 and later) and crashes on Node 20.
 */
const require = createRequire(import.meta.url);
/** The resolved path of that driver, for a worker thread's connection (see checkpointer.ts). */
export const driverModule = require.resolve(
  Number(process.versions.napi) >= 10 ? 'better-sqlite3-napi' : 'better-sqlite3',
);
const Database: typeof BetterSqlite3 = require(driverModule);

/** Where drizzle-kit writes the migrations, with their journal in `meta/_journal.json`. */
export const migrationsFolder = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'drizzle',
  'sqlite',
);

/**
 * Applies, in one transaction, every migration in `drizzle/sqlite/` newer than the newest one the
 * database records. Throws if one fails (the database is then left as it was), or if the migrated
 * rows break a foreign key (a bug in a migration; the error names the tables).
 *
 * Foreign keys are off while migrations run: a migration that rebuilds a table (drizzle-kit's
 * create-copy-drop-rename) would otherwise cascade the drop onto the rows that reference it. The
 * `PRAGMA foreign_keys=OFF` drizzle-kit writes into such a migration is a no-op inside the
 * migration's transaction, hence here, outside it (SQLite's documented procedure).
 */
export function applyMigrations(db: Db, sqlite: BetterSqlite3.Database): void {
  const enforced = sqlite.pragma('foreign_keys', { simple: true }) === 1;
  if (enforced) sqlite.pragma('foreign_keys = OFF');
  try {
    migrate(db, { migrationsFolder });
  } finally {
    if (enforced) sqlite.pragma('foreign_keys = ON');
  }
  const broken = sqlite.pragma('foreign_key_check') as { table: string }[];
  if (broken.length > 0) {
    const tables = [...new Set(broken.map((row) => row.table))].join(', ');
    throw new Error(`The migrations left ${broken.length} broken foreign key(s) in ${tables}.`);
  }
}

/**
 * Opens (creating if needed) the SQLite database at `file`, in WAL mode with foreign keys on and
 * temporary tables in memory, and applies every pending migration from `drizzle/sqlite/` unless `options.migrate` is false. Throws
 * if a migration fails; the database is then left as the failed migration's transaction found it.
 */
export function openDatabase(file: string, options: { migrate?: boolean } = {}): SqliteDatabase {
  mkdirSync(dirname(file), { recursive: true });
  const sqlite = new Database(file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('synchronous = NORMAL');
  // Every `… RETURNING` statement (claims, attempt and status writes) and every sort without an
  // index builds an ephemeral table; with temporary storage on disk each one cost about 35 µs of
  // temporary-file handling, more than the write itself. They are small and short-lived.
  sqlite.pragma('temp_store = MEMORY');
  const db = drizzle(sqlite, { schema });
  if (options.migrate !== false) applyMigrations(db, sqlite);
  return {
    db,
    sqlite,
    close: () => {
      if (sqlite.open) sqlite.close();
    },
  };
}
