import type { IncomingMessage, RequestListener, Server } from 'node:http';
import { createYoga } from 'graphql-yoga';
import {
  type AppDeps,
  authorizationFromConnectionParams,
  type Context,
  createContext,
} from './context.js';
import { useDashboard } from './dashboard.js';
import {
  createDeliveryEngine,
  type DeliveryEngine,
  type DeliveryEngineDeps,
} from './delivery/engine.js';
import { renderOfflineGraphiQL, useGraphiQLAssets } from './graphiql.js';
import { createMemoryRateLimitStore, useMutationRateLimits } from './limits/rate-limit.js';
import { batchingOption, useRequestLimits } from './limits/request-limits.js';
import { publishRuns, runUpdate } from './modules/runs/service.js';
import { useObservability } from './observability/http.js';
import { createMetrics } from './observability/metrics.js';
import { useReadiness } from './observability/readiness.js';
import { createTelemetry, type Telemetry } from './observability/telemetry.js';
import { usePersistedQueries } from './protocols/persisted-queries.js';
import { useSingleConnectionSSE } from './protocols/sse.js';
import { schema } from './schema.js';
import { createSubscriptionHub, type SubscriptionHub } from './subscriptions/hub.js';
import { useSharedSubscriptions } from './subscriptions/sse.js';
import { type GraphQLWebSocketServer, serveGraphQLOverWebSocket } from './subscriptions/ws.js';

export interface AppOptions {
  /** Test seams of the delivery engine: jitter source and worker name. */
  delivery?: Pick<DeliveryEngineDeps, 'random' | 'workerId'>;
}

export interface App {
  /** The GraphQL server; `yoga.fetch` serves requests in process (tests use it). */
  yoga: ReturnType<typeof createYoga<Record<string, unknown>, Context>>;
  /**
   * Node request listener for `/graphql` (HTTP and server-sent events), `/healthz`, `/readyz`, and
   * the dashboard at `/`.
   */
  handle: RequestListener;
  engine: DeliveryEngine;
  /** Shares subscription executions; `hub.size` counts subscribers. */
  hub: SubscriptionHub;
  /** The metrics (when `TRIPLINE_METRICS` is on) and tracer (when tracing is on) of this app. */
  telemetry: Telemetry;
  /** Serves graphql-ws on `server`'s WebSocket upgrades to `/graphql`. */
  attach(server: Server): void;
  /**
   * Starts the delivery engine and wakes it whenever runs are queued (on any instance, with a
   * shared bus).
   */
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
        ? {
            metrics: createMetrics(
              () => given.storage.delivery.queueDepth(given.clock.now()),
              given.bus?.state,
            ),
          }
        : {}),
      ...(given.tracer ? { tracer: given.tracer } : {}),
    });
  const deps: AppDeps = { ...given, telemetry };
  let stopping = false;
  // Fan-out: subscriptions (graphql-ws and SSE) share executions through the hub.
  const hub = createSubscriptionHub(deps.logger);
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
      useDashboard(),
      useReadiness({
        endpoint: '/readyz',
        check: async (fetchAPI) => {
          if (stopping) return false;
          await deps.storage.ping();
          const bus = deps.bus?.state();
          if (bus?.kind === 'redis' && !bus.connected) {
            return new fetchAPI.Response(
              `Not ready: Redis is unreachable since ${new Date(bus.since).toISOString()}; reconnecting (see the logs).\n`,
              { status: 503, headers: { 'content-type': 'text/plain' } },
            );
          }
          return true;
        },
      }),
      useSingleConnectionSSE(deps),
      usePersistedQueries(deps),
      useRequestLimits(deps.config),
      useMutationRateLimits(
        deps.config.rateLimits,
        deps.bus?.rateLimits ?? createMemoryRateLimitStore(),
        telemetry.metrics?.rateLimited,
      ),
      useSharedSubscriptions(hub),
    ],
  });

  const engine = createDeliveryEngine({
    store: deps.storage.delivery,
    decrypted: deps.decrypted,
    clock: deps.clock,
    logger: deps.logger,
    config: deps.config.delivery,
    onRunUpdated: (run) => publishRuns(deps, [runUpdate(run)]),
    telemetry,
    ...(deps.lookup ? { lookup: deps.lookup } : {}),
    ...options.delivery,
  });

  const unshareAccess = deps.bus?.shareAccess(deps.access);
  const sockets: GraphQLWebSocketServer[] = [];
  /** Stops the engine's wake on queued runs (see `start`). */
  let stopWaking: (() => void) | undefined;

  return {
    yoga,
    handle: yoga as unknown as RequestListener,
    engine,
    hub,
    telemetry,
    attach(server) {
      sockets.push(
        serveGraphQLOverWebSocket({
          server,
          path: yoga.graphqlEndpoint,
          maxPayload: deps.config.maxRequestBytes,
          yoga,
          hub,
          logger: deps.logger,
          ...(telemetry.metrics
            ? {
                subscribers: {
                  joined: () => telemetry.metrics?.subscriberJoined('websocket'),
                  left: () => telemetry.metrics?.subscriberLeft('websocket'),
                },
              }
            : {}),
          // Refuse a bad key at connection time, before any subscription starts.
          connect: async (initial) => {
            try {
              await createContext(
                deps,
                authorizationOf(initial as unknown as Record<string, unknown>),
              );
              return true;
            } catch {
              return false;
            }
          },
        }),
      );
    },
    start() {
      engine.start();
      // With a shared bus, runs queued by every instance: each wakes every engine. Their
      // actions let the engine skip the claim when it would pass all of them over.
      stopWaking = deps.pubsub.listen('runsUpdated', (runs) => {
        try {
          const queued = runs.filter((run) => run.status === 'QUEUED');
          if (queued.length > 0) engine.wake(queued.map((run) => run.actionId));
        } catch (error) {
          deps.logger.error({ err: error }, 'waking the delivery engine failed');
        }
      });
    },
    async stop(graceMs) {
      stopping = true;
      stopWaking?.();
      await engine.stop(graceMs);
      for (const wss of sockets) await wss.close();
      hub.close();
      unshareAccess?.();
    },
  };
}
