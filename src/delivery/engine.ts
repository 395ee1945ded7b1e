import { hostname } from 'node:os';
import { and, asc, eq, exists, inArray, isNull, lte, max, notInArray, or, sql } from 'drizzle-orm';
import type { Clock } from '../clock.js';
import type { DeliveryConfig } from '../config.js';
import { newId, publicId } from '../ids.js';
import type { Logger } from '../logger.js';
import { ACTION_NOUNS } from '../modules/actions/service.js';
import type { SecretBox } from '../modules/secrets/box.js';
import type { Telemetry } from '../observability/telemetry.js';
import { recordAudit } from '../storage/sqlite/audit.js';
import type { Db } from '../storage/sqlite/database.js';
import {
  actions,
  deliveryAttempts,
  type RunStatus,
  triggeredRuns,
} from '../storage/sqlite/schema.js';
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
  /** Trusted TLS roots instead of Node's bundled ones (see `createGuardedAgent`); for tests. */
  ca?: string | readonly string[];
  /** Told of each attempt (metrics, a span, `traceparent` for the receiver) and expired lease. */
  telemetry?: Pick<Telemetry, 'attempt' | 'leaseExpired'>;
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
   * releases their leases: each attempt is recorded as ABORTED without counting, and its run goes
   * back to QUEUED (no other attempt counted) or RETRYING, due now, so the next start delivers it
   * again (same `webhook-id`). Resolves when every run is settled and outbound sockets are
   * closed. Calling it again returns the same promise.
   */
  stop(graceMs: number): Promise<void>;
}

interface ClaimedRun {
  id: string;
  /**
   * Attempts started since the run was last queued, interrupted ones included; a re-delivery
   * resets it to 0.
   */
  attemptCount: number;
  actionId: string | null;
  /** See {@link destinationOf}. */
  destination: string | null;
}

/** The attempt row written when an attempt starts; its outcome is filled in when it ends. */
interface StartedAttempt {
  id: string;
  attemptNumber: number;
  startedAt: Date;
  /** The run's attempt count with this attempt. */
  attemptCount: number;
}

interface InFlight {
  done: Promise<void>;
  controller: AbortController;
  destination: string | null;
}

/**
 * Someone else took the run (its lease expired mid-attempt): this attempt's outcome is dropped, and
 * its row, if written, is marked INTERRUPTED by the new owner.
 */
class LeaseLostError extends Error {}

/**
 * Error classes of stored attempts: what {@link deliver} reports, and `INTERRUPTED` for an attempt
 * that started but never recorded an end (its process died, or it lost its lease).
 */
export type AttemptErrorClass = DeliveryErrorClass | 'INTERRUPTED';

const ERROR_LABELS: Record<DeliveryErrorClass, string> = {
  NETWORK_ERROR: 'Network error',
  TIMEOUT: 'Timed out',
  SSRF_BLOCKED: 'Destination refused',
  PAYLOAD_TOO_LARGE: 'Payload too large',
  CONFIGURATION_ERROR: 'Not deliverable',
  INVALID_REQUEST: 'Invalid request',
  ABORTED: 'Aborted',
};

const INTERRUPTED_MESSAGE =
  'The attempt never finished: the server stopped (crashed or was killed) or lost the run before recording it';

const RESULT_MAX = 500;

/** Runs read per query while claiming; see `claim`. */
const CLAIM_PAGE = 50;
const CLAIM_PAGES_MAX = 10;

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
 * Where a run's requests go, as far as sharing delivery slots is concerned: the origin (scheme,
 * host and port) of a webhook's URL. Every Slack action is one destination, Slack itself: its
 * incoming-webhook URLs are secrets (not readable while claiming) and all point at
 * hooks.slack.com anyway. Null when the run has no action or the URL does not parse; such runs
 * are skipped or fail without a request.
 */
function destinationOf(action: {
  kind: 'WEBHOOK' | 'SLACK' | null;
  url: string | null;
}): string | null {
  if (action.kind === 'SLACK') return 'slack';
  if (action.kind !== 'WEBHOOK' || action.url === null) return null;
  try {
    return new URL(action.url).origin;
  } catch {
    return null;
  }
}

/**
 * Creates the delivery engine: it claims due triggered runs with a lease, sends them with
 * {@link deliver}, records one `delivery_attempts` row per try, and moves each run through
 * RUNNING → SUCCEEDED, or RUNNING → RETRYING → RUNNING … → FAILED, or SKIPPED, publishing every
 * change through `onRunUpdated` after it commits.
 *
 * Claiming reads due runs oldest first and takes them with one conditional `UPDATE … RETURNING`
 * that re-checks they are still due, so several engines on one database never claim the same run
 * twice; a RUNNING run whose lease expired (its worker died) is claimed again. One destination
 * (see {@link destinationOf}) gets at most half the `concurrency` slots, rounded up, so a receiver
 * that hangs on every request cannot hold every slot while other receivers wait.
 *
 * An attempt's row is written, and counted in the run's `attemptCount`, when it starts, in one
 * transaction guarded by the lease; its outcome is filled in when it ends. An attempt that never
 * ends (the process was killed, perhaps by the attempt itself) is marked `INTERRUPTED` when the
 * run is claimed again and still counts, so `config.retry.maxAttempts` (attempts since the run was
 * last queued; a re-delivery resets the count, attempt numbers keep counting) ends such a run
 * FAILED too. An attempt aborted by `stop()` is recorded as `ABORTED` and not counted: the server
 * chose to stop, the receiver did not fail. Every attempt ends within `timeoutMs` (see
 * {@link deliver}); `loadConfig` refuses a `leaseMs` an attempt could outlive. Should one outlive
 * its lease anyway, another worker may deliver the run too, and the late result is dropped.
 */
