import { resolve } from 'node:path';
import { parseMasterKey } from './modules/secrets/box.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface RetryPolicy {
  /** Total tries per run, the first included. */
  maxAttempts: number;
  /** Delay before the second try; each later delay doubles, with full jitter. */
  baseDelayMs: number;
  /** No computed delay exceeds this. */
  maxDelayMs: number;
  /** A receiver's `Retry-After` is honoured up to this bound. */
  maxRetryAfterMs: number;
}

export interface DeliveryConfig {
  retry: RetryPolicy;
  /**
   * The deadline of one attempt, from the start of the request (DNS lookup, connect, sending,
   * response headers) to the last byte of the response body; it is then aborted as `TIMEOUT`.
   */
  timeoutMs: number;
  /** Runs executed at once by this process. */
  concurrency: number;
  /**
   * How long a claimed run stays claimed before another worker may take it; more than
   * {@link worstCaseAttemptMs}, so no live attempt outlives its lease.
   */
  leaseMs: number;
  /** How often the engine looks for due runs when nothing woke it. */
  pollIntervalMs: number;
  /** Bytes of a response body kept on an attempt. */
  maxStoredResponseBytes: number;
  /** Bytes of a rendered payload; larger payloads fail the run. */
  maxPayloadBytes: number;
  /** Hosts and CIDR ranges outbound requests may reach even though they are private. */
  allowList: string[];
  /** Refuse plain `http://` destinations. */
  httpsOnly: boolean;
}

/** Bounds on one GraphQL request, checked before anything executes. */
export interface RequestLimits {
  /** Deepest nesting of selections in an operation; introspection is not counted. */
  maxDepth: number;
  /**
   * Largest estimated cost of an operation (see limits/query-cost.ts): objects 2, scalars 1,
   * ×1.5 per level, × the page size of paged fields from literals or variables (the default
   * page of 20 when neither `first` nor `last` is given).
   */
  maxCost: number;
  /** Aliased fields in an operation. */
  maxAliases: number;
  /** Lexical tokens in a document; variables do not count. */
  maxTokens: number;
  /** Directives in an operation. */
  maxDirectives: number;
  /** Operations in one batched (JSON array) HTTP request; 0 turns batching off. */
  maxBatchOperations: number;
}

/** Mutations each API key may run per minute, as a token bucket; 0 turns a limit off. */
export interface RateLimits {
  /** Every mutation field except `emitArtifactEvent`. */
  mutationsPerMinute: number;
  /** `emitArtifactEvent` fields. */
  eventsPerMinute: number;
}

/** `/metrics`, in the Prometheus text format. */
export interface MetricsConfig {
  /** Serve `/metrics` and keep the figures it shows; off answers 404 and measures nothing. */
  enabled: boolean;
  /** When set, reading `/metrics` takes `Authorization: Bearer <token>`. */
  token: string | undefined;
}

/**
 * OpenTelemetry tracing, from the standard `OTEL_*` variables. The exporter reads the rest of
 * them itself (headers, timeout, compression, certificates); the resource reads
 * `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, the sampler `OTEL_TRACES_SAMPLER`.
 */
export interface TracingConfig {
  /**
   * On when an OTLP endpoint is named (`OTEL_EXPORTER_OTLP_ENDPOINT` or
   * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp`, unless
   * `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. Off, nothing is loaded or measured.
   */
  enabled: boolean;
  /** OTLP over HTTP: protobuf (the OpenTelemetry default) or JSON. */
  protocol: 'http/protobuf' | 'http/json';
}

/**
 * Redis, for what several instances of the server share (see src/bus): run updates for
 * subscriptions, rate-limit buckets, access-cache invalidations and delivery wake-ups.
 */
