import type pg from 'pg';
import { newId } from '../../ids.js';
import type { ActionKind, EventType } from '../config.js';
import {
  type AttemptOutcome,
  type ClaimedRun,
  type DeliveryAction,
  type DeliveryStore,
  INTERRUPTED_ATTEMPT_MESSAGE,
  type Lease,
  type QueueDepth,
  type SealedSecret,
  type SlackSeverity,
} from '../delivery.js';
import type { PgHandle } from './support.js';

// As on SQLite, the statements are written as SQL and read as arrays: each is a named statement,
// parsed once per connection and run thousands of times a second while a backlog drains.

/** Holds while the run is leased to the claim's owner ($1 run id, $2 owner). */
const LEASED = `id = $1 AND status = 'RUNNING' AND lease_owner = $2`;

/**
 * Takes the oldest due runs (equal times in insertion order) from the partial due index and
 * leases them, in one statement. `FOR UPDATE SKIP LOCKED` passes over runs another claim is
 * taking at this moment, so claimers never wait for each other nor take one run twice; a run
 * another claim took and committed meanwhile is re-checked after the lock and no longer due.
 * Returns what orders the claimed runs: the time they were due to be tried and the insertion order.
 */
const CLAIM = (passOver: boolean) => `
  WITH due AS (
    SELECT id FROM triggered_runs
    WHERE due_at <= $1${passOver ? ' AND (action_id IS NULL OR NOT (action_id = ANY($5::text[])))' : ''}
    ORDER BY due_at, seq
    LIMIT $4
    FOR UPDATE SKIP LOCKED
  )
  UPDATE triggered_runs r
  SET status = 'RUNNING', lease_owner = $2, lease_expires_at = $3, updated_at = $1
  FROM due
  WHERE r.id = due.id
  RETURNING r.id, coalesce(r.next_attempt_at, 0)::float8, r.seq::float8`;

/**
 * Everything the attempts of claimed runs need, one row per run ($1: their ids): the run, its
 * event with the names of its entity and project or registry, its automation and action as they
 * are now, how many of its attempts were left open, and the sealed secrets of the action and of
 * the automation's templates (a JSON array of [id, name, ciphertext]).
 */
const LOAD = `
  SELECT
    r.id, r.attempt_count, r.action_id,
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
    e.tag
  FROM triggered_runs r
  LEFT JOIN artifact_events e ON e.id = r.event_id
  LEFT JOIN entities en ON en.id = e.entity_id
  LEFT JOIN projects p ON p.id = e.project_id
  LEFT JOIN registries rg ON rg.id = e.registry_id
  LEFT JOIN automations au ON au.id = r.automation_id
  LEFT JOIN actions a ON a.id = r.action_id
  WHERE r.id = ANY($1::text[])`;

const UNCLAIM = `
  UPDATE triggered_runs
  SET status = CASE WHEN attempt_count = 0 THEN 'QUEUED' ELSE 'RETRYING' END,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
  WHERE id = ANY($1::text[]) AND status = 'RUNNING' AND lease_owner = $2`;

const CLOSE_OPEN_ATTEMPTS = `
  UPDATE delivery_attempts SET error_class = 'INTERRUPTED', error_message = $2
  WHERE run_id = $1 AND duration_ms IS NULL AND error_class IS NULL`;

const COUNT_ATTEMPT = `
  UPDATE triggered_runs SET attempt_count = attempt_count + 1, updated_at = $3
  WHERE ${LEASED}
  RETURNING attempt_count`;

const INSERT_ATTEMPT = `
  INSERT INTO delivery_attempts (id, run_id, attempt_number, started_at)
  SELECT $1, $2, coalesce(max(attempt_number), 0) + 1, $3
  FROM delivery_attempts WHERE run_id = $2
  RETURNING attempt_number`;

const RECORD_OUTCOME = `
  UPDATE delivery_attempts
  SET duration_ms = $2, status_code = $3, error_class = $4, error_message = $5, response_body = $6
  WHERE id = $1`;

const SETTLE_RUN = `
  UPDATE triggered_runs
  SET status = $3, result = $4, next_attempt_at = $5, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = $6, finished_at = $7
  WHERE ${LEASED}`;

const RELEASE_RUN = `
  UPDATE triggered_runs
  SET status = CASE WHEN attempt_count - 1 <= 0 THEN 'QUEUED' ELSE 'RETRYING' END,
    attempt_count = attempt_count - 1, result = $3, next_attempt_at = $4, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = $4
  WHERE ${LEASED}`;

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

function claimedRun(row: Row): ClaimedRun {
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
          metadata: row[11] as Record<string, unknown> | null,
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
          enabled: row[17] as boolean,
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
          enabled: row[26] as boolean,
          disabledReason: row[27] as string | null,
          url: row[28] as string | null,
          headers: row[29] as Record<string, string> | null,
          channel: row[30] as string | null,
          accessTokenSecretId: row[31] as string | null,
          signingSecretId: row[32] as string | null,
          slackUrlSecretId: row[33] as string | null,
        };
  const secrets = ((row[34] as [string, string, string][] | null) ?? []).map(
    ([secretId, name, ciphertext]): SealedSecret => ({ id: secretId, name, ciphertext }),
  );
  return { id, attemptCount, openAttempts, actionId, event, automation, action, secrets };
}

