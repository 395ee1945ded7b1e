import { keepContainers, keepEntities } from '../immutable-rows.js';
import type { Storage } from '../storage.js';
import { type CheckpointResult, startCheckpointer } from './checkpointer.js';
import { createActionStore, createAutomationStore, createSecretStore } from './config.js';
import { driverModule, openDatabase } from './database.js';
import { createDeliveryStore } from './delivery.js';
import { createEventStore, createRunStore } from './events.js';
import {
  createAuditStore,
  createContainerStore,
  createEntityStore,
  createUserStore,
} from './identity.js';
import { createSqliteHandle, type SqliteHandle } from './support.js';
import { createTrainingRunStore } from './training-runs.js';

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

export interface SqliteStorageOptions {
  /** Apply pending migrations (true by default). */
  migrate?: boolean;
  /**
   * Checkpoint the WAL from a worker thread every `intervalMs` instead of in the commits of the
   * server's thread (see checkpointer.ts). Off by default; the server turns it on.
   */
  backgroundCheckpoints?: {
    intervalMs: number;
    onCheckpoint?: (result: CheckpointResult) => void;
    onError?: (message: string) => void;
  };
}

/**
 * The WAL size, in pages, at which the server's own connection checkpoints when background
 * checkpoints are on: a safety net should the worker fall behind (SQLite's default is 1,000).
 */
export const FALLBACK_AUTOCHECKPOINT_PAGES = 20_000;

/**
 * Opens (creating if needed) the SQLite database at `file`, applies pending migrations from
 * `drizzle/sqlite/` (unless `options.migrate` is false), and returns the storage layer over it.
 * Throws if a migration fails.
 */
export function openSqliteStorage(file: string, options: SqliteStorageOptions = {}): SqliteStorage {
  const database = openDatabase(file, options);
  const background = options.backgroundCheckpoints;
  if (background) database.sqlite.pragma(`wal_autocheckpoint = ${FALLBACK_AUTOCHECKPOINT_PAGES}`);
  const checkpointer = background
    ? startCheckpointer({ file, driver: driverModule, ...background })
    : undefined;
  const handle = createSqliteHandle(database.db, database.sqlite);
  return {
    handle,
    db: handle.db,
    sqlite: handle.sqlite,
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
      handle.prepared('ping', () => handle.sqlite.prepare('select 1')).get();
    },
    close: async () => {
      handle.flushGrouped();
      await checkpointer?.stop();
      database.close();
    },
  };
}
