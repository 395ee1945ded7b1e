import { expect, it } from 'vitest';
import type { BucketDemand, RateLimitStore } from '../../src/limits/rate-limit.js';

/**
 * What every rate-limit store must do, as `it` cases: the in-memory store (test/rate-limit.test.ts)
 * and the Redis one (test/redis-bus.test.ts) keep the same buckets. `createStore` gives a store
 * with no buckets yet.
 */
export function tokenBucketCases(
  createStore: () => RateLimitStore | Promise<RateLimitStore>,
): void {
  const demand = (key: string, cost: number, perMinute: number): BucketDemand => ({
    key,
    cost,
    perMinute,
  });

  it('refills evenly up to a minute of tokens', async () => {
    const store = await createStore();
    for (let i = 0; i < 60; i++) {
      expect((await store.take([demand('k', 1, 60)], 0)).allowed).toBe(true);
    }
    expect(await store.take([demand('k', 1, 60)], 0)).toMatchObject({ retryAfterMs: 1000 });
    expect((await store.take([demand('k', 1, 60)], 1000)).allowed).toBe(true);
    // An idle hour refills the bucket once, not sixty times.
    for (let i = 0; i < 60; i++) {
      expect((await store.take([demand('k', 1, 60)], 3_600_000)).allowed).toBe(true);
    }
    expect((await store.take([demand('k', 1, 60)], 3_600_000)).allowed).toBe(false);
  });

  it('takes from several buckets all or none', async () => {
    const store = await createStore();
    expect((await store.take([demand('a', 1, 2)], 0)).allowed).toBe(true);
    const refused = await store.take([demand('b', 1, 10), demand('a', 2, 2)], 0);
    expect(refused).toMatchObject({ allowed: false, demand: { key: 'a' }, retryAfterMs: 30_000 });
    // `b` lost nothing to the refused demand.
    for (let i = 0; i < 10; i++) {
      expect((await store.take([demand('b', 1, 10)], 0)).allowed).toBe(true);
    }
  });

  it('lets a demand larger than the bucket through when full, leaving it in debt', async () => {
    const store = await createStore();
    expect((await store.take([demand('k', 5, 2)], 0)).allowed).toBe(true);
    // -3 tokens: back to 2 (enough for 2) after 2.5 minutes.
    expect(await store.take([demand('k', 2, 2)], 0)).toMatchObject({ retryAfterMs: 150_000 });
    expect((await store.take([demand('k', 2, 2)], 150_000)).allowed).toBe(true);
  });
}
