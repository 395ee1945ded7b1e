import { sql } from 'drizzle-orm';
import { keepContainers, keepEntities } from '../immutable-rows.js';
import type { Storage } from '../storage.js';
import { createActionStore, createAutomationStore, createSecretStore } from './config.js';
import { applyMigrations, createPool, drizzleOver, type PgPoolOptions } from './database.js';
import { createDeliveryStore } from './delivery.js';
import { createEventStore, createRunStore } from './events.js';
import {
  createAuditStore,
  createContainerStore,
  createEntityStore,
  createUserStore,
} from './identity.js';
import { createPgHandle, type PgHandle } from './support.js';
import { createTrainingRunStore } from './training-runs.js';

/** The PostgreSQL implementation of the storage layer, with its handle for tests and the CLI. */
export interface PgStorage extends Storage {
  readonly handle: PgHandle;
}

export interface PgStorageOptions extends PgPoolOptions {
  /** Apply pending migrations (true by default), under the migration advisory lock. */
  migrate?: boolean;
}

/**
 * Connects to the PostgreSQL database at `url` through a pool, applies pending migrations from
 * `drizzle/pg/` (unless `options.migrate` is false; several instances starting at once apply each
 * migration once, see `applyMigrations`) and returns the storage layer over it. Throws when the
 * database cannot be reached or a migration fails; the pool is closed then.
 */
export async function openPgStorage(
  url: string,
  options: PgStorageOptions = {},
): Promise<PgStorage> {
  const pool = createPool(url, options);
  // An idle connection that breaks (the server restarted) is dropped by the pool; without a
  // listener its error would end the process.
  pool.on('error', () => {});
  try {
    if (options.migrate !== false) await applyMigrations(pool);
    else await pool.query('SELECT 1');
  } catch (error) {
    await pool.end();
    throw error;
  }
  const handle = createPgHandle(drizzleOver(pool), pool);
  let closed: Promise<void> | undefined;
  return {
    handle,
    users: createUserStore(handle),
    entities: keepEntities(createEntityStore(handle)),
    containers: keepContainers(createContainerStore(handle)),
    audit: createAuditStore(handle),
    secrets: createSecretStore(handle),
    actions: createActionStore(handle),
    automations: createAutomationStore(handle),
    events: createEventStore(handle),
    runs: createRunStore(handle),
    trainingRuns: createTrainingRunStore(handle),
    delivery: createDeliveryStore(handle),
    ping: async () => {
      await handle.db.execute(sql`select 1`);
    },
    close: () => {
      closed ??= pool.end();
      return closed;
    },
  };
}
