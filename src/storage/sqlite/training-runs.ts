import { and, eq, sql } from 'drizzle-orm';
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
import { RUN_COLUMNS, RUNS_PER_INSERT } from './events.js';
import { runEvents, trainingRuns, triggeredRuns } from './schema.js';
import { countRows, keyset, type SqliteHandle, type SqlOrder, uniqueViolation } from './support.js';

// Raw statements, each prepared once: logging metrics is a hot path, and rows read as arrays skip
// drizzle's per-row mapping.

const RUN_FIELDS = `id, entity_id, project_id, name, state, reported_by_id, created_at, updated_at`;

const FIND_RUN = `SELECT ${RUN_FIELDS} FROM training_runs WHERE project_id = @projectId AND name = @name`;
const GET_RUN = `SELECT ${RUN_FIELDS} FROM training_runs WHERE id = @id`;
const INSERT_RUN = `
  INSERT INTO training_runs (id, entity_id, project_id, name, state, reported_by_id, created_at, updated_at)
  VALUES (@id, @entityId, @projectId, @name, @state, @reportedById, @now, @now)`;
const SET_STATE = `UPDATE training_runs SET state = @state, updated_at = @now WHERE id = @id`;
const TOUCH_RUN = `UPDATE training_runs SET updated_at = @now WHERE id = @id`;

const INSERT_REPORT = `
  INSERT INTO run_reports (id, entity_id, training_run_id, kind, accepted_points, idempotency_key, created_at)
  VALUES (@id, @entityId, @runId, @kind, @acceptedPoints, @idempotencyKey, @now)`;
const REPORT_BY_KEY = `
  SELECT id, training_run_id, accepted_points FROM run_reports
  WHERE entity_id = @entityId AND idempotency_key = @key`;

/**
 * The enabled automations of the given run event types on the project or the entity, oldest
 * first: through `automations_match_idx` (scope id, event type, enabled), as artifact events'
 * candidates. The entity is checked in code (see the event store for why).
 */
const WATCHERS = (types: number) => `
  SELECT id, entity_id, name, action_id, event_type, filter_run_name_pattern,
    filter_run_reported_by_id, run_condition, cooldown_seconds
  FROM automations
  WHERE scope_id IN (@entityId, @projectId)
    AND event_type IN (${Array.from({ length: types }, (_, i) => `@t${i}`).join(', ')})
    AND enabled = 1
  ORDER BY created_at, id`;

const FIRINGS = `SELECT automation_id, fired_at FROM run_automation_firings WHERE training_run_id = @runId`;
const MARK_FIRING = `
  INSERT INTO run_automation_firings (automation_id, training_run_id, fired_at)
  VALUES (@automationId, @runId, @now)
  ON CONFLICT (training_run_id, automation_id) DO UPDATE SET fired_at = excluded.fired_at`;

const WINDOW = `
  SELECT name, last_step, count, recent, updated_at FROM run_metric_windows
  WHERE training_run_id = @runId AND name = @name`;
const WINDOWS = `
  SELECT name, last_step, count, recent, updated_at FROM run_metric_windows
  WHERE training_run_id = @runId ORDER BY name`;
const SAVE_WINDOW = `
  INSERT INTO run_metric_windows (training_run_id, project_id, name, last_step, count, recent, updated_at)
  VALUES (@runId, @projectId, @name, @lastStep, @count, @recent, @now)
  ON CONFLICT (training_run_id, name) DO UPDATE SET last_step = excluded.last_step,
    count = excluded.count, recent = excluded.recent, updated_at = excluded.updated_at`;
/** Newest first from the peers index; the latest value is the last element of `recent`. */
const PEERS = `
  SELECT json_extract(recent, '$[#-1]') FROM run_metric_windows
  WHERE project_id = @projectId AND name = @name AND training_run_id <> @runId
  ORDER BY updated_at DESC LIMIT @limit`;

