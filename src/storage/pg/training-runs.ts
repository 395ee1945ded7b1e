import { and, asc, eq, type SQL, sql } from 'drizzle-orm';
import { newId } from '../../ids.js';
import type { EventType, RunCondition, TrainingRunState } from '../config.js';
import { queuedRun, type TriggeredRun } from '../events.js';
import type {
  MetricWindow,
  RecordedRunReport,
  RecordRunReportResult,
  RunEvent,
  RunFiring,
  RunWatcher,
  TrainingRun,
  TrainingRunStore,
} from '../training-runs.js';
import { RUN_COLUMNS } from './events.js';
import { runEvents, trainingRuns, triggeredRuns } from './schema.js';
import {
  countRows,
  keyset,
  type PgHandle,
  type SqlOrder,
  type Tx,
  uniqueViolation,
} from './support.js';

type Row = Record<string, unknown>;

const RUN_FIELDS = sql.raw(
  'id, entity_id, project_id, name, state, reported_by_id, created_at::float8 AS created_at, updated_at::float8 AS updated_at',
);

function toRun(row: Row): TrainingRun {
  return {
    id: row.id as string,
    entityId: row.entity_id as string,
    projectId: row.project_id as string,
    name: row.name as string,
    state: row.state as TrainingRunState,
    reportedById: row.reported_by_id as string | null,
    createdAt: new Date(row.created_at as number),
    updatedAt: new Date(row.updated_at as number),
  };
}

function toWindow(row: Row): MetricWindow {
  return {
    name: row.name as string,
    lastStep: row.last_step as number,
    count: row.count as number,
    recent: row.recent as number[],
    updatedAt: new Date(row.updated_at as number),
  };
}

function toRunEvent(row: Row): RunEvent {
  return {
    id: row.id as string,
    entityId: row.entity_id as string,
    projectId: row.project_id as string,
    trainingRunId: row.training_run_id as string,
    reportId: row.report_id as string,
    eventType: row.event_type as EventType,
    runState: row.run_state as TrainingRunState,
    metricName: row.metric_name as string | null,
    metricValues: row.metric_values as number[] | null,
    condition: row.condition as string,
    createdAt: new Date(row.created_at as number),
  };
}

const RUN_ORDER: SqlOrder = {
  direction: 'desc',
  columns: [trainingRuns.createdAt, trainingRuns.id],
};

const STATE_TYPES: readonly EventType[] = ['RUN_STATE'];
const METRIC_TYPES: readonly EventType[] = ['RUN_METRIC', 'RUN_METRIC_CHANGE', 'RUN_METRIC_ZSCORE'];

const list = (values: readonly unknown[]): SQL =>
  sql.join(
    values.map((value) => sql`${value}`),
    sql`, `,
  );

