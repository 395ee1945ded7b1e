import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DataDirLockedError,
  LOCK_FILE_NAME,
  type LockHolder,
  lockDataDir,
} from '../src/data-dir-lock.js';
import { migrationsFolder, openDatabase } from '../src/storage/sqlite/database.js';
import { killServer, runCli, type ServerProcess, startServer } from './support/process.js';

const ADMIN_KEY = 'tl_cli-test-admin-key';
/** Each test starts several processes, and a process start is slow on a busy machine. */
const PROCESS_TIMEOUT = 120_000;
const started: ServerProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const s of started.splice(0)) killServer(s);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A data directory path inside a fresh temporary directory; the data directory itself is absent. */
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-cli-'));
  dirs.push(dir);
  return join(dir, 'data');
}

function serve(dir: string): ServerProcess {
  const server = startServer({
    TRIPLINE_DATA_DIR: dir,
    TRIPLINE_ADMIN_API_KEY: ADMIN_KEY,
  });
  started.push(server);
  return server;
}

const lockFile = (dir: string) => join(dir, LOCK_FILE_NAME);
const readLock = (dir: string) => JSON.parse(readFileSync(lockFile(dir), 'utf8')) as LockHolder;

async function gql(url: string, key: string, query: string, variables = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The tags of drizzle's journal, oldest first. */
function migrationTags(): string[] {
  const journal = JSON.parse(
    readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8'),
  ) as { entries: { tag: string }[] };
  return journal.entries.map((e) => e.tag);
}

/** A database at `file` with only the first migration applied, as an older Tripline left it. */
function databaseOfAnOlderVersion(file: string): void {
  const older = mkdtempSync(join(tmpdir(), 'tripline-migrations-'));
  dirs.push(older);
  mkdirSync(join(older, 'meta'));
  const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8'));
  journal.entries = journal.entries.slice(0, 1);
  writeFileSync(join(older, 'meta', '_journal.json'), JSON.stringify(journal));
  const first = `${journal.entries[0].tag}.sql`;
  copyFileSync(join(migrationsFolder, first), join(older, first));
  const storage = openDatabase(file, { migrate: false });
  migrate(storage.db, { migrationsFolder: older });
  storage.close();
}

describe('tripline', () => {
  it(
    'lists its commands; each has --help; unknown commands and options exit 2',
    async () => {
      const commands = ['admin-key', 'rotate-master-key', 'migrate', 'check-config'];
      const [top, ...helps] = await Promise.all([
        runCli(['--help'], {}),
        ...commands.map((c) => runCli([c, '--help'], {})),
      ]);
      expect(top?.code).toBe(0);
      for (const command of commands) expect(top?.stdout).toContain(`  ${command} `);
      helps.forEach((help, i) => {
        expect(help?.code).toBe(0);
        expect(help?.stdout).toContain(`Usage: tripline ${commands[i]}`);
      });

      const [none, unknown, badOption] = await Promise.all([
        runCli([], {}),
        runCli(['serve'], {}),
        runCli(['migrate', '--force'], {}),
      ]);
      expect(none.code).toBe(2);
      expect(none.stderr).toContain('Usage: tripline <command>');
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain('Unknown command "serve"');
      expect(unknown.stderr).toContain('Usage: tripline <command>');
      expect(badOption.code).toBe(2);
      expect(badOption.stderr).toContain("Unknown option '--force'");
    },
    PROCESS_TIMEOUT,
  );
});

describe('tripline check-config', () => {
  it(
    'accepts a valid environment, says what the server would use, and creates nothing',
    async () => {
      const dir = dataDir();
      const run = await runCli(['check-config'], { TRIPLINE_DATA_DIR: dir, PORT: '4321' });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('The configuration is valid.');
      expect(run.stdout).toContain('127.0.0.1:4321');
      expect(run.stdout).toContain(`data directory: ${dir} (absent: created at first start)`);
      expect(run.stdout).toContain(`${join(dir, 'master.key')} (absent: generated at first start)`);
      expect(run.stdout).toContain('in use by:      nobody');
      expect(existsSync(dir)).toBe(false);
    },
    PROCESS_TIMEOUT,
  );

  it(
    'prints every problem naming its variable and the fix, never a key, and exits 2',
    async () => {
      const dir = dataDir();
      const badKey = 'not-a-master-key-but-close-to-a-secret';
      const run = await runCli(['check-config'], {
        TRIPLINE_DATA_DIR: dir,
        PORT: 'eighty',
        TRIPLINE_DELIVERY_TIMEOUT_MS: '5000',
        TRIPLINE_DELIVERY_LEASE_MS: '6000',
        TRIPLINE_ENCRYPTION_KEY: badKey,
      });
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      const problems = run.stderr.split('\n').filter((line) => line.startsWith('  - '));
      expect(problems).toHaveLength(3);
      expect(problems.find((p) => p.includes('PORT must be a whole number'))).toContain('"eighty"');
      expect(problems.find((p) => p.includes('TRIPLINE_DELIVERY_LEASE_MS'))).toContain(
        'Raise the lease above 6000',
      );
      expect(problems.find((p) => p.includes('TRIPLINE_ENCRYPTION_KEY'))).toContain(
        'openssl rand -base64 32',
      );
      expect(run.stderr).not.toContain(badKey);
      expect(run.stderr).toContain('Fix these variables and run `tripline check-config` again.');
      expect(existsSync(dir)).toBe(false);

      // What the server would meet on disk: a data directory that is a file, an unreadable key.
      const file = join(dataDir(), 'a-file');
      mkdirSync(join(file, '..'), { recursive: true });
      writeFileSync(file, 'x');
      const keyFile = join(dataDir(), 'bad.key');
      mkdirSync(join(keyFile, '..'), { recursive: true });
      writeFileSync(keyFile, 'only a few bytes\n');
      const onDisk = await runCli(['check-config'], {
        TRIPLINE_DATA_DIR: file,
        TRIPLINE_ENCRYPTION_KEY_FILE: keyFile,
      });
      expect(onDisk.code).toBe(2);
      expect(onDisk.stderr).toContain(`TRIPLINE_DATA_DIR: ${file} is not a directory`);
      expect(onDisk.stderr).toContain(
        `TRIPLINE_ENCRYPTION_KEY_FILE: ${keyFile} does not hold a master key`,
      );
    },
    PROCESS_TIMEOUT,
  );

  it(
    'refuses a missing key file beside an existing database: a new key would open no secret',
    async () => {
      const dir = dataDir();
      expect((await runCli(['migrate'], { TRIPLINE_DATA_DIR: dir })).code).toBe(0);
      const run = await runCli(['check-config'], { TRIPLINE_DATA_DIR: dir });
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(
        `TRIPLINE_ENCRYPTION_KEY_FILE: there is no master key at ${join(dir, 'master.key')}`,
      );
      expect(existsSync(join(dir, 'master.key'))).toBe(false);
    },
    PROCESS_TIMEOUT,
  );
});

describe('tripline migrate', () => {
  it(
    'creates a database, names the migrations it applies, then finds it up to date',
    async () => {
      const dir = dataDir();
      const tags = migrationTags();
      const created = await runCli(['migrate'], { TRIPLINE_DATA_DIR: dir });
      expect(created.stderr).toBe('');
      expect(created.code).toBe(0);
      expect(created.stdout).toBe(
        `Created the database ${join(dir, 'tripline.db')}: applied ${tags.length} migrations:\n${tags.map((t) => `  ${t}\n`).join('')}`,
      );
      expect(existsSync(lockFile(dir))).toBe(false);

      const again = await runCli(['migrate'], { TRIPLINE_DATA_DIR: dir });
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('is up to date');
      expect(again.stdout).toContain(String(tags.at(-1)));
    },
    PROCESS_TIMEOUT,
  );

  it(
    'applies only what an older database lacks; until then admin-key refuses, naming the command',
    async () => {
      const dir = dataDir();
      mkdirSync(dir);
      databaseOfAnOlderVersion(join(dir, 'tripline.db'));
      const missing = migrationTags().slice(1);
      expect(missing.length).toBeGreaterThan(0);

      const refused = await runCli(['admin-key'], { TRIPLINE_DATA_DIR: dir });
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toContain(`lacks ${missing.length} migration(s)`);
      expect(refused.stderr).toContain(missing.join(', '));
      expect(refused.stderr).toContain('Run `tripline migrate`');

      const run = await runCli(['migrate'], { TRIPLINE_DATA_DIR: dir });
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`Migrated the database ${join(dir, 'tripline.db')}`);
      expect(run.stdout.split('\n').filter((l) => l.startsWith('  '))).toEqual(
        missing.map((t) => `  ${t}`),
      );
    },
    PROCESS_TIMEOUT,
  );
});