export interface RedisConfig {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://…` for TLS. */
  url: string;
  /** Put before every key and channel name, so several deployments can share one Redis. */
  prefix: string;
}

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** The SQLite database, used when {@link Config.databaseUrl} is unset. */
  databaseFile: string;
  /**
   * A PostgreSQL connection URL (`postgres://` or `postgresql://`, TRIPLINE_DATABASE_URL): when
   * set, Tripline keeps its data there instead of in {@link Config.databaseFile}.
   */
  databaseUrl: string | undefined;
  /** The most PostgreSQL connections this process opens (TRIPLINE_DATABASE_POOL_SIZE). */
  databasePoolSize: number;
  /** Base64 or hex master key given directly, when set. */
  encryptionKey: string | undefined;
  /** File holding the master key; generated with mode 0600 when absent. */
  encryptionKeyFile: string;
  /** Bootstrap admin key to use instead of a generated one. */
  adminApiKey: string | undefined;
  logLevel: LogLevel;
  introspection: boolean;
  maxRequestBytes: number;
  /**
   * Bytes of query text (and hashes) the automatic persisted query store keeps; the least
   * recently used queries are dropped past it.
   */
  persistedQueriesMaxBytes: number;
  limits: RequestLimits;
  rateLimits: RateLimits;
  shutdownGraceMs: number;
  delivery: DeliveryConfig;
  metrics: MetricsConfig;
  tracing: TracingConfig;
  /** Absent (no `TRIPLINE_REDIS_URL`): one instance, everything shared in process. */
  redis: RedisConfig | undefined;
}

export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    /** The settings as read, with defaults in place of the invalid values. */
    readonly config: Config,
  ) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/**
 * What a lease must cover beyond an attempt's deadline: the claim, loading the run and its
 * secrets, rendering the payload (at most TRIPLINE_PAYLOAD_MAX_BYTES) and writing the attempt's
 * start and end, which together take milliseconds, plus room for a busy event loop and for clock
 * drift between servers sharing a database. A second is ample for all of it.
 */
export const LEASE_MARGIN_MS = 1_000;

/** The longest one attempt can hold its run: the deadline plus {@link LEASE_MARGIN_MS}. */
export function worstCaseAttemptMs(delivery: Pick<DeliveryConfig, 'timeoutMs'>): number {
  return delivery.timeoutMs + LEASE_MARGIN_MS;
}

/**
 * Reads the OpenTelemetry variables this server acts on, as the OpenTelemetry specification
 * defines them, adding a problem for each value it cannot honour.
 */
function tracingConfig(env: Env, problems: string[]): TracingConfig {
  const disabled = env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true';
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  for (const exporter of exporters) {
    if (exporter !== 'otlp' && exporter !== 'none') {
      problems.push(
        `OTEL_TRACES_EXPORTER must be otlp or none, got "${exporter}" (standard output carries JSON log lines only, so the console exporter is not offered)`,
      );
    }
  }
  for (const name of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) {
    const raw = env[name];
    if (!raw) continue;
    if (!URL.canParse(raw) || !/^https?:$/.test(new URL(raw).protocol)) {
      problems.push(`${name} must be an http:// or https:// URL, got "${raw}"`);
    }
  }
  const protocolVariable = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
    ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
    : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = (env[protocolVariable] || 'http/protobuf').trim().toLowerCase();
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    problems.push(
      `${protocolVariable} must be http/protobuf or http/json, got "${env[protocolVariable]}" (OTLP over gRPC is not offered)`,
    );
  }
  const named =
    Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) ||
    exporters.includes('otlp');
  return {
    enabled: named && !disabled && !exporters.includes('none'),
    protocol: protocol === 'http/json' ? 'http/json' : 'http/protobuf',
  };
}

/** Key prefixes: printable ASCII without spaces, short enough to leave room for the key. */
const REDIS_PREFIX = /^[\x21-\x7e]{1,64}$/;

/**
 * Reads `TRIPLINE_REDIS_URL` and `TRIPLINE_REDIS_PREFIX`, adding a problem for each value that
 * cannot work. The URL's password is never repeated in a message.
 */
