/* What the delivery engine needs: claims, leases, what an attempt needs, attempt results. */

import type { AuditRecord } from './audit.js';
import type { ActionKind, EventType } from './config.js';
import type { TriggeredRun } from './events.js';

/**
 * The message of an attempt that started and never recorded an end: its process died (perhaps
 * because of it) or its worker lost the run. Stores write it, with error class `INTERRUPTED`, on
 * every attempt row they find open when the run's next owner writes.
 */
export const INTERRUPTED_ATTEMPT_MESSAGE =
  'The attempt never finished: the server stopped (crashed or was killed) or lost the run before recording it';

/**
 * How many of the oldest due runs a claim that passes over actions reads in line before it reads
 * by action instead (see the stores' claims): enough that a few full destinations' runs near the
 * head are stepped over there, few enough that stepping over them costs less than reading every
 * action's line.
 */
export const PASS_OVER_HEAD = 256;

/** A claim: the runs due now, leased to one owner. */
export interface ClaimRequest {
  /** Names the claim in the lease; every later write for these runs must name it too. */
  owner: string;
  /** Runs due at or before this time are taken. */
  now: Date;
  /** The lease ends here; the run is due again then (a crashed owner's run is taken again). */
  leaseExpiresAt: Date;
  /** At most this many runs. */
  limit: number;
  /**
   * Runs of these actions are passed over and left due (their destination has no free slot);
   * runs of other actions behind them are taken instead.
   */
  passOver: readonly string[];
}

/** The event a run was created for, as an attempt renders it. */
export interface DeliveryEvent {
  id: string;
  eventType: EventType;
  collectionName: string;
  artifactType: string;
  versionIndex: number;
  alias: string | null;
  tag: string | null;
  author: string;
  metadata: Record<string, unknown> | null;
  entityName: string;
  /** Null when the event happened in a registry. */
  projectName: string | null;
  /** Null when the event happened in a project. */
  registryName: string | null;
}

/** The run event (a fired run condition) a run was created for, as an attempt renders it. */
export interface DeliveryRunEvent {
  id: string;
  eventType: EventType;
  /** The training run's state when the condition fired. */
  runState: string;
  metricName: string | null;
  metricValues: number[] | null;
  condition: string;
  trainingRunId: string;
  runName: string;
  /** The name of the account that reported the run; null once it is deleted. */
  reportedBy: string | null;
  entityName: string;
  projectName: string;
}

/** How loud a Slack message is. */
export type SlackSeverity = 'INFO' | 'WARN' | 'ERROR';

/** The automation of a run as it is now: its templates are current, not those of the run's time. */
export interface DeliveryAutomation {
  id: string;
  name: string;
  enabled: boolean;
  payloadTemplate: string | null;
  slackTitle: string | null;
  slackMessage: string | null;
  slackSeverity: SlackSeverity | null;
}

/** What a delivery reads of an action (the fields carry the stored action's names). */
export interface DeliveryAction {
  id: string;
  entityId: string;
  kind: ActionKind;
  name: string;
  enabled: boolean;
  disabledReason: string | null;
  url: string | null;
  headers: Record<string, string> | null;
  channel: string | null;
  accessTokenSecretId: string | null;
  signingSecretId: string | null;
  slackUrlSecretId: string | null;
}

/** A stored secret, still encrypted. */
export interface SealedSecret {
  id: string;
  name: string;
  /**
   * The envelope, opened with the secret's id as associated data. Every sealing draws a fresh IV,
   * so it changes with every value (rotation) and names the version a plaintext belongs to.
   */
  ciphertext: string;
}

/** A claimed run with everything its attempt needs, read in the claim. */
export interface ClaimedRun {
  id: string;
  /**
   * The run as the claim left it (RUNNING), to publish without reading it again; its
   * `attemptCount` counts attempts started since it was last queued, interrupted ones included.
   */
  run: TriggeredRun;
  /**
   * Attempts of the run that started and never recorded an end: an earlier owner died or lost
   * the run during them. The next write for the run marks them INTERRUPTED.
   */
  openAttempts: number;
  /** Null for a run event's run, and when the event is gone (the run is about to go with it). */
  event: DeliveryEvent | null;
  /** Null for an artifact event's run, and when the run event is gone. */
  runEvent: DeliveryRunEvent | null;
  /** Null when the automation was deleted. */
  automation: DeliveryAutomation | null;
  /** Null when the action was deleted. */
  action: DeliveryAction | null;
  /**
   * The action's secrets (URL, token, signing key) and those the automation's templates name,
   * each once.
   */
  secrets: SealedSecret[];
  /** The attempt the claim started, when its `choose` said `start`; absent otherwise. */
  attempt?: StartedAttempt;
}

