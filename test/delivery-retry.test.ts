import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RetryPolicy } from '../src/config.js';
import {
  classify,
  nextRetryDelayMs,
  parseRetryAfter,
  retryCeilingMs,
  retryDelayMs,
  retrySchedule,
} from '../src/delivery/retry.js';

const policy: RetryPolicy = {
  maxAttempts: 8,
  baseDelayMs: 1_000,
  maxDelayMs: 15 * 60_000,
  maxRetryAfterMs: 60 * 60_000,
};

describe('retry classification', () => {
  it.each([
    [200, 'success'],
    [204, 'success'],
    [299, 'success'],
    [301, 'permanent'],
    [302, 'permanent'],
    [304, 'permanent'],
    [400, 'permanent'],
    [401, 'permanent'],
    [404, 'permanent'],
    [408, 'retry'],
    [410, 'gone'],
    [413, 'permanent'],
    [429, 'retry'],
    [500, 'retry'],
    [502, 'retry'],
    [503, 'retry'],
    [599, 'retry'],
    [101, 'permanent'],
  ] as const)('HTTP %i is %s', (statusCode, verdict) => {
    expect(classify({ statusCode })).toBe(verdict);
  });

  it.each([
    ['NETWORK_ERROR', 'retry'],
    ['TIMEOUT', 'retry'],
    ['SSRF_BLOCKED', 'permanent'],
    ['PAYLOAD_TOO_LARGE', 'permanent'],
    ['CONFIGURATION_ERROR', 'permanent'],
    ['INVALID_REQUEST', 'permanent'],
  ] as const)('%s is %s', (errorClass, verdict) => {
    expect(classify({ errorClass })).toBe(verdict);
  });
});

describe('retry schedule', () => {
  it('doubles from the base delay up to the cap', () => {
    expect(retrySchedule({ ...policy, maxDelayMs: 10_000 })).toEqual([
      1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000,
    ]);
    expect(retrySchedule({ ...policy, maxAttempts: 1 })).toEqual([]);
  });

  it('draws full jitter within [0, ceiling)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, r) => {
          const delay = retryDelayMs(policy, attempt, () => r);
          const ceiling = retryCeilingMs(policy, attempt);
          expect(Number.isInteger(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThanOrEqual(Math.max(0, ceiling - 1));
          expect(ceiling).toBeLessThanOrEqual(policy.maxDelayMs);
        },
      ),
    );
    expect(retryDelayMs(policy, 3, () => 0.5)).toBe(2_000);
  });

  it('lets Retry-After replace the backoff, clamped to maxRetryAfterMs', () => {
    expect(nextRetryDelayMs(policy, 1, () => 0.5)).toBe(500);
    expect(nextRetryDelayMs(policy, 1, () => 0.5, 120_000)).toBe(120_000);
    expect(nextRetryDelayMs(policy, 1, () => 0.5, 10 * 60 * 60_000)).toBe(policy.maxRetryAfterMs);
  });
});

describe('Retry-After parsing', () => {
  const now = new Date('2025-03-01T12:00:00Z');
  it('reads delay-seconds and HTTP dates', () => {
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Sat, 01 Mar 2025 12:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sat, 01 Mar 2025 11:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter(['5', '9'], now)).toBe(5_000);
  });
  it('ignores absent and malformed values', () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
    expect(parseRetryAfter('1.5', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('2025-03-01', now)).toBeUndefined();
  });
});
