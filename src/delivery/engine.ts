import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Clock } from '../clock.js';
import type { DeliveryConfig } from '../config.js';
import { newId, publicId } from '../ids.js';
import type { Logger } from '../logger.js';
import { ACTION_NOUNS } from '../modules/actions/service.js';
import type { DecryptedSecrets } from '../modules/secrets/decrypted.js';
import type { Telemetry } from '../observability/telemetry.js';
import { unreachable } from '../storage/config.js';
import type {
  AttemptOutcome,
  ClaimChoice,
  ClaimedRun,
  DeliveryAction,
  DeliveryStore,
  DisableAction,
  Lease,
  RunVerdict,
  StartedAttempt,
} from '../storage/delivery.js';
import { INTERRUPTED_ATTEMPT_MESSAGE } from '../storage/delivery.js';
import type { TriggeredRun } from '../storage/events.js';
import { planDelivery, type RunDelivery } from './load.js';
import { classify, nextRetryDelayMs } from './retry.js';
import { type DeliveryErrorClass, type DeliveryOutcome, deliver, NO_OP_RESULT } from './send.js';
import { type AttemptHealth, createDestinationSlots, type Slot } from './slots.js';
import { createAddressGuard, createGuardedAgent, type Lookup } from './ssrf.js';

/** The end of a failed run's result: `gave up after 1 attempt`, `… after 3 attempts`. */
const gaveUp = (attempts: number): string =>
  `gave up after ${attempts} ${attempts === 1 ? 'attempt' : 'attempts'}`;
