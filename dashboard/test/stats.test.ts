import { describe, expect, it } from 'vitest';
import {
  bucketByMinute,
  bucketTotal,
  latencyPercentiles,
  percentile,
  type Sample,
} from '../src/stats';

const at = (iso: string) => Date.parse(iso);
const sample = (
  iso: string,
  durationMs: number | null,
  outcome: Sample['outcome'] = 'SUCCEEDED',
): Sample => ({
  startedAt: at(iso),
  durationMs,
  outcome,
});

describe('percentile (nearest rank)', () => {
  it('takes the smallest value with at least p % of the values at or below it', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 95)).toBe(95);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile([10, 20, 30], 50)).toBe(20);
    expect(percentile([10, 20, 30], 99)).toBe(30);
    expect(percentile([7], 1)).toBe(7);
    expect(percentile([], 50)).toBeNull();
  });

  it('leaves attempts in flight out and sorts the rest', () => {
    const samples = [
      sample('2026-01-01T00:00:00Z', 300),
      sample('2026-01-01T00:00:01Z', null, 'IN_FLIGHT'),
      sample('2026-01-01T00:00:02Z', 100),
      sample('2026-01-01T00:00:03Z', 200, 'HTTP_ERROR'),
    ];
    expect(latencyPercentiles(samples)).toEqual({ p50: 200, p95: 300, p99: 300, count: 3 });
    expect(latencyPercentiles([])).toEqual({ p50: null, p95: null, p99: null, count: 0 });
  });
});

describe('bucketByMinute', () => {
  it('counts attempts per whole minute by outcome, oldest minute first, up to the current one', () => {
    const until = at('2026-01-01T01:00:30Z');
    const buckets = bucketByMinute(
      [
        sample('2026-01-01T01:00:10Z', 10),
        sample('2026-01-01T01:00:59Z', 30, 'HTTP_ERROR'),
        sample('2026-01-01T00:59:00Z', 20, 'NO_RESPONSE'),
        sample('2026-01-01T00:58:59.999Z', 5),
        // Outside the three minutes shown: dropped.
        sample('2026-01-01T00:57:59Z', 1),
        sample('2026-01-01T01:01:00Z', 1),
      ],
      until,
      3,
    );
    expect(buckets.map((b) => new Date(b.start).toISOString())).toEqual([
      '2026-01-01T00:58:00.000Z',
      '2026-01-01T00:59:00.000Z',
      '2026-01-01T01:00:00.000Z',
    ]);
    expect(buckets.map((b) => b.counts)).toEqual([
      { SUCCEEDED: 1, HTTP_ERROR: 0, NO_RESPONSE: 0, IN_FLIGHT: 0 },
      { SUCCEEDED: 0, HTTP_ERROR: 0, NO_RESPONSE: 1, IN_FLIGHT: 0 },
      { SUCCEEDED: 1, HTTP_ERROR: 1, NO_RESPONSE: 0, IN_FLIGHT: 0 },
    ]);
    expect(buckets.map(bucketTotal)).toEqual([1, 1, 2]);
    expect(buckets[2]?.latency).toEqual({ p50: 10, p95: 30, p99: 30, count: 2 });
  });

  it('gives empty minutes too, so the chart has a bar slot for each', () => {
    const buckets = bucketByMinute([], at('2026-01-01T00:00:00Z'), 60);
    expect(buckets).toHaveLength(60);
    expect(buckets.every((b) => bucketTotal(b) === 0 && b.latency.p50 === null)).toBe(true);
  });
});
