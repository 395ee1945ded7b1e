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
  /** The run as the claim left it (RUNNING), to publish without reading it again. */
  run: TriggeredRun;
  /** Attempts started since the run was last queued, interrupted ones included. */
  attemptCount: number;
  /**
   * Attempts of the run that started and never recorded an end: an earlier owner died or lost
   * the run during them. The next write for the run marks them INTERRUPTED.
   */
  openAttempts: number;
  actionId: string | null;
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
  /** The run's attempt count with this attempt. */
  attemptCount: number;
  /** The run as this attempt's start left it. */
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
   */
  claimDue(request: ClaimRequest): Promise<ClaimedRun[]>;
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
 * this order: the run (id, attempt count, action id, open attempts), its event (4–14, and its
 * tag at 35), automation (15–21), action (22–33), sealed secrets as [id, name, ciphertext]
 * (34), its run event with the training run's names (36–46), and the run as the claim left it
 * ({@link runStateColumns} from 47).
 */
export function claimedRun(row: readonly unknown[], decode: ColumnDecoders): ClaimedRun {
  const [id, attemptCount, actionId, openAttempts] = row as [string, number, string | null, number];
  const event =
    row[4] === null
      ? null
      : {
          id: row[4] as string,
          eventType: row[5] as EventType,
          collectionName: row[6] as string,
          artifactType: row[7] as string,
          versionIndex: row[8] as number,
          alias: row[9] as string | null,
          tag: row[35] as string | null,
          author: row[10] as string,
          metadata: decode.json<Record<string, unknown>>(row[11]),
          entityName: row[12] as string,
          projectName: row[13] as string | null,
          registryName: row[14] as string | null,
        };
  const automation =
    row[15] === null
      ? null
      : {
          id: row[15] as string,
          name: row[16] as string,
          enabled: decode.bool(row[17]),
          payloadTemplate: row[18] as string | null,
          slackTitle: row[19] as string | null,
          slackMessage: row[20] as string | null,
          slackSeverity: row[21] as SlackSeverity | null,
        };
  const action: DeliveryAction | null =
    row[22] === null
      ? null
      : {
          id: row[22] as string,
          entityId: row[23] as string,
          kind: row[24] as ActionKind,
          name: row[25] as string,
          enabled: decode.bool(row[26]),
          disabledReason: row[27] as string | null,
          url: row[28] as string | null,
          headers: decode.json<Record<string, string>>(row[29]),
          channel: row[30] as string | null,
          accessTokenSecretId: row[31] as string | null,
          signingSecretId: row[32] as string | null,
          slackUrlSecretId: row[33] as string | null,
        };
  const secrets = (decode.json<[string, string, string][]>(row[34]) ?? []).map(
    ([secretId, name, ciphertext]): SealedSecret => ({ id: secretId, name, ciphertext }),
  );
  const runEvent: DeliveryRunEvent | null =
    row[36] === null || row[42] === null
      ? null
      : {
          id: row[36] as string,
          eventType: row[37] as EventType,
          runState: row[38] as string,
          metricName: row[39] as string | null,
          metricValues: decode.json<number[]>(row[40]),
          condition: row[41] as string,
          trainingRunId: row[42] as string,
          runName: row[43] as string,
          entityName: row[44] as string,
          projectName: row[45] as string,
          reportedBy: row[46] as string | null,
        };
  return {
    id,
    run: runFromRow(row, 47),
    attemptCount,
    openAttempts,
    actionId,
    event,
    runEvent,
    automation,
    action,
    secrets,
  };
}