export interface DeliveryEngineDeps {
  /** Claims, leases and attempt records. */
  store: DeliveryStore;
  /** Decrypted secret values, cached per secret version (see decrypted.ts). */
  decrypted: DecryptedSecrets;
  /** Every stored timestamp and every due-time comparison uses this clock. */
  clock: Clock;
  logger: Logger;
  config: DeliveryConfig;
  /**
   * Called after each committed status change of a run (RUNNING, RETRYING, SUCCEEDED, FAILED,
   * SKIPPED, and QUEUED/RETRYING when released on stop), in order, with the run as that change
   * left it, as the write returned it: nothing is read again to publish. The stored run may
   * already be further on (one commit can hold an attempt's end and the claim of its retry);
   * each change is still told. An exception it throws is logged and otherwise ignored.
   */
  onRunUpdated: (run: TriggeredRun) => void;
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
  /**
   * Looks for due runs now, e.g. right after runs were queued. Does nothing unless started.
   * `actionIds` are the actions of the runs just queued (null for a run without one): when the
   * last claim found nothing due outside the actions it passed over, and nothing that could
   * change that happened since, a wake whose every action is among those does nothing, since a
   * claim would pass its runs over too. Without `actionIds`, anything may be due.
   */
  wake(actionIds?: readonly (string | null)[]): void;
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

/** A claimed run's delivery as planned when it was claimed, or what planning it threw. */
type Planned = { delivery: RunDelivery } | { error: unknown };

/**
 * The engine's choice for a claimed run (see `chooseFor`), with the slot it took and its plan;
 * no plan when the run is not to be executed (handed back, or in flight here already).
 */
interface Chosen {
  choice: ClaimChoice;
  slot?: Slot;
  plan?: Planned;
}

interface InFlight {
  done: Promise<void>;
  controller: AbortController;
  /** Its request is over; only its writes remain, so a claim of the same run is a new attempt. */
  settling: boolean;
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

const RESULT_MAX = 500;

/** Claims one fill may make before it leaves the rest to the next (see `fill`). */
const CLAIMS_PER_FILL_MAX = 32;

/** How long a destination may take to answer and still borrow idle slots (see slots.ts). */
const PATIENCE_MS_MAX = 1_000;

function describeOutcome(outcome: DeliveryOutcome): string {
  if (outcome.noOp) return NO_OP_RESULT;
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
 * incoming-webhook URLs are secrets and all point at hooks.slack.com anyway. Null when the run
 * has no action, a no-op action or a URL that does not parse; such runs are skipped, succeed or
 * fail without a request.
 */
function destinationOf(action: DeliveryAction | null): string | null {
  if (action === null) return null;
  switch (action.kind) {
    case 'WEBHOOK':
      if (action.url === null) return null;
      try {
        return new URL(action.url).origin;
      } catch {
        return null;
      }
    case 'SLACK':
      return 'slack';
    case 'NO_OP':
      // Sends no request, so it needs no slot.
      return null;
    default:
      return unreachable(action.kind);
  }
}

/** What an attempt's end says about its destination, for slot sharing. */
function healthOf(outcome: DeliveryOutcome | undefined): AttemptHealth {
  if (outcome === undefined) return null;
  if (outcome.statusCode !== undefined && outcome.errorClass === undefined) {
    return { answered: true, durationMs: outcome.durationMs };
  }
  return outcome.errorClass === 'TIMEOUT' || outcome.errorClass === 'NETWORK_ERROR'
    ? { answered: false }
    : null;
}

/** The stored form of an attempt's outcome. */
const attemptOutcome = (outcome: DeliveryOutcome): AttemptOutcome => ({
  durationMs: outcome.durationMs,
  statusCode: outcome.statusCode ?? null,
  errorClass: outcome.errorClass ?? null,
  errorMessage: outcome.errorMessage ?? null,
  responseBody: outcome.responseBody,
});

/**
 * Creates the delivery engine: it claims due triggered runs with a lease, sends them with
 * {@link deliver}, records one attempt per try, and moves each run through RUNNING → SUCCEEDED,
 * or RUNNING → RETRYING → RUNNING … → FAILED, or SKIPPED, publishing every change through
 * `onRunUpdated` after it commits.
 *
 * Whenever slots are free it claims as many due runs as there are free slots in one conditional
 * write (`DeliveryStore.claimDue`), oldest due first, so several engines on one database never
 * claim the same run twice; a RUNNING run whose lease expired (its worker died) is claimed again.
 * The claim loads everything the attempts need, and starts the attempts to be made now (on
 * SQLite in its own commit). Slots are shared between destinations (see
 * {@link destinationOf} and slots.ts): a destination gets half of them while others wait, and
 * idle ones when nobody else needs them and it answers promptly, so a receiver that hangs on
 * every request cannot hold every slot, and a lone fast receiver can use them all.
 *
 * An attempt's row is written, and counted in the run's `attemptCount`, when it starts (with the
 * claim, or on its own when the run's previous execution was still writing its end), in one
 * transaction guarded by the lease; its outcome and the run's new state are written together
 * when it ends. An attempt that never ends (the process was killed, perhaps by the attempt
 * itself) is marked `INTERRUPTED` when the run is claimed again and still counts, so
 * `config.retry.maxAttempts` (attempts since the run was last queued; a re-delivery resets the
 * count, attempt numbers keep counting) ends such a run FAILED too. An attempt aborted by
 * `stop()` is recorded as `ABORTED` and not counted: the server chose to stop, the receiver did
 * not fail. Every attempt ends within `timeoutMs` (see {@link deliver}); `loadConfig` refuses a
 * `leaseMs` an attempt could outlive. Should one outlive its lease anyway, another worker may
 * deliver the run too, and the late result is dropped.
 */
export function createDeliveryEngine(deps: DeliveryEngineDeps): DeliveryEngine {
  const { store, decrypted, clock, config } = deps;
  const logger = deps.logger.child({ component: 'delivery' });
  const workerId = deps.workerId ?? `${hostname()}:${process.pid}:${newId().slice(0, 8)}`;
  const random = deps.random ?? Math.random;
  // The outbound policy, parsed once: the agent's connector and every request check with it.
  const guard = createAddressGuard(config);
  const dispatcher = createGuardedAgent({
    policy: config,
    guard,
    timeoutMs: config.timeoutMs,
    lookup: deps.lookup,
    ...(deps.ca === undefined ? {} : { ca: deps.ca }),
  });
  const slots = createDestinationSlots({
    concurrency: config.concurrency,
    patienceMs: Math.min(PATIENCE_MS_MAX, config.timeoutMs / 2),
  });
  /** Runs executing, until their last write; see `drain` and `stop`. */
  const inFlight = new Map<string, InFlight>();
  /** Slots in use: runs executing whose attempt has not ended yet. */
  let busy = 0;
  let started = false;
  let stopping = false;
  let stopped: Promise<void> | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let tickPending = false;
  let filling: Promise<void> | undefined;
  let fillAgain = false;
  /**
   * Whether runs may be waiting whose destinations are below their share. Cleared when a fair
   * claim comes back short; set when runs may have come due since (wake, poll, drain) or a
   * destination dropped below its share while another borrows. While clear, claims lend idle
   * slots (see slots.ts).
   */
  let othersMayWait = true;
  /**
   * The actions passed over by the claim that ended the last fill, when that claim returned
   * nothing; the empty set when it was a fair claim that passed nothing over, handed nothing back
   * and came back short (it took all that was due); undefined when unknown. While set, every due
   * run belongs to one of these actions, apart from runs that came due with time (retries,
   * expired leases) or were handed back by another process, which the poll finds, as it would
   * without a wake: so a wake whose runs all belong to these actions may skip its claims, which
   * would come back empty, and while the set is empty so may a slot's release (with nothing
   * passed over, a freed slot lets no run go). They would, because the next claim passes over at
   * least these actions:
   *
   * - only a claim that passed nothing over (so nothing is recorded but the empty set) or a
   *   claim that lends (`fair` false) ends a fill with nothing, and a fair claim passes over
   *   every action a lending one does at the same moment (a destination full for lending is
   *   full);
   * - a lending claim passes over more as time goes on (a destination's attempts outlive its
   *   patience), never less, until a slot is released;
   * - `admit` only adds slots and actions, and only after a claim returned runs.
   *
   * So everything else that may change what is due or what is passed over forgets it: a claim
   * (whatever it returns; runs it hands back are due again), a slot released while the set is not
   * empty, an attempt's end recorded as a retry (due again, perhaps at once), a wake that is not
   * skipped, the poll, `drain`, `start` and `stop`. `forgotten` counts those, so that a claim
   * during which one happened records nothing. A skipped wake leaves `othersMayWait` alone: its
   * fair claim would have come back empty and cleared it again.
   */
  let quiet: ReadonlySet<string> | undefined;
  let forgotten = 0;
  const forget = (): void => {
    quiet = undefined;
    forgotten++;
  };

  const publish = (run: TriggeredRun): void => {
    try {
      deps.onRunUpdated(run);
    } catch (error) {
      logger.error({ err: error, runId: run.id }, 'onRunUpdated threw');
    }
  };

  /**
   * Claims due runs into free slots and launches them. Fair claims come first while runs of
   * destinations below their share may wait; when one comes back short, idle slots are lent.
   * Runs claimed beyond their destination's slots are handed back, and their actions passed over
   * by the next claim, so every claim either launches runs or learns. One fill at a time; a call
   * during a fill makes it go round once more.
   */
  function fill(): Promise<void> {
    if (filling) {
      fillAgain = true;
      return filling;
    }
    filling = (async () => {
      try {
        for (;;) {
          fillAgain = false;
          const cutShort = await fillOnce();
          if (stopping || !(fillAgain || cutShort)) break;
          // Let I/O in between long runs of claims: the store may answer without yielding.
          if (cutShort) await new Promise((resolve) => setImmediate(resolve));
        }
      } catch (error) {
        logger.error({ err: error }, 'claiming due runs failed');
      } finally {
        filling = undefined;
      }
    })();
    return filling;
  }

  /** One round of claims; true when it stopped at its limit and more may be due. */
  async function fillOnce(): Promise<boolean> {
    for (let claims = 0; claims < CLAIMS_PER_FILL_MAX; claims++) {
      const room = config.concurrency - busy;
      if (stopping || room <= 0) return false;
      forget();
      const seen = forgotten;
      if (slots.takeFreedShare()) othersMayWait = true;
      const fair = othersMayWait;
      const now = clock.now();
      const monotonic = performance.now();
      const passOver = slots.passOver(fair, monotonic);
      // What to do with each claimed run is chosen as the store claims it, so that the attempts
      // to be made now start with the claim (on SQLite, in its commit).
      const chosen = new Map<string, Chosen>();
      const choose = (run: ClaimedRun): ClaimChoice => {
        let choice = chosen.get(run.id);
        if (choice === undefined) {
          choice = stopping ? { choice: 'handBack' } : chooseFor(run, fair, monotonic);
          chosen.set(run.id, choice);
        }
        return choice.choice;
      };
      let claimed: ClaimedRun[];
      try {
        claimed = await store.claimDue(
          {
            owner: workerId,
            now,
            leaseExpiresAt: new Date(now.getTime() + config.leaseMs),
            limit: room,
            passOver,
          },
          choose,
        );
      } catch (error) {
        for (const { slot } of chosen.values()) slot?.release(null);
        throw error;
      }
      // The store gave back the runs chosen to be. Runs chosen for while the store claimed
      // again (a rolled-back group commit), and not claimed in the end, give their slots back.
      const returned = new Set(claimed.map((run) => run.id));
      let gaveBack = 0;
      for (const [runId, { choice, slot }] of chosen) {
        if (returned.has(runId)) continue;
        slot?.release(null);
        if (choice === 'handBack') gaveBack++;
      }
      const handBack: string[] = [];
      for (const run of claimed) {
        // A store that did not ask (a wrapper in a test, say) has its runs chosen for now.
        const choice = chosen.get(run.id) ?? chooseFor(run, fair, monotonic);
        if (choice.choice === 'handBack') handBack.push(run.id);
        // Once stopping, only runs whose attempt the claim started go on (stop waits for them);
        // the others go back.
        else if (stopping && run.attempt === undefined) {
          if (choice.plan !== undefined) handBack.push(run.id);
          choice.slot?.release(null);
        }
        // Ours already, still in flight past its lease (a clock jump): the claim only renewed it.
        else if (choice.plan !== undefined) launch(run, choice.slot, choice.plan);
      }
      if (handBack.length > 0) await store.unclaim(workerId, handBack, clock.now());
      if (stopping) return false;
      const taken = claimed.length + gaveBack;
      if (taken < room) {
        // Nothing more is due outside the actions passed over. Idle slots may be lent now,
        // unless this claim passed nothing over or lent already.
        if (!fair || passOver.length === 0) {
          if (forgotten === seen) {
            if (taken === 0) quiet = new Set(passOver);
            // A fair claim that passed nothing over and handed nothing back took all that was due.
            else if (fair && passOver.length === 0 && gaveBack + handBack.length === 0) {
              quiet = new Set();
            }
          }
          return false;
        }
        othersMayWait = false;
      }
    }
    return true;
  }

  /**
   * What to do with a claimed run: nothing when an attempt of it is under way here already;
   * hand it back when its destination has no slot for it; otherwise take the slot, plan the
   * delivery, and start the attempt in the claim when one is to be made now (not when the run is
   * skipped, has no attempts left, or its previous execution is still writing its end).
   */
  function chooseFor(run: ClaimedRun, fair: boolean, monotonic: number): Chosen {
    if (running(run.id)) return { choice: 'keep' };
    const destination = destinationOf(run.action);
    const slot =
      destination === null || run.run.actionId === null
        ? undefined
        : slots.admit(destination, run.run.actionId, fair, monotonic);
    if (slot === null) return { choice: 'handBack' };
    let plan: Planned;
    try {
      plan = { delivery: planDelivery(decrypted, run) };
    } catch (error) {
      // Thrown again by the execution, which logs it and leaves the run to its lease.
      return { choice: 'keep', slot, plan: { error } };
    }
    const { kind } = plan.delivery;
    const attempt =
      (kind === 'deliver' || kind === 'misconfigured') &&
      run.run.attemptCount < config.retry.maxAttempts &&
      !inFlight.has(run.id);
    return { choice: attempt ? 'start' : 'keep', slot, plan };
  }

  /** Whether an attempt of the run is under way here (not merely writing its end). */
  function running(runId: string): boolean {
    const current = inFlight.get(runId);
    return current !== undefined && !current.settling;
  }

  function launch(run: ClaimedRun, slot: Slot | undefined, plan: Planned): void {
    const controller = new AbortController();
    busy++;
    let holding = true;
    // The slot is free once the request is over: the next claim can then go into the same
    // commit as this attempt's result, and may take this very run again (a retry due at once)
    // before this execution has returned; the new one then starts after it.
    const free = (outcome: DeliveryOutcome | undefined): void => {
      if (!holding) return;
      holding = false;
      entry.settling = true;
      busy--;
      slot?.release(healthOf(outcome));
      // Nothing was due but what the claims took, and nothing passed over: a claim now would
      // come back empty (at low load, one empty write transaction per run). This run's retry is
      // claimed when its attempt's end is recorded.
      if (quiet?.size === 0) return;
      forget();
      if (started) scheduleTick();
    };
    const previous = inFlight.get(run.id)?.done;
    // In the map before it begins: an attempt the claim started may run to its end at once.
    const entry: InFlight = { done: Promise.resolve(), controller, settling: false };
    inFlight.set(run.id, entry);
    const begin = () => execute(run, plan, controller, free);
    entry.done = (previous ? previous.then(begin) : begin())
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
        if (inFlight.get(run.id) === entry) inFlight.delete(run.id);
        free(undefined);
      });
  }