/** What the engine does with a run it claimed, chosen as the claim is made (see {@link DeliveryStore.claimDue}). */
export type ClaimChoice =
  /** Start the run's attempt with the claim, as {@link DeliveryStore.startAttempt} would. */
  | 'start'
  /** Keep the run leased, and leave the rest to the engine. */
  | 'keep'
  /** Give the run back untouched, as {@link DeliveryStore.unclaim} would; it is not returned. */
  | 'handBack';

/**
 * A claim's runs as `choose` sorts them (see {@link DeliveryStore.claimDue}), in claim order: those
 * to return (`kept`), among them those whose attempt the store starts (`start`), and the ids of
 * those to give back. Without `choose`, every run is kept and none started.
 */
export function sortClaimed(
  claimed: readonly ClaimedRun[],
  choose: ((run: ClaimedRun) => ClaimChoice) | undefined,
): { kept: ClaimedRun[]; start: ClaimedRun[]; handBack: string[] } {
  const sorted = { kept: [] as ClaimedRun[], start: [] as ClaimedRun[], handBack: [] as string[] };
  for (const run of claimed) {
    const choice = choose?.(run) ?? 'keep';
    if (choice === 'handBack') {
      sorted.handBack.push(run.id);
      continue;
    }
    if (choice === 'start') sorted.start.push(run);
    sorted.kept.push(run);
  }
  return sorted;
}

/** Which run, under which lease. Every write after a claim is made only while the lease holds. */
export interface Lease {
  runId: string;
  owner: string;
}

/** The attempt row written when an attempt starts. */
export interface StartedAttempt {
  id: string;
  /** 1-based, counting every attempt the run ever had. */
  attemptNumber: number;
  startedAt: Date;
  /** The run as this attempt's start left it; its `attemptCount` counts this attempt. */
  run: TriggeredRun;
}

/** How an attempt ended, as stored on its row. */
export interface AttemptOutcome {
  durationMs: number;
  statusCode: number | null;
  errorClass: string | null;
  errorMessage: string | null;
  responseBody: string | null;
}

/** A run's state after its attempt. */
export interface RunVerdict {
  status: 'SUCCEEDED' | 'RETRYING' | 'FAILED';
  result: string;
  /** When a RETRYING run is due again; null otherwise. */
  nextAttemptAt: Date | null;
}

/** The receiver said the action's endpoint is gone: disable the action, once, with an audit entry. */
export interface DisableAction {
  actionId: string;
  reason: string;
  audit: AuditRecord;
}

/** The runs not yet finished, as a metrics scrape shows them. */
export interface QueueDepth {
  /** QUEUED, RUNNING and RETRYING runs. */
  byStatus: { QUEUED: number; RUNNING: number; RETRYING: number };
  /** QUEUED or RETRYING runs whose time has come. */
  dueNow: number;
  /** QUEUED or RETRYING runs waiting for a later time. */
  scheduled: number;
  /** How long the oldest due run has been due, in seconds; 0 when none is due. */
  oldestDueAgeSeconds: number;
  /** RUNNING runs whose lease has passed: their server died or stalls; another takes them. */
  leaseExpired: number;
}