describe('the commands beside a running server', () => {
  it(
    'a second server, migrate and rotate-master-key refuse while a server runs; a clean stop lets them',
    async () => {
      const dir = dataDir();
      const server = serve(dir);
      await server.url;
      expect(readLock(dir)).toMatchObject({
        pid: server.child.pid,
        holder: 'server',
        host: hostname(),
      });

      // A second server, migrate and rotate-master-key refuse, naming the server and what to do.
      const masterKey = readFileSync(join(dir, 'master.key'), 'utf8');
      const second = serve(dir);
      const [migrated, rotated, checked] = await Promise.all([
        runCli(['migrate'], { TRIPLINE_DATA_DIR: dir }),
        runCli(['rotate-master-key'], { TRIPLINE_DATA_DIR: dir }),
        runCli(['check-config'], { TRIPLINE_DATA_DIR: dir }),
      ]);
      expect(await second.exited).toBe(1);
      await second.outputClosed;
      const held = `is in use by a Tripline server (pid ${server.child.pid}`;
      expect(second.output()).toContain(`Tripline cannot start: The data directory ${dir} ${held}`);
      for (const [run, command] of [
        [migrated, 'migrate'],
        [rotated, 'rotate-master-key'],
      ] as const) {
        expect(run.code).toBe(1);
        expect(run.stdout).toBe('');
        expect(run.stderr).toContain(
          `tripline ${command} refused: The data directory ${dir} ${held}`,
        );
        expect(run.stderr).toContain('Stop the server (SIGTERM, or Ctrl-C where it runs)');
      }
      expect(readFileSync(join(dir, 'master.key'), 'utf8')).toBe(masterKey);
      expect(checked.code).toBe(0);
      expect(checked.stdout).toContain(
        `in use by:      a Tripline server (pid ${server.child.pid}`,
      );

      // A clean stop removes the lock; then migrate may run.
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
      expect(existsSync(lockFile(dir))).toBe(false);
      const after = await runCli(['migrate'], { TRIPLINE_DATA_DIR: dir });
      expect(after.code).toBe(0);
      expect(after.stdout).toContain('is up to date');
    },
    PROCESS_TIMEOUT,
  );

  it(
    'admin-key issues a working key while the server runs, recorded in the audit log; --user picks among admins',
    async () => {
      const dir = dataDir();
      const server = serve(dir);
      const url = await server.url;

      // admin-key: the key alone on stdout, working at once against the running server.
      const issued = await runCli(['admin-key'], { TRIPLINE_DATA_DIR: dir });
      expect(issued.code).toBe(0);
      const key = issued.stdout.trim();
      expect(issued.stdout).toMatch(/^tl_\S+\n$/);
      expect(issued.stderr).toContain('for admin (usr_');
      expect(issued.stderr).toContain('admin of "default"');
      expect(issued.stderr).not.toContain(key);
      const viewer = await gql(url, key, '{ viewer { user { name } } }');
      expect(viewer).toEqual({
        status: 200,
        body: { data: { viewer: { user: { name: 'admin' } } } },
      });
      expect((await gql(url, ADMIN_KEY, '{ __typename }')).status).toBe(200);
      const audit = await gql(
        url,
        key,
        `{ entity(name: "default") { auditLog(first: 5, action: API_KEY_CREATED) { edges { node {
        actor { name } details } } } } }`,
      );
      const entries = (
        audit.body as {
          data: { entity: { auditLog: { edges: { node: Record<string, unknown> }[] } } };
        }
      ).data.entity.auditLog.edges.map((e) => e.node);
      expect(entries[0]).toEqual({
        actor: { name: 'admin' },
        details: { name: 'issued by tripline admin-key', prefix: key.slice(0, 9), user: 'admin' },
      });

      // With two admins, it asks which one, listing them; --user chooses.
      const created = await gql(
        url,
        key,
        `mutation { createUser(input: { entity: "default", name: "second-admin", kind: USER, role: ADMIN }) {
        __typename } }`,
      );
      expect(created.body).toEqual({ data: { createUser: { __typename: 'CreateUserPayload' } } });
      const ambiguous = await runCli(['admin-key'], { TRIPLINE_DATA_DIR: dir });
      expect(ambiguous.code).toBe(1);
      expect(ambiguous.stdout).toBe('');
      expect(ambiguous.stderr).toContain('The entity "default" has 2 admins: admin (usr_');
      expect(ambiguous.stderr).toContain('second-admin (usr_');
      expect(ambiguous.stderr).toContain('--user');
      const chosen = await runCli(['admin-key', '--user', 'second-admin', '--name', 'recovery'], {
        TRIPLINE_DATA_DIR: dir,
      });
      expect(chosen.code).toBe(0);
      const second2 = await gql(url, chosen.stdout.trim(), '{ viewer { user { name } } }');
      expect(second2.body).toEqual({ data: { viewer: { user: { name: 'second-admin' } } } });

      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    },
    PROCESS_TIMEOUT,
  );

  it(
    'takes over the lock of a killed server, as the next server does',
    async () => {
      const dir = dataDir();
      const first = serve(dir);
      await first.url;
      first.child.kill('SIGKILL');
      await first.exited;
      expect(readLock(dir).pid).toBe(first.child.pid);

      const next = serve(dir);
      await next.url;
      expect(readLock(dir).pid).toBe(next.child.pid);
      expect(next.output()).toContain(
        `took over the data directory from a Tripline server (pid ${first.child.pid}`,
      );
      next.child.kill('SIGKILL');
      await next.exited;

      const rotated = await runCli(['rotate-master-key'], { TRIPLINE_DATA_DIR: dir });
      expect(rotated.code).toBe(0);
      expect(rotated.stderr).toContain(
        `Took over the data directory from a Tripline server (pid ${next.child.pid}`,
      );
      expect(rotated.stdout).toContain('Re-encrypted 0 secrets with a new master key.');
      expect(existsSync(lockFile(dir))).toBe(false);
    },
    PROCESS_TIMEOUT,
  );

  it(
    'a server refuses a directory held by a live command, and an unreadable lock',
    async () => {
      const dir = dataDir();
      mkdirSync(dir);
      // This test process stands in for a command that is still running.
      const holder: LockHolder = {
        pid: process.pid,
        holder: 'tripline rotate-master-key',
        host: hostname(),
        since: '2026-03-01T12:00:00.000Z',
      };
      writeFileSync(lockFile(dir), JSON.stringify(holder));
      const refused = serve(dir);
      expect(await refused.exited).toBe(1);
      await refused.outputClosed;
      expect(refused.output()).toContain(
        `is in use by \`tripline rotate-master-key\` (pid ${process.pid}, since 2026-03-01T12:00:00.000Z). Wait for it to finish`,
      );
      expect(existsSync(join(dir, 'tripline.db'))).toBe(false);

      writeFileSync(lockFile(dir), '');
      const [server, migrated] = [
        serve(dir),
        await runCli(['migrate'], { TRIPLINE_DATA_DIR: dir }),
      ];
      expect(await server.exited).toBe(1);
      await server.outputClosed;
      for (const output of [server.output(), migrated.stderr]) {
        expect(output).toContain(`The lock file ${lockFile(dir)} does not say which process holds`);
        expect(output).toContain('delete the file');
      }
      expect(migrated.code).toBe(1);
    },
    PROCESS_TIMEOUT,
  );
});

