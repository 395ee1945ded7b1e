import type { Config } from '../config.js';
import type { Storage } from './storage.js';

export interface OpenStorageOptions {
  /** Apply pending migrations (true by default). */
  migrate?: boolean;
  /** SQLite only: checkpoint the WAL from a worker thread (see sqlite/storage.ts). */
  backgroundCheckpoints?: {
    intervalMs: number;
    onError?: (message: string) => void;
  };
}

/** Which database a configuration names, in words for messages and logs (no password). */
export function describeDatabase(config: Pick<Config, 'databaseUrl' | 'databaseFile'>): string {
  if (config.databaseUrl === undefined) return `the SQLite database ${config.databaseFile}`;
  const url = new URL(config.databaseUrl);
  return `the PostgreSQL database ${url.pathname.slice(1) || '(default)'} on ${url.host}`;
}

/**
 * Opens the storage layer the configuration names: PostgreSQL when TRIPLINE_DATABASE_URL is set,
 * otherwise SQLite in the data directory. Applies pending migrations unless told not to. Each
 * engine's module is loaded only when used.
 */
export async function openStorage(
  config: Pick<Config, 'databaseUrl' | 'databaseFile' | 'databasePoolSize'>,
  options: OpenStorageOptions = {},
): Promise<Storage> {
  if (config.databaseUrl !== undefined) {
    const { openPgStorage } = await import('./pg/storage.js');
    return openPgStorage(config.databaseUrl, {
      poolSize: config.databasePoolSize,
      ...(options.migrate === undefined ? {} : { migrate: options.migrate }),
    });
  }
  const { openSqliteStorage } = await import('./sqlite/storage.js');
  return openSqliteStorage(config.databaseFile, options);
}
