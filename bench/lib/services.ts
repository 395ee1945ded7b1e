// Private PostgreSQL and Redis servers for figures that need them whatever --database says
// (figures/scale-out.ts): the test suite's helpers (test/support/services.ts), started on every
// core, since the database and the bus serve every instance under test, and stopped by the figure
// — or, when the bench exits without it (an error, Ctrl-C), killed by an `exit` handler.
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import {
  type PostgresServer,
  type RedisServer,
  startPostgres,
  startRedis,
} from '../../test/support/services.js';
import { unpinnedWhile } from './process.js';

export interface BenchServices {
  postgres: PostgresServer;
  redis: RedisServer;
  stop(): Promise<void>;
}

/**
 * Starts a PostgreSQL and a Redis server of the bench's own, unpinned (this process is pinned to
 * the load core; they would inherit that). Throws, naming the Debian packages, when either is
 * not installed.
 */
export async function startBenchServices(): Promise<BenchServices> {
  return unpinnedWhile(async () => {
    const postgres = await startPostgres();
    const redis = await startRedis().catch(async (error: unknown) => {
      await postgres?.stop();
      throw error;
    });
    if (!postgres || !redis) {
      await postgres?.stop();
      await redis?.stop();
      throw new Error(
        `this figure needs ${postgres ? '' : 'PostgreSQL (Debian package postgresql) '}${redis ? '' : 'Redis (Debian package redis-server) '}installed: apt-get install -y postgresql redis-server`,
      );
    }
    const kill = await killerOf(postgres, redis);
    process.on('exit', kill);
    return {
      postgres,
      redis,
      async stop() {
        process.off('exit', kill);
        await redis.stop();
        await postgres.stop();
      },
    };
  });
}

/**
 * A synchronous kill of both servers, for an `exit` handler (which cannot wait on their own
 * `stop`): PostgreSQL's postmaster gets SIGQUIT (immediate shutdown), Redis SIGKILL, and their
 * directories are deleted. Asks each server for its process id and directory.
 */
async function killerOf(postgres: PostgresServer, redis: RedisServer): Promise<() => void> {
  const client = new pg.Client({ connectionString: postgres.url });
  await client.connect();
  let dataDirectory: string;
  try {
    const { rows } = await client.query<{ data_directory: string }>('SHOW data_directory');
    dataDirectory = rows[0]!.data_directory;
  } finally {
    await client.end();
  }
  const postmaster = Number(
    readFileSync(join(dataDirectory, 'postmaster.pid'), 'utf8').split('\n')[0],
  );
  const connection = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let redisPid: number;
  let redisDir: string;
  try {
    await connection.connect();
    redisPid = Number(/process_id:(\d+)/.exec(await connection.info('server'))?.[1]);
    redisDir = ((await connection.config('GET', 'dir')) as string[])[1]!;
  } finally {
    connection.disconnect();
  }
  return () => {
    for (const [pid, signal] of [
      [postmaster, 'SIGQUIT'],
      [redisPid, 'SIGKILL'],
    ] as const) {
      try {
        if (pid > 0) process.kill(pid, signal);
      } catch {
        // Already gone.
      }
    }
    // Only the temporary directories test/support/services.ts made, whatever the servers said.
    for (const dir of [dirname(dataDirectory), redisDir]) {
      if (/tripline-(pg|redis)-[^/]+$/.test(dir)) rmSync(dir, { recursive: true, force: true });
    }
  };
}
