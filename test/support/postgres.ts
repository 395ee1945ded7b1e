import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * The PostgreSQL server tests create their databases on, as a URL to its maintenance database:
 * TRIPLINE_TEST_DATABASE_URL when set, else the local server the development machine and CI run
 * (127.0.0.1:5432, user postgres, trust authentication).
 */
export const POSTGRES_SERVER_URL =
  process.env.TRIPLINE_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

/** The server's URL without a password, for messages. */
export function describeServer(url = POSTGRES_SERVER_URL): string {
  const parsed = new URL(url);
  parsed.password = '';
  return parsed.toString();
}

/** Null when the server answers; otherwise why not, for a loud skip. */
export async function postgresUnreachable(url = POSTGRES_SERVER_URL): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    await client.end().catch(() => {});
  }
}

async function onServer<T>(body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_SERVER_URL });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  /** The new database's URL. */
  url: string;
  /** Drops the database, ending any connection left open to it. */
  drop(): Promise<void>;
}

/** Creates an empty database `tripline_test_<random>` on the test server. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `tripline_test_${randomBytes(6).toString('hex')}`;
  await onServer((client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(POSTGRES_SERVER_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await onServer((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}