function redisConfig(env: Env, problems: string[]): RedisConfig | undefined {
  const raw = env.TRIPLINE_REDIS_URL?.trim();
  const prefix = env.TRIPLINE_REDIS_PREFIX ?? 'tripline:';
  if (!REDIS_PREFIX.test(prefix)) {
    problems.push(
      `TRIPLINE_REDIS_PREFIX must be 1 to 64 printable characters without spaces (such as "tripline:" or "tripline-staging:"), got "${prefix}"`,
    );
  }
  if (!raw) return undefined;
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (!url || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || !url.hostname) {
    const shown = url ? `${url.protocol}//${url.host}${url.pathname}` : 'a value that is not a URL';
    problems.push(
      `TRIPLINE_REDIS_URL must be a redis:// or rediss:// (TLS) URL with a host, such as redis://127.0.0.1:6379/0, got ${shown}`,
    );
    return undefined;
  }
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,2}$/.test(db)) {
    problems.push(
      `TRIPLINE_REDIS_URL must name a database by number after the host (redis://host:6379/0), got "/${db}"`,
    );
  }
  return { url: raw, prefix };
}

/** TRIPLINE_DATABASE_URL, when it names a PostgreSQL database; a problem for anything else. */
function databaseUrl(env: Env, problems: string[]): string | undefined {
  const raw = env.TRIPLINE_DATABASE_URL;
  if (raw === undefined || raw === '') return undefined;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')) {
    // Not the value: it may carry a password.
    problems.push(
      'TRIPLINE_DATABASE_URL must be a PostgreSQL URL such as postgres://user:password@host:5432/tripline (postgres:// or postgresql://); leave it unset to keep the SQLite database in TRIPLINE_DATA_DIR',
    );
    return undefined;
  }
  return raw;
}

