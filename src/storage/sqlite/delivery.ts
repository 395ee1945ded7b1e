import { newId } from '../../ids.js';
import {
  type AttemptOutcome,
  type ClaimedRun,
  type ClaimRequest,
  type ColumnDecoders,
  claimedRun,
  type DeliveryStore,
  INTERRUPTED_ATTEMPT_MESSAGE,
  type Lease,
  PASS_OVER_HEAD,
  type QueueDepth,
  runFromRow,
  runStateColumns,
  type StartedAttempt,
  sortClaimed,
} from '../delivery.js';
import type { TriggeredRun } from '../events.js';
import { insertAudit } from './audit.js';
import type { SqliteHandle } from './support.js';

// The statements are written as SQL: each is prepared once and run thousands of times a second
// while a backlog drains, and reading rows as arrays skips every per-row mapping.

/** Holds while the run is leased to the claim's owner. */
const LEASED = `id = @runId AND status = 'RUNNING' AND lease_owner = @owner`;

/** What a claim sets on the runs it takes. */
const TAKE = `
  UPDATE triggered_runs
  SET status = 'RUNNING', lease_owner = @owner, lease_expires_at = @leaseExpiresAt, updated_at = @now`;

/**
 * What a claim returns, to order the runs again (RETURNING comes in table order): the time they
 * were due to be tried (an expired lease's run was due before that) and the rowid.
 */
const TAKEN = `RETURNING id, coalesce(next_attempt_at, 0), rowid`;

/**
 * Takes the oldest due runs (equal times in insertion order). `due_at` is computed from status,
 * next attempt and lease expiry (see the schema); the inner select walks its partial index in
 * order and stops after `limit` rows, so nothing is sorted.
 */
const CLAIM = `${TAKE}
  WHERE rowid IN (
    SELECT rowid FROM triggered_runs WHERE due_at <= @now ORDER BY due_at, rowid LIMIT @limit
  )
  ${TAKEN}`;

/** Takes the runs picked by {@link DUE_NEAR} or {@link DUE_BY_ACTION} (`rowids`: a JSON array). */
const CLAIM_PICKED = `${TAKE}
  WHERE rowid IN (SELECT value FROM json_each(@rowids)) AND due_at <= @now
  ${TAKEN}`;

/**
 * The oldest due runs outside the actions in `passOver` (a JSON array of ids) among the first
 * `head` due runs, at most `limit` of them: SQLite stops reading once it has them.
 */
const DUE_NEAR = `
  SELECT rowid FROM (
    SELECT rowid, action_id FROM triggered_runs
    WHERE due_at <= @now ORDER BY due_at, rowid LIMIT @head)
  WHERE action_id IS NULL OR action_id NOT IN (SELECT value FROM json_each(@passOver))
  LIMIT @limit`;

/** How many runs are due, counted up to `head` (from the due index alone). */
const DUE_COUNT = `
  SELECT count(*) FROM (SELECT 1 FROM triggered_runs WHERE due_at <= @now LIMIT @head)`;

/**
 * The oldest due runs outside the actions in `passOver` (a JSON array of ids), read by action:
 * the actions with live runs are found one index seek each, and each one not passed over gives
 * the head of its line (at most `limit` runs); runs whose action was deleted come with them.
 */
const DUE_BY_ACTION = `
  WITH RECURSIVE live(action_id) AS (
    SELECT min(action_id) FROM triggered_runs WHERE action_id IS NOT NULL AND due_at IS NOT NULL
    UNION ALL
    SELECT (SELECT min(action_id) FROM triggered_runs
      WHERE action_id > live.action_id AND due_at IS NOT NULL)
    FROM live WHERE live.action_id IS NOT NULL
  )
  SELECT rowid FROM (
    SELECT run.due_at, run.rowid FROM live, triggered_runs run
    WHERE live.action_id IS NOT NULL
      AND live.action_id NOT IN (SELECT value FROM json_each(@passOver))
      AND run.rowid IN (
        SELECT line.rowid FROM triggered_runs line
        WHERE line.action_id = live.action_id AND line.due_at <= @now
        ORDER BY line.due_at, line.rowid LIMIT @limit)
    UNION ALL
    SELECT due_at, rowid FROM (
      SELECT due_at, rowid FROM triggered_runs
      WHERE action_id IS NULL AND due_at <= @now ORDER BY due_at, rowid LIMIT @limit)
    ORDER BY 1, 2 LIMIT @limit
  )`;

/**
 * Everything the attempts of claimed runs need, one row per run (`ids`: a JSON array): the run, its event with the names of its entity and project or registry, its automation
 * and action as they are now, how many of its attempts were left open, and the sealed secrets of
 * the action and of the automation's templates (as a JSON array of [id, name, ciphertext]), and
 * the run as the claim left it.
 */
