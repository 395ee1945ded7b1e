import type pg from 'pg';
import { newId } from '../../ids.js';
import {
  type AttemptOutcome,
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
import type { PgHandle } from './support.js';

// As on SQLite, the statements are written as SQL and read as arrays: each is a named statement,
// parsed once per connection and run thousands of times a second while a backlog drains.

/** Holds while the run is leased to the claim's owner ($1 run id, $2 owner). */
const LEASED = `id = $1 AND status = 'RUNNING' AND lease_owner = $2`;

/**
 * The oldest due runs outside the actions in $5, at most `bound` of them (see {@link CLAIM}),
 * for a claim's `due` (as on SQLite, see `pickPassingOver` there). The head of the due index, at
 * most {@link PASS_OVER_HEAD} runs (written into the statement, so that a generic plan knows how
 * few), is read in line until `bound` are found. When the head is full and nearly all passed
 * over (`deep`), each live action's line is read instead, the actions found one index seek each,
 * and the runs of deleted actions with them; `deep` is a one-time condition of those arms, so
 * PostgreSQL does not read them at all otherwise.
 *
 * Each line is read as the first `bound` entries of the index by action from the action's
 * start, in that index's order, and then cut to the action and to what is due: with
 * `action_id = …` in the condition, PostgreSQL drops the action from the order, and may then walk
 * the due index with a filter on the action, which reads the whole backlog when the action's runs
 * come after it (its estimates cannot know that). The deleted actions' runs (action null) are
 * ordered by action too, so that PostgreSQL reads them in that index's order rather than sort
 * them.
 *
 * The oldest `bound` of those are locked by id, in no order: a locking read ordered by due time
 * lets PostgreSQL's generic plan walk the due index again, through the whole backlog. A run
 * another claim is taking at this moment is left to it, and this claim then comes back short.
 */
const DUE_PASSING_OVER = (bound: number) => `
  near AS (
    SELECT id, due_at, seq FROM (
      SELECT id, action_id, due_at, seq FROM triggered_runs
      WHERE due_at <= $1 ORDER BY due_at, seq LIMIT ${PASS_OVER_HEAD}
    ) head
    WHERE action_id IS NULL OR NOT (action_id = ANY($5::text[]))
    LIMIT ${bound}
  ), live AS (
    (SELECT action_id FROM triggered_runs
      WHERE action_id IS NOT NULL AND due_at IS NOT NULL ORDER BY action_id LIMIT 1)
    UNION ALL
    SELECT (SELECT t.action_id FROM triggered_runs t
      WHERE t.action_id > live.action_id AND t.due_at IS NOT NULL ORDER BY t.action_id LIMIT 1)
    FROM live WHERE live.action_id IS NOT NULL
  ), deep AS (
    SELECT (SELECT count(*) FROM near) < $4 AND (SELECT count(*) FROM (
      SELECT 1 FROM triggered_runs WHERE due_at <= $1 ORDER BY due_at, seq LIMIT ${PASS_OVER_HEAD}) head)
      = ${PASS_OVER_HEAD}
      AS needed
  ), picked AS (
    SELECT id, due_at, seq FROM near
    UNION
    SELECT line.id, line.due_at, line.seq FROM live CROSS JOIN LATERAL (
      SELECT id, action_id, due_at, seq FROM triggered_runs
      WHERE (action_id, due_at) >= (live.action_id, 0) AND due_at IS NOT NULL
      ORDER BY action_id, due_at, seq LIMIT ${bound}
    ) line
    WHERE (SELECT needed FROM deep)
      AND live.action_id IS NOT NULL AND NOT (live.action_id = ANY($5::text[]))
      AND line.action_id = live.action_id AND line.due_at <= $1
    UNION
    (SELECT id, due_at, seq FROM triggered_runs
      WHERE (SELECT needed FROM deep) AND action_id IS NULL AND due_at <= $1
      ORDER BY action_id, due_at, seq LIMIT ${bound})
  ), oldest AS (
    SELECT id FROM picked ORDER BY due_at, seq LIMIT ${bound}
  ),`;

/**
 * Takes the oldest due runs (equal times in insertion order) from the partial due index, or,
 * when the claim passes over actions, those of {@link DUE_PASSING_OVER}; leases them, and reads
 * everything their attempts need, in one statement (one round trip).
 * `FOR UPDATE SKIP LOCKED` passes over runs another claim is taking at this moment, so claimers
 * never wait for each other nor take one run twice; a run another claim took and committed
 * meanwhile is re-checked after the lock and no longer due. Each row: the run, how many of its
 * attempts were left open, its event with the names of its entity and project or registry, its
 * automation and action as they are now, the sealed secrets of the action and of the
 * automation's templates (a JSON array of [id, name, ciphertext]), and the run as the claim left
 * it; oldest due first.
 *
 * The runs are locked up to a `bound` written into the statement (the limit, $4, rounded up to a
 * power of two), and the oldest $4 of them taken; the others are unlocked at the commit.
 * PostgreSQL estimates a `LIMIT $n` as a tenth of the rows, which made the claim's generic plan
 * look dearer than its custom plans, so every claim was planned anew (about 4 ms for this
 * statement, more than running it); with a written bound the named statement settles on its
 * generic plan. One statement per limit would do that too, but each cached plan of this statement
 * holds about 1 MB of the connection's memory: the bounds keep them to a dozen at most.
 */
const CLAIM = (passOver: boolean, bound: number) => `
  WITH${passOver ? ` RECURSIVE${DUE_PASSING_OVER(bound)}` : ''} due AS (${
    passOver
      ? `
    SELECT id, due_at, seq FROM triggered_runs
    WHERE id = ANY(ARRAY(SELECT id FROM oldest)) AND due_at <= $1
    FOR UPDATE SKIP LOCKED`
      : `
    SELECT id, due_at, seq FROM triggered_runs
    WHERE due_at <= $1
    ORDER BY due_at, seq
    LIMIT ${bound}
    FOR UPDATE SKIP LOCKED`
  }
  ), taken AS (
    SELECT id FROM due ORDER BY due_at, seq LIMIT $4
  ), claimed AS (
    UPDATE triggered_runs r
    SET status = 'RUNNING', lease_owner = $2, lease_expires_at = $3, updated_at = $1
    FROM taken
    WHERE r.id = taken.id
    RETURNING ${runStateColumns('r')}, coalesce(r.next_attempt_at, 0) AS due_order, r.seq
  )
  SELECT
    r.id,
    (SELECT count(*)::int FROM delivery_attempts d
      WHERE d.run_id = r.id AND d.duration_ms IS NULL AND d.error_class IS NULL),
    e.id, e.event_type, e.collection_name, e.artifact_type, e.version_index, e.alias, e.author,
    e.metadata, en.name, p.name, rg.name,
    au.id, au.name, au.enabled, au.payload_template, au.slack_title, au.slack_message,
    au.slack_severity,
    a.id, a.entity_id, a.kind, a.name, a.enabled, a.disabled_reason, a.url, a.headers, a.channel,
    a.access_token_secret_id, a.signing_secret_id, a.slack_url_secret_id,
    (SELECT coalesce(json_agg(json_build_array(s.id, s.name, s.ciphertext) ORDER BY s.id), '[]')
      FROM secrets s
      WHERE s.id IN (a.access_token_secret_id, a.signing_secret_id, a.slack_url_secret_id)
        OR s.id IN (SELECT ref.secret_id FROM automation_secret_refs ref WHERE ref.automation_id = au.id)),
    e.tag,
    re.id, re.event_type, re.run_state, re.metric_name, re.metric_values, re.condition,
    tr.id, tr.name, ren.name, rp.name, ru.name,
    ${runStateColumns('r')}
  FROM claimed r
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
  LEFT JOIN actions a ON a.id = r.action_id
  ORDER BY r.due_order, r.seq`;

const UNCLAIM = `
  UPDATE triggered_runs
  SET status = CASE WHEN attempt_count = 0 THEN 'QUEUED' ELSE 'RETRYING' END,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
  WHERE id = ANY($1::text[]) AND status = 'RUNNING' AND lease_owner = $2`;

/**
 * Starts an attempt of each of the runs leased to the owner, in one statement: counts it on the
 * run, closes the run's open attempts and writes the new attempt's row ($1 run ids, $2 attempt
 * ids, in the same order; $3 owner, $4 start time, $5 the interrupted message). One row per run
 * whose lease holds: the attempt's id and number and the run as it left it; nothing is written
 * for a run whose lease no longer holds.
 */
const START_ATTEMPTS = `
  WITH chosen AS (
    SELECT * FROM unnest($1::text[], $2::text[]) AS c(run_id, attempt_id)
  ), counted AS (
    UPDATE triggered_runs r SET attempt_count = r.attempt_count + 1, updated_at = $4
    FROM chosen c
    WHERE r.id = c.run_id AND r.status = 'RUNNING' AND r.lease_owner = $3
    RETURNING ${runStateColumns('r')}
  ), closed AS (
    UPDATE delivery_attempts SET error_class = 'INTERRUPTED', error_message = $5
    WHERE run_id IN (SELECT id FROM counted) AND duration_ms IS NULL AND error_class IS NULL
  ), inserted AS (
    INSERT INTO delivery_attempts (id, run_id, attempt_number, started_at)
    SELECT c.attempt_id, c.run_id,
      coalesce((SELECT max(d.attempt_number) FROM delivery_attempts d WHERE d.run_id = c.run_id), 0)
        + 1,
      $4
    FROM chosen c JOIN counted ON counted.id = c.run_id
    RETURNING id, run_id, attempt_number
  )
  SELECT inserted.id, inserted.attempt_number, ${runStateColumns('counted')}
  FROM counted JOIN inserted ON inserted.run_id = counted.id`;

/** An attempt's outcome, set only when the run's write in the same statement (\`changed\`) happened. */
const RECORD_OUTCOME = (first: number) => `
  recorded AS (
    UPDATE delivery_attempts
    SET duration_ms = $${first + 1}, status_code = $${first + 2}, error_class = $${first + 3},
      error_message = $${first + 4}, response_body = $${first + 5}
    WHERE id = $${first} AND EXISTS (SELECT 1 FROM changed)
  )`;

/** The leased run's final or retry state ($1 run, $2 owner, $3…$7). */
const SETTLE = `
  changed AS (
    UPDATE triggered_runs
    SET status = $3, result = $4, next_attempt_at = $5, lease_owner = NULL,
      lease_expires_at = NULL, updated_at = $6, finished_at = $7
    WHERE ${LEASED}
    RETURNING ${runStateColumns()}
  )`;

/** The run as a statement's `changed` write left it; no row when the lease no longer held. */
const CHANGED_RUN = `SELECT ${runStateColumns()} FROM changed`;

/** Settles the run and records its attempt's outcome ($8 attempt, $9… outcome) in one statement. */
const FINISH_ATTEMPT = `WITH ${SETTLE}, ${RECORD_OUTCOME(8)} ${CHANGED_RUN}`;

/** Settles the run and closes its open attempts ($8 the interrupted message). */
const FINISH_RUN = `
  WITH ${SETTLE}, closed AS (
    UPDATE delivery_attempts SET error_class = 'INTERRUPTED', error_message = $8
    WHERE run_id = $1 AND duration_ms IS NULL AND error_class IS NULL
      AND EXISTS (SELECT 1 FROM changed)
  )
  ${CHANGED_RUN}`;

/** Puts the run back in line, due $4, and records the attempt ($5, outcome $6…). */
const RELEASE_ATTEMPT = `
  WITH changed AS (
    UPDATE triggered_runs
    SET status = CASE WHEN attempt_count - 1 <= 0 THEN 'QUEUED' ELSE 'RETRYING' END,
      attempt_count = attempt_count - 1, result = $3, next_attempt_at = $4, lease_owner = NULL,
      lease_expires_at = NULL, updated_at = $4
    WHERE ${LEASED}
    RETURNING ${runStateColumns()}
  ), ${RECORD_OUTCOME(5)}
  ${CHANGED_RUN}`;

const SETTLE_RUN = `
  UPDATE triggered_runs
  SET status = $3, result = $4, next_attempt_at = $5, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = $6, finished_at = $7
  WHERE ${LEASED}
  RETURNING ${runStateColumns()}`;

const RECORD_OUTCOME_ALONE = `
  UPDATE delivery_attempts
  SET duration_ms = $2, status_code = $3, error_class = $4, error_message = $5, response_body = $6
  WHERE id = $1`;

const DISABLE_ACTION = `
  UPDATE actions SET enabled = false, disabled_reason = $2, updated_at = $3
  WHERE id = $1 AND enabled`;

/** The audit entry of an action the engine disabled (see audit.ts for the other writers). */
const INSERT_AUDIT = `
  INSERT INTO audit_log (id, entity_id, actor_id, action, target_type, target_id, details, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8)`;

/** The live runs are exactly those with a due time, so the partial due index lists them. */
const QUEUE_DEPTH = `
  SELECT status, count(*)::int,
    coalesce(sum((coalesce(next_attempt_at, created_at) <= $1)::int), 0)::int,
    min(CASE WHEN coalesce(next_attempt_at, created_at) <= $1
      THEN coalesce(next_attempt_at, created_at) END)::float8,
    coalesce(sum((coalesce(lease_expires_at, 0) <= $1)::int), 0)::int
  FROM triggered_runs
  WHERE due_at IS NOT NULL
  GROUP BY status`;

const FIND_SECRETS = `
  SELECT id, name, ciphertext FROM secrets
  WHERE entity_id = $1 AND (id = ANY($2::text[]) OR name = ANY($3::text[]))`;

type Row = unknown[];

/** node-postgres reads booleans and `json` columns as JavaScript values already. */
const decode: ColumnDecoders = {
  bool: (value) => value as boolean,
  json: <T>(value: unknown) => value as T | null,
};

const time = (date: Date | null): number | null => (date === null ? null : date.getTime());

/** Runs one named statement on `client`, rows as arrays. */
function run(client: pg.PoolClient | pg.Pool, name: string, text: string, values: unknown[]) {
  return client.query<Row>({ name: `delivery.${name}`, text, values, rowMode: 'array' });
}

export function createDeliveryStore(h: PgHandle): DeliveryStore {
  /** The claim statements' texts by name (see {@link CLAIM}). */
  const claims = new Map<string, string>();
  /** Runs `body` in one transaction on one connection of the pool. */
  async function transaction<T>(body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await h.pool.connect();
    try {
      await client.query('BEGIN');
      const value = await body(client);
      await client.query('COMMIT');
      return value;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  const outcomeValues = (outcome: AttemptOutcome) => [
    outcome.durationMs,
    outcome.statusCode,
    outcome.errorClass,
    outcome.errorMessage,
    outcome.responseBody,
  ];

  /** The values of {@link SETTLE} ($1…$7). */
  const settleValues = (
    lease: Lease,
    change: { status: string; result: string; nextAttemptAt: Date | null },
    now: Date,
  ) => [
    lease.runId,
    lease.owner,
    change.status,
    change.result,
    time(change.nextAttemptAt),
    now.getTime(),
    change.status === 'RETRYING' ? null : now.getTime(),
  ];

  /** The run a statement returned (its {@link runStateColumns}), or null when it changed none. */
  const changedRun = (result: pg.QueryResult<Row>): TriggeredRun | null => {
    const row = result.rows[0];
    return row === undefined ? null : runFromRow(row);
  };

  /**
   * Starts an attempt of each run leased to `owner`; the attempts by run id, without the runs
   * whose lease no longer holds.
   */
  async function beginAll(
    owner: string,
    runIds: readonly string[],
    startedAt: Date,
  ): Promise<Map<string, StartedAttempt>> {
    const started = new Map<string, StartedAttempt>();
    if (runIds.length === 0) return started;
    const result = await run(h.pool, 'startAttempts', START_ATTEMPTS, [
      [...runIds],
      runIds.map(() => newId()),
      owner,
      startedAt.getTime(),
      INTERRUPTED_ATTEMPT_MESSAGE,
    ]);
    for (const row of result.rows) {
      const attemptRun = runFromRow(row, 2);
      started.set(attemptRun.id, {
        id: row[0] as string,
        attemptNumber: row[1] as number,
        startedAt,
        run: attemptRun,
      });
    }
    return started;
  }

  async function giveBack(owner: string, runIds: readonly string[], now: Date): Promise<void> {
    if (runIds.length === 0) return;
    await run(h.pool, 'unclaim', UNCLAIM, [[...runIds], owner, now.getTime()]);
  }

  return {
    async claimDue(request, choose) {
      const { limit } = request;
      if (limit <= 0) return [];
      const passOver = request.passOver.length > 0;
      const values: unknown[] = [
        request.now.getTime(),
        request.owner,
        request.leaseExpiresAt.getTime(),
        limit,
      ];
      if (passOver) values.push([...request.passOver]);
      const bound = 2 ** Math.ceil(Math.log2(limit));
      const name = `${passOver ? 'claim:passOver' : 'claim'}:${bound}`;
      let text = claims.get(name);
      if (text === undefined) {
        text = CLAIM(passOver, bound);
        claims.set(name, text);
      }
      const rows = (await run(h.pool, name, text, values)).rows;
      // Oldest due first, as the statement orders them.
      const { kept, start, handBack } = sortClaimed(
        rows.map((row) => claimedRun(row, decode)),
        choose,
      );
      // The attempts start in one statement right after the claim's (a transaction around both
      // would cost two more round trips per claim). Should the process die between them, the
      // runs are leased without an attempt, and taken again when the lease expires.
      const [started] = await Promise.all([
        beginAll(
          request.owner,
          start.map((claimed) => claimed.id),
          request.now,
        ),
        giveBack(request.owner, handBack, request.now),
      ]);
      for (const claimed of start) {
        const attempt = started.get(claimed.id);
        if (attempt !== undefined) claimed.attempt = attempt;
      }
      return kept;
    },

    async unclaim(owner, runIds, now) {
      await giveBack(owner, runIds, now);
    },

    async startAttempt(lease, startedAt) {
      const started = await beginAll(lease.owner, [lease.runId], startedAt);
      return started.get(lease.runId) ?? null;
    },

    async finishAttempt(lease, attemptId, outcome, verdict, now, disable) {
      if (disable === undefined) {
        const finished = await run(h.pool, 'finishAttempt', FINISH_ATTEMPT, [
          ...settleValues(lease, verdict, now),
          attemptId,
          ...outcomeValues(outcome),
        ]);
        return changedRun(finished);
      }
      // Rare (the receiver said the endpoint is gone): a transaction of several statements.
      return transaction(async (client) => {
        const settled = await run(
          client,
          'settleRun',
          SETTLE_RUN,
          settleValues(lease, verdict, now),
        );
        const settledRun = changedRun(settled);
        if (settledRun === null) return null;
        await run(client, 'recordOutcome', RECORD_OUTCOME_ALONE, [
          attemptId,
          ...outcomeValues(outcome),
        ]);
        const disabled = await run(client, 'disableAction', DISABLE_ACTION, [
          disable.actionId,
          disable.reason,
          now.getTime(),
        ]);
        if ((disabled.rowCount ?? 0) > 0) {
          const audit = disable.audit;
          await run(client, 'insertAudit', INSERT_AUDIT, [
            newId(),
            audit.entityId,
            audit.actorId,
            audit.action,
            audit.targetType,
            audit.targetId,
            JSON.stringify(audit.details ?? {}),
            now.getTime(),
          ]);
        }
        return settledRun;
      });
    },

    async finishRun(lease, change, now) {
      const finished = await run(h.pool, 'finishRun', FINISH_RUN, [
        ...settleValues(lease, { ...change, nextAttemptAt: null }, now),
        INTERRUPTED_ATTEMPT_MESSAGE,
      ]);
      return changedRun(finished);
    },

    async releaseAttempt(lease, attemptId, outcome, result, now) {
      const released = await run(h.pool, 'releaseAttempt', RELEASE_ATTEMPT, [
        lease.runId,
        lease.owner,
        result,
        now.getTime(),
        attemptId,
        ...outcomeValues(outcome),
      ]);
      return changedRun(released);
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
      const groups = (await run(h.pool, 'queueDepth', QUEUE_DEPTH, [now.getTime()])).rows as [
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
      const found = (
        await run(h.pool, 'findSecrets', FIND_SECRETS, [
          entityId,
          [...wanted.ids],
          [...wanted.names],
        ])
      ).rows;
      return found.map(([id, name, ciphertext]) => ({
        id: id as string,
        name: name as string,
        ciphertext: ciphertext as string,
      }));
    },
  };
}
