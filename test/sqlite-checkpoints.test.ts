import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CheckpointResult } from '../src/storage/sqlite/checkpointer.js';
import {
  FALLBACK_AUTOCHECKPOINT_PAGES,
  openSqliteStorage,
  type SqliteStorage,
} from '../src/storage/sqlite/storage.js';

const dirs: string[] = [];
const opened: SqliteStorage[] = [];

afterEach(async () => {
  for (const storage of opened.splice(0)) await storage.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function open(options: Parameters<typeof openSqliteStorage>[1] = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-checkpoints-'));
  dirs.push(dir);
  const file = join(dir, 'tripline.db');
  const storage = openSqliteStorage(file, options);
  opened.push(storage);
  return { storage, file };
}

/** Writes `count` entities in transactions of 100, enough to fill many WAL pages. */
function write(storage: SqliteStorage, count: number, prefix: string) {
  const insert = storage.sqlite.prepare(
    'INSERT INTO entities (id, name, created_at) VALUES (?, ?, ?)',
  );
  const batch = storage.sqlite.transaction((from: number) => {
    for (let i = from; i < from + 100; i++) insert.run(`${prefix}${i}`, `${prefix}-${i}`, i);
  });
  for (let from = 0; from < count; from += 100) batch(from);
}

describe('background WAL checkpoints', () => {
  it('copies the WAL into the database from a worker, the server connection only as a fallback', async () => {
    const checkpoints: CheckpointResult[] = [];
    const errors: string[] = [];
    const { storage, file } = open({
      backgroundCheckpoints: {
        intervalMs: 10,
        onCheckpoint: (result) => checkpoints.push(result),
        onError: (message) => errors.push(message),
      },
    });
    expect(storage.sqlite.pragma('wal_autocheckpoint', { simple: true })).toBe(
      FALLBACK_AUTOCHECKPOINT_PAGES,
    );
    const before = statSync(file).size;
    write(storage, 5_000, 'a');
    await vi.waitFor(() => expect(checkpoints.some((c) => c.checkpointedPages > 0)).toBe(true), {
      timeout: 10_000,
    });
    // The rows reached the database file itself, not only the WAL.
    await vi.waitFor(() => expect(statSync(file).size).toBeGreaterThan(before), {
      timeout: 10_000,
    });
    expect(errors).toEqual([]);
    // The data is whole, read through the server's connection.
    expect(storage.sqlite.prepare('SELECT count(*) AS n FROM entities').get()).toEqual({
      n: 5_000,
    });
  });

  it('is off unless asked for: SQLite checkpoints in the commits as it does by default', () => {
    const { storage } = open();
    expect(storage.sqlite.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
  });

  it('stops its worker on close, so the database can be reopened and the process exit', async () => {
    const { storage, file } = open({ backgroundCheckpoints: { intervalMs: 5 } });
    write(storage, 1_000, 'b');
    await storage.close();
    opened.splice(opened.indexOf(storage), 1);
    const again = openSqliteStorage(file, { migrate: false });
    opened.push(again);
    expect(again.sqlite.prepare('SELECT count(*) AS n FROM entities').get()).toEqual({
      n: 1_000,
    });
  });
});
