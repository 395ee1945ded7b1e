import {
  type DocumentNode,
  type GraphQLError,
  getOperationAST,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { createGraphQLError, type Plugin } from 'graphql-yoga';
import type { RateLimits } from '../config.js';
import type { Context } from '../context.js';

/** Tokens one request wants from one bucket. */
export interface BucketDemand {
  /** The bucket, e.g. `<apiKeyId>:mutations`. */
  key: string;
  cost: number;
  /** The bucket's size and refill: it holds a minute's worth and refills evenly. */
  perMinute: number;
}

export type RateLimitDecision =
  | { allowed: true }
  | { allowed: false; demand: BucketDemand; retryAfterMs: number };

/**
 * Where token buckets live. The in-memory store serves one process; the Redis bus's store
 * (src/bus/redis.ts) serves several, with the same buckets and the same all-or-nothing `take`.
 */
export interface RateLimitStore {
  /**
   * Takes each demand's tokens from its bucket at time `now` (ms since the epoch), all or none.
   * When a bucket lacks tokens, takes nothing and names that demand with the wait until it
   * could be met.
   */
  take(demands: readonly BucketDemand[], now: number): Promise<RateLimitDecision>;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last computed, in ms. */
  at: number;
  perMinute: number;
}

/** Buckets kept before full ones, which behave as absent ones, are swept. */
const SWEEP_THRESHOLD = 10_000;

function level(bucket: Bucket | undefined, perMinute: number, now: number): number {
  if (!bucket) return perMinute;
  const refilled = (Math.max(0, now - bucket.at) * perMinute) / 60_000;
  return Math.min(perMinute, bucket.tokens + refilled);
}

/**
 * The answer when `demand` cannot be met from a bucket holding `tokens`, or undefined when it
 * can: it needs its cost, or a full bucket when it costs more than the bucket holds. Every
 * store decides with this.
 */
export function refusal(
  demand: BucketDemand,
  tokens: number,
): Extract<RateLimitDecision, { allowed: false }> | undefined {
  const missing = Math.min(demand.cost, demand.perMinute) - tokens;
  if (missing <= 0) return undefined;
  return {
    allowed: false,
    demand,
    // The epsilon absorbs float noise (1000.0000000000002 ms is a 1-second wait).
    retryAfterMs: Math.ceil((missing * 60_000) / demand.perMinute - 1e-6),
  };
}

/**
 * Token buckets in this process's memory. A bucket starts full, so a client may spend a whole
 * minute's allowance at once, then as fast as it refills. A demand larger than the bucket is
 * let through when the bucket is full and leaves it in debt, so it never waits forever.
 */
export function createMemoryRateLimitStore(): RateLimitStore {
  const buckets = new Map<string, Bucket>();
  return {
    async take(demands, now) {
      const levels = demands.map((d) => level(buckets.get(d.key), d.perMinute, now));
      for (const [i, demand] of demands.entries()) {
        const refused = refusal(demand, levels[i] as number);
        if (refused) return refused;
      }
      for (const [i, demand] of demands.entries()) {
        const tokens = (levels[i] as number) - demand.cost;
        buckets.set(demand.key, { tokens, at: now, perMinute: demand.perMinute });
      }
      if (buckets.size > SWEEP_THRESHOLD) {
        for (const [key, bucket] of buckets) {
          if (level(bucket, bucket.perMinute, now) >= bucket.perMinute) buckets.delete(key);
        }
      }
      return { allowed: true };
    },
  };
}

/**
 * The root field names an operation selects, through fragments; `__typename` is not counted.
 * `@skip`/`@include` are not evaluated, so a skipped field still costs a token.
 */
function rootFields(selectionSet: SelectionSetNode, document: DocumentNode): string[] {
  const names: string[] = [];
  const visit = (set: SelectionSetNode, seen: Set<string>) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        if (selection.name.value !== '__typename') names.push(selection.name.value);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        visit(selection.selectionSet, seen);
      } else if (!seen.has(selection.name.value)) {
        seen.add(selection.name.value);
        const fragment = document.definitions.find(
          (d) => d.kind === Kind.FRAGMENT_DEFINITION && d.name.value === selection.name.value,
        );
        if (fragment?.kind === Kind.FRAGMENT_DEFINITION) visit(fragment.selectionSet, seen);
      }
    }
  };
  visit(selectionSet, new Set());
  return names;
}