/** Operations of the delivery engine. */
export interface DeliveryStore {
  /**
   * Takes up to `limit` due runs, oldest due first, and leases them to `owner` (status RUNNING)
   * in one conditional write, so engines sharing the database never take the same run; a RUNNING
   * run whose lease expired is due and taken again. Returns them with everything their attempts
   * need. Reads the due runs from an index in due order: the backlog is never sorted.
   *
   * With `choose`, each claimed run, in order, is put to it, and the claim carries out its
   * choice: it starts the attempts of the runs that are to be tried now (their `attempt`, started
   * at `request.now`) and gives back the runs chosen to be, which are left out of the result. On
   * SQLite that happens in the claim's own transaction, so a run's claim and its attempt's start
   * commit together; on PostgreSQL in one statement right after the claim's.
   * `choose` must not write through the store. It may be asked again about the same run, or about
   * other runs, should the store have to claim again (a rolled-back group commit); the choices
   * made for the runs returned are the ones that hold.
   */
  claimDue(request: ClaimRequest, choose?: (run: ClaimedRun) => ClaimChoice): Promise<ClaimedRun[]>;
  /**
   * Gives claimed runs back untouched, for runs claimed in a batch beyond a destination's slots:
   * QUEUED or RETRYING again (by their attempt count), due when they were due before. Runs no
   * longer held under `owner` are left alone.
   */
  unclaim(owner: string, runIds: readonly string[], now: Date): Promise<void>;
  /**
   * Writes an attempt's row and counts it on the run, in one transaction, after closing the run's
   * open attempts as INTERRUPTED. Null when the lease no longer holds (nothing written).
   */
  startAttempt(lease: Lease, startedAt: Date): Promise<StartedAttempt | null>;
  /**
   * Records how an attempt ended and the run's new state together, and disables the action when
   * told to (with its audit entry, only if it was still enabled). Returns the run as it left it;
   * null when the lease no longer holds: a late result is dropped and nothing is written.
   */
  finishAttempt(
    lease: Lease,
    attemptId: string,
    outcome: AttemptOutcome,
    verdict: RunVerdict,
    now: Date,
    disable?: DisableAction,
  ): Promise<TriggeredRun | null>;
  /**
   * Ends a run without an attempt (SKIPPED, or FAILED without attempts left), closing its open
   * attempts as INTERRUPTED. Returns the run as it left it; null when the lease no longer holds.
   */
  finishRun(
    lease: Lease,
    change: { status: 'SKIPPED' | 'FAILED'; result: string },
    now: Date,
  ): Promise<TriggeredRun | null>;
  /**
   * Puts a run whose attempt the server aborted back in line, due `now`, with `result` as its
   * result: the attempt is recorded with `outcome` and no longer counted, and the run is QUEUED
   * when no other attempt counts, RETRYING otherwise. Returns the run as it left it; null when
   * the lease no longer holds.
   */
  releaseAttempt(
    lease: Lease,
    attemptId: string,
    outcome: AttemptOutcome,
    result: string,
    now: Date,
  ): Promise<TriggeredRun | null>;
  /**
   * Counts the runs not yet finished at `now`. Reads only those runs (an index holds them), so
   * finished runs, however many, cost nothing.
   */
  queueDepth(now: Date): Promise<QueueDepth>;
  /**
   * The entity's secrets with these ids or names, for a delivery made outside a run (a test of
   * an action).
   */
  findSecrets(
    entityId: string,
    wanted: { ids: readonly string[]; names: readonly string[] },
  ): Promise<SealedSecret[]>;
}

/**
 * The column of each field of a run, in the order the claim and every write of a run's status
 * return them on both engines (after a statement's own columns, if any), for
 * {@link runFromRow}: the run as the write left it, which the engine publishes without reading it
 * again. Every field of {@link TriggeredRun} is listed, as the compiler checks.
 */
const RUN_STATE = {
  id: 'id',
  entityId: 'entity_id',
  eventId: 'event_id',
  runEventId: 'run_event_id',
  trainingRunId: 'training_run_id',
  automationId: 'automation_id',
  automationName: 'automation_name',
  actionId: 'action_id',
  projectId: 'project_id',
  registryId: 'registry_id',
  status: 'status',
  attemptCount: 'attempt_count',
  nextAttemptAt: 'next_attempt_at',
  leaseOwner: 'lease_owner',
  leaseExpiresAt: 'lease_expires_at',
  result: 'result',
  createdAt: 'created_at',
  updatedAt: 'updated_at',
  finishedAt: 'finished_at',
} as const satisfies Record<keyof TriggeredRun, string>;

