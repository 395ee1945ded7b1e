import { createMemoryRateLimitStore, type RateLimitStore } from '../limits/rate-limit.js';
import type { AccessCache } from '../modules/users/access-cache.js';
import { createTriplinePubSub, type TriplinePubSub } from '../pubsub.js';

/** How the bus reaches the other instances, as `/readyz` and the logs report it. */
export type BusState =
  /** No other instances: everything stays in this process. */
  | { kind: 'in-process' }
  /** Redis, connected (`connected`) or reconnecting; `since` is when that began, in ms. */
  | { kind: 'redis'; connected: boolean; since: number };

/**
 * What the instances of one deployment share. The database holds the state; the bus only carries
 * what each instance keeps for itself and must hear about from the others:
 *
 * - run updates (`pubsub`): a subscriber on any instance sees every run update, and a run queued
 *   on one instance wakes the delivery engines of all of them (the engine wakes on the QUEUED
 *   update, published after the commit; see `createApp`), instead of waiting for their poll;
 * - access changes (`shareAccess`): a key revoked or a role changed on one instance is dropped
 *   from every instance's access cache;
 * - rate-limit buckets (`rateLimits`): a limit holds across instances.
 *
 * Two implementations: {@link createInProcessBus} (one instance, the default; exactly today's
 * in-memory behaviour and cost) and `createRedisBus` (src/bus/redis.ts).
 */
export interface SharedBus {
  /** Run updates; `AppDeps.pubsub` must be this one. */
  readonly pubsub: TriplinePubSub;
  /** Where the mutation rate limits keep their buckets. */
  readonly rateLimits: RateLimitStore;
  /**
   * Publishes every change `access` reports to the other instances, applies theirs to it, and
   * re-reads everything it holds whenever the bus reconnects (changes may have been missed
   * meanwhile). Returns the function that disconnects it.
   */
  shareAccess(access: AccessCache): () => void;
  /** The connection's state now; cheap (read by `/readyz` and `/metrics`). */
  state(): BusState;
  /** Closes connections; publishes after it are dropped. Idempotent. */
  close(): Promise<void>;
}

/** One instance: run updates in memory, buckets in memory, nothing to share access with. */
export function createInProcessBus(): SharedBus {
  return {
    pubsub: createTriplinePubSub(),
    rateLimits: createMemoryRateLimitStore(),
    shareAccess: () => () => {},
    state: () => ({ kind: 'in-process' }),
    close: async () => {},
  };
}
