import type { RetryPolicy } from '../config.js';
import type { DeliveryErrorClass } from './send.js';

/**
 * What an attempt's outcome means for its run:
 * - `success`: a 2xx answer; nothing else counts as delivered.
 * - `retry`: worth trying again later (network error, timeout, 408, 429, 5xx).
 * - `permanent`: trying again cannot help (other 4xx, 3xx since redirects are not followed,
 *   refused destinations, payloads too large, broken configuration).
 * - `gone`: 410; the receiver says the endpoint is gone for good, so the action is disabled.
 */
export type Verdict = 'success' | 'retry' | 'permanent' | 'gone';

/** Statuses outside 5xx that ask to be retried. */
export const RETRYABLE_STATUS_CODES: ReadonlySet<number> = new Set([408, 429]);

/** Failures before any HTTP answer that may pass on their own. */
export const RETRYABLE_ERROR_CLASSES: ReadonlySet<DeliveryErrorClass> = new Set([
  'NETWORK_ERROR',
  'TIMEOUT',
]);

/**
 * Classifies an outcome. An error class takes precedence over a status code, so a status with
 * an error is judged by the error. Never throws.
 */
export function classify(outcome: {
  statusCode?: number | undefined;
  errorClass?: DeliveryErrorClass | undefined;
  noOp?: true | undefined;
}): Verdict {
  const { statusCode, errorClass } = outcome;
  if (outcome.noOp) return 'success';
  if (errorClass !== undefined) {
    return RETRYABLE_ERROR_CLASSES.has(errorClass) ? 'retry' : 'permanent';
  }
  if (statusCode === undefined) return 'permanent';
  if (statusCode >= 200 && statusCode < 300) return 'success';
  if (statusCode === 410) return 'gone';
  if (statusCode >= 500 || RETRYABLE_STATUS_CODES.has(statusCode)) return 'retry';
  return 'permanent';
}

/**
 * The largest delay after failed attempt `attemptNumber` (1-based):
 * `min(maxDelayMs, baseDelayMs × 2^(attemptNumber − 1))`.
 */
export function retryCeilingMs(policy: RetryPolicy, attemptNumber: number): number {
  const exponent = Math.max(0, attemptNumber - 1);
  // 2^exponent overflows to Infinity for large attempt numbers; Math.min then caps it.
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** exponent);
}

/**
 * The delay before the next try after failed attempt `attemptNumber` (1-based), with full
 * jitter: a whole number of milliseconds drawn uniformly from `[0, retryCeilingMs)` using
 * `random` (which must return values in `[0, 1)`, like Math.random). Full jitter spreads
 * retries from many runs failing at once, so a recovering receiver is not hit in waves.
 */
export function retryDelayMs(
  policy: RetryPolicy,
  attemptNumber: number,
  random: () => number = Math.random,
): number {
  return Math.floor(random() * retryCeilingMs(policy, attemptNumber));
}

/**
 * The ceilings of the whole schedule as data: one entry per retry a run may get, i.e.
 * `maxAttempts − 1` entries. Useful for documentation and for checking configuration.
 */
export function retrySchedule(policy: RetryPolicy): number[] {
  return Array.from({ length: Math.max(0, policy.maxAttempts - 1) }, (_, i) =>
    retryCeilingMs(policy, i + 1),
  );
}

/**
 * Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP date, relative to `now`.
 * Returns milliseconds (0 for a date in the past), or undefined when absent or unparseable.
 * The result is not bounded; {@link nextRetryDelayMs} applies `maxRetryAfterMs`.
 */
export function parseRetryAfter(
  header: string | string[] | undefined,
  now: Date,
): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  // Only HTTP dates: Date.parse also accepts bare numbers and other forms we should ignore.
  if (!/^[A-Za-z]{3},? /.test(value)) return undefined;
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now.getTime());
}

/**
 * The delay to schedule after failed attempt `attemptNumber`. A receiver's Retry-After replaces
 * the computed backoff (it knows its own load best) but is clamped to `maxRetryAfterMs`, so a
 * receiver cannot park a run for days.
 */
export function nextRetryDelayMs(
  policy: RetryPolicy,
  attemptNumber: number,
  random: () => number,
  retryAfterMs?: number,
): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxRetryAfterMs);
  return retryDelayMs(policy, attemptNumber, random);
}