const RUN_FIELDS = Object.keys(RUN_STATE) as (keyof TriggeredRun)[];

/** Fields stored as epoch milliseconds: numbers on SQLite, bigint text from node-postgres. */
const TIMES: ReadonlySet<keyof TriggeredRun> = new Set([
  'nextAttemptAt',
  'leaseExpiresAt',
  'createdAt',
  'updatedAt',
  'finishedAt',
]);

/** {@link RUN_STATE}'s columns as a select list, each qualified by `table` when given. */
export const runStateColumns = (table?: string): string =>
  RUN_FIELDS.map((field) => (table ? `${table}.${RUN_STATE[field]}` : RUN_STATE[field])).join(', ');

/** The run in `row`, whose {@link runStateColumns} start at index `at`. */
export function runFromRow(row: readonly unknown[], at = 0): TriggeredRun {
  const run: Record<string, unknown> = {};
  for (const [index, field] of RUN_FIELDS.entries()) {
    const value = row[at + index];
    run[field] = TIMES.has(field) && value !== null ? new Date(Number(value)) : value;
  }
  return run as unknown as TriggeredRun;
}

/** How an engine's driver hands over a boolean column and a JSON column. */
export interface ColumnDecoders {
  bool(value: unknown): boolean;
  json<T>(value: unknown): T | null;
}

/**
 * A claimed run from one row of an engine's load query, whose columns both engines select in
 * this order: the run's id and open attempts, its event (2–12, and its tag at 33), automation
 * (13–19), action (20–31), sealed secrets as [id, name, ciphertext] (32), its run event with
 * the training run's names (34–44), and the run as the claim left it ({@link runStateColumns}
 * from 45).
 */
export function claimedRun(row: readonly unknown[], decode: ColumnDecoders): ClaimedRun {
  const [id, openAttempts] = row as [string, number];
  const event =
    row[2] === null
      ? null
      : {
          id: row[2] as string,
          eventType: row[3] as EventType,
          collectionName: row[4] as string,
          artifactType: row[5] as string,
          versionIndex: row[6] as number,
          alias: row[7] as string | null,
          tag: row[33] as string | null,
          author: row[8] as string,
          metadata: decode.json<Record<string, unknown>>(row[9]),
          entityName: row[10] as string,
          projectName: row[11] as string | null,
          registryName: row[12] as string | null,
        };
  const automation =
    row[13] === null
      ? null
      : {
          id: row[13] as string,
          name: row[14] as string,
          enabled: decode.bool(row[15]),
          payloadTemplate: row[16] as string | null,
          slackTitle: row[17] as string | null,
          slackMessage: row[18] as string | null,
          slackSeverity: row[19] as SlackSeverity | null,
        };
  const action: DeliveryAction | null =
    row[20] === null
      ? null
      : {
          id: row[20] as string,
          entityId: row[21] as string,
          kind: row[22] as ActionKind,
          name: row[23] as string,
          enabled: decode.bool(row[24]),
          disabledReason: row[25] as string | null,
          url: row[26] as string | null,
          headers: decode.json<Record<string, string>>(row[27]),
          channel: row[28] as string | null,
          accessTokenSecretId: row[29] as string | null,
          signingSecretId: row[30] as string | null,
          slackUrlSecretId: row[31] as string | null,
        };
  const secrets = (decode.json<[string, string, string][]>(row[32]) ?? []).map(
    ([secretId, name, ciphertext]): SealedSecret => ({ id: secretId, name, ciphertext }),
  );
  const runEvent: DeliveryRunEvent | null =
    row[34] === null || row[40] === null
      ? null
      : {
          id: row[34] as string,
          eventType: row[35] as EventType,
          runState: row[36] as string,
          metricName: row[37] as string | null,
          metricValues: decode.json<number[]>(row[38]),
          condition: row[39] as string,
          trainingRunId: row[40] as string,
          runName: row[41] as string,
          entityName: row[42] as string,
          projectName: row[43] as string,
          reportedBy: row[44] as string | null,
        };
  return {
    id,
    run: runFromRow(row, 45),
    openAttempts,
    event,
    runEvent,
    automation,
    action,
    secrets,
  };
}
