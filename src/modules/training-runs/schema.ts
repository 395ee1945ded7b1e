// biome-ignore-all lint/suspicious/noTemplateCurlyInString: descriptions name template variables as written.

import { builder } from '../../builder.js';
import { NotFoundError, PermissionDeniedError, ValidationError } from '../../errors.js';
import { ReportedRunStateEnum, RunStateEnum } from '../automations/run-condition-schema.js';
import { EventTypeEnum } from '../automations/schema.js';
import { connection } from '../connection.js';
import { hasRole } from '../entities/access.js';
import { ProjectRef } from '../projects/schema.js';
import { getContainer } from '../projects/service.js';
import { TriggeredRunRef, triggeredRunsField } from '../runs/schema.js';
import type { TriggeredRun } from '../runs/service.js';
import { UserRef } from '../users/schema.js';
import { findUser, isVisibleTo } from '../users/service.js';
import {
  getRunEvent,
  getTrainingRun,
  logRunMetrics,
  MAX_POINTS_PER_CALL,
  type MetricWindow,
  type RunEvent,
  type RunReportOutcome,
  reportRunState,
  runMetrics,
  type TrainingRun,
  trainingRunList,
} from './service.js';

const RunMetricRef = builder.objectRef<MetricWindow>('RunMetric').implement({
  description: 'One metric of a run: its latest value and how many points were logged.',
  fields: (t) => ({
    name: t.exposeString('name', { description: 'The metric name, e.g. `val/loss`.' }),
    latestValue: t.float({
      description: 'The value at the latest step.',
      resolve: (m) => m.recent.at(-1)!,
    }),
    latestStep: t.exposeInt('lastStep', { description: 'The latest step logged.' }),
    pointCount: t.exposeInt('count', { description: 'Points accepted so far.' }),
    updatedAt: t.expose('updatedAt', {
      type: 'DateTime',
      description: 'When a point was last accepted.',
    }),
  }),
});

export const RunRef = builder.node(builder.objectRef<TrainingRun>('Run'), {
  description:
    'A training run a pipeline reports (W&B\'s "run"), named uniquely in its project: its state and metrics. Not to be confused with a TriggeredRun, one execution of an automation.',
  id: { resolve: (r) => r.id },
  loadOne: async (id, ctx) => {
    const run = await getTrainingRun(ctx.deps, id);
    return run && hasRole(ctx.viewer, run.entityId) ? run : null;
  },
  fields: (t) => ({
    name: t.exposeString('name', { description: 'Name, unique in its project.' }),
    state: t.field({
      type: RunStateEnum,
      description: 'The latest reported state (CRASHED is shown as FAILED).',
      resolve: (r) => r.state,
    }),
    project: t.field({
      type: ProjectRef,
      description: 'The project it belongs to.',
      resolve: async (r, _args, ctx) => (await getContainer(ctx.deps, 'project', r.projectId))!,
    }),
    reportedBy: t.field({
      type: UserRef,
      nullable: true,
      description:
        'Who first reported it; null when that account is gone or no longer visible to you.',
      resolve: async (r, _args, ctx) =>
        r.reportedById && (await isVisibleTo(ctx.deps, ctx.viewer, r.reportedById))
          ? ((await findUser(ctx.deps, r.reportedById)) ?? null)
          : null,
    }),
    metrics: t.field({
      type: [RunMetricRef],
      description: 'The latest value of every metric logged, by name.',
      resolve: (r, _args, ctx) => runMetrics(ctx.deps, r.id),
    }),
    createdAt: t.expose('createdAt', {
      type: 'DateTime',
      description: 'When it was first reported.',
    }),
    updatedAt: t.expose('updatedAt', {
      type: 'DateTime',
      description: 'When its state or metrics last changed.',
    }),
  }),
});

builder.objectField(
  RunRef,
  'triggeredRuns',
  triggeredRunsField('Runs of automations this run fired, newest first.', (r) => ({
    kind: 'trainingRun',
    id: r.id,
  })),
);

const RunConnectionRef = builder.connectionObject(
  { type: RunRef, name: 'RunConnection' },
  { name: 'RunEdge' },
);

builder.objectField(ProjectRef, 'runs', (t) =>
  t.connection(
    {
      type: RunRef,
      description: "The project's training runs, newest first.",
      resolve: (project, args, ctx) => connection(args, trainingRunList(ctx.deps, project.id)),
    },
    RunConnectionRef,
  ),
);

