import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type LabelValues,
  Registry,
} from 'prom-client';
import type { BusState } from '../bus/bus.js';
import type { DeliveryOutcome } from '../delivery/send.js';
import type { QueueDepth } from '../storage/delivery.js';
import type { RunStatus } from '../storage/sqlite/schema.js';

/** How a GraphQL request ended, as the `outcome` label says it. */
export type RequestOutcome = 'success' | 'error' | 'rejected' | 'failed';

/** What kind of operation a request ran; `unknown` when none was chosen (it did not parse). */
export type OperationType = 'query' | 'mutation' | 'subscription' | 'batch' | 'unknown';

/** The transport a subscriber is connected through. */
export type SubscriberTransport = 'websocket' | 'http';

/** Which rate limit refused a request. */
export type RateLimitName = 'mutations' | 'events';

/**
 * The figures `/metrics` shows for one app. Every method is cheap enough for a hot path: label
 * sets are bounded and their series are looked up once and kept.
 */
export interface Metrics {
  /** The Prometheus text exposition: this app's figures and the process's. */
  render(): Promise<string>;
  readonly contentType: string;
  /** One GraphQL HTTP request, timed from its arrival to its response's headers. */
  observeRequest(
    operationName: string | undefined,
    type: OperationType,
    outcome: RequestOutcome,
    seconds: number,
  ): void;
  eventIngested(eventType: string): void;
  runStatusChanged(status: RunStatus): void;
  /** One delivery attempt that ended (an attempt aborted by a stop is not one). */
  attemptEnded(outcome: DeliveryOutcome): void;
  leaseExpired(): void;
  rateLimited(limit: RateLimitName): void;
  subscriberJoined(transport: SubscriberTransport): void;
  subscriberLeft(transport: SubscriberTransport): void;
}

/**
 * Distinct operation names kept as labels; later new names are counted as `other`. Names come
 * from clients, so without a bound one client could grow the series without end.
 */
export const MAX_OPERATION_NAMES = 200;

const OUTCOMES: readonly RequestOutcome[] = ['success', 'error', 'rejected', 'failed'];
const TYPES: readonly OperationType[] = ['query', 'mutation', 'subscription', 'batch', 'unknown'];

let processRegistry: Registry | undefined;

/**
 * The usual process figures (CPU, memory, heap, event-loop lag, GC, handles), collected once per
 * process however many apps it runs, since they describe the process.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * The `outcome` and `error_class` labels of an attempt: `success` for a 2xx; `http_error` with
 * `HTTP_3XX`, `HTTP_4XX` or `HTTP_5XX` for another status; `no_response` with the attempt's error
 * class (`TIMEOUT`, `NETWORK_ERROR`, …) when no answer came. A no-op action's attempt, which
 * sends nothing and succeeds, is a `success`.
 */
export function attemptLabels(outcome: DeliveryOutcome): {
  outcome: 'success' | 'http_error' | 'no_response';
  errorClass: string;
} {
  if (outcome.noOp) return { outcome: 'success', errorClass: 'none' };
  if (outcome.errorClass !== undefined) {
    return { outcome: 'no_response', errorClass: outcome.errorClass };
  }
  const code = outcome.statusCode ?? 0;
  if (code >= 200 && code < 300) return { outcome: 'success', errorClass: 'none' };
  return { outcome: 'http_error', errorClass: `HTTP_${Math.floor(code / 100)}XX` };
}

/**
 * Creates the app's metrics in a registry of its own; `readQueue` is called at each scrape for
 * the delivery queue's figures.
 */