describe('admin-key errors', () => {
  it(
    'names the variable or option to fix',
    async () => {
      const dir = dataDir();
      const none = await runCli(['admin-key'], { TRIPLINE_DATA_DIR: dir });
      expect(none.code).toBe(1);
      expect(none.stderr).toContain(
        `No database at ${join(dir, 'tripline.db')}. Set TRIPLINE_DATA_DIR to the server's data directory`,
      );
      expect(existsSync(dir)).toBe(false);

      const [badName, badConfig] = await Promise.all([
        runCli(['admin-key', '--name', ' '], { TRIPLINE_DATA_DIR: dir }),
        runCli(['admin-key'], { TRIPLINE_DATA_DIR: dir, TRIPLINE_RETRY_MAX_ATTEMPTS: 'many' }),
      ]);
      expect(badName.code).toBe(2);
      expect(badName.stderr).toContain('--name: Use a name of 1 to 64 characters.');
      expect(badConfig.code).toBe(2);
      expect(badConfig.stderr).toContain('TRIPLINE_RETRY_MAX_ATTEMPTS must be a whole number');

      expect((await runCli(['migrate'], { TRIPLINE_DATA_DIR: dir })).code).toBe(0);
      const noEntity = await runCli(['admin-key', '--entity', 'research'], {
        TRIPLINE_DATA_DIR: dir,
      });
      expect(noEntity.code).toBe(1);
      expect(noEntity.stderr).toContain('No entity named "research". Give --entity the name');
    },
    PROCESS_TIMEOUT,
  );
});