const INSERT_RUN_EVENT = `
  INSERT INTO run_events (id, entity_id, project_id, training_run_id, report_id, event_type,
    run_state, metric_name, metric_values, condition, created_at)
  VALUES (@id, @entityId, @projectId, @runId, @reportId, @eventType, @runState, @metricName,
    @metricValues, @condition, @now)`;
const RUN_EVENT_FIELDS = `id, entity_id, project_id, training_run_id, report_id, event_type, run_state,
  metric_name, metric_values, condition, created_at`;

const INSERT_TRIGGERED = (rows: number) => `
  INSERT INTO triggered_runs (id, entity_id, run_event_id, training_run_id, automation_id,
    automation_name, action_id, project_id, status, attempt_count, next_attempt_at, created_at,
    updated_at)
  VALUES ${Array.from(
    { length: rows },
    () => "(?, @entityId, ?, @runId, ?, ?, ?, @projectId, 'QUEUED', 0, @now, @now, @now)",
  ).join(', ')}`;

type Row = unknown[];

function toRun(row: Row): TrainingRun {
  return {
    id: row[0] as string,
    entityId: row[1] as string,
    projectId: row[2] as string,
    name: row[3] as string,
    state: row[4] as TrainingRunState,
    reportedById: row[5] as string | null,
    createdAt: new Date(row[6] as number),
    updatedAt: new Date(row[7] as number),
  };
}

function toWindow(row: Row): MetricWindow {
  return {
    name: row[0] as string,
    lastStep: row[1] as number,
    count: row[2] as number,
    recent: JSON.parse(row[3] as string) as number[],
    updatedAt: new Date(row[4] as number),
  };
}

function toWatcher(row: Row): RunWatcher & { entityId: string } {
  return {
    id: row[0] as string,
    entityId: row[1] as string,
    name: row[2] as string,
    actionId: row[3] as string,
    eventType: row[4] as EventType,
    filterRunNamePattern: row[5] as string | null,
    filterRunReportedById: row[6] as string | null,
    runCondition: JSON.parse(row[7] as string) as RunCondition,
    cooldownSeconds: row[8] as number,
  };
}

function toRunEvent(row: Row): RunEvent {
  return {
    id: row[0] as string,
    entityId: row[1] as string,
    projectId: row[2] as string,
    trainingRunId: row[3] as string,
    reportId: row[4] as string,
    eventType: row[5] as EventType,
    runState: row[6] as TrainingRunState,
    metricName: row[7] as string | null,
    metricValues: row[8] === null ? null : (JSON.parse(row[8] as string) as number[]),
    condition: row[9] as string,
    createdAt: new Date(row[10] as number),
  };
}

const RUN_ORDER: SqlOrder = {
  direction: 'desc',
  columns: [trainingRuns.createdAt, trainingRuns.id],
};

const STATE_TYPES: readonly EventType[] = ['RUN_STATE'];
const METRIC_TYPES: readonly EventType[] = ['RUN_METRIC', 'RUN_METRIC_CHANGE', 'RUN_METRIC_ZSCORE'];