export function createDeliveryEngine(deps: DeliveryEngineDeps): DeliveryEngine {
  const { db, secretBox, clock, config } = deps;
  const logger = deps.logger.child({ component: 'delivery' });
  const workerId = deps.workerId ?? `${hostname()}:${process.pid}:${newId().slice(0, 8)}`;
  const random = deps.random ?? Math.random;
  const perDestination = Math.max(1, Math.ceil(config.concurrency / 2));
  const dispatcher = createGuardedAgent({
    policy: config,
    timeoutMs: config.timeoutMs,
    lookup: deps.lookup,
    ...(deps.ca === undefined ? {} : { ca: deps.ca }),
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

  /**
   * Picks up to `limit` due runs, oldest first, skipping runs whose destination already has its
   * share of slots, and claims them. Skipped runs' actions are left out of the next page, so a
   * backlog for one destination does not hide the runs behind it.
   */
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
    const busy = new Map<string, number>();
    for (const run of inFlight.values()) {
      if (run.destination !== null) busy.set(run.destination, (busy.get(run.destination) ?? 0) + 1);
    }
    const picked = new Map<string, string | null>();
    const fullActions = new Set<string>();
    for (let page = 0; page < CLAIM_PAGES_MAX && picked.size < limit; page++) {
      // A run this process is still executing must not be taken twice, even past its lease.
      const taken = [...inFlight.keys(), ...picked.keys()];
      const rows = db
        .select({
          id: triggeredRuns.id,
          actionId: triggeredRuns.actionId,
          kind: actions.kind,
          url: actions.url,
        })
        .from(triggeredRuns)
        .leftJoin(actions, eq(actions.id, triggeredRuns.actionId))
        .where(
          and(
            due,
            taken.length === 0 ? undefined : notInArray(triggeredRuns.id, taken),
            fullActions.size === 0
              ? undefined
              : or(
                  isNull(triggeredRuns.actionId),
                  notInArray(triggeredRuns.actionId, [...fullActions]),
                ),
          ),
        )
        .orderBy(asc(triggeredRuns.nextAttemptAt))
        .limit(CLAIM_PAGE)
        .all();
      for (const row of rows) {
        const destination = destinationOf(row);
        if (destination !== null) {
          const load = busy.get(destination) ?? 0;
          if (load >= perDestination) {
            if (row.actionId !== null) fullActions.add(row.actionId);
            continue;
          }
          busy.set(destination, load + 1);
        }
        picked.set(row.id, destination);
        if (picked.size >= limit) break;
      }
      if (rows.length < CLAIM_PAGE) break;
    }
    if (picked.size === 0) return [];
    // `due` is checked again in the update: another engine may have claimed a run since it was
    // read, and then this one must not take it.
    return db
      .update(triggeredRuns)
      .set({
        status: 'RUNNING',
        leaseOwner: workerId,
        leaseExpiresAt: new Date(now.getTime() + config.leaseMs),
        updatedAt: now,
      })
      .where(and(inArray(triggeredRuns.id, [...picked.keys()]), due))
      .returning({
        id: triggeredRuns.id,
        attemptCount: triggeredRuns.attemptCount,
        actionId: triggeredRuns.actionId,
      })
      .all()
      .map((run) => ({ ...run, destination: picked.get(run.id) ?? null }));
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
    inFlight.set(run.id, { done, controller, destination: run.destination });
  }

  async function execute(run: ClaimedRun, signal: AbortSignal): Promise<void> {
    publish(run.id);
    const interrupted = markInterrupted(run.id);
    if (interrupted > 0) deps.telemetry?.leaseExpired();
    const plan = loadRunDelivery(db, secretBox, run.id);
    if (plan.kind === 'missing') return;
    if (plan.kind === 'skip') {
      finish(run.id, { status: 'SKIPPED', result: plan.reason });
      return;
    }
    if (run.attemptCount >= config.retry.maxAttempts) {
      // Only an attempt that never ended (or a lowered TRIPLINE_RETRY_MAX_ATTEMPTS) leaves a
      // claimable run without attempts left: the process died during it, perhaps because of
      // it, and one more try could kill it again.
      const why = interrupted > 0 ? `Interrupted: ${INTERRUPTED_MESSAGE}` : 'No attempts left';
      finish(run.id, {
        status: 'FAILED',
        result: `${why}; gave up after ${run.attemptCount} attempts`,
      });
      return;
    }
    if (interrupted > 0) {
      logger.warn({ runId: run.id }, 'the previous attempt was interrupted; trying again');
    }
    const attempt = startAttempt(run.id);
    const observed = deps.telemetry?.attempt({
      runId: run.id,
      attemptNumber: attempt.attemptNumber,
      destination: run.destination,
    });
    const outcome: DeliveryOutcome =
      plan.kind === 'misconfigured'
        ? {
            errorClass: 'CONFIGURATION_ERROR',
            errorMessage: plan.message,
            responseBody: null,
            durationMs: 0,
          }
        : await deliver(plan.request, {
            config,
            timestamp: attempt.startedAt,
            dispatcher,
            signal,
            ...(observed?.headers ? { headers: observed.headers } : {}),
          });
    observed?.end(outcome);
    if (outcome.errorClass === 'ABORTED') {
      release(run.id, attempt, outcome);
      return;
    }
    record(run, attempt, outcome);
  }

  /**
   * Marks the run's attempts that started and never ended as INTERRUPTED, if this worker holds
   * the run. Returns how many there were. They are already counted: they were when they started.
   */
  function markInterrupted(runId: string): number {
    return db
      .update(deliveryAttempts)
      .set({
        errorClass: 'INTERRUPTED' satisfies AttemptErrorClass,
        errorMessage: INTERRUPTED_MESSAGE,
      })
      .where(
        and(
          eq(deliveryAttempts.runId, runId),
          isNull(deliveryAttempts.durationMs),
          isNull(deliveryAttempts.errorClass),
          exists(db.select({ id: triggeredRuns.id }).from(triggeredRuns).where(ownLease(runId))),
        ),
      )
      .run().changes;
  }

  /**
   * Writes the attempt's row and counts it on the run, in one transaction that holds only while
   * this worker owns the run (LeaseLostError otherwise). From here on a crash cannot hide it.
   */
  function startAttempt(runId: string): StartedAttempt {
    const startedAt = clock.now();
    return db.transaction((tx) => {
      const counted = tx
        .update(triggeredRuns)
        .set({ attemptCount: sql`${triggeredRuns.attemptCount} + 1`, updatedAt: startedAt })
        .where(ownLease(runId))
        .returning({ attemptCount: triggeredRuns.attemptCount })
        .get();
      if (!counted) throw new LeaseLostError();
      const last = tx
        .select({ last: max(deliveryAttempts.attemptNumber) })
        .from(deliveryAttempts)
        .where(eq(deliveryAttempts.runId, runId))
        .get();
      const attempt = {
        id: newId(),
        attemptNumber: (last?.last ?? 0) + 1,
        startedAt,
        attemptCount: counted.attemptCount,
      };
      tx.insert(deliveryAttempts)
        .values({
          id: attempt.id,
          runId,
          attemptNumber: attempt.attemptNumber,
          startedAt,
          durationMs: null,
        })
        .run();
      return attempt;
    });
  }

  /** The stored form of an attempt's outcome. */
  const attemptOutcome = (outcome: DeliveryOutcome) => ({
    durationMs: outcome.durationMs,
    statusCode: outcome.statusCode ?? null,
    errorClass: outcome.errorClass ?? null,
    errorMessage: outcome.errorMessage ?? null,
    responseBody: outcome.responseBody,
  });

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

  function record(run: ClaimedRun, attempt: StartedAttempt, outcome: DeliveryOutcome): void {
    const now = clock.now();
    const attempts = attempt.attemptCount;
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
      tx.update(deliveryAttempts)
        .set(attemptOutcome(outcome))
        .where(eq(deliveryAttempts.id, attempt.id))
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
              targetType: ACTION_NOUNS[disabled.kind],
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
        attemptNumber: attempt.attemptNumber,
        status,
        statusCode: outcome.statusCode,
        errorClass: outcome.errorClass,
      },
      result,
    );
    publish(run.id);
  }

  /**
   * Puts a run whose attempt `stop()` aborted back in line, due now: QUEUED when no other attempt
   * counts since it was queued, RETRYING otherwise. The attempt stays in the history as ABORTED
   * but gives its count back.
   */
  function release(runId: string, attempt: StartedAttempt, outcome: DeliveryOutcome): void {
    const now = clock.now();
    const attempts = attempt.attemptCount - 1;
    const released = db.transaction((tx) => {
      const changed = tx
        .update(triggeredRuns)
        .set({
          status: attempts === 0 ? 'QUEUED' : 'RETRYING',
          result: 'Interrupted by shutdown; it will be delivered again',
          attemptCount: attempts,
          nextAttemptAt: now,
          leaseOwner: null,
          leaseExpiresAt: null,
          updatedAt: now,
        })
        .where(ownLease(runId))
        .run();
      if (changed.changes === 0) return false;
      tx.update(deliveryAttempts)
        .set(attemptOutcome(outcome))
        .where(eq(deliveryAttempts.id, attempt.id))
        .run();
      return true;
    });
    if (released) publish(runId);
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