export function createMetrics(
  readQueue: () => Promise<QueueDepth>,
  readBus?: () => BusState,
): Metrics {
  const registry = new Registry();
  const registers = [registry];

  const requests = new Histogram({
    name: 'tripline_graphql_request_duration_seconds',
    help: 'GraphQL HTTP requests, from arrival to response headers, by operation name, operation type and outcome (success; error: GraphQL errors in the answer; rejected: HTTP 4xx; failed: HTTP 5xx). Its _count is the number of requests.',
    labelNames: ['operation_name', 'operation_type', 'outcome'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const events = new Counter({
    name: 'tripline_events_ingested_total',
    help: 'Artifact events stored by emitArtifactEvent (idempotent replays not counted), by event type.',
    labelNames: ['event_type'] as const,
    registers,
  });
  const statusChanges = new Counter({
    name: 'tripline_run_status_changes_total',
    help: 'Triggered-run status changes published by this server, by the status entered; rate() of SUCCEEDED, FAILED and SKIPPED is runs finished per second.',
    labelNames: ['status'] as const,
    registers,
  });
  const attempts = new Counter({
    name: 'tripline_delivery_attempts_total',
    help: 'Delivery attempts that ended, by outcome (success, http_error, no_response) and error class (none, HTTP_4XX…, TIMEOUT, NETWORK_ERROR…).',
    labelNames: ['outcome', 'error_class'] as const,
    registers,
  });
  const attemptSeconds = new Histogram({
    name: 'tripline_delivery_attempt_duration_seconds',
    help: 'Duration of delivery attempts, from the request to the end of the response body, by outcome.',
    labelNames: ['outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const leases = new Counter({
    name: 'tripline_delivery_leases_expired_total',
    help: 'Runs this server took over after their lease expired with an attempt unfinished (its server crashed, was killed or stalled).',
    registers,
  });
  const refusals = new Counter({
    name: 'tripline_rate_limited_total',
    help: 'Requests refused by a rate limit (HTTP 429), by limit: mutations or events.',
    labelNames: ['limit'] as const,
    registers,
  });
  const subscribers = new Gauge({
    name: 'tripline_subscribers',
    help: 'Subscriptions open now, by transport: websocket (graphql-ws) or http (server-sent events or multipart).',
    labelNames: ['transport'] as const,
    registers,
  });
  for (const transport of ['websocket', 'http']) subscribers.set({ transport }, 0);

  // The queue figures come from one query per scrape: `render` forgets the last reading, and the
  // first gauge collected takes a new one.
  let depth: Promise<QueueDepth> | undefined;
  const queueNow = (): Promise<QueueDepth> => {
    depth ??= readQueue();
    return depth;
  };
  new Gauge({
    name: 'tripline_runs',
    help: 'Triggered runs not yet finished, by status (QUEUED, RUNNING, RETRYING).',
    labelNames: ['status'] as const,
    registers,
    async collect() {
      for (const [status, value] of Object.entries((await queueNow()).byStatus))
        this.set({ status }, value);
    },
  });
  new Gauge({
    name: 'tripline_delivery_queue_runs',
    help: 'Runs waiting to be delivered: state="due" can be claimed now, state="scheduled" waits for a retry time.',
    labelNames: ['state'] as const,
    registers,
    async collect() {
      const { dueNow, scheduled } = await queueNow();
      this.set({ state: 'due' }, dueNow);
      this.set({ state: 'scheduled' }, scheduled);
    },
  });
  new Gauge({
    name: 'tripline_delivery_queue_oldest_due_age_seconds',
    help: 'How long the longest-waiting due run has been due; 0 when none is. Grows when deliveries back up.',
    registers,
    async collect() {
      this.set((await queueNow()).oldestDueAgeSeconds);
    },
  });
  new Gauge({
    name: 'tripline_delivery_leases_expired',
    help: 'RUNNING runs whose lease has passed and that no server has taken over yet.',
    registers,
    async collect() {
      this.set((await queueNow()).leaseExpired);
    },
  });

  if (readBus?.().kind === 'redis') {
    new Gauge({
      name: 'tripline_redis_connected',
      help: 'Whether this server is connected to Redis (1) or reconnecting (0); shown only when TRIPLINE_REDIS_URL is set.',
      registers,
      collect() {
        const bus = readBus();
        this.set(bus.kind === 'redis' && bus.connected ? 1 : 0);
      },
    });
  }

  const processRegistry = processMetrics();
  const names = new Map<string, ReturnType<typeof requests.labels>[]>();
  const requestSeries = (name: string, type: OperationType, outcome: RequestOutcome) => {
    let key = name;
    if (!names.has(key) && names.size >= MAX_OPERATION_NAMES) key = 'other';
    let series = names.get(key);
    if (!series) {
      series = [];
      names.set(key, series);
    }
    const index = TYPES.indexOf(type) * OUTCOMES.length + OUTCOMES.indexOf(outcome);
    let child = series[index];
    if (!child) {
      child = requests.labels(key, type, outcome);
      series[index] = child;
    }
    return child;
  };
  const counted = <T extends string>(counter: Counter<T>) => {
    const children = new Map<string, ReturnType<Counter<T>['labels']>>();
    return (labels: LabelValues<T>, key: string) => {
      let child = children.get(key);
      if (!child) {
        child = counter.labels(labels);
        children.set(key, child);
      }
      return child;
    };
  };
  const eventSeries = counted(events);
  const statusSeries = counted(statusChanges);
  const attemptSeries = counted(attempts);

  return {
    contentType: registry.contentType,
    async render() {
      depth = undefined;
      const [own, process] = await Promise.all([registry.metrics(), processRegistry.metrics()]);
      return `${own}\n${process}`;
    },
    observeRequest(operationName, type, outcome, seconds) {
      requestSeries(operationName ?? 'anonymous', type, outcome).observe(seconds);
    },
    eventIngested(eventType) {
      eventSeries({ event_type: eventType }, eventType).inc();
    },
    runStatusChanged(status) {
      statusSeries({ status }, status).inc();
    },
    attemptEnded(outcome) {
      const labels = attemptLabels(outcome);
      attemptSeries(
        { outcome: labels.outcome, error_class: labels.errorClass },
        `${labels.outcome}:${labels.errorClass}`,
      ).inc();
      attemptSeconds.labels(labels.outcome).observe(outcome.durationMs / 1000);
    },
    leaseExpired() {
      leases.inc();
    },
    rateLimited(limit) {
      refusals.labels(limit).inc();
    },
    subscriberJoined(transport) {
      subscribers.labels(transport).inc();
    },
    subscriberLeft(transport) {
      subscribers.labels(transport).dec();
    },
  };
}
