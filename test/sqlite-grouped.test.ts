import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/storage/sqlite/database.js';
import { openSqliteStorage, type SqliteStorage } from '../src/storage/sqlite/storage.js';

const dirs: string[] = [];
const opened: { close(): unknown }[] = [];

afterEach(async () => {
  for (const handle of opened.splice(0)) await handle.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function open(): { storage: SqliteStorage; other: ReturnType<typeof openDatabase>['sqlite'] } {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-grouped-'));
  dirs.push(dir);
  const file = join(dir, 'tripline.db');
  const storage = openSqliteStorage(file);
  opened.push(storage);
  storage.sqlite.exec('CREATE TABLE notes (body TEXT NOT NULL UNIQUE)');
  // Another connection to the same file: it sees only what was committed.
  const other = openDatabase(file, { migrate: false });
  opened.push(other);
  return { storage, other: other.sqlite };
}

describe('grouped SQLite writes', () => {
  it('commits the writes queued in one turn together, each in its own savepoint', async () => {
    const { storage, other } = open();
    const h = storage.handle;
    const insert = storage.sqlite.prepare('INSERT INTO notes (body) VALUES (?)');
    const committed = () =>
      (other.prepare('SELECT body FROM notes ORDER BY body').all() as { body: string }[]).map(
        (row) => row.body,
      );
    const seenByOther: string[][] = [];
    const results = await Promise.allSettled([
      h.grouped(() => {
        insert.run('a');
        return 'first';
      }),
      h.grouped(() => {
        // Inside the shared transaction: the first write is not committed yet.
        seenByOther.push(committed());
        insert.run('b');
        insert.run('a'); // a unique violation: this body alone is rolled back
      }),
      h.grouped(() => {
        seenByOther.push(committed());
        insert.run('c');
        return 'third';
      }),
    ]);
    expect(results[0]).toEqual({ status: 'fulfilled', value: 'first' });
    expect(results[1]).toMatchObject({
      status: 'rejected',
      reason: { code: 'SQLITE_CONSTRAINT_UNIQUE' },
    });
    expect(results[2]).toEqual({ status: 'fulfilled', value: 'third' });
    expect(seenByOther).toEqual([[], []]);
    expect(committed()).toEqual(['a', 'c']);

    // The next turn is a transaction of its own.
    await h.grouped(() => insert.run('d'));
    expect(committed()).toEqual(['a', 'c', 'd']);
  });

  it('commits what is queued when the storage closes', async () => {
    const { storage, other } = open();
    const written = storage.handle.grouped(() =>
      storage.sqlite.prepare("INSERT INTO notes (body) VALUES ('last')").run(),
    );
    await storage.close();
    await written;
    expect(other.prepare('SELECT body FROM notes').all()).toEqual([{ body: 'last' }]);
  });
});