  async function execute(
    run: ClaimedRun,
    planned: Planned,
    controller: AbortController,
    ended: (outcome: DeliveryOutcome) => void,
  ): Promise<void> {
    publish(run.run);
    const lease: Lease = { runId: run.id, owner: workerId };
    if (run.openAttempts > 0) deps.telemetry?.leaseExpired();
    if ('error' in planned) throw planned.error;
    const plan = planned.delivery;
    if (plan.kind === 'missing') return;
    if (plan.kind === 'skip') {
      await finish(lease, { status: 'SKIPPED', result: plan.reason });
      return;
    }
    if (run.run.attemptCount >= config.retry.maxAttempts) {
      // Only an attempt that never ended (or a lowered TRIPLINE_RETRY_MAX_ATTEMPTS) leaves a
      // claimable run without attempts left: the process died during it, perhaps because of
      // it, and one more try could kill it again.
      const why =
        run.openAttempts > 0 ? `Interrupted: ${INTERRUPTED_ATTEMPT_MESSAGE}` : 'No attempts left';
      await finish(lease, {
        status: 'FAILED',
        result: `${why}; ${gaveUp(run.run.attemptCount)}`,
      });
      return;
    }
    if (run.openAttempts > 0) {
      logger.warn({ runId: run.id }, 'the previous attempt was interrupted; trying again');
    }
    const attempt = run.attempt ?? (await store.startAttempt(lease, clock.now()));
    if (attempt === null) throw new LeaseLostError();
    const observed = deps.telemetry?.attempt({
      runId: run.id,
      attemptNumber: attempt.attemptNumber,
      destination: destinationOf(run.action),
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
            guard,
            controller,
            ...(observed?.headers ? { headers: observed.headers } : {}),
          });
    ended(outcome);
    observed?.end(outcome);
    if (outcome.errorClass === 'ABORTED') {
      await release(lease, attempt, outcome);
      return;
    }
    await record(run, lease, attempt, outcome);
  }