export function createTrainingRunStore(h: PgHandle): TrainingRunStore {
  const query = async (tx: Tx | undefined, statement: SQL): Promise<Row[]> =>
    (await (tx ?? h.db).execute<Row>(statement)).rows;

  async function findRun(projectId: string, name: string, tx?: Tx): Promise<TrainingRun | null> {
    const [row] = await query(
      tx,
      sql`SELECT ${RUN_FIELDS} FROM training_runs WHERE project_id = ${projectId} AND name = ${name}`,
    );
    return row ? toRun(row) : null;
  }

  async function getRun(id: string, tx?: Tx): Promise<TrainingRun | null> {
    const [row] = await query(tx, sql`SELECT ${RUN_FIELDS} FROM training_runs WHERE id = ${id}`);
    return row ? toRun(row) : null;
  }

  async function findByKey(
    entityId: string,
    key: string,
    tx?: Tx,
  ): Promise<RecordedRunReport | null> {
    const [report] = await query(
      tx,
      sql`SELECT id, training_run_id, accepted_points FROM run_reports
        WHERE entity_id = ${entityId} AND idempotency_key = ${key}`,
    );
    if (!report) return null;
    const run = await getRun(report.training_run_id as string, tx);
    if (!run) return null;
    const runs = await (tx ?? h.db)
      .select(RUN_COLUMNS)
      .from(triggeredRuns)
      .innerJoin(runEvents, eq(runEvents.id, triggeredRuns.runEventId))
      .where(eq(runEvents.reportId, report.id as string))
      .orderBy(asc(triggeredRuns.seq));
    return { run, acceptedPoints: report.accepted_points as number, runs };
  }

  /**
   * The enabled automations of the given run event types on the project or the entity, oldest
   * first, through `automations_match_idx`; the entity is checked in code, as on SQLite.
   */
  async function watchers(
    tx: Tx,
    run: TrainingRun,
    types: readonly EventType[],
  ): Promise<RunWatcher[]> {
    const rows = await query(
      tx,
      sql`SELECT id, entity_id, name, action_id, event_type, filter_run_name_pattern,
          filter_run_reported_by_id, run_condition, cooldown_seconds
        FROM automations
        WHERE scope_id IN (${run.entityId}, ${run.projectId})
          AND event_type IN (${list(types)}) AND enabled
        ORDER BY created_at, id`,
    );
    return rows
      .filter((row) => row.entity_id === run.entityId)
      .map((row) => ({
        id: row.id as string,
        name: row.name as string,
        actionId: row.action_id as string,
        eventType: row.event_type as EventType,
        filterRunNamePattern: row.filter_run_name_pattern as string | null,
        filterRunReportedById: row.filter_run_reported_by_id as string | null,
        runCondition: row.run_condition as RunCondition,
        cooldownSeconds: row.cooldown_seconds as number,
      }));
  }

  async function firings(tx: Tx, runId: string): Promise<(automationId: string) => Date | null> {
    const fired = new Map<string, number>();
    for (const row of await query(
      tx,
      sql`SELECT automation_id, fired_at::float8 AS fired_at FROM run_automation_firings
        WHERE training_run_id = ${runId}`,
    )) {
      fired.set(row.automation_id as string, row.fired_at as number);
    }
    return (automationId) => {
      const at = fired.get(automationId);
      return at === undefined ? null : new Date(at);
    };
  }

  /** Stores the report, then a run event, a QUEUED run and a firing mark per firing. */
  async function recordFirings(
    tx: Tx,
    run: TrainingRun,
    kind: 'STATE' | 'METRICS',
    acceptedPoints: number,
    idempotencyKey: string | null,
    now: Date,
    fired: readonly RunFiring[],
  ): Promise<TriggeredRun[]> {
    const reportId = newId();
    const at = now.getTime();
    await tx.execute(
      sql`INSERT INTO run_reports (id, entity_id, training_run_id, kind, accepted_points, idempotency_key, created_at)
        VALUES (${reportId}, ${run.entityId}, ${run.id}, ${kind}, ${acceptedPoints}, ${idempotencyKey}, ${at})`,
    );
    const queued: TriggeredRun[] = [];
    for (const firing of fired) {
      const eventId = newId();
      await tx.execute(
        sql`INSERT INTO run_events (id, entity_id, project_id, training_run_id, report_id, event_type,
            run_state, metric_name, metric_values, condition, created_at)
          VALUES (${eventId}, ${run.entityId}, ${run.projectId}, ${run.id}, ${reportId},
            ${firing.automation.eventType}, ${run.state}, ${firing.metricName},
            ${firing.metricValues === null ? null : JSON.stringify(firing.metricValues)}::json,
            ${firing.condition}, ${at})`,
      );
      await tx.execute(
        sql`INSERT INTO run_automation_firings (automation_id, training_run_id, fired_at)
          VALUES (${firing.automation.id}, ${run.id}, ${at})
          ON CONFLICT (training_run_id, automation_id) DO UPDATE SET fired_at = excluded.fired_at`,
      );
      queued.push(
        queuedRun(
          {
            entityId: run.entityId,
            eventId: null,
            runEventId: eventId,
            trainingRunId: run.id,
            projectId: run.projectId,
            registryId: null,
          },
          firing.automation,
          now,
        ),
      );
    }
    if (queued.length > 0) {
      await tx.insert(triggeredRuns).values(
        queued.map((r) => ({
          id: r.id,
          entityId: r.entityId,
          runEventId: r.runEventId,
          trainingRunId: r.trainingRunId,
          automationId: r.automationId,
          automationName: r.automationName,
          actionId: r.actionId,
          projectId: r.projectId,
          status: r.status,
          attemptCount: 0,
          nextAttemptAt: now,
          createdAt: now,
          updatedAt: now,
        })),
      );
    }
    return queued;
  }

  /**
   * Runs `body` in a transaction that holds the run's name (project and name) for itself: the
   * reports of one run take turns, as SQLite's single writer makes them, so a window read and
   * written back by one report never loses another's points. A lost idempotency race is
   * answered with the winner's report.
   */
  async function withRun(
    report: { entityId: string; projectId: string; runName: string; idempotencyKey: string | null },
    body: (tx: Tx) => Promise<RecordRunReportResult>,
  ): Promise<RecordRunReportResult> {
    const key = report.idempotencyKey;
    try {
      return await h.transaction(async (tx) => {
        await tx.execute(
          sql`SELECT pg_advisory_xact_lock(hashtextextended(${`${report.projectId}/${report.runName}`}, 0))`,
        );
        if (key !== null) {
          const first = await findByKey(report.entityId, key, tx);
          if (first) return { outcome: 'replayed' as const, ...first };
        }
        return body(tx);
      });
    } catch (error) {
      if (key !== null && uniqueViolation(error) === 'run_reports_idempotency_idx') {
        const first = await findByKey(report.entityId, key);
        if (first) return { outcome: 'replayed', ...first };
      }
      throw error;
    }
  }

  return {
    async recordState(report, evaluate) {
      return withRun(report, async (tx) => {
        const at = report.now.getTime();
        const found = await findRun(report.projectId, report.runName, tx);
        let previous: TrainingRunState | null = null;
        let run: TrainingRun;
        if (found) {
          previous = found.state;
          await tx.execute(
            sql`UPDATE training_runs SET state = ${report.state}, updated_at = ${at} WHERE id = ${found.id}`,
          );
          run = { ...found, state: report.state, updatedAt: report.now };
        } else {
          run = {
            id: newId(),
            entityId: report.entityId,
            projectId: report.projectId,
            name: report.runName,
            state: report.state,
            reportedById: report.reportedById,
            createdAt: report.now,
            updatedAt: report.now,
          };
          await tx.execute(
            sql`INSERT INTO training_runs (id, entity_id, project_id, name, state, reported_by_id, created_at, updated_at)
              VALUES (${run.id}, ${run.entityId}, ${run.projectId}, ${run.name}, ${run.state},
                ${run.reportedById}, ${at}, ${at})`,
          );
        }
        const fired = evaluate({
          previous,
          run,
          watchers: await watchers(tx, run, STATE_TYPES),
          lastFiredAt: await firings(tx, run.id),
        });
        const runs = await recordFirings(
          tx,
          run,
          'STATE',
          0,
          report.idempotencyKey,
          report.now,
          fired,
        );
        return { outcome: 'recorded', run, acceptedPoints: 0, runs };
      });
    },

    async recordMetrics(report, evaluate) {
      return withRun(report, async (tx) => {
        const found = await findRun(report.projectId, report.runName, tx);
        if (!found) return { outcome: 'missingRun' };
        const run = { ...found, updatedAt: report.now };
        const names = [...new Set(report.points.map((point) => point.name))];
        const windows = new Map<string, MetricWindow>();
        if (names.length > 0) {
          for (const row of await query(
            tx,
            sql`SELECT name, last_step, count, recent, updated_at::float8 AS updated_at
              FROM run_metric_windows WHERE training_run_id = ${run.id} AND name IN (${list(names)})`,
          )) {
            windows.set(row.name as string, toWindow(row));
          }
        }
        for (const name of names) {
          if (!windows.has(name)) {
            windows.set(name, { name, lastStep: -1, count: 0, recent: [], updatedAt: report.now });
          }
        }
        const before = new Map([...windows].map(([name, w]) => [name, w.count]));
        const watching = await watchers(tx, run, METRIC_TYPES);
        // `peerLatest` is synchronous: the peers every z-score condition may ask for are read
        // first, as many as the most any of them looks at, newest first.
        const peerLimits = new Map<string, number>();
        for (const watcher of watching) {
          const condition = watcher.runCondition as { metric?: string; runs?: number };
          if (typeof condition?.metric === 'string' && typeof condition.runs === 'number') {
            peerLimits.set(
              condition.metric,
              Math.max(peerLimits.get(condition.metric) ?? 0, condition.runs),
            );
          }
        }
        const peers = new Map<string, number[]>();
        for (const [metric, limit] of peerLimits) {
          const rows = await query(
            tx,
            sql`SELECT (recent -> -1)::text::float8 AS latest FROM run_metric_windows
              WHERE project_id = ${run.projectId} AND name = ${metric} AND training_run_id <> ${run.id}
              ORDER BY updated_at DESC LIMIT ${limit}`,
          );
          peers.set(
            metric,
            rows.map((row) => row.latest as number),
          );
        }
        const { acceptedPoints, firings: fired } = evaluate({
          run,
          watchers: watching,
          windows,
          lastFiredAt: await firings(tx, run.id),
          peerLatest: (metric, limit) => {
            if (limit <= 0) return [];
            const known = peers.get(metric);
            if (known === undefined || limit > (peerLimits.get(metric) ?? 0)) {
              throw new Error(`peerLatest(${metric}, ${limit}) was not read ahead`);
            }
            return known.slice(0, limit);
          },
        });
        const at = report.now.getTime();
        for (const window of windows.values()) {
          if (window.count === before.get(window.name)) continue;
          await tx.execute(
            sql`INSERT INTO run_metric_windows (training_run_id, project_id, name, last_step, count, recent, updated_at)
              VALUES (${run.id}, ${run.projectId}, ${window.name}, ${window.lastStep}, ${window.count},
                ${JSON.stringify(window.recent)}::json, ${at})
              ON CONFLICT (training_run_id, name) DO UPDATE SET last_step = excluded.last_step,
                count = excluded.count, recent = excluded.recent, updated_at = excluded.updated_at`,
          );
        }
        if (acceptedPoints > 0) {
          await tx.execute(sql`UPDATE training_runs SET updated_at = ${at} WHERE id = ${run.id}`);
        }
        const runs = await recordFirings(
          tx,
          run,
          'METRICS',
          acceptedPoints,
          report.idempotencyKey,
          report.now,
          fired,
        );
        return { outcome: 'recorded', run, acceptedPoints, runs };
      });
    },

    async getRun(id) {
      return getRun(id);
    },

    async findRun(projectId, name) {
      return findRun(projectId, name);
    },

    async pageRuns(projectId, request) {
      const page = keyset(RUN_ORDER, request);
      return h
        .prepared(`trainingRuns.page:${page.shape}`, (x) =>
          x
            .select()
            .from(trainingRuns)
            .where(and(eq(trainingRuns.projectId, sql.placeholder('projectId')), page.where))
            .orderBy(...page.orderBy)
            .limit(sql.placeholder('limit')),
        )
        .execute({ projectId, ...page.params });
    },

    async countRuns(projectId) {
      return countRows(
        h,
        'trainingRuns.count',
        trainingRuns,
        () => eq(trainingRuns.projectId, sql.placeholder('projectId')),
        { projectId },
      );
    },

    async listMetrics(runId) {
      return (
        await query(
          undefined,
          sql`SELECT name, last_step, count, recent, updated_at::float8 AS updated_at
            FROM run_metric_windows WHERE training_run_id = ${runId} ORDER BY name`,
        )
      ).map(toWindow);
    },

    async getRunEvent(id) {
      const [row] = await query(
        undefined,
        sql`SELECT id, entity_id, project_id, training_run_id, report_id, event_type, run_state,
            metric_name, metric_values, condition, created_at::float8 AS created_at
          FROM run_events WHERE id = ${id}`,
      );
      return row ? toRunEvent(row) : null;
    },
  };
}
