import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isRunning, killServer, type ServerProcess, startServer } from './support/process.js';

const started: ServerProcess[] = [];
const dirs: string[] = [];
const occupied: Server[] = [];
afterEach(async () => {
  for (const s of started.splice(0)) killServer(s);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  for (const o of occupied.splice(0)) await new Promise((resolve) => o.close(resolve));
});

/** The pids of `pid`'s children (empty once it has exited). */
function readChildren(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .split(' ')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-server-'));
  dirs.push(dir);
  return join(dir, 'data');
}

async function post(url: string, query: string, key?: string) {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    },
    body: JSON.stringify({ query }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('the server process', () => {
  it('starts on an empty data directory, prints the admin key once, and stops on SIGTERM', async () => {
    const dir = dataDir();
    const server = startServer({ TRIPLINE_DATA_DIR: dir });
    started.push(server);
    const url = await server.url;
    const key = /^\s+(tl_\S+)$/m.exec(server.output())?.[1];
    expect(key).toBeDefined();
    expect(readFileSync(join(dir, 'admin-api-key'), 'utf8').trim()).toBe(key);
    expect(statSync(join(dir, 'admin-api-key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'master.key')).mode & 0o777).toBe(0o600);

    expect(await post(url, '{ __typename }', key)).toEqual({
      status: 200,
      body: { data: { __typename: 'Query' } },
    });
    const refused = await post(url, '{ __typename }');
    expect(refused.status).toBe(401);

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);

    const again = startServer({ TRIPLINE_DATA_DIR: dir });
    started.push(again);
    const url2 = await again.url;
    expect(again.output()).not.toContain('tl_');
    expect((await post(url2, '{ viewer { user { name } } }', key)).body).toEqual({
      data: { viewer: { user: { name: 'admin' } } },
    });
    again.child.kill('SIGINT');
    expect(await again.exited).toBe(0);
  });

  it('uses TRIPLINE_ADMIN_API_KEY when given and refuses invalid configuration', async () => {
    const server = startServer({
      TRIPLINE_DATA_DIR: dataDir(),
      TRIPLINE_ADMIN_API_KEY: 'tl_given-admin-key-for-tests',
    });
    started.push(server);
    const url = await server.url;
    expect((await post(url, '{ __typename }', 'tl_given-admin-key-for-tests')).status).toBe(200);

    const bad = startServer({
      TRIPLINE_DATA_DIR: dataDir(),
      PORT: 'eighty',
      TRIPLINE_RETRY_MAX_ATTEMPTS: '0',
    });
    started.push(bad);
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain('PORT must be a whole number');
    expect(bad.output()).toContain('TRIPLINE_RETRY_MAX_ATTEMPTS');
  });

  it('refuses a lease that one attempt could outlive, naming both variables', async () => {
    const bad = startServer({
      TRIPLINE_DATA_DIR: dataDir(),
      TRIPLINE_DELIVERY_TIMEOUT_MS: '5000',
      TRIPLINE_DELIVERY_LEASE_MS: '6000',
    });
    started.push(bad);
    expect(await bad.exited).toBe(2);
    const problem = bad
      .output()
      .split('\n')
      .find((line) => line.includes('LEASE'));
    expect(problem).toContain('TRIPLINE_DELIVERY_LEASE_MS (6000) must exceed');
    expect(problem).toContain('TRIPLINE_DELIVERY_TIMEOUT_MS (5000)');
  });
  it('exits 1 naming the address when the port is taken, before creating anything', async () => {
    const other = createServer();
    occupied.push(other);
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const port = (other.address() as { port: number }).port;
    const dir = dataDir();

    const server = startServer({ TRIPLINE_DATA_DIR: dir, HOST: '127.0.0.1', PORT: String(port) });
    started.push(server);
    expect(await server.exited).toBe(1);
    await server.outputClosed;
    expect(server.output()).toContain(`127.0.0.1:${port}`);
    expect(server.output()).toContain('already in use');
    expect(server.output()).toContain('PORT');
    expect(server.output()).not.toContain('Internal error');
    expect(existsSync(dir)).toBe(false);
  });
});

describe('the server under npm start', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)(
    '%s to the npm process reaches the server, which stops gracefully; npm exits 0 and leaves no server behind',
    async (signal) => {
      const server = startServer(
        { TRIPLINE_DATA_DIR: dataDir(), LOG_LEVEL: 'info' },
        { via: 'npm' },
      );
      started.push(server);
      const url = await server.url;
      expect((await fetch(url.replace('/graphql', '/readyz'))).status).toBe(200);
      const pid = await server.listeningPid;
      expect(pid).not.toBe(server.child.pid);

      server.child.kill(signal);
      expect(await server.exited).toBe(0);
      await server.outputClosed;
      expect(server.output()).toContain(`"reason":"${signal}"`);
      expect(server.output()).toContain('"msg":"stopped"');
      expect(isRunning(pid)).toBe(false);
    },
    30_000,
  );

  // The server used to read its parent's pid only once it had started: a parent that died
  // during the start (the test below, on a loaded machine, sometimes killed npm between the
  // banner and that read) went unnoticed, and the server served on, orphaned.
  it('stops by itself when npm dies while the server is still starting', async () => {
    const dir = dataDir();
    const server = startServer({ TRIPLINE_DATA_DIR: dir, LOG_LEVEL: 'info' }, { via: 'npm' });
    started.push(server);
    // Kill npm as soon as the server has made its data directory: after it has loaded, long
    // before it has finished starting (migrations and the first admin key come next).
    for (let i = 0; i < 5_000 && !existsSync(dir); i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const pid = readChildren(server.child.pid!)[0];
    expect(pid, 'npm started the server').toBeDefined();
    server.child.kill('SIGKILL');
    await server.exited;
    expect(server.output()).not.toContain('Tripline is listening');
    await server.outputClosed;
    expect(isRunning(pid!)).toBe(false);
    expect(server.output()).toContain('"reason":"parent process exited"');
    expect(server.output()).toContain('"msg":"stopped"');
  });

  it('stops gracefully by itself when npm dies without passing a signal on', async () => {
    const server = startServer({ TRIPLINE_DATA_DIR: dataDir(), LOG_LEVEL: 'info' }, { via: 'npm' });
    started.push(server);
    await server.url;
    const pid = await server.listeningPid;

    server.child.kill('SIGKILL');
    await server.exited;
    // On a loaded machine the stop can take a while; if it never comes, say what the server did.
    let waited: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      server.outputClosed,
      new Promise((_resolve, reject) => {
        waited = setTimeout(
          () =>
            reject(
              new Error(
                `the server (pid ${pid}, running: ${isRunning(pid)}) did not stop within 45 s of npm's death; its output:\n${server.output()}`,
              ),
            ),
          45_000,
        );
      }),
    ]).finally(() => clearTimeout(waited));
    expect(isRunning(pid)).toBe(false);
    expect(server.output()).toContain('"reason":"parent process exited"');
    expect(server.output()).toContain('"msg":"stopped"');
  });
});
