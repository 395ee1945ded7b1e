import type { AppDeps, Context } from '../../context.js';
import { NotFoundError, ValidationError } from '../../errors.js';
import type { TriggeredRun } from '../../storage/events.js';
import type {
  MetricPoint,
  MetricWindow,
  RecordRunReportResult,
  RunEvent,
  TrainingRun,
  TrainingRunState,
} from '../../storage/training-runs.js';
import type { StoredList } from '../connection.js';
import { requireEntity } from '../entities/access.js';
import { checkIdempotencyKey } from '../events/service.js';
import { requireContainer } from '../projects/service.js';
import { publishRuns, runUpdate } from '../runs/service.js';
import { checkMetricName, evaluateMetrics, evaluateState } from './conditions.js';

export type { MetricWindow, RunEvent, TrainingRun, TrainingRunState };

export const MAX_RUN_NAME_LENGTH = 128;
/** Most points one logRunMetrics call takes. */
export const MAX_POINTS_PER_CALL = 1000;

/** A state as reported: W&B's `CRASHED` is kept as `FAILED`. */
export type ReportedRunState = TrainingRunState | 'CRASHED';

export interface RunReportInput {
  entity: string;
  project: string;
  /** The run's name, unique in the project. */
  run: string;
  idempotencyKey?: string | null;
}

export interface ReportRunStateInput extends RunReportInput {
  state: ReportedRunState;
}

export interface LogRunMetricsInput extends RunReportInput {
  points: readonly MetricPoint[];
}

/** What a report did: the run as it is now, the points accepted, and the runs it queued. */
export interface RunReportOutcome {
  run: TrainingRun;
  acceptedPoints: number;
  runs: TriggeredRun[];
  replayed: boolean;
}

function checkRunName(name: string): string {
  if (name.length === 0 || name.length > MAX_RUN_NAME_LENGTH || name.trim() !== name) {
    throw new ValidationError(
      'input.run',
      `Name the run with 1 to ${MAX_RUN_NAME_LENGTH} characters and no leading or trailing spaces, e.g. "resnet-lr3e-4".`,
    );
  }
  return name;
}

/** Settles a report's result: replays and recordings; publishes the runs it queued. */
function settle(deps: AppDeps, recorded: RecordRunReportResult, input: RunReportInput) {
  switch (recorded.outcome) {
    case 'missingRun':
      throw new NotFoundError(
        'input.run',
        `No run named "${input.run}" in project "${input.project}"; report its state first with reportRunState.`,
      );
    case 'replayed':
      return {
        run: recorded.run,
        acceptedPoints: recorded.acceptedPoints,
        runs: recorded.runs,
        replayed: true,
      };
    case 'recorded':
      publishRuns(deps, recorded.runs.map(runUpdate));
      return {
        run: recorded.run,
        acceptedPoints: recorded.acceptedPoints,
        runs: recorded.runs,
        replayed: false,
      };
    default:
      return recorded satisfies never;
  }
}

/**
 * Reports a run's state, creating the run (reported by the caller) on first report, and queues a
 * run of every RUN_STATE automation watching its project or entity whose states it enters (filters
 * and cooldown applied), in one transaction; then publishes them. Members and admins, as for
 * emitArtifactEvent. An `idempotencyKey` already used in the entity returns the first answer.
 */
export async function reportRunState(
  ctx: Context,
  input: ReportRunStateInput,
): Promise<RunReportOutcome> {
  const { deps, viewer } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'MEMBER');
  const idempotencyKey = checkIdempotencyKey(input.idempotencyKey);
  const project = await requireContainer(
    deps,
    'project',
    entity.id,
    input.project,
    'input.project',
  );
  const now = deps.clock.now();
  const recorded = await deps.storage.trainingRuns.recordState(
    {
      entityId: entity.id,
      projectId: project.id,
      runName: checkRunName(input.run),
      state: input.state === 'CRASHED' ? 'FAILED' : input.state,
      idempotencyKey,
      reportedById: viewer.user.id,
      now,
    },
    (view) => evaluateState(view, now),
  );
  return settle(deps, recorded, input);
}

/**
 * The points, checked: at most {@link MAX_POINTS_PER_CALL}, each with a whole step of 0 or more,
 * a metric name and a finite value. Throws ValidationError naming the point
 * (`input.points[3].value`).
 */
export function checkPoints(points: readonly MetricPoint[]): MetricPoint[] {
  if (points.length === 0 || points.length > MAX_POINTS_PER_CALL) {
    throw new ValidationError(
      'input.points',
      `Log 1 to ${MAX_POINTS_PER_CALL} points per call; split larger batches.`,
    );
  }
  points.forEach((point, i) => {
    const at = `input.points[${i}]`;
    if (!Number.isFinite(point.value)) {
      throw new ValidationError(
        `${at}.value`,
        `Metric values must be finite numbers; ${point.value} cannot be compared with a threshold. Leave the point out, or log a finite value.`,
      );
    }
    if (!Number.isSafeInteger(point.step) || point.step < 0) {
      throw new ValidationError(`${at}.step`, 'The step is a whole number, 0 or more.');
    }
    checkMetricName(point.name, `${at}.name`);
  });
  return [...points];
}

/**
 * Logs metric points to an existing run and queues a run of every metric automation watching its
 * project or entity whose condition the new values meet (evaluated incrementally, point by point;
 * see evaluateMetrics), in one transaction; then publishes them. A point at or before the latest
 * step of its metric is not accepted (so re-sent points count once). Members and admins. NotFound
 * on `input.run` when the project has no such run; an `idempotencyKey` already used in the entity
 * returns the first answer.
 */
export async function logRunMetrics(
  ctx: Context,
  input: LogRunMetricsInput,
): Promise<RunReportOutcome> {
  const { deps } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'MEMBER');
  const idempotencyKey = checkIdempotencyKey(input.idempotencyKey);
  const points = checkPoints(input.points);
  const project = await requireContainer(
    deps,
    'project',
    entity.id,
    input.project,
    'input.project',
  );
  const now = deps.clock.now();
  const recorded = await deps.storage.trainingRuns.recordMetrics(
    {
      entityId: entity.id,
      projectId: project.id,
      runName: checkRunName(input.run),
      points,
      idempotencyKey,
      now,
    },
    (view) => evaluateMetrics(view, points, now),
  );
  return settle(deps, recorded, input);
}

export async function getTrainingRun(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<TrainingRun | null> {
  return deps.storage.trainingRuns.getRun(id);
}

export async function getRunEvent(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<RunEvent | null> {
  return deps.storage.trainingRuns.getRunEvent(id);
}

/** The latest value and step of each metric of the run, by name. */
export async function runMetrics(
  deps: Pick<AppDeps, 'storage'>,
  runId: string,
): Promise<MetricWindow[]> {
  return deps.storage.trainingRuns.listMetrics(runId);
}

/** The project's runs, newest first. */
export function trainingRunList(
  deps: Pick<AppDeps, 'storage'>,
  projectId: string,
): StoredList<TrainingRun> {
  return {
    keyOf: (run) => [run.createdAt.getTime(), run.id],
    keyTypes: ['number', 'string'],
    fetch: (request) => deps.storage.trainingRuns.pageRuns(projectId, request),
    count: () => deps.storage.trainingRuns.countRuns(projectId),
  };
}