const LOAD = `
  SELECT
    r.id,
    (SELECT count(*) FROM delivery_attempts d
      WHERE d.run_id = r.id AND d.duration_ms IS NULL AND d.error_class IS NULL),
    e.id, e.event_type, e.collection_name, e.artifact_type, e.version_index, e.alias, e.author,
    e.metadata, en.name, p.name, rg.name,
    au.id, au.name, au.enabled, au.payload_template, au.slack_title, au.slack_message,
    au.slack_severity,
    a.id, a.entity_id, a.kind, a.name, a.enabled, a.disabled_reason, a.url, a.headers, a.channel,
    a.access_token_secret_id, a.signing_secret_id, a.slack_url_secret_id,
    (SELECT json_group_array(json_array(s.id, s.name, s.ciphertext)) FROM secrets s
      WHERE s.id IN (
        SELECT a.access_token_secret_id UNION SELECT a.signing_secret_id
        UNION SELECT a.slack_url_secret_id
        UNION SELECT ref.secret_id FROM automation_secret_refs ref WHERE ref.automation_id = au.id)),
    e.tag,
    re.id, re.event_type, re.run_state, re.metric_name, re.metric_values, re.condition,
    tr.id, tr.name, ren.name, rp.name, ru.name,
    ${runStateColumns('r')}
  FROM json_each(@ids) claimed
  JOIN triggered_runs r ON r.id = claimed.value
  LEFT JOIN artifact_events e ON e.id = r.event_id
  LEFT JOIN run_events re ON re.id = r.run_event_id
  LEFT JOIN training_runs tr ON tr.id = re.training_run_id
  LEFT JOIN entities ren ON ren.id = re.entity_id
  LEFT JOIN projects rp ON rp.id = re.project_id
  LEFT JOIN users ru ON ru.id = tr.reported_by_id
  LEFT JOIN entities en ON en.id = e.entity_id
  LEFT JOIN projects p ON p.id = e.project_id
  LEFT JOIN registries rg ON rg.id = e.registry_id
  LEFT JOIN automations au ON au.id = r.automation_id
  LEFT JOIN actions a ON a.id = r.action_id`;

const UNCLAIM = `
  UPDATE triggered_runs
  SET status = CASE WHEN attempt_count = 0 THEN 'QUEUED' ELSE 'RETRYING' END,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = @now
  WHERE id IN (SELECT value FROM json_each(@runIds)) AND status = 'RUNNING' AND lease_owner = @owner`;

const CLOSE_OPEN_ATTEMPTS = `
  UPDATE delivery_attempts SET error_class = 'INTERRUPTED', error_message = @message
  WHERE run_id = @runId AND duration_ms IS NULL AND error_class IS NULL`;

const COUNT_ATTEMPT = `
  UPDATE triggered_runs SET attempt_count = attempt_count + 1, updated_at = @now
  WHERE ${LEASED}
  RETURNING ${runStateColumns()}`;

const INSERT_ATTEMPT = `
  INSERT INTO delivery_attempts (id, run_id, attempt_number, started_at)
  SELECT @id, @runId, coalesce(max(attempt_number), 0) + 1, @startedAt
  FROM delivery_attempts WHERE run_id = @runId
  RETURNING attempt_number`;

const RECORD_OUTCOME = `
  UPDATE delivery_attempts
  SET duration_ms = @durationMs, status_code = @statusCode, error_class = @errorClass,
    error_message = @errorMessage, response_body = @responseBody
  WHERE id = @id`;

const SETTLE_RUN = `
  UPDATE triggered_runs
  SET status = @status, result = @result, next_attempt_at = @nextAttemptAt, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = @now, finished_at = @finishedAt
  WHERE ${LEASED}
  RETURNING ${runStateColumns()}`;

const RELEASE_RUN = `
  UPDATE triggered_runs
  SET status = CASE WHEN attempt_count - 1 <= 0 THEN 'QUEUED' ELSE 'RETRYING' END,
    attempt_count = attempt_count - 1, result = @result, next_attempt_at = @now, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = @now
  WHERE ${LEASED}
  RETURNING ${runStateColumns()}`;

const DISABLE_ACTION = `
  UPDATE actions SET enabled = 0, disabled_reason = @reason, updated_at = @now
  WHERE id = @actionId AND enabled = 1`;

/**
 * The live runs are exactly those with a due time, so the partial due index lists them. A run is
 * due at its next attempt time, or at its creation when it has none.
 */
