/*
 * Training runs (W&B's "runs"): their reported state, the recent values of their metrics, and the
 * run events that fire the automations watching them.
 */

import type { EventType, RunCondition, TrainingRunState } from './config.js';
import type { TriggeredRun } from './events.js';
import type { PageRequest } from './paging.js';

export type { RunCondition, TrainingRunState };

/** How many recent values of each metric of each run are kept: the largest window a condition may use. */
export const METRIC_WINDOW_CAP = 100;

/** A training run, as stored. */
export interface TrainingRun {
  id: string;
  entityId: string;
  projectId: string;
  /** Unique in its project. */
  name: string;
  state: TrainingRunState;
  /** The account that first reported the run; null once it is deleted. */
  reportedById: string | null;
  createdAt: Date;
  /** When its state or metrics last changed. */
  updatedAt: Date;
}

/** The recent values of one metric of one run. */
export interface MetricWindow {
  name: string;
  /** The step of the latest accepted point; a point at this step or before is not accepted. */
  lastStep: number;
  /** Points accepted so far; `recent` holds the last {@link METRIC_WINDOW_CAP} of them. */
  count: number;
  /** The last values, oldest first. */
  recent: number[];
  updatedAt: Date;
}

/** An enabled run automation that may fire for a run: what evaluation reads of it. */
export interface RunWatcher {
  id: string;
  name: string;
  actionId: string;
  eventType: EventType;
  filterRunNamePattern: string | null;
  filterRunReportedById: string | null;
  runCondition: RunCondition;
  cooldownSeconds: number;
}

/** A condition that fired for a run: its run event, and the automation whose run it queues. */
export interface RunFiring {
  automation: RunWatcher;
  metricName: string | null;
  /** The values the condition looked at, oldest first; null for state events. */
  metricValues: number[] | null;
  /** The condition, for people (`${metric_filter}`). */
  condition: string;
}

/** A fired run condition, as stored: what its triggered run renders. */
export interface RunEvent {
  id: string;
  entityId: string;
  projectId: string;
  trainingRunId: string;
  reportId: string;
  eventType: EventType;
  runState: TrainingRunState;
  metricName: string | null;
  metricValues: number[] | null;
  condition: string;
  createdAt: Date;
}

/** A logged point, checked: finite value, whole step. */
export interface MetricPoint {
  step: number;
  name: string;
  value: number;
}

/** What state evaluation sees, inside the recording transaction. */
export interface StateView {
  /** The run's state before this report; null when the report creates the run. */
  previous: TrainingRunState | null;
  run: TrainingRun;
  /** Enabled RUN_STATE automations watching the run's project or entity, oldest first. */
  watchers: readonly RunWatcher[];
  /** When the automation last fired for this run; null if never. */
  lastFiredAt(automationId: string): Date | null;
}

/** What metric evaluation sees, inside the recording transaction. */
export interface MetricsView {
  run: TrainingRun;
  /**
   * Enabled RUN_METRIC, RUN_METRIC_CHANGE and RUN_METRIC_ZSCORE automations watching the run's
   * project or entity, oldest first.
   */
  watchers: readonly RunWatcher[];
  /**
   * The window of each metric the points name (an empty one, `lastStep` -1, for a new metric).
   * Evaluation appends the accepted points to them; the store writes them back.
   */
  windows: ReadonlyMap<string, MetricWindow>;
  lastFiredAt(automationId: string): Date | null;
  /**
   * The latest value of `metric` in each of the `limit` most recently updated other runs of the
   * project that logged it, newest first. One index range read.
   */
  peerLatest(metric: string, limit: number): number[];
}

/** A report and the runs it queued (in the order queued). */
export interface RecordedRunReport {
  run: TrainingRun;
  /** Points accepted (0 for a state report). */
  acceptedPoints: number;
  runs: TriggeredRun[];
}

export type RecordRunReportResult =
  | ({ outcome: 'recorded' } & RecordedRunReport)
  /** The idempotency key was used before in the entity: the first report's answer, run as now. */
  | ({ outcome: 'replayed' } & RecordedRunReport)
  /** Metrics for a run the project does not have (nothing was stored). */
  | { outcome: 'missingRun' };

export interface NewStateReport {
  entityId: string;
  projectId: string;
  runName: string;
  state: TrainingRunState;
  idempotencyKey: string | null;
  reportedById: string;
  now: Date;
}

export interface NewMetricsReport {
  entityId: string;
  projectId: string;
  runName: string;
  points: readonly MetricPoint[];
  idempotencyKey: string | null;
  now: Date;
}

/** Operations on training runs: reporting them, and reading them back. */
export interface TrainingRunStore {
  /**
   * In one transaction: creates the run (named in its project, reported by `reportedById`) or
   * sets its state, stores the report, reads the enabled RUN_STATE automations of the project and
   * the entity (through the match index) and their last firing for the run, then, for each firing
   * `evaluate` returns, stores a run event, queues a run and marks the firing (for the cooldown).
   * A repeated idempotency key in the entity stores nothing and returns the first answer (also when
   * two calls race).
   */
  recordState(
    report: NewStateReport,
    evaluate: (view: StateView) => RunFiring[],
  ): Promise<RecordRunReportResult>;
  /**
   * As {@link recordState}, for metric points of an existing run: reads the windows of the metrics
   * named and the watching metric automations, lets `evaluate` append the points to the windows and
   * decide the firings (returning how many points it accepted), and writes the windows back, the
   * report, run events, runs and firings.
   */
  recordMetrics(
    report: NewMetricsReport,
    evaluate: (view: MetricsView) => { acceptedPoints: number; firings: RunFiring[] },
  ): Promise<RecordRunReportResult>;
  getRun(id: string): Promise<TrainingRun | null>;
  findRun(projectId: string, name: string): Promise<TrainingRun | null>;
  /** A range of the project's runs, newest first: key `[createdAt ms, id]`. */
  pageRuns(projectId: string, request: PageRequest): Promise<TrainingRun[]>;
  countRuns(projectId: string): Promise<number>;
  /** The windows of every metric of the run, by name. */
  listMetrics(runId: string): Promise<MetricWindow[]>;
  getRunEvent(id: string): Promise<RunEvent | null>;
}