const time = (date: Date | null): number | null => (date === null ? null : date.getTime());

/** Runs one named statement on `client`, rows as arrays. */
function run(client: pg.PoolClient | pg.Pool, name: string, text: string, values: unknown[]) {
  return client.query<Row>({ name: `delivery.${name}`, text, values, rowMode: 'array' });
}

export function createDeliveryStore(h: PgHandle): DeliveryStore {
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

  /** Closes the run's open attempts; only inside a transaction that checked the lease. */
  const closeOpenAttempts = (client: pg.PoolClient, runId: string) =>
    run(client, 'closeOpenAttempts', CLOSE_OPEN_ATTEMPTS, [runId, INTERRUPTED_ATTEMPT_MESSAGE]);

  const recordOutcome = (client: pg.PoolClient, id: string, outcome: AttemptOutcome) =>
    run(client, 'recordOutcome', RECORD_OUTCOME, [
      id,
      outcome.durationMs,
      outcome.statusCode,
      outcome.errorClass,
      outcome.errorMessage,
      outcome.responseBody,
    ]);

  /** Sets a leased run's final or retry state; false when the lease no longer holds. */
  const settleRun = async (
    client: pg.PoolClient,
    lease: Lease,
    change: { status: string; result: string; nextAttemptAt: Date | null },
    now: Date,
  ): Promise<boolean> => {
    const result = await run(client, 'settleRun', SETTLE_RUN, [
      lease.runId,
      lease.owner,
      change.status,
      change.result,
      time(change.nextAttemptAt),
      now.getTime(),
      change.status === 'RETRYING' ? null : now.getTime(),
    ]);
    return (result.rowCount ?? 0) > 0;
  };

  return {
    async claimDue(request) {
      if (request.limit <= 0) return [];
      const passOver = request.passOver.length > 0;
      return transaction(async (client) => {
        const values: unknown[] = [
          request.now.getTime(),
          request.owner,
          request.leaseExpiresAt.getTime(),
          request.limit,
        ];
        if (passOver) values.push([...request.passOver]);
        const claimed = (
          await run(client, passOver ? 'claim:passOver' : 'claim', CLAIM(passOver), values)
        ).rows as [string, number, number][];
        if (claimed.length === 0) return [];
        claimed.sort((a, b) => a[1] - b[1] || a[2] - b[2]);
        const ids = claimed.map((row) => row[0]);
        const loaded = new Map<string, ClaimedRun>();
        for (const row of (await run(client, 'load', LOAD, [ids])).rows) {
          const claimedRunRow = claimedRun(row);
          loaded.set(claimedRunRow.id, claimedRunRow);
        }
        // Oldest due first; a run deleted meanwhile (with its event) is left out.
        return ids.flatMap((id) => loaded.get(id) ?? []);
      });
    },

    async unclaim(owner, runIds, now) {
      if (runIds.length === 0) return;
      await run(h.pool, 'unclaim', UNCLAIM, [[...runIds], owner, now.getTime()]);
    },

    startAttempt(lease, startedAt) {
      return transaction(async (client) => {
        const counted = (
          await run(client, 'countAttempt', COUNT_ATTEMPT, [
            lease.runId,
            lease.owner,
            startedAt.getTime(),
          ])
        ).rows[0];
        if (counted === undefined) return null;
        await closeOpenAttempts(client, lease.runId);
        const id = newId();
        const inserted = (
          await run(client, 'insertAttempt', INSERT_ATTEMPT, [id, lease.runId, startedAt.getTime()])
        ).rows[0] as Row;
        return {
          id,
          attemptNumber: inserted[0] as number,
          startedAt,
          attemptCount: counted[0] as number,
        };
      });
    },

    finishAttempt(lease, attemptId, outcome, verdict, now, disable) {
      return transaction(async (client) => {
        if (!(await settleRun(client, lease, verdict, now))) return false;
        await recordOutcome(client, attemptId, outcome);
        if (disable !== undefined) {
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
        }
        return true;
      });
    },

    finishRun(lease, change, now) {
      return transaction(async (client) => {
        if (!(await settleRun(client, lease, { ...change, nextAttemptAt: null }, now))) {
          return false;
        }
        await closeOpenAttempts(client, lease.runId);
        return true;
      });
    },

    releaseAttempt(lease, attemptId, outcome, result, now) {
      return transaction(async (client) => {
        const released = await run(client, 'releaseRun', RELEASE_RUN, [
          lease.runId,
          lease.owner,
          result,
          now.getTime(),
        ]);
        if ((released.rowCount ?? 0) === 0) return false;
        await recordOutcome(client, attemptId, outcome);
        return true;
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
