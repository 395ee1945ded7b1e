import type { IncomingMessage, RequestListener, Server } from 'node:http';
import { type DocumentNode, type ExecutionArgs, GraphQLError } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, useReadinessCheck } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import {
  type AppDeps,
  authorizationFromConnectionParams,
  type Context,
  createContext,
} from './context.js';
import {
  createDeliveryEngine,
  type DeliveryEngine,
  type DeliveryEngineDeps,
} from './delivery/engine.js';
import { renderOfflineGraphiQL, useGraphiQLAssets } from './graphiql.js';
import { createMemoryRateLimitStore, useMutationRateLimits } from './limits/rate-limit.js';
import { batchingOption, useRequestLimits } from './limits/request-limits.js';
import { publishRunUpdate } from './modules/runs/service.js';
import { useObservability } from './observability/http.js';
import { createMetrics } from './observability/metrics.js';
import { readQueueDepth } from './observability/queue-depth.js';
import { createTelemetry, type Telemetry } from './observability/telemetry.js';
import { usePersistedQueries } from './protocols/persisted-queries.js';
import { useSingleConnectionSSE } from './protocols/sse.js';
import { schema } from './schema.js';

export interface AppOptions {
  /** Test seams of the delivery engine: jitter source and worker name. */
  delivery?: Pick<DeliveryEngineDeps, 'random' | 'workerId'>;
}

export interface App {
  /** The GraphQL server; `yoga.fetch` serves requests in process (tests use it). */
  yoga: ReturnType<typeof createYoga<Record<string, unknown>, Context>>;
  /** Node request listener for `/graphql` (HTTP and server-sent events), `/healthz`, `/readyz`. */
  handle: RequestListener;
  engine: DeliveryEngine;
  /** The metrics (when `TRIPLINE_METRICS` is on) and tracer (when tracing is on) of this app. */
  telemetry: Telemetry;
  /** Serves graphql-ws on `server`'s WebSocket upgrades to `/graphql`. */
  attach(server: Server): void;
  /** Starts the delivery engine and wakes it whenever runs are queued. */
  start(): void;
  /**
   * Stops: `/readyz` answers 503, the engine claims nothing more and gives in-flight attempts
   * `graceMs` to finish before releasing them, WebSocket clients are closed. The caller closes
   * the HTTP server and the database afterwards.
   */
  stop(graceMs: number): Promise<void>;
}

/** The `Authorization` value of a request, from HTTP headers or graphql-ws connection params. */
function authorizationOf(initial: Record<string, unknown>): string | undefined {
  const request = initial.request as Request | undefined;
  if (request?.headers) return request.headers.get('authorization') ?? undefined;
  const fromParams = authorizationFromConnectionParams(initial.connectionParams);
  if (fromParams !== undefined) return fromParams;
  const upgrade = (initial.extra as { request?: IncomingMessage } | undefined)?.request;
  return upgrade?.headers.authorization;
}

/**
 * Builds the application around injected dependencies. It owns no process state: the caller
 * opens the database, listens, and stops.
 */
export function createApp(given: AppDeps, options: AppOptions = {}): App {
  const telemetry =
    given.telemetry ??
    createTelemetry({
      ...(given.config.metrics.enabled
        ? { metrics: createMetrics(() => readQueueDepth(given.db, given.clock.now())) }
        : {}),
      ...(given.tracer ? { tracer: given.tracer } : {}),
    });
  const deps: AppDeps = { ...given, telemetry };
  let stopping = false;
  const yoga = createYoga<Record<string, unknown>, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    healthCheckEndpoint: '/healthz',
    landingPage: false,
    batching: batchingOption(deps.config.limits),
    // One context factory for HTTP, SSE and WebSocket, so auth behaves the same on all three.
    context: (initial) => createContext(deps, authorizationOf(initial)),
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
    renderGraphiQL: renderOfflineGraphiQL,
    plugins: [
      useObservability({
        logger: deps.logger,
        graphqlEndpoint: '/graphql',
        ...(telemetry.metrics ? { metrics: telemetry.metrics } : {}),
        ...(deps.config.metrics.token ? { metricsToken: deps.config.metrics.token } : {}),
        ...(telemetry.tracer ? { tracer: telemetry.tracer } : {}),
      }),
      useGraphiQLAssets(),
      useReadinessCheck({
        endpoint: '/readyz',
        check: async () => {
          if (stopping) return false;
          await deps.storage.ping();
          return true;
        },
      }),
      useSingleConnectionSSE(deps),
      usePersistedQueries(deps),
      useRequestLimits(deps.config),
      useMutationRateLimits(
        deps.config.rateLimits,
        createMemoryRateLimitStore(),
        telemetry.metrics?.rateLimited,
      ),
    ],
  });

  const engine = createDeliveryEngine({
    store: deps.storage.delivery,
    secretBox: deps.secretBox,
    clock: deps.clock,
    logger: deps.logger,
    config: deps.config.delivery,
    onRunUpdated: (runId, status) => publishRunUpdate(deps, runId, status),
    telemetry,
    ...(deps.lookup ? { lookup: deps.lookup } : {}),
    ...options.delivery,
  });

  const sockets: WebSocketServer[] = [];
  let queuedRuns: AsyncGenerator<unknown> | undefined;

  return {
    yoga,
    handle: yoga as unknown as RequestListener,
    engine,
    telemetry,
    attach(server) {
      const wss = new WebSocketServer({
        server,
        path: yoga.graphqlEndpoint,
        maxPayload: deps.config.maxRequestBytes,
      });
      sockets.push(wss);
      useServer<Record<string, unknown>, Record<string, unknown>>(
        {
          onConnect: async (ctx) => {
            // Refuse a bad key at connection time, before any subscription starts.
            try {
              await createContext(deps, authorizationOf(ctx as unknown as Record<string, unknown>));
              return true;
            } catch {
              return false;
            }
          },
          execute: (args) =>
            (args.rootValue as { execute: (a: ExecutionArgs) => unknown }).execute(args) as never,
          subscribe: (args) =>
            (args.rootValue as { subscribe: (a: ExecutionArgs) => unknown }).subscribe(
              args,
            ) as never,
          onSubscribe: async (ctx, _id, params) => {
            const enveloped = yoga.getEnveloped({
              ...ctx,
              req: ctx.extra.request,
              socket: ctx.extra.socket,
              params,
            });
            let document: DocumentNode;
            try {
              document = enveloped.parse(params.query);
            } catch (error) {
              // A syntax error or a parse-time limit is the client's: answer it, keep the socket.
              if (error instanceof GraphQLError) return [error];
              throw error;
            }
            const args: ExecutionArgs = {
              schema: enveloped.schema,
              operationName: params.operationName ?? null,
              document,
              variableValues: params.variables ?? null,
              contextValue: await enveloped.contextFactory(),
              rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
            };
            const errors = enveloped.validate(args.schema, args.document);
            return errors.length > 0 ? errors : args;
          },
        },
        wss,
      );
    },
    start() {
      engine.start();
      const stream = deps.pubsub.subscribe('triggeredRunUpdated');
      queuedRuns = stream;
      void (async () => {
        for await (const run of stream) {
          if (run.status === 'QUEUED') engine.wake();
          telemetry.metrics?.runStatusChanged(run.status);
        }
      })();
    },
    async stop(graceMs) {
      stopping = true;
      await queuedRuns?.return(undefined);
      await engine.stop(graceMs);
      for (const wss of sockets) {
        for (const client of wss.clients) client.close(1001, 'Server stopping');
        await new Promise<void>((resolve) => wss.close(() => resolve()));
      }
    },
  };
}
