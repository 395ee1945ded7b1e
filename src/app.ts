import type { RequestListener } from 'node:http';
import { sql } from 'drizzle-orm';
import { createYoga, useReadinessCheck } from 'graphql-yoga';
import { type AppDeps, type Context, createContext } from './context.js';
import { schema } from './schema.js';

export interface App {
  /** The GraphQL server; `yoga.fetch` serves requests in process (tests use it). */
  yoga: ReturnType<typeof createYoga<Record<string, unknown>, Context>>;
  /** Node request listener for `/graphql`, `/healthz` and `/readyz`. */
  handle: RequestListener;
  /** Marks the app as stopping: `/readyz` answers 503 from now on. */
  beginShutdown(): void;
}

/**
 * Builds the HTTP application around injected dependencies. It owns no process state: the
 * caller opens the database, listens, and stops.
 */
export function createApp(deps: AppDeps): App {
  let stopping = false;
  const yoga = createYoga<Record<string, unknown>, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    healthCheckEndpoint: '/healthz',
    landingPage: false,
    context: ({ request }) => createContext(deps, request.headers.get('authorization')),
    logging: {
      debug: (...args) => deps.logger.debug({ args }, 'yoga'),
      info: (...args) => deps.logger.info({ args }, 'yoga'),
      warn: (...args) => deps.logger.warn({ args }, 'yoga'),
      error: (...args) => deps.logger.error({ args }, 'yoga'),
    },
    graphiql: {
      title: 'Tripline',
      headers: JSON.stringify({ Authorization: 'Bearer <your API key>' }),
    },
    plugins: [
      useReadinessCheck({
        endpoint: '/readyz',
        check: () => {
          if (stopping) return false;
          deps.db.get(sql`select 1`);
          return true;
        },
      }),
    ],
  });
  return {
    yoga,
    handle: yoga as unknown as RequestListener,
    beginShutdown: () => {
      stopping = true;
    },
  };
}