const RunEventRef = builder.objectRef<RunEvent>('RunEvent').implement({
  description:
    'A run condition that fired: the run event a run automation reacted to, as its triggered run renders it.',
  fields: (t) => ({
    eventType: t.field({
      type: EventTypeEnum,
      description: 'RUN_STATE, RUN_METRIC, RUN_METRIC_CHANGE or RUN_METRIC_ZSCORE.',
      resolve: (e) => e.eventType,
    }),
    run: t.field({
      type: RunRef,
      description: 'The training run.',
      resolve: async (e, _args, ctx) => (await getTrainingRun(ctx.deps, e.trainingRunId))!,
    }),
    runState: t.field({
      type: RunStateEnum,
      description: "The run's state when the condition fired (`${run_status}`).",
      resolve: (e) => e.runState,
    }),
    metricName: t.exposeString('metricName', {
      nullable: true,
      description: 'The metric, for metric events (`${metric_name}`).',
    }),
    metricValues: t.field({
      type: ['Float'],
      nullable: true,
      description:
        'The values the condition looked at, oldest first (`${metric_values}`): the window for RUN_METRIC, both windows for RUN_METRIC_CHANGE, the latest value for RUN_METRIC_ZSCORE. Null for RUN_STATE.',
      resolve: (e) => e.metricValues,
    }),
    condition: t.exposeString('condition', {
      description: 'The condition that fired, for people (`${metric_filter}`).',
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When it fired.' }),
  }),
});

builder.objectField(TriggeredRunRef, 'runEvent', (t) =>
  t.field({
    type: RunEventRef,
    nullable: true,
    description: 'The run event that triggered the run; null for an artifact event (see `event`).',
    resolve: async (r, _args, ctx) =>
      r.runEventId ? await getRunEvent(ctx.deps, r.runEventId) : null,
  }),
);

function reportPayload(name: string, description: string, withPoints: boolean) {
  return builder.objectRef<RunReportOutcome>(name).implement({
    description,
    fields: (t) => ({
      run: t.field({ type: RunRef, description: 'The run, as it is now.', resolve: (r) => r.run }),
      ...(withPoints
        ? {
            acceptedPoints: t.exposeInt('acceptedPoints', {
              description:
                'Points accepted; a point at or before the latest step of its metric is not (so a re-sent point counts once).',
            }),
          }
        : {}),
      triggeredRuns: t.field({
        type: [TriggeredRunRef],
        description: 'One QUEUED run per automation the report fired.',
        resolve: (r): TriggeredRun[] => r.runs,
      }),
      replayed: t.exposeBoolean('replayed', {
        description:
          'True when the idempotency key was seen before and this is the first result again (the run as it is now).',
      }),
    }),
  });
}

const reportFields = {
  entity: 'Entity name.',
  project: 'Project name.',
  run: 'Run name, unique in the project (1 to 128 characters).',
};

builder.mutationField('reportRunState', (t) =>
  t.field({
    type: reportPayload(
      'ReportRunStatePayload',
      'The run and the runs of the RUN_STATE automations it fired.',
      false,
    ),
    description:
      "Reports a training run's state, creating the run on its first report. Queues a run of every RUN_STATE automation watching the project or entity whose states the run enters (filters and cooldown applied), in one transaction. Members and admins.",
    errors: { types: [ValidationError, NotFoundError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'The report.',
        type: builder.inputType('ReportRunStateInput', {
          description: 'A run and its new state.',
          fields: (f) => ({
            entity: f.string({ description: reportFields.entity }),
            project: f.string({ description: reportFields.project }),
            run: f.string({ description: reportFields.run }),
            state: f.field({ type: ReportedRunStateEnum, description: 'The new state.' }),
            idempotencyKey: f.string({
              required: false,
              description:
                'Retrying with the same key returns the first result instead of a second report (keys are shared by reportRunState and logRunMetrics in the entity).',
            }),
          }),
        }),
      }),
    },
    resolve: (_root, { input }, ctx) => reportRunState(ctx, input),
  }),
);

const MetricPointInput = builder.inputType('MetricPointInput', {
  description: 'One logged value of one metric.',
  fields: (f) => ({
    step: f.int({ description: 'The step, a whole number from 0, increasing per metric.' }),
    name: f.string({ description: 'The metric name (1 to 128 characters), e.g. `val/loss`.' }),
    value: f.float({ description: 'A finite value (NaN and infinities are refused).' }),
  }),
});

builder.mutationField('logRunMetrics', (t) =>
  t.field({
    type: reportPayload(
      'LogRunMetricsPayload',
      'The run, the points accepted, and the runs of the metric automations they fired.',
      true,
    ),
    description:
      'Logs metric values of a run (reported first with reportRunState): many points per call. Evaluates the RUN_METRIC, RUN_METRIC_CHANGE and RUN_METRIC_ZSCORE automations watching the project or entity point by point, incrementally, and queues a run for each that fires, in one transaction. Members and admins.',
    errors: { types: [ValidationError, NotFoundError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'The points.',
        type: builder.inputType('LogRunMetricsInput', {
          description: 'A run and its new metric points.',
          fields: (f) => ({
            entity: f.string({ description: reportFields.entity }),
            project: f.string({ description: reportFields.project }),
            run: f.string({ description: reportFields.run }),
            points: f.field({
              type: [MetricPointInput],
              description: `1 to ${MAX_POINTS_PER_CALL} points, in any order (they are applied in step order).`,
            }),
            idempotencyKey: f.string({
              required: false,
              description:
                'Retrying with the same key returns the first result; nothing is logged twice.',
            }),
          }),
        }),
      }),
    },
    resolve: (_root, { input }, ctx) => logRunMetrics(ctx, input),
  }),
);
