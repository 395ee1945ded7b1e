import { hostname } from 'node:os';
import { and, asc, eq, inArray, isNull, lte, max, notInArray, or } from 'drizzle-orm';
import type { Clock } from '../clock.js';
import type { DeliveryConfig } from '../config.js';
import type { Db } from '../db/client.js';
import { actions, deliveryAttempts, type RunStatus, triggeredRuns } from '../db/schema.js';
import { newId, publicId } from '../ids.js';
import type { Logger } from '../logger.js';
import { ACTION_TYPENAMES } from '../modules/actions/service.js';
import { recordAudit } from '../modules/audit/service.js';
import type { SecretBox } from '../modules/secrets/box.js';
import { loadRunDelivery } from './load.js';
import { classify, nextRetryDelayMs } from './retry.js';
import { type DeliveryErrorClass, type DeliveryOutcome, deliver } from './send.js';
import { createGuardedAgent, type Lookup } from './ssrf.js';

export interface DeliveryEngineDeps {
  db: Db;
  secretBox: SecretBox;
  /** Every stored timestamp and every due-time comparison uses this clock. */
  clock: Clock;
  logger: Logger;
  config: DeliveryConfig;
  /**
   * Called with a run id after each committed status change of that run (RUNNING, RETRYING,
   * SUCCEEDED, FAILED, SKIPPED, and QUEUED/RETRYING when released on stop), in order. An
   * exception it throws is logged and otherwise ignored.
   */
  onRunUpdated: (runId: string) => void;
  /** Names this worker in leases; unique per process by default. */
  workerId?: string;
  /** Source of jitter in `[0, 1)`; Math.random by default. */
  random?: () => number;
  /** DNS lookup used by the SSRF guard; `dns.lookup` with all addresses by default. */
  lookup?: Lookup;
}

export interface DeliveryEngine {
  /** Starts polling every `pollIntervalMs` (unref'd timers, so it never holds the process). */
  start(): void;
  /** Looks for due runs now, e.g. right after runs were queued. Does nothing unless started. */
  wake(): void;
  /**
   * Claims and executes every run due at `clock.now()`, including retries that become due
   * immediately, and resolves once nothing is due and nothing is in flight. Runs due later are
   * left alone. Works with or without `start()`; after `stop()` it only waits for in-flight runs.
   */
  drain(): Promise<void>;
  /**
   * Stops claiming, waits up to `graceMs` for in-flight attempts, then aborts the rest and
   * releases their leases: each goes back to QUEUED (no attempt recorded yet) or RETRYING, due
   * now, so the next start delivers it again (same `webhook-id`). Resolves when every run is
   * settled and outbound sockets are closed. Calling it again returns the same promise.
   */
  stop(graceMs: number): Promise<void>;
}

interface ClaimedRun {
  id: string;
  /** Attempts since the run was last queued; a re-delivery resets it to 0. */
  attemptCount: number;
  actionId: string | null;
}

interface InFlight {
  done: Promise<void>;
  controller: AbortController;
}

/** Someone else took the run (its lease expired mid-attempt); the attempt is not recorded. */
class LeaseLostError extends Error {}

const ERROR_LABELS: Record<DeliveryErrorClass, string> = {
  NETWORK_ERROR: 'Network error',
  TIMEOUT: 'Timed out',
  SSRF_BLOCKED: 'Destination refused',
  PAYLOAD_TOO_LARGE: 'Payload too large',
  CONFIGURATION_ERROR: 'Not deliverable',
  INVALID_REQUEST: 'Invalid request',
  ABORTED: 'Aborted',
};

const RESULT_MAX = 500;