export function createTrainingRunStore(h: SqliteHandle): TrainingRunStore {
  const raw = (key: string, text: string) =>
    h.prepared(`trainingRuns.${key}`, () => h.sqlite.prepare(text));
  const rows = (key: string, text: string) =>
    h.prepared(`trainingRuns.${key}`, () => h.sqlite.prepare(text).raw());

  const runsOfReport = () =>
    h.prepared('trainingRuns.runsOfReport', () =>
      h.db
        .select(RUN_COLUMNS)
        .from(triggeredRuns)
        .innerJoin(runEvents, eq(runEvents.id, triggeredRuns.runEventId))
        .where(eq(runEvents.reportId, sql.placeholder('reportId')))
        .orderBy(sql`${triggeredRuns}.rowid`)
        .prepare(),
    );

  function findByKey(entityId: string, key: string): RecordedRunReport | null {
    const report = rows('reportByKey', REPORT_BY_KEY).get({ entityId, key }) as Row | undefined;
    if (!report) return null;
    const run = rows('get', GET_RUN).get({ id: report[1] }) as Row | undefined;
    if (!run) return null;
    return {
      run: toRun(run),
      acceptedPoints: report[2] as number,
      runs: runsOfReport().all({ reportId: report[0] as string }),
    };
  }

  function watchers(run: TrainingRun, types: readonly EventType[]): RunWatcher[] {
    const params: Record<string, string> = { entityId: run.entityId, projectId: run.projectId };
    types.forEach((type, i) => {
      params[`t${i}`] = type;
    });
    return (rows(`watchers:${types.length}`, WATCHERS(types.length)).all(params) as Row[])
      .map(toWatcher)
      .filter((watcher) => watcher.entityId === run.entityId)
      .map(({ entityId: _, ...watcher }) => watcher);
  }

  function firings(runId: string): (automationId: string) => Date | null {
    const fired = new Map<string, number>();
    for (const row of rows('firings', FIRINGS).all({ runId }) as Row[]) {
      fired.set(row[0] as string, row[1] as number);
    }
    return (automationId) => {
      const at = fired.get(automationId);
      return at === undefined ? null : new Date(at);
    };
  }

  /** Stores the report, then a run event, a QUEUED run and a firing mark per firing. */
  function recordFirings(
    run: TrainingRun,
    kind: 'STATE' | 'METRICS',
    acceptedPoints: number,
    idempotencyKey: string | null,
    now: Date,
    fired: readonly RunFiring[],
  ): TriggeredRun[] {
    const reportId = newId();
    const at = now.getTime();
    raw('insertReport', INSERT_REPORT).run({
      id: reportId,
      entityId: run.entityId,
      runId: run.id,
      kind,
      acceptedPoints,
      idempotencyKey,
      now: at,
    });
    const queued: TriggeredRun[] = [];
    for (const firing of fired) {
      const eventId = newId();
      raw('insertEvent', INSERT_RUN_EVENT).run({
        id: eventId,
        entityId: run.entityId,
        projectId: run.projectId,
        runId: run.id,
        reportId,
        eventType: firing.automation.eventType,
        runState: run.state,
        metricName: firing.metricName,
        metricValues: firing.metricValues === null ? null : JSON.stringify(firing.metricValues),
        condition: firing.condition,
        now: at,
      });
      raw('markFiring', MARK_FIRING).run({
        automationId: firing.automation.id,
        runId: run.id,
        now: at,
      });
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
    for (let start = 0; start < queued.length; start += RUNS_PER_INSERT) {
      const chunk = queued.slice(start, start + RUNS_PER_INSERT);
      const values: (string | null)[] = [];
      for (const r of chunk)
        values.push(r.id, r.runEventId, r.automationId, r.automationName, r.actionId);
      raw(`insertRuns:${chunk.length}`, INSERT_TRIGGERED(chunk.length)).run(...values, {
        entityId: run.entityId,
        runId: run.id,
        projectId: run.projectId,
        now: at,
      });
    }
    return queued;
  }

  /** Runs `body`, answering a lost idempotency race with the winner's report. */
  function withKey(
    entityId: string,
    key: string | null,
    body: () => RecordRunReportResult,
  ): RecordRunReportResult {
    try {
      return h.transaction(() => {
        if (key !== null) {
          const first = findByKey(entityId, key);
          if (first) return { outcome: 'replayed' as const, ...first };
        }
        return body();
      });
    } catch (error) {
      if (key !== null && uniqueViolation(error)?.includes('idempotency_key')) {
        const first = findByKey(entityId, key);
        if (first) return { outcome: 'replayed', ...first };
      }
      throw error;
    }
  }

  return {
    async recordState(report, evaluate) {
      return withKey(report.entityId, report.idempotencyKey, () => {
        const at = report.now.getTime();
        const found = rows('find', FIND_RUN).get({
          projectId: report.projectId,
          name: report.runName,
        }) as Row | undefined;
        let previous: TrainingRunState | null = null;
        let run: TrainingRun;
        if (found) {
          run = toRun(found);
          previous = run.state;
          raw('setState', SET_STATE).run({ id: run.id, state: report.state, now: at });
          run = { ...run, state: report.state, updatedAt: report.now };
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
          raw('insertRun', INSERT_RUN).run({ ...run, now: at });
        }
        const fired = evaluate({
          previous,
          run,
          watchers: watchers(run, STATE_TYPES),
          lastFiredAt: firings(run.id),
        });
        const runs = recordFirings(run, 'STATE', 0, report.idempotencyKey, report.now, fired);
        return { outcome: 'recorded', run, acceptedPoints: 0, runs };
      });
    },

    async recordMetrics(report, evaluate) {
      return withKey(report.entityId, report.idempotencyKey, () => {
        const found = rows('find', FIND_RUN).get({
          projectId: report.projectId,
          name: report.runName,
        }) as Row | undefined;
        if (!found) return { outcome: 'missingRun' };
        const run = { ...toRun(found), updatedAt: report.now };
        const windows = new Map<string, MetricWindow>();
        for (const point of report.points) {
          if (windows.has(point.name)) continue;
          const row = rows('window', WINDOW).get({ runId: run.id, name: point.name }) as
            | Row
            | undefined;
          windows.set(
            point.name,
            row
              ? toWindow(row)
              : { name: point.name, lastStep: -1, count: 0, recent: [], updatedAt: report.now },
          );
        }
        const before = new Map([...windows].map(([name, w]) => [name, w.count]));
        const { acceptedPoints, firings: fired } = evaluate({
          run,
          watchers: watchers(run, METRIC_TYPES),
          windows,
          lastFiredAt: firings(run.id),
          peerLatest: (metric, limit) =>
            (
              rows('peers', PEERS).all({
                projectId: run.projectId,
                name: metric,
                runId: run.id,
                limit,
              }) as Row[]
            ).map((row) => row[0] as number),
        });
        const at = report.now.getTime();
        for (const window of windows.values()) {
          if (window.count === before.get(window.name)) continue;
          raw('saveWindow', SAVE_WINDOW).run({
            runId: run.id,
            projectId: run.projectId,
            name: window.name,
            lastStep: window.lastStep,
            count: window.count,
            recent: JSON.stringify(window.recent),
            now: at,
          });
        }
        if (acceptedPoints > 0) raw('touch', TOUCH_RUN).run({ id: run.id, now: at });
        const runs = recordFirings(
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
      const row = rows('get', GET_RUN).get({ id }) as Row | undefined;
      return row ? toRun(row) : null;
    },

    async findRun(projectId, name) {
      const row = rows('find', FIND_RUN).get({ projectId, name }) as Row | undefined;
      return row ? toRun(row) : null;
    },

    async pageRuns(projectId, request) {
      const page = keyset(RUN_ORDER, request);
      return h
        .prepared(`trainingRuns.page:${page.shape}`, () =>
          h.db
            .select()
            .from(trainingRuns)
            .where(and(eq(trainingRuns.projectId, sql.placeholder('projectId')), page.where))
            .orderBy(...page.orderBy)
            .limit(sql.placeholder('limit'))
            .prepare(),
        )
        .all({ projectId, ...page.params });
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
      return (rows('windows', WINDOWS).all({ runId }) as Row[]).map(toWindow);
    },

    async getRunEvent(id) {
      const row = rows('event', `SELECT ${RUN_EVENT_FIELDS} FROM run_events WHERE id = @id`).get({
        id,
      }) as Row | undefined;
      return row ? toRunEvent(row) : null;
    },
  };
}