  async function finish(
    lease: Lease,
    change: { status: 'SKIPPED' | 'FAILED'; result: string },
  ): Promise<void> {
    const finished = await store.finishRun(lease, change, clock.now());
    if (finished === null) throw new LeaseLostError();
    publish(finished);
  }

  /** The run's new state after an attempt: the retry policy applied to the outcome. */
  function verdictOf(attempt: StartedAttempt, outcome: DeliveryOutcome, now: Date): RunVerdict {
    const attempts = attempt.run.attemptCount;
    const verdict = classify(outcome);
    const what = describeOutcome(outcome);
    if (verdict === 'success') {
      const result = outcome.noOp ? what : `Delivered: ${what}`;
      return { status: 'SUCCEEDED', result, nextAttemptAt: null };
    }
    if (verdict === 'gone') {
      return { status: 'FAILED', result: 'Gone (410): action disabled', nextAttemptAt: null };
    }
    if (verdict === 'retry' && attempts < config.retry.maxAttempts) {
      const delay = nextRetryDelayMs(config.retry, attempts, random, outcome.retryAfterMs);
      return {
        status: 'RETRYING',
        result: `${what}; retrying in ${seconds(delay)}`,
        nextAttemptAt: new Date(now.getTime() + delay),
      };
    }
    return {
      status: 'FAILED',
      result: verdict === 'retry' ? `${what}; ${gaveUp(attempts)}` : what,
      nextAttemptAt: null,
    };
  }

