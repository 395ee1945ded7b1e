import { existsSync, mkdirSync } from 'node:fs';
import {
  type Command,
  CommandError,
  ENVIRONMENT_HELP,
  holdDataDir,
  out,
  readConfig,
} from './command.js';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply the database migrations this version has and the database lacks',
  usage: `Usage: tripline migrate

Applies the migrations of this version of Tripline that the database in the data
directory lacks, all in one transaction, and names each one applied. Creates the
data directory and the database when they are absent (the admin user and the master
key are still made by the server's first start). The server applies pending
migrations itself when it starts; run this to upgrade ahead of a start, as a deploy
step, or to see that a database is up to date. Back up the data directory first.

Refused while a server (or another command) holds the data directory: stop it first.
With TRIPLINE_DATABASE_URL (PostgreSQL), the migrations are applied to that database
under the advisory lock servers take when they start, so running servers need not
stop and the data directory is not used; take a pg_dump first.

  -h, --help   show this help

${ENVIRONMENT_HELP}
`,
  options: {},
  async run() {
    const config = readConfig();
    if (config.databaseUrl !== undefined) {
      await migratePostgres(config.databaseUrl);
      return;
    }
    const { openDatabase } = await import('../storage/sqlite/database.js');
    const { migrate } = await import('./database.js');
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    const lock = holdDataDir(config, 'migrate');
    try {
      const created = !existsSync(config.databaseFile);
      const storage = openDatabase(config.databaseFile, { migrate: false });
      try {
        const { applied, status } = migrate(storage);
        if (status.newer) {
          throw new CommandError(
            `The database ${config.databaseFile} has migrations newer than this version of Tripline knows: a newer version migrated it. Run that version, or restore a backup taken before the upgrade.`,
          );
        }
        if (applied.length === 0) {
          out(
            `The database ${config.databaseFile} is up to date: all ${status.applied.length} migrations of this version are applied, the latest ${status.applied.at(-1)}.\n`,
          );
          return;
        }
        out(
          `${created ? 'Created' : 'Migrated'} the database ${config.databaseFile}: applied ${applied.length} migration${applied.length === 1 ? '' : 's'}:\n${applied.map((tag) => `  ${tag}\n`).join('')}`,
        );
      } finally {
        storage.close();
      }
    } finally {
      lock.release();
    }
  },
};

/**
 * `tripline migrate` on PostgreSQL: the migrations are applied under the advisory lock servers
 * take at start, so servers of this version may be running; the data directory is not needed.
 */
async function migratePostgres(url: string): Promise<void> {
  const { applyMigrations, createPool, migrationStatus } = await import(
    '../storage/pg/database.js'
  );
  const { describeDatabase } = await import('../storage/open.js');
  const name = describeDatabase({ databaseUrl: url, databaseFile: '' });
  const pool = createPool(url, { poolSize: 1, applicationName: 'tripline migrate' });
  try {
    const before = await migrationStatus(pool).catch((error: Error) => {
      throw new CommandError(
        `Cannot reach ${name}: ${error.message}. Check TRIPLINE_DATABASE_URL, and that the database exists (createdb) and the user may connect to it.`,
      );
    });
    if (before.newer) {
      throw new CommandError(
        `${name.charAt(0).toUpperCase()}${name.slice(1)} has migrations newer than this version of Tripline knows: a newer version migrated it. Run that version, or restore a dump taken before the upgrade.`,
      );
    }
    const applied = await applyMigrations(pool);
    const after = await migrationStatus(pool);
    if (applied.length === 0) {
      out(
        `${name.charAt(0).toUpperCase()}${name.slice(1)} is up to date: all ${after.applied.length} migrations of this version are applied, the latest ${after.applied.at(-1)}.\n`,
      );
      return;
    }
    out(
      `Migrated ${name}: applied ${applied.length} migration${applied.length === 1 ? '' : 's'}:\n${applied.map((tag) => `  ${tag}\n`).join('')}`,
    );
  } finally {
    await pool.end();
  }
}
