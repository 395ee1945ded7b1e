import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { parsePublicId, publicId } from '../ids.js';
import { issueApiKey } from '../modules/users/service.js';
import type { Member } from '../storage/identity.js';
import { describeDatabase, openStorage } from '../storage/open.js';
import {
  applyMigrations,
  migrationsFolder,
  type SqliteDatabase,
} from '../storage/sqlite/database.js';
import type { Storage } from '../storage/storage.js';
import { CommandError, requireDatabase } from './command.js';

// Everything the command line reads or writes in the database, in one place.

/** A migration drizzle-kit wrote, as its journal lists it. */
interface Migration {
  tag: string;
  /** When it was generated; drizzle records it in `__drizzle_migrations.created_at`. */
  when: number;
}

export interface MigrationStatus {
  /** Migrations of this version of Tripline that the database has. */
  applied: string[];
  /** Migrations of this version that the database lacks, oldest first. */
  pending: string[];
  /** Whether the database has a migration newer than any this version knows. */
  newer: boolean;
}

function knownMigrations(): Migration[] {
  const journal = JSON.parse(
    readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8'),
  ) as { entries: Migration[] };
  return journal.entries.map(({ tag, when }) => ({ tag, when }));
}

/**
 * Which migrations the database has and lacks, by drizzle's own rule: a migration is applied when
 * it is newer than the newest one the database records.
 */
export function migrationStatus(storage: SqliteDatabase): MigrationStatus {
  const hasTable = storage.db.get<{ n: number }>(
    sql`SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '__drizzle_migrations'`,
  );
  const latest = hasTable?.n
    ? Number(
        storage.db.get<{ latest: number | null }>(
          sql`SELECT max(created_at) AS latest FROM __drizzle_migrations`,
        )?.latest ?? 0,
      )
    : 0;
  const known = knownMigrations();
  return {
    applied: known.filter((m) => m.when <= latest).map((m) => m.tag),
    pending: known.filter((m) => m.when > latest).map((m) => m.tag),
    newer: known.every((m) => m.when < latest),
  };
}

/** Applies the pending migrations in one transaction and returns what it applied. */
export function migrate(storage: SqliteDatabase): { applied: string[]; status: MigrationStatus } {
  const before = migrationStatus(storage);
  if (before.pending.length > 0) applyMigrations(storage.db, storage.sqlite);
  return { applied: before.pending, status: migrationStatus(storage) };
}

/**
 * Which migrations the configured database has and lacks: the SQLite one in the data directory,
 * or the PostgreSQL one TRIPLINE_DATABASE_URL names.
 */
export async function configuredMigrationStatus(config: Config): Promise<MigrationStatus> {
  if (config.databaseUrl !== undefined) {
    const { createPool, migrationStatus: pgStatus } = await import('../storage/pg/database.js');
    const pool = createPool(config.databaseUrl, { poolSize: 1 });
    try {
      return await pgStatus(pool);
    } catch (error) {
      throw new CommandError(
        `Cannot reach ${describeDatabase(config)}: ${(error as Error).message}. Check TRIPLINE_DATABASE_URL, and that the database exists (createdb) and the user may connect to it.`,
      );
    } finally {
      await pool.end();
    }
  }
  const { openDatabase } = await import('../storage/sqlite/database.js');
  const storage = openDatabase(config.databaseFile, { migrate: false });
  try {
    return migrationStatus(storage);
  } finally {
    storage.close();
  }
}

/**
 * Opens the server's existing database without changing its schema. Throws a CommandError when
 * there is none, or when it lacks migrations of this version (`tripline migrate` applies them):
 * the commands that use it are written for the current schema.
 */
export async function openExistingDatabase(config: Config): Promise<Storage> {
  requireDatabase(config);
  const { pending } = await configuredMigrationStatus(config);
  if (pending.length > 0) {
    throw new CommandError(
      `${capitalized(describeDatabase(config))} lacks ${pending.length} migration(s) of this version of Tripline (${pending.join(', ')}). Run \`tripline migrate\`${config.databaseUrl === undefined ? ' with the server stopped' : ''}, or start the server once, then try again.`,
    );
  }
  return openStorage(config, { migrate: false });
}

const capitalized = (text: string) => `${text.charAt(0).toUpperCase()}${text.slice(1)}`;

/** Every member of the entity, through the storage layer's pages. */
async function everyMember(storage: Storage, entityId: string): Promise<Member[]> {
  const members: Member[] = [];
  for (;;) {
    const last = members.at(-1);
    const page = await storage.entities.pageMembers(entityId, {
      after: last
        ? {
            position: [last.membership.createdAt.getTime(), last.membership.userId],
            inclusive: false,
          }
        : null,
      before: null,
      backward: false,
      limit: 500,
    });
    members.push(...page);
    if (page.length < 500) return members;
  }
}

export interface IssuedAdminKey {
  secret: string;
  /** The admin's public id and name. */
  user: { id: string; name: string };
  entity: string;
  keyName: string;
}

/**
 * Issues an API key for a person who is ADMIN of `entityName`, recorded in the audit log of every
 * entity they belong to, as the first start records the bootstrap key. `user` (a name or `usr_…`
 * id) picks the admin when the entity has several. Throws a CommandError when the entity, or a
 * single matching admin, is not found.
 */
export async function issueAdminKey(
  storage: Storage,
  clock: Clock,
  options: { entity: string; user?: string | undefined; keyName: string },
): Promise<IssuedAdminKey> {
  const { keyName } = options;
  const entity = await storage.entities.findEntityByName(options.entity);
  if (!entity) {
    throw new CommandError(
      `No entity named "${options.entity}". Give --entity the name of an entity (the first start created "default").`,
    );
  }
  const admins = (await everyMember(storage, entity.id))
    .filter((m) => m.membership.role === 'ADMIN' && m.user.kind === 'USER')
    .map((m) => ({ id: m.user.id, name: m.user.name }))
    .sort((a, b) => (a.name === b.name ? (a.id < b.id ? -1 : 1) : a.name < b.name ? -1 : 1));
  const wanted = options.user;
  const storedId = wanted ? parsePublicId(wanted) : null;
  const matching = wanted
    ? admins.filter((a) => (storedId?.kind === 'user' ? a.id === storedId.id : a.name === wanted))
    : admins;
  const listed = admins.map((a) => `${a.name} (${publicId('user', a.id)})`).join(', ');
  if (matching.length === 0) {
    throw new CommandError(
      admins.length === 0
        ? `The entity "${entity.name}" has no person as an admin. Give --entity another entity.`
        : `No admin of "${entity.name}" is called "${wanted}". Its admins: ${listed}. Give --user one of them.`,
    );
  }
  const [admin] = matching;
  if (!admin || matching.length > 1) {
    throw new CommandError(
      `The entity "${entity.name}" has ${matching.length} admins${wanted ? ` called "${wanted}"` : ''}: ${listed}. Choose one with --user NAME or --user usr_….`,
    );
  }
  // A key acts only as its own account, so an admin demoted meanwhile gains nothing by it.
  const { secret } = await issueApiKey(
    { storage: { users: storage.users }, clock },
    { userId: admin.id, name: keyName, actorId: admin.id },
  );
  return {
    secret,
    user: { id: publicId('user', admin.id), name: admin.name },
    entity: entity.name,
    keyName,
  };
}
