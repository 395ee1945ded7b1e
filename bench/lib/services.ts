// Private PostgreSQL and Redis servers for figures that need them whatever --database says
// (figures/scale-out.ts): the test suite's helpers (test/support/services.ts), started on every
// core, since the database and the bus serve every instance under test, and stopped by the figure.
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
    return {
      postgres,
      redis,
      async stop() {
        await redis.stop();
        await postgres.stop();
      },
    };
  });
}