const QUEUE_DEPTH = `
  SELECT status, count(*),
    sum(coalesce(next_attempt_at, created_at) <= @now),
    min(CASE WHEN coalesce(next_attempt_at, created_at) <= @now
      THEN coalesce(next_attempt_at, created_at) END),
    sum(coalesce(lease_expires_at, 0) <= @now)
  FROM triggered_runs
  WHERE due_at IS NOT NULL
  GROUP BY status`;

const FIND_SECRETS = `
  SELECT id, name, ciphertext FROM secrets
  WHERE entity_id = @entityId
    AND (id IN (SELECT value FROM json_each(@ids)) OR name IN (SELECT value FROM json_each(@names)))`;

type Row = unknown[];

const bool = (value: unknown): boolean => value === 1;

function parseJson<T>(value: unknown): T | null {
  return typeof value === 'string' ? (JSON.parse(value) as T) : null;
}

/** Booleans are 0 or 1 in SQLite, and JSON values are text. */
const decode: ColumnDecoders = { bool, json: parseJson };

const time = (date: Date | null): number | null => (date === null ? null : date.getTime());

/** For `SqliteHandle.grouped`: something waits on this write to go on. */
const URGENT = true;

export function createDeliveryStore(h: SqliteHandle): DeliveryStore {
  const write = <T>(body: () => T, urgent = false) => h.grouped(body, urgent);
  const statement = (key: string, text: string) =>
    h.prepared(`delivery.${key}`, () => h.sqlite.prepare(text));
  const rows = (key: string, text: string) =>
    h.prepared(`delivery.${key}`, () => h.sqlite.prepare(text).raw(true));

  /** Closes the run's open attempts; call only inside a transaction that checked the lease. */
  const closeOpenAttempts = (runId: string): void => {
    statement('closeOpenAttempts', CLOSE_OPEN_ATTEMPTS).run({
      runId,
      message: INTERRUPTED_ATTEMPT_MESSAGE,
    });
  };

  const recordOutcome = (id: string, outcome: AttemptOutcome): void => {
    statement('recordOutcome', RECORD_OUTCOME).run({ id, ...outcome });
  };

  /** The run a write returned (its {@link runStateColumns}), or null when it changed none. */
  const changed = (row: unknown): TriggeredRun | null =>
    row === undefined ? null : runFromRow(row as Row);

  /** Sets a leased run's final or retry state; null when the lease no longer holds. */
  const settleRun = (
    lease: Lease,
    change: { status: string; result: string; nextAttemptAt: Date | null },
    now: Date,
  ): TriggeredRun | null =>
    changed(
      rows('settleRun', SETTLE_RUN).get({
        ...lease,
        status: change.status,
        result: change.result,
        nextAttemptAt: time(change.nextAttemptAt),
        now: now.getTime(),
        finishedAt: change.status === 'RETRYING' ? null : now.getTime(),
      }),
    );

  /** Starts the leased run's attempt; null when the lease no longer holds. */
  const begin = (lease: Lease, startedAt: Date): StartedAttempt | null => {
    const run = changed(
      rows('countAttempt', COUNT_ATTEMPT).get({ ...lease, now: startedAt.getTime() }),
    );
    if (run === null) return null;
    closeOpenAttempts(lease.runId);
    const id = newId();
    const inserted = rows('insertAttempt', INSERT_ATTEMPT).get({
      id,
      runId: lease.runId,
      startedAt: startedAt.getTime(),
    }) as Row;
    return { id, attemptNumber: inserted[0] as number, startedAt, run };
  };

  const giveBack = (owner: string, runIds: readonly string[], now: Date): void => {
    statement('unclaim', UNCLAIM).run({
      runIds: JSON.stringify(runIds),
      owner,
      now: now.getTime(),
    });
  };

  /**
   * The rowids of the oldest due runs outside `request.passOver`. Those are usually near the
   * head of the due index, so its first {@link PASS_OVER_HEAD} runs are read there; when they are
   * nearly all passed over (a full destination's backlog fills the head of the line), the runs
   * are read by action instead, at a cost that grows with the number of actions with live runs
   * and not with the length of the passed-over backlog.
   */
  const pickPassingOver = (request: ClaimRequest): number[] => {
    const now = request.now.getTime();
    const { limit } = request;
    const passOver = JSON.stringify(request.passOver);
    const picked = (
      rows('dueNear', DUE_NEAR).all({ now, head: PASS_OVER_HEAD, passOver, limit }) as [number][]
    ).map(([rowid]) => rowid);
    if (picked.length === limit) return picked;
    const [due] = rows('dueCount', DUE_COUNT).get({ now, head: PASS_OVER_HEAD }) as [number];
    if (due < PASS_OVER_HEAD) return picked;
    return (rows('dueByAction', DUE_BY_ACTION).all({ now, limit, passOver }) as [number][]).map(
      ([rowid]) => rowid,
    );
  };

  return {
    claimDue(request, choose) {
      if (request.limit <= 0) return Promise.resolve([]);
      return write(() => {
        const taking = {
          owner: request.owner,
          leaseExpiresAt: request.leaseExpiresAt.getTime(),
          now: request.now.getTime(),
        };
        const claimed = (
          request.passOver.length === 0
            ? rows('claim', CLAIM).all({ ...taking, limit: request.limit })
            : rows('claimPicked', CLAIM_PICKED).all({
                ...taking,
                rowids: JSON.stringify(pickPassingOver(request)),
              })
        ) as [string, number, number][];
        if (claimed.length === 0) return [];
        claimed.sort((a, b) => a[1] - b[1] || a[2] - b[2]);
        const ids = claimed.map((row) => row[0]);
        const loaded = new Map<string, ClaimedRun>();
        for (const row of rows('load', LOAD).all({ ids: JSON.stringify(ids) }) as Row[]) {
          const run = claimedRun(row, decode);
          loaded.set(run.id, run);
        }
        // Oldest due first; a run deleted meanwhile (with its event) is left out.
        const { kept, start, handBack } = sortClaimed(
          ids.flatMap((id) => loaded.get(id) ?? []),
          choose,
        );
        for (const run of start) {
          const attempt = begin({ runId: run.id, owner: request.owner }, request.now);
          if (attempt !== null) run.attempt = attempt;
        }
        if (handBack.length > 0) giveBack(request.owner, handBack, request.now);
        return kept;
      }, URGENT);
    },

    async unclaim(owner, runIds, now) {
      if (runIds.length === 0) return;
      await write(() => giveBack(owner, runIds, now), URGENT);
    },

    startAttempt(lease, startedAt) {
      return write(() => begin(lease, startedAt), URGENT);
    },

    finishAttempt(lease, attemptId, outcome, verdict, now, disable) {
      return write(() => {
        const run = settleRun(lease, verdict, now);
        if (run === null) return null;
        recordOutcome(attemptId, outcome);
        if (disable !== undefined) {
          const disabled = statement('disableAction', DISABLE_ACTION).run({
            actionId: disable.actionId,
            reason: disable.reason,
            now: now.getTime(),
          });
          if (disabled.changes > 0) insertAudit(h, disable.audit, now);
        }
        return run;
      });
    },

    finishRun(lease, change, now) {
      return write(() => {
        const run = settleRun(lease, { ...change, nextAttemptAt: null }, now);
        if (run !== null) closeOpenAttempts(lease.runId);
        return run;
      });
    },

    releaseAttempt(lease, attemptId, outcome, result, now) {
      return write(() => {
        const run = changed(
          rows('releaseRun', RELEASE_RUN).get({ ...lease, result, now: now.getTime() }),
        );
        if (run !== null) recordOutcome(attemptId, outcome);
        return run;
      });
    },

    async queueDepth(now) {
      const depth: QueueDepth = {
        byStatus: { QUEUED: 0, RUNNING: 0, RETRYING: 0 },
        dueNow: 0,
        scheduled: 0,
        oldestDueAgeSeconds: 0,
        leaseExpired: 0,
      };
      let oldest: number | null = null;
      const groups = rows('queueDepth', QUEUE_DEPTH).all({ now: now.getTime() }) as [
        string,
        number,
        number,
        number | null,
        number,
      ][];
      for (const [status, total, due, oldestDue, leaseExpired] of groups) {
        if (status === 'RUNNING') {
          depth.byStatus.RUNNING = total;
          depth.leaseExpired = leaseExpired;
        } else if (status === 'QUEUED' || status === 'RETRYING') {
          depth.byStatus[status] = total;
          depth.dueNow += due;
          depth.scheduled += total - due;
          if (oldestDue !== null && (oldest === null || oldestDue < oldest)) oldest = oldestDue;
        }
      }
      if (oldest !== null) depth.oldestDueAgeSeconds = Math.max(0, (now.getTime() - oldest) / 1000);
      return depth;
    },

    async findSecrets(entityId, wanted) {
      if (wanted.ids.length === 0 && wanted.names.length === 0) return [];
      const found = rows('findSecrets', FIND_SECRETS).all({
        entityId,
        ids: JSON.stringify(wanted.ids),
        names: JSON.stringify(wanted.names),
      }) as Row[];
      return found.map(([id, name, ciphertext]) => ({
        id: id as string,
        name: name as string,
        ciphertext: ciphertext as string,
      }));
    },
  };
}