  async function record(
    run: ClaimedRun,
    lease: Lease,
    attempt: StartedAttempt,
    outcome: DeliveryOutcome,
  ): Promise<void> {
    const now = clock.now();
    const verdict = verdictOf(attempt, outcome, now);
    let disable: DisableAction | undefined;
    if (classify(outcome) === 'gone' && run.action !== null) {
      const { action } = run;
      const reason = `The receiver answered 410 Gone on ${now.toISOString()}`;
      disable = {
        actionId: action.id,
        reason,
        audit: {
          entityId: action.entityId,
          actorId: null,
          action: 'action.disabled',
          targetType: ACTION_NOUNS[action.kind],
          targetId: action.id,
          details: { name: action.name, reason, runId: publicId('run', run.id) },
        },
      };
    }
    const recorded = await store.finishAttempt(
      lease,
      attempt.id,
      attemptOutcome(outcome),
      verdict,
      now,
      disable,
    );
    if (recorded === null) throw new LeaseLostError();
    const terminal = verdict.status !== 'RETRYING';
    // Due again, perhaps at once: the claim after the slot was freed may have been skipped, or
    // may have come before this write.
    if (!terminal) {
      forget();
      if (started) scheduleTick();
    }
    logger[terminal && verdict.status !== 'SUCCEEDED' ? 'warn' : 'info'](
      {
        runId: run.id,
        attemptNumber: attempt.attemptNumber,
        status: verdict.status,
        statusCode: outcome.statusCode,
        errorClass: outcome.errorClass,
      },
      verdict.result,
    );
    publish(recorded);
  }