describe('the data directory lock', () => {
  it('refuses a lock held on another host, whose pid it cannot check', () => {
    const dir = dataDir();
    mkdirSync(dir);
    const other: LockHolder = { pid: 1, holder: 'server', host: 'elsewhere', since: 'x' };
    writeFileSync(lockFile(dir), JSON.stringify(other));
    expect(() => lockDataDir(dir, 'tripline migrate')).toThrow(DataDirLockedError);
    expect(() => lockDataDir(dir, 'tripline migrate')).toThrow(
      `a Tripline server (pid 1 on host elsewhere, since x). Stop the server (SIGTERM, or Ctrl-C where it runs) and try again. If no Tripline process on elsewhere uses this directory any more, delete ${lockFile(dir)}.`,
    );
  });

  it('is held once per directory, and a release removes only its own lock', () => {
    const dir = dataDir();
    mkdirSync(dir);
    const lock = lockDataDir(dir, 'server');
    expect(() => lockDataDir(dir, 'tripline migrate')).toThrow(
      `is in use by a Tripline server (pid ${process.pid}`,
    );
    lock.release();
    expect(existsSync(lockFile(dir))).toBe(false);

    const next = lockDataDir(dir, 'tripline migrate');
    lock.release();
    expect(readLock(dir).holder).toBe('tripline migrate');
    next.release();
    next.release();
    expect(existsSync(lockFile(dir))).toBe(false);
  });
});
