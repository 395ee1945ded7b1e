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
  it('commits the writes asked for in one turn in one transaction', async () => {
    const { storage, other } = open();
    const h = storage.handle;
    const insert = storage.sqlite.prepare('INSERT INTO notes (body) VALUES (?)');
    const committed = () =>
      (other.prepare('SELECT body FROM notes ORDER BY body').all() as { body: string }[]).map(
        (row) => row.body,
      );
    const seenByOther: string[][] = [];
    const values = await Promise.all([
      h.grouped(() => insert.run('a').changes),
      h.grouped(() => {
        // Inside the shared transaction: the first write is not committed yet.
        seenByOther.push(committed());
        return insert.run('b').changes;
      }),
      h.grouped(() => {
        seenByOther.push(committed());
        return insert.run('c').changes;
      }, true),
    ]);
    expect(values).toEqual([1, 1, 1]);
    expect(seenByOther).toEqual([[], []]);
    expect(committed()).toEqual(['a', 'b', 'c']);

    // The next turn is a transaction of its own.
    await h.grouped(() => insert.run('d'));
    expect(committed()).toEqual(['a', 'b', 'c', 'd']);
  });

  it('fails only the write that threw, and keeps the others of its turn', async () => {
    const { storage, other } = open();
    const h = storage.handle;
    const insert = storage.sqlite.prepare('INSERT INTO notes (body) VALUES (?)');
    const results = await Promise.allSettled([
      h.grouped(() => insert.run('a')),
      h.grouped(() => {
        insert.run('b');
        insert.run('a'); // a unique violation once the first write is in
      }),
      h.grouped(() => insert.run('c')),
    ]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(results[1]).toMatchObject({ reason: { code: 'SQLITE_CONSTRAINT_UNIQUE' } });
    expect(other.prepare('SELECT body FROM notes ORDER BY body').all()).toEqual([
      { body: 'a' },
      { body: 'c' },
    ]);
  });

  it('commits at once on a quiet connection, and at the end of the turn right after a commit', async () => {
    const { storage, other } = open();
    const h = storage.handle;
    const insert = storage.sqlite.prepare('INSERT INTO notes (body) VALUES (?)');
    const committed = () => other.prepare('SELECT count(*) AS n FROM notes').get() as { n: number };
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Quiet: the write commits as soon as this code yields, before the turn ends.
    const endOfTurn = new Promise((resolve) => setImmediate(() => resolve('end of turn')));
    expect(
      await Promise.race([h.grouped(() => insert.run('quiet')).then(() => 'committed'), endOfTurn]),
    ).toBe('committed');

    // Just after a commit: writes asked for in separate microtasks of one turn commit together.
    const seen: number[] = [];
    const first = h.grouped(() => insert.run('busy-1'));
    await Promise.resolve();
    const second = h.grouped(() => {
      seen.push(committed().n);
      return insert.run('busy-2');
    });
    await Promise.all([first, second]);
    expect(seen).toEqual([1]);
    expect(committed().n).toBe(3);
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

describe('SQLite connection settings', () => {
  it('keeps temporary tables in memory, where every RETURNING statement builds one', () => {
    const { storage } = open();
    // 2 is MEMORY; the default (0, a file) cost each status write and claim about 35 µs.
    expect(storage.sqlite.pragma('temp_store', { simple: true })).toBe(2);
    expect(storage.sqlite.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(storage.sqlite.pragma('foreign_keys', { simple: true })).toBe(1);
  });
});
