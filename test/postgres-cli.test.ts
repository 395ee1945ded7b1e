import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, postgresForTests } from './support/postgres.js';
import { killServer, runCli, type ServerProcess, startServer } from './support/process.js';
import { missingService } from './support/services.js';

// The server and the tripline command on PostgreSQL (TRIPLINE_DATABASE_URL), as processes.

const postgres = await postgresForTests();
if (postgres.url === undefined) missingService('PostgreSQL (server and CLI on it)', postgres.why);

const dirs: string[] = [];
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const server of servers) killServer(server);
  await Promise.all(servers.map((server) => server.exited));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  if (postgres.url !== undefined) await postgres.stop();
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-pg-cli-'));
  dirs.push(dir);
  return join(dir, 'data');
}

async function viewer(url: string, key: string) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query: '{ viewer { user { name } } }' }),
  });
  return (await response.json()) as { data?: { viewer: { user: { name: string } } } };
}

(postgres.url === undefined ? describe.skip : describe)('Tripline on PostgreSQL', () => {
  it('migrates with tripline migrate, then serves two instances sharing the database', async () => {
    const database = await createTestDatabase(postgres.url);
    try {
      const env = {
        TRIPLINE_DATABASE_URL: database.url,
        TRIPLINE_ENCRYPTION_KEY: randomBytes(32).toString('hex'),
      };
      // Without the migrations, the commands that need the schema say so.
      const early = await runCli(['admin-key'], { ...env, TRIPLINE_DATA_DIR: dataDir() });
      expect(early.code).toBe(1);
      expect(early.stderr).toMatch(/lacks \d+ migration\(s\).*tripline migrate/);

      const migrated = await runCli(['migrate'], { ...env, TRIPLINE_DATA_DIR: dataDir() });
      expect(migrated.stderr).toBe('');
      expect(migrated.stdout).toMatch(/^Migrated the PostgreSQL database tripline_test_\w+ on /);
      expect(migrated.stdout).toContain('0000_init');
      const again = await runCli(['migrate'], { ...env, TRIPLINE_DATA_DIR: dataDir() });
      expect(again.stdout).toMatch(/is up to date: all \d+ migrations/);

      const adminKey = `tl_${randomBytes(24).toString('base64url')}`;
      const first = startServer({
        ...env,
        TRIPLINE_DATA_DIR: dataDir(),
        TRIPLINE_ADMIN_API_KEY: adminKey,
      });
      servers.push(first);
      const firstUrl = await first.url;
      const second = startServer({ ...env, TRIPLINE_DATA_DIR: dataDir() });
      servers.push(second);
      const secondUrl = await second.url;
      // One bootstrap for both: the second found the account the first created.
      expect(second.stderr()).not.toContain('First start');
      expect(await viewer(secondUrl, adminKey)).toEqual({
        data: { viewer: { user: { name: 'admin' } } },
      });

      // A key issued by the command while both serve works on both at once.
      const issued = await runCli(['admin-key'], { ...env, TRIPLINE_DATA_DIR: dataDir() });
      expect(issued.code).toBe(0);
      const key = issued.stdout.trim();
      for (const url of [firstUrl, secondUrl]) {
        expect((await viewer(url, key)).data?.viewer.user.name).toBe('admin');
      }
    } finally {
      for (const server of servers.splice(0)) {
        killServer(server);
        await server.exited;
      }
      await database.drop();
    }
  });

  it('refuses to start, naming the database, when it cannot be reached', async () => {
    const url = new URL(postgres.url!);
    url.pathname = '/tripline_absent_database';
    const server = startServer({
      TRIPLINE_DATA_DIR: dataDir(),
      TRIPLINE_DATABASE_URL: url.toString(),
    });
    servers.push(server);
    expect(await server.exited).toBe(1);
    expect(server.stderr()).toContain(
      'Cannot open the PostgreSQL database tripline_absent_database on',
    );
    expect(server.stderr()).toContain('Check TRIPLINE_DATABASE_URL');
  });
});