function describeOutcome(outcome: DeliveryOutcome): string {
  if (outcome.errorClass !== undefined) {
    const text = `${ERROR_LABELS[outcome.errorClass]}: ${outcome.errorMessage ?? 'no details'}`;
    return text.length > RESULT_MAX ? `${text.slice(0, RESULT_MAX - 1)}…` : text;
  }
  const code = outcome.statusCode;
  const redirect = code !== undefined && code >= 300 && code < 400;
  return `HTTP ${code} from receiver${redirect ? ' (redirects are not followed)' : ''}`;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

/**
 * Creates the delivery engine: it claims due triggered runs with a lease, sends them with
 * {@link deliver}, records one `delivery_attempts` row per try, and moves each run through
 * RUNNING → SUCCEEDED, or RUNNING → RETRYING → RUNNING … → FAILED, or SKIPPED, publishing every
 * change through `onRunUpdated` after it commits.
 *
 * Claiming is one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`, so several engines on one
 * database never claim the same run twice; a RUNNING run whose lease expired (its worker died)
 * is claimed again. `config.retry.maxAttempts` counts attempts since the run was last queued
 * (`attemptCount`, which a re-delivery resets); attempt numbers keep counting across
 * re-deliveries. A crash mid-attempt records nothing: the run is tried again after its lease.
 * Keep `leaseMs` well above an attempt's worst case (lookup, connect, headers and body, each
 * bounded by `timeoutMs`): if an attempt outlives its lease another worker may deliver the run
 * too, and the late attempt's result is then dropped, not recorded.
 */
export function createDeliveryEngine(deps: DeliveryEngineDeps): DeliveryEngine {
  const { db, secretBox, clock, config } = deps;
  const logger = deps.logger.child({ component: 'delivery' });
  const workerId = deps.workerId ?? `${hostname()}:${process.pid}:${newId().slice(0, 8)}`;
  const random = deps.random ?? Math.random;
  const dispatcher = createGuardedAgent({
    policy: config,
    timeoutMs: config.timeoutMs,
    lookup: deps.lookup,
  });
  const inFlight = new Map<string, InFlight>();
  let started = false;
  let stopping = false;
  let stopped: Promise<void> | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let tickPending = false;

  const publish = (runId: string): void => {
    try {
      deps.onRunUpdated(runId);
    } catch (error) {
      logger.error({ err: error, runId }, 'onRunUpdated threw');
    }
  };

  const ownLease = (runId: string) =>
    and(
      eq(triggeredRuns.id, runId),
      eq(triggeredRuns.status, 'RUNNING'),
      eq(triggeredRuns.leaseOwner, workerId),
    );

  function claim(limit: number): ClaimedRun[] {
    const now = clock.now();
    const due = or(
      and(
        inArray(triggeredRuns.status, ['QUEUED', 'RETRYING']),
        or(isNull(triggeredRuns.nextAttemptAt), lte(triggeredRuns.nextAttemptAt, now)),
      ),
      and(
        eq(triggeredRuns.status, 'RUNNING'),
        or(isNull(triggeredRuns.leaseExpiresAt), lte(triggeredRuns.leaseExpiresAt, now)),
      ),
    );
    // A run this process is still executing must not be taken twice, even past its lease.
    const notMine =
      inFlight.size === 0 ? undefined : notInArray(triggeredRuns.id, [...inFlight.keys()]);
    const candidates = db
      .select({ id: triggeredRuns.id })
      .from(triggeredRuns)
      .where(and(due, notMine))
      .orderBy(asc(triggeredRuns.nextAttemptAt))
      .limit(limit);
    // `due` is repeated outside the subquery so the claim stays safe on databases that run the
    // subquery without the write lock SQLite holds for the whole statement.
    return db
      .update(triggeredRuns)
      .set({
        status: 'RUNNING',
        leaseOwner: workerId,
        leaseExpiresAt: new Date(now.getTime() + config.leaseMs),
        updatedAt: now,
      })
      .where(and(inArray(triggeredRuns.id, candidates), due))
      .returning({
        id: triggeredRuns.id,
        attemptCount: triggeredRuns.attemptCount,
        actionId: triggeredRuns.actionId,
      })
      .all();
  }

  function fill(): void {
    if (stopping) return;
    const room = config.concurrency - inFlight.size;
    if (room <= 0) return;
    let claimed: ClaimedRun[];
    try {
      claimed = claim(room);
    } catch (error) {
      logger.error({ err: error }, 'claiming due runs failed');
      return;
    }
    for (const run of claimed) launch(run);
  }

  function launch(run: ClaimedRun): void {
    const controller = new AbortController();
    const done = execute(run, controller.signal)
      .catch((error: unknown) => {
        if (error instanceof LeaseLostError) {
          logger.warn({ runId: run.id }, 'lease lost mid-attempt; another worker owns the run');
          return;
        }
        logger.error(
          { err: error, runId: run.id },
          'delivery failed unexpectedly; the run is taken again when its lease expires',
        );
      })
      .finally(() => {
        inFlight.delete(run.id);
        if (started) scheduleTick();
      });
    inFlight.set(run.id, { done, controller });
  }

  async function execute(run: ClaimedRun, signal: AbortSignal): Promise<void> {
    publish(run.id);
    const plan = loadRunDelivery(db, secretBox, run.id);
    if (plan.kind === 'missing') return;
    if (plan.kind === 'skip') {
      finish(run.id, { status: 'SKIPPED', result: plan.reason });
      return;
    }
    const attemptNumber = nextAttemptNumber(run.id);
    const startedAt = clock.now();
    const outcome: DeliveryOutcome =
      plan.kind === 'misconfigured'
        ? {
            errorClass: 'CONFIGURATION_ERROR',
            errorMessage: plan.message,
            responseBody: null,
            durationMs: 0,
          }
        : await deliver(plan.request, { config, timestamp: startedAt, dispatcher, signal });
    if (outcome.errorClass === 'ABORTED') {
      release(run);
      return;
    }
    record(run, attemptNumber, startedAt, outcome);
  }

  function nextAttemptNumber(runId: string): number {
    const row = db
      .select({ last: max(deliveryAttempts.attemptNumber) })
      .from(deliveryAttempts)
      .where(eq(deliveryAttempts.runId, runId))
      .get();
    return (row?.last ?? 0) + 1;
  }

  function finish(runId: string, change: { status: RunStatus; result: string }): void {
    const now = clock.now();
    const updated = db
      .update(triggeredRuns)
      .set({
        ...change,
        leaseOwner: null,
        leaseExpiresAt: null,
        nextAttemptAt: null,
        updatedAt: now,
        finishedAt: now,
      })
      .where(ownLease(runId))
      .run();
    if (updated.changes === 0) throw new LeaseLostError();
    publish(runId);
  }

  function record(
    run: ClaimedRun,
    attemptNumber: number,
    startedAt: Date,
    outcome: DeliveryOutcome,
  ): void {
    const now = clock.now();
    const attempts = run.attemptCount + 1;
    const verdict = classify(outcome);
    const what = describeOutcome(outcome);
    let status: RunStatus;
    let result: string;
    let nextAttemptAt: Date | null = null;
    if (verdict === 'success') {
      status = 'SUCCEEDED';
      result = `Delivered: ${what}`;
    } else if (verdict === 'gone') {
      status = 'FAILED';
      result = 'Gone (410): action disabled';
    } else if (verdict === 'retry' && attempts < config.retry.maxAttempts) {
      const delay = nextRetryDelayMs(config.retry, attempts, random, outcome.retryAfterMs);
      status = 'RETRYING';
      result = `${what}; retrying in ${seconds(delay)}`;
      nextAttemptAt = new Date(now.getTime() + delay);
    } else {
      status = 'FAILED';
      result = verdict === 'retry' ? `${what}; gave up after ${attempts} attempts` : what;
    }
    const terminal = status !== 'RETRYING';
    db.transaction((tx) => {
      const updated = tx
        .update(triggeredRuns)
        .set({
          status,
          result,
          attemptCount: attempts,
          nextAttemptAt,
          leaseOwner: null,
          leaseExpiresAt: null,
          updatedAt: now,
          finishedAt: terminal ? now : null,
        })
        .where(ownLease(run.id))
        .returning({ id: triggeredRuns.id })
        .all();
      if (updated.length === 0) throw new LeaseLostError();
      tx.insert(deliveryAttempts)
        .values({
          id: newId(),
          runId: run.id,
          attemptNumber,
          startedAt,
          durationMs: outcome.durationMs,
          statusCode: outcome.statusCode ?? null,
          errorClass: outcome.errorClass ?? null,
          errorMessage: outcome.errorMessage ?? null,
          responseBody: outcome.responseBody,
        })
        .run();
      if (verdict === 'gone' && run.actionId !== null) {
        const reason = `The receiver answered 410 Gone on ${now.toISOString()}`;
        const disabled = tx
          .update(actions)
          .set({ enabled: false, disabledReason: reason, updatedAt: now })
          .where(and(eq(actions.id, run.actionId), eq(actions.enabled, true)))
          .returning()
          .get();
        if (disabled) {
          recordAudit(
            { db: tx, clock },
            {
              entityId: disabled.entityId,
              actorId: null,
              action: 'action.disabled',
              targetType: ACTION_TYPENAMES[disabled.kind],
              targetId: disabled.id,
              details: { name: disabled.name, reason, runId: publicId('run', run.id) },
            },
          );
        }
      }
    });
    logger[terminal && status !== 'SUCCEEDED' ? 'warn' : 'info'](
      {
        runId: run.id,
        attemptNumber,
        status,
        statusCode: outcome.statusCode,
        errorClass: outcome.errorClass,
      },
      result,
    );
    publish(run.id);
  }

  function release(run: ClaimedRun): void {
    const now = clock.now();
    const changed = db
      .update(triggeredRuns)
      .set({
        status: run.attemptCount === 0 ? 'QUEUED' : 'RETRYING',
        result: 'Interrupted by shutdown; it will be delivered again',
        nextAttemptAt: now,
        leaseOwner: null,
        leaseExpiresAt: null,
        updatedAt: now,
      })
      .where(ownLease(run.id))
      .run();
    if (changed.changes > 0) publish(run.id);
  }

  function scheduleTick(): void {
    if (tickPending || stopping) return;
    tickPending = true;
    setImmediate(() => {
      tickPending = false;
      fill();
    }).unref();
  }

  function schedulePoll(): void {
    if (stopping) return;
    pollTimer = setTimeout(() => {
      fill();
      schedulePoll();
    }, config.pollIntervalMs);
    pollTimer.unref();
  }

  return {
    start() {
      if (started || stopping) return;
      started = true;
      scheduleTick();
      schedulePoll();
    },
    wake() {
      if (started) scheduleTick();
    },
    async drain() {
      for (;;) {
        fill();
        if (inFlight.size === 0) return;
        await Promise.race([...inFlight.values()].map((run) => run.done));
      }
    },
    stop(graceMs) {
      if (stopped) return stopped;
      stopping = true;
      clearTimeout(pollTimer);
      stopped = (async () => {
        const settled = () => Promise.allSettled([...inFlight.values()].map((run) => run.done));
        if (inFlight.size > 0) {
          let timer: NodeJS.Timeout | undefined;
          const grace = new Promise<void>((resolve) => {
            timer = setTimeout(resolve, graceMs);
          });
          await Promise.race([settled(), grace]);
          clearTimeout(timer);
          for (const run of inFlight.values()) run.controller.abort();
          await settled();
        }
        await dispatcher.destroy().catch((error: unknown) => {
          logger.warn({ err: error }, 'closing outbound connections failed');
        });
      })();
      return stopped;
    },
  };
}
