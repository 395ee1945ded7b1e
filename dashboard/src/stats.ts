/** How a delivery attempt ended (the API's `DeliveryAttemptOutcome`). */
export type Outcome = 'SUCCEEDED' | 'HTTP_ERROR' | 'NO_RESPONSE' | 'IN_FLIGHT';

export const OUTCOMES: readonly Outcome[] = ['SUCCEEDED', 'HTTP_ERROR', 'NO_RESPONSE', 'IN_FLIGHT'];

/** One attempt as the charts use it: start in epoch milliseconds. */
export interface Sample {
  startedAt: number;
  durationMs: number | null;
  outcome: Outcome;
}

/** One minute of the chart: attempts started in it, by outcome, and their latency percentiles. */
export interface MinuteBucket {
  /** Start of the minute, epoch milliseconds. */
  start: number;
  counts: Record<Outcome, number>;
  latency: Percentiles;
}

export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** How many durations they were taken from. */
  count: number;
}

const MINUTE = 60_000;

/**
 * The `p`-th percentile (0 < p ≤ 100) of ascending `sorted` values by the nearest-rank method:
 * the smallest value with at least p % of the values at or below it. Null for no values.
 */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? null;
}

/** p50, p95 and p99 of the attempts' durations; attempts without one (in flight) are left out. */
export function latencyPercentiles(samples: readonly Sample[]): Percentiles {
  const sorted = samples
    .map((s) => s.durationMs)
    .filter((d): d is number => d !== null)
    .sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    count: sorted.length,
  };
}

/**
 * The `minutes` whole minutes up to and including the one holding `until`, oldest first, each
 * with the attempts that started in it. Attempts outside them are left out.
 */
export function bucketByMinute(
  samples: readonly Sample[],
  until: number,
  minutes: number,
): MinuteBucket[] {
  const last = Math.floor(until / MINUTE) * MINUTE;
  const first = last - (minutes - 1) * MINUTE;
  const groups: Sample[][] = Array.from({ length: minutes }, () => []);
  for (const sample of samples) {
    const index = Math.floor((sample.startedAt - first) / MINUTE);
    if (index >= 0 && index < minutes) groups[index]?.push(sample);
  }
  return groups.map((group, index) => {
    const counts: Record<Outcome, number> = {
      SUCCEEDED: 0,
      HTTP_ERROR: 0,
      NO_RESPONSE: 0,
      IN_FLIGHT: 0,
    };
    for (const sample of group) counts[sample.outcome] += 1;
    return { start: first + index * MINUTE, counts, latency: latencyPercentiles(group) };
  });
}

/** Total attempts of a bucket. */
export const bucketTotal = (bucket: MinuteBucket): number =>
  OUTCOMES.reduce((sum, outcome) => sum + bucket.counts[outcome], 0);