const EVENT_FIELD = 'emitArtifactEvent';

function rateLimited(
  what: string,
  perMinute: number,
  setting: string,
  retryAfterMs: number,
): GraphQLError {
  const retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return createGraphQLError(
    `Rate limit reached: this API key may run ${perMinute} ${what} per minute (${setting}). Retry after ${retryAfterSeconds} seconds.`,
    {
      extensions: {
        code: 'RATE_LIMITED',
        limit: perMinute,
        retryAfterSeconds,
        http: { status: 429, headers: { 'Retry-After': String(retryAfterSeconds) } },
      },
    },
  );
}

/**
 * Limits mutations per API key (`ctx.viewer.apiKeyId`) with token buckets on the injected
 * clock: each `emitArtifactEvent` field costs one token of the events bucket, every other
 * mutation field one of the mutations bucket. An operation over either limit runs none of its
 * fields and answers `RATE_LIMITED` with `retryAfterSeconds` (HTTP 429 with `Retry-After`).
 * Queries and subscriptions pass; a limit of 0 is off. It hooks execution, so invalid
 * operations cost nothing and HTTP, SSE and graphql-ws are all covered. `onRefused` is told
 * which limit refused each operation it stops.
 */
export function useMutationRateLimits(
  limits: RateLimits,
  store: RateLimitStore = createMemoryRateLimitStore(),
  onRefused?: (limit: 'mutations' | 'events') => void,
): Plugin<Context> {
  return {
    // Synchronous for queries (see persisted-queries.ts); a mutation may wait on a shared store.
    onExecute({ args, setResultAndStopExecution }) {
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== 'mutation') return;
      return limitMutation(args, setResultAndStopExecution, operation);
    },
  };

  async function limitMutation(
    args: { document: DocumentNode; contextValue: Context },
    setResultAndStopExecution: (result: { errors: GraphQLError[] }) => void,
    operation: OperationDefinitionNode,
  ): Promise<void> {
    const { viewer, deps } = args.contextValue;
    const fields = rootFields(operation.selectionSet, args.document);
    const events = fields.filter((name) => name === EVENT_FIELD).length;
    const demands: (BucketDemand & { events: boolean })[] = [];
    if (limits.mutationsPerMinute > 0 && fields.length > events) {
      demands.push({
        key: `${viewer.apiKeyId}:mutations`,
        cost: fields.length - events,
        perMinute: limits.mutationsPerMinute,
        events: false,
      });
    }
    if (limits.eventsPerMinute > 0 && events > 0) {
      demands.push({
        key: `${viewer.apiKeyId}:events`,
        cost: events,
        perMinute: limits.eventsPerMinute,
        events: true,
      });
    }
    if (demands.length === 0) return;
    const decision = await store.take(demands, deps.clock.now().getTime());
    if (decision.allowed) return;
    const limited = demands.find((d) => d.key === decision.demand.key);
    onRefused?.(limited?.events ? 'events' : 'mutations');
    setResultAndStopExecution({
      errors: [
        limited?.events
          ? rateLimited(
              `${EVENT_FIELD} calls`,
              limits.eventsPerMinute,
              'TRIPLINE_RATE_LIMIT_EVENTS_PER_MINUTE',
              decision.retryAfterMs,
            )
          : rateLimited(
              'mutations',
              limits.mutationsPerMinute,
              'TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE',
              decision.retryAfterMs,
            ),
      ],
    });
  }
}
