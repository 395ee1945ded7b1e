import type { Storage } from '../storage.js';
import { createActionStore, createAutomationStore, createSecretStore } from './config.js';
import { openDatabase } from './database.js';
import { createDeliveryStore } from './delivery.js';
import { createEventStore, createRunStore } from './events.js';
import {
  createAuditStore,
  createContainerStore,
  createEntityStore,
  createUserStore,
} from './identity.js';
import { createSqliteHandle, type SqliteHandle } from './support.js';

/** The SQLite implementation of the storage layer, with its handle for the parts not yet moved onto it. */
export interface SqliteStorage extends Storage {
  /**
   * The connection, for code that has not moved onto the storage layer yet (transitional) and for
   * tests that arrange rows directly.
   */
  readonly handle: SqliteHandle;
  /** The drizzle handle (transitional, and for tests that arrange rows directly). */
  readonly db: SqliteHandle['db'];
  /** The driver's connection (transitional, and for tests). */
  readonly sqlite: SqliteHandle['sqlite'];
}

/**
 * Opens (creating if needed) the SQLite database at `file`, applies pending migrations from
 * `drizzle/sqlite/` (unless `options.migrate` is false), and returns the storage layer over it.
 * Throws if a migration fails.
 */
export function openSqliteStorage(
  file: string,
  options: { migrate?: boolean } = {},
): SqliteStorage {
  const database = openDatabase(file, options);
  const handle = createSqliteHandle(database.db, database.sqlite);
  return {
    handle,
    db: handle.db,
    sqlite: handle.sqlite,
    users: createUserStore(handle),
    entities: createEntityStore(handle),
    containers: createContainerStore(handle),
    audit: createAuditStore(handle),
    secrets: createSecretStore(handle),
    actions: createActionStore(handle),
    automations: createAutomationStore(handle),
    events: createEventStore(handle),
    runs: createRunStore(handle),
    delivery: createDeliveryStore(handle),
    ping: async () => {
      handle.prepared('ping', () => handle.sqlite.prepare('select 1')).get();
    },
    close: async () => database.close(),
  };
}
