import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Private PostgreSQL and Redis servers for tests, from Debian's `postgresql` and `redis-server`
 * packages, each in a temporary directory on a free loopback port, so a test owns its server (it
 * may stop, kill or restart it) and never depends on what a machine happens to run. `.ci/run`
 * installs the packages when they are missing; without them these helpers return `undefined`
 * and the caller skips, saying so loudly through `missingService`.
 */

const run = promisify(execFile);

/** A free TCP port on 127.0.0.1 (free when asked; servers started here bind it at once). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

/** Prints why a test file skips, where CI logs and a developer's terminal both show it. */
export function missingService(what: string, why: string): void {
  console.warn(
    `\n*** SKIPPING tests that need ${what}: ${why}. Install Debian's package (.ci/run does: apt-get install -y postgresql redis-server). ***\n`,
  );
}

function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  url: string;
  port: number;
  /** A URL for another database on this server (created by `createDatabase`). */
  urlFor(database: string): string;
  createDatabase(name: string): Promise<string>;
  /** Fast shutdown; removes the directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a PostgreSQL server of its own (initdb, then pg_ctl) with trust authentication for the
 * `postgres` role, fsync off. Runs the server as the `postgres` user when this process is root
 * (PostgreSQL refuses to run as root). Resolves `undefined` when PostgreSQL is not installed.
 */
export async function startPostgres(): Promise<PostgresServer | undefined> {
  const bin = postgresBinDir();
  if (!bin) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'tripline-pg-'));
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const as = (command: string, args: string[]) =>
    asRoot
      ? run('runuser', ['-u', 'postgres', '--', join(bin, command), ...args])
      : run(join(bin, command), args);
  await as('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`;
  await as('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', 'start']);
  const urlFor = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  let stopped = false;
  return {
    url: urlFor('postgres'),
    port,
    urlFor,
    async createDatabase(name) {
      await as('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', name]);
      return urlFor(name);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Kills the server (SIGKILL) without removing its directory, as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port (after `kill`). */
  restart(): Promise<void>;
  /** Stops it and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a Redis server of its own, keeping nothing on disk. Resolves `undefined` when
 * `redis-server` is not installed.
 */
export async function startRedis(): Promise<RedisServer | undefined> {
  const binary = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((b) =>
    existsSync(b),
  );
  if (!binary) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'tripline-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    const proc = spawn(
      binary,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      proc.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('Ready to accept connections')) resolve();
      });
      proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${out}`)));
    });
  };
  const kill = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  let stopped = false;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill,
    restart: start,
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