  /**
   * Puts a run whose attempt `stop()` aborted back in line, due now: QUEUED when no other attempt
   * counts since it was queued, RETRYING otherwise. The attempt stays in the history as ABORTED
   * but gives its count back.
   */
  async function release(
    lease: Lease,
    attempt: StartedAttempt,
    outcome: DeliveryOutcome,
  ): Promise<void> {
    const released = await store.releaseAttempt(
      lease,
      attempt.id,
      attemptOutcome(outcome),
      'Interrupted by shutdown; it will be delivered again',
      clock.now(),
    );
    if (released !== null) publish(released);
  }

  function scheduleTick(): void {
    if (tickPending || stopping) return;
    tickPending = true;
    setImmediate(() => {
      tickPending = false;
      void fill();
    }).unref();
  }

  function schedulePoll(): void {
    if (stopping) return;
    pollTimer = setTimeout(() => {
      // Retries come due with time, and other processes queue runs: look at everything again.
      forget();
      othersMayWait = true;
      void fill();
      schedulePoll();
    }, config.pollIntervalMs);
    pollTimer.unref();
  }

  return {
    start() {
      if (started || stopping) return;
      started = true;
      forget();
      scheduleTick();
      schedulePoll();
    },
    wake(actionIds) {
      if (!started) return;
      const known = quiet;
      if (known && actionIds?.every((id) => id !== null && known.has(id))) return;
      forget();
      othersMayWait = true;
      scheduleTick();
    },
    async drain() {
      forget();
      othersMayWait = true;
      for (;;) {
        await fill();
        if (inFlight.size === 0) return;
        await Promise.race([...inFlight.values()].map((run) => run.done));
      }
    },
    stop(graceMs) {
      if (stopped) return stopped;
      stopping = true;
      forget();
      clearTimeout(pollTimer);
      stopped = (async () => {
        // A claim under way launches its runs before the in-flight set is read.
        await filling;
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
