import type { Tracer } from '@opentelemetry/api';
import { createGraphQLError } from 'graphql-yoga';
import type { SharedBus } from './bus/bus.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { Lookup } from './delivery/ssrf.js';
import type { Logger } from './logger.js';
import type { SecretBox } from './modules/secrets/box.js';
import type { DecryptedSecrets } from './modules/secrets/decrypted.js';
import type { AccessCache } from './modules/users/access-cache.js';
import { authenticate, type Viewer } from './modules/users/service.js';
import type { Telemetry } from './observability/telemetry.js';
import type { TriplinePubSub } from './pubsub.js';
import type { Storage } from './storage/storage.js';

/** Everything a service needs, passed in so tests can supply their own. */
export interface AppDeps {
  /** Every read and write of the data. */
  storage: Storage;
  /**
   * Keys and memberships in memory: authentication and access checks, invalidated by the
   * services that change them (`createAccessCache` over the same storage).
   */
  access: AccessCache;
  secretBox: SecretBox;
  /** Decrypted secret values by version, for deliveries; built on `secretBox`. */
  decrypted: DecryptedSecrets;
  clock: Clock;
  logger: Logger;
  config: Config;
  /** Carries run status changes to subscribers and to the delivery engine. */
  pubsub: TriplinePubSub;
  /**
   * What the instances of a deployment share (src/bus): when given, `pubsub` must be
   * `bus.pubsub`, and `createApp` takes rate limits from it and shares `access` through it.
   * Absent, everything stays in this process, as with `createInProcessBus`.
   */
  bus?: SharedBus;
  /** DNS resolver for outbound requests (the SSRF guard checks what it returns); the system's by default. */
  lookup?: Lookup;
  /** Where tracing spans go; set by the process when tracing is on (see observability/tracing.ts). */
  tracer?: Tracer;
  /**
   * Metrics and spans for services and the delivery engine to report to. `createApp` sets it
   * from `config.metrics` and `tracer`; absent, nothing is reported.
   */
  telemetry?: Telemetry;
}

export interface Context {
  deps: AppDeps;
  viewer: Viewer;
}

/**
 * Builds the request context from an `Authorization` header value, for HTTP and WebSocket
 * alike. Rejects with a GraphQL error with code `UNAUTHENTICATED` (HTTP 401) when the header is
 * missing, malformed, or names an unknown or revoked key. Returns the context itself, not a
 * promise, when the key is known in memory (see `AccessCache.authenticate`); it never throws.
 */
export function createContext(
  deps: AppDeps,
  authorization: string | null | undefined,
): Context | Promise<Context> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  if (!match?.[1]) {
    return Promise.reject(
      unauthenticated('Authentication required: send an API key as `Authorization: Bearer <key>`.'),
    );
  }
  const viewer = authenticate(deps, match[1]);
  if (!(viewer instanceof Promise)) return { deps, viewer };
  return viewer.then((found) => {
    if (!found) throw unauthenticated('The API key is unknown or has been revoked.');
    return { deps, viewer: found };
  });
}

/**
 * The `Authorization` value a graphql-ws client put in its `connectionParams`: under
 * `authorization` in any letter case, or inside a `headers` object as Apollo Client and Hasura
 * users send it (`{ headers: { Authorization: 'Bearer …' } }`). Undefined when there is none.
 */
export function authorizationFromConnectionParams(params: unknown): string | undefined {
  const headers = typeof params === 'object' && params !== null && 'headers' in params;
  return authorizationIn(params) ?? (headers ? authorizationIn(params.headers) : undefined);
}

function authorizationIn(record: unknown): string | undefined {
  if (typeof record !== 'object' || record === null) return undefined;
  for (const [name, value] of Object.entries(record)) {
    if (name.toLowerCase() === 'authorization' && typeof value === 'string') return value;
  }
  return undefined;
}

function unauthenticated(message: string) {
  return createGraphQLError(message, {
    extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
  });
}