const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * Reads every setting from `env`, applying the documented defaults. Throws a ConfigError that
 * lists every invalid variable at once, so an operator fixes them in one go.
 */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const int = (name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  };
  const bool = (name: string, fallback: boolean) => {
    const raw = env[name]?.toLowerCase();
    if (raw === undefined || raw === '') return fallback;
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
    if (['0', 'false', 'no', 'off'].includes(raw)) return false;
    problems.push(`${name} must be true or false, got "${env[name]}"`);
    return fallback;
  };
  const list = (name: string) =>
    (env[name] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);

  const dataDir = resolve(env.TRIPLINE_DATA_DIR || './data');
  const logLevel = (env.LOG_LEVEL || 'info').toLowerCase() as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${env.LOG_LEVEL}"`);
  }
  if (env.TRIPLINE_ENCRYPTION_KEY) {
    try {
      parseMasterKey(env.TRIPLINE_ENCRYPTION_KEY);
    } catch {
      // Never the value itself: it is the key to every secret.
      problems.push(
        `TRIPLINE_ENCRYPTION_KEY must be 32 bytes written as 64 hex characters or as base64 (\`openssl rand -base64 32\` makes one), got ${env.TRIPLINE_ENCRYPTION_KEY.length} characters that are neither`,
      );
    }
  }
  const config: Config = {
    port: int('PORT', 4000, 0, 65535),
    host: env.HOST || '127.0.0.1',
    dataDir,
    databaseFile: resolve(dataDir, 'tripline.db'),
    databaseUrl: databaseUrl(env, problems),
    databasePoolSize: int('TRIPLINE_DATABASE_POOL_SIZE', 10, 1, 1000),
    encryptionKey: env.TRIPLINE_ENCRYPTION_KEY || undefined,
    encryptionKeyFile: resolve(env.TRIPLINE_ENCRYPTION_KEY_FILE || resolve(dataDir, 'master.key')),
    adminApiKey: env.TRIPLINE_ADMIN_API_KEY || undefined,
    logLevel,
    introspection: bool('TRIPLINE_INTROSPECTION', true),
    maxRequestBytes: int('TRIPLINE_MAX_REQUEST_BYTES', 1024 * 1024, 1024),
    persistedQueriesMaxBytes: int('TRIPLINE_PERSISTED_QUERIES_MAX_BYTES', 8 * 1024 * 1024, 1024),
    limits: {
      maxDepth: int('TRIPLINE_MAX_QUERY_DEPTH', 12, 1),
      maxCost: int('TRIPLINE_MAX_QUERY_COST', 50_000, 1),
      maxAliases: int('TRIPLINE_MAX_QUERY_ALIASES', 30, 0),
      maxTokens: int('TRIPLINE_MAX_QUERY_TOKENS', 2_000, 1),
      maxDirectives: int('TRIPLINE_MAX_QUERY_DIRECTIVES', 50, 0),
      maxBatchOperations: int('TRIPLINE_MAX_BATCH_OPERATIONS', 10, 0, 1000),
    },
    rateLimits: {
      mutationsPerMinute: int('TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE', 600, 0),
      eventsPerMinute: int('TRIPLINE_RATE_LIMIT_EVENTS_PER_MINUTE', 6_000, 0),
    },
    shutdownGraceMs: int('TRIPLINE_SHUTDOWN_GRACE_MS', 10_000, 0),
    delivery: {
      retry: {
        maxAttempts: int('TRIPLINE_RETRY_MAX_ATTEMPTS', 12, 1, 100),
        baseDelayMs: int('TRIPLINE_RETRY_BASE_DELAY_MS', 5_000, 0),
        maxDelayMs: int('TRIPLINE_RETRY_MAX_DELAY_MS', 60 * 60_000, 0),
        maxRetryAfterMs: int('TRIPLINE_RETRY_AFTER_MAX_MS', 60 * 60_000, 0),
      },
      timeoutMs: int('TRIPLINE_DELIVERY_TIMEOUT_MS', 10_000, 1, 3_600_000),
      concurrency: int('TRIPLINE_DELIVERY_CONCURRENCY', 8, 1, 1000),
      leaseMs: int('TRIPLINE_DELIVERY_LEASE_MS', 60_000, 1_000),
      pollIntervalMs: int('TRIPLINE_DELIVERY_POLL_MS', 1_000, 10),
      maxStoredResponseBytes: int('TRIPLINE_RESPONSE_BODY_MAX_BYTES', 4096, 0),
      maxPayloadBytes: int('TRIPLINE_PAYLOAD_MAX_BYTES', 256 * 1024, 1024),
      allowList: list('TRIPLINE_OUTBOUND_ALLOW'),
      httpsOnly: bool('TRIPLINE_OUTBOUND_HTTPS_ONLY', false),
    },
    metrics: {
      enabled: bool('TRIPLINE_METRICS', true),
      token: env.TRIPLINE_METRICS_TOKEN || undefined,
    },
    tracing: tracingConfig(env, problems),
    redis: redisConfig(env, problems),
  };
  if (config.metrics.token !== undefined && !/^[\x21-\x7e]{16,}$/.test(config.metrics.token)) {
    problems.push(
      'TRIPLINE_METRICS_TOKEN must be at least 16 printable characters without spaces (e.g. `openssl rand -hex 32`)',
    );
  }
  if (config.delivery.retry.maxDelayMs < config.delivery.retry.baseDelayMs) {
    problems.push('TRIPLINE_RETRY_MAX_DELAY_MS must not be below TRIPLINE_RETRY_BASE_DELAY_MS');
  }
  const { leaseMs, timeoutMs } = config.delivery;
  if (leaseMs <= worstCaseAttemptMs(config.delivery)) {
    problems.push(
      `TRIPLINE_DELIVERY_LEASE_MS (${leaseMs}) must exceed TRIPLINE_DELIVERY_TIMEOUT_MS (${timeoutMs}) plus ${LEASE_MARGIN_MS} ms, the longest one attempt can hold a run; otherwise another server may deliver the run while the attempt is still in flight. Raise the lease above ${worstCaseAttemptMs(config.delivery)} or lower the timeout.`,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems, config);
  return config;
}
