import { ValidationError } from '../../errors.js';
import type {
  EventType,
  MetricAggregation,
  MetricChangeDirection,
  MetricChangeType,
  MetricComparison,
  RunCondition,
  TrainingRunState,
  ZScoreDirection,
} from '../../storage/config.js';
import {
  METRIC_WINDOW_CAP,
  type MetricPoint,
  type MetricsView,
  type MetricWindow,
  type RunFiring,
  type RunWatcher,
  type StateView,
} from '../../storage/training-runs.js';
import { patternMatches } from '../automations/pattern.js';

/** W&B's cooldown: a run automation fires at most once per run in 24 hours. */
export const DEFAULT_COOLDOWN_SECONDS = 24 * 60 * 60;
/** Longest cooldown accepted: 30 days. */
export const MAX_COOLDOWN_SECONDS = 30 * 24 * 60 * 60;
/** A change compares two windows, both kept: each at most half of what is kept. */
export const MAX_CHANGE_WINDOW = METRIC_WINDOW_CAP / 2;
/** Z-scores compare with at most this many other runs. */
export const MAX_ZSCORE_RUNS = 100;
export const MAX_METRIC_NAME_LENGTH = 128;

/** The condition kind of each run event type. */
export const CONDITION_KIND = {
  RUN_STATE: 'STATE',
  RUN_METRIC: 'METRIC',
  RUN_METRIC_CHANGE: 'METRIC_CHANGE',
  RUN_METRIC_ZSCORE: 'METRIC_ZSCORE',
} as const satisfies Partial<Record<EventType, RunCondition['kind']>>;

/** Where each kind sits in the `runCondition` input. */
const INPUT_NAME: Readonly<Record<RunCondition['kind'], string>> = {
  STATE: 'state',
  METRIC: 'metric',
  METRIC_CHANGE: 'metricChange',
  METRIC_ZSCORE: 'metricZScore',
};

/** A condition as a client gives it: optional fields not yet defaulted. */
export type RunConditionInput =
  | { kind: 'STATE'; states: readonly TrainingRunState[] }
  | {
      kind: 'METRIC';
      metric: string;
      aggregation?: MetricAggregation | null;
      window?: number | null;
      comparison: MetricComparison;
      threshold: number;
    }
  | {
      kind: 'METRIC_CHANGE';
      metric: string;
      aggregation?: MetricAggregation | null;
      window: number;
      changeType?: MetricChangeType | null;
      direction: MetricChangeDirection;
      amount: number;
    }
  | {
      kind: 'METRIC_ZSCORE';
      metric: string;
      runs?: number | null;
      direction: ZScoreDirection;
      threshold: number;
    };

/** Other runs a z-score compares with when the condition does not say. */
export const DEFAULT_ZSCORE_RUNS = 20;

const isRunEvent = (eventType: EventType): eventType is keyof typeof CONDITION_KIND =>
  eventType in CONDITION_KIND;

function finite(value: number, field: string, what: string): number {
  if (!Number.isFinite(value)) {
    throw new ValidationError(field, `The ${what} must be a finite number, not ${value}.`);
  }
  return value;
}

function wholeBetween(value: number, min: number, max: number, field: string, what: string) {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(field, `The ${what} must be a whole number from ${min} to ${max}.`);
  }
  return value;
}

export function checkMetricName(name: string, field: string): string {
  const trimmed = name.trim();
  if (trimmed === '' || trimmed.length > MAX_METRIC_NAME_LENGTH || trimmed !== name) {
    throw new ValidationError(
      field,
      `Name the metric with 1 to ${MAX_METRIC_NAME_LENGTH} characters and no leading or trailing spaces, e.g. "val/loss".`,
    );
  }
  return name;
}

/**
 * The stored condition of a run automation, checked: it must be given exactly for the run event
 * types, of the kind the event type names, with finite numbers and bounded windows. Throws
 * ValidationError naming the field (`input.runCondition.metric.window`, …).
 */
export function checkRunCondition(
  eventType: EventType,
  input: RunConditionInput | null,
  field: string,
): RunCondition | null {
  if (!isRunEvent(eventType)) {
    if (input !== null) {
      throw new ValidationError(
        field,
        `${eventType} is an artifact event; a run condition belongs to RUN_STATE, RUN_METRIC, RUN_METRIC_CHANGE or RUN_METRIC_ZSCORE automations only. Remove \`runCondition\`.`,
      );
    }
    return null;
  }
  const kind = CONDITION_KIND[eventType];
  if (input === null) {
    throw new ValidationError(
      field,
      `${eventType} automations need \`runCondition: { ${INPUT_NAME[kind]}: … }\`.`,
    );
  }
  if (input.kind !== kind) {
    throw new ValidationError(
      `${field}.${INPUT_NAME[input.kind]}`,
      `${eventType} automations take \`runCondition: { ${INPUT_NAME[kind]}: … }\`, not \`${INPUT_NAME[input.kind]}\`.`,
    );
  }
  const at = (name: string) => `${field}.${INPUT_NAME[kind]}.${name}`;
  switch (input.kind) {
    case 'STATE': {
      const states = [...new Set(input.states)];
      if (states.length === 0) {
        throw new ValidationError(
          at('states'),
          'Name at least one state: RUNNING, FINISHED or FAILED.',
        );
      }
      return { kind: 'STATE', states };
    }
    case 'METRIC': {
      const aggregation = input.aggregation ?? 'LATEST';
      const window = input.window ?? 1;
      if (aggregation === 'LATEST' && window !== 1) {
        throw new ValidationError(
          at('window'),
          'LATEST looks at one value; remove `window`, or aggregate with MAX, MIN or AVERAGE.',
        );
      }
      return {
        kind: 'METRIC',
        metric: checkMetricName(input.metric, at('metric')),
        aggregation,
        window: wholeBetween(window, 1, METRIC_WINDOW_CAP, at('window'), 'window'),
        comparison: input.comparison,
        threshold: finite(input.threshold, at('threshold'), 'threshold'),
      };
    }
    case 'METRIC_CHANGE': {
      const aggregation = input.aggregation ?? 'AVERAGE';
      if (aggregation === 'LATEST' && input.window !== 1) {
        throw new ValidationError(
          at('window'),
          'LATEST compares single values: use `window: 1`, or aggregate with MAX, MIN or AVERAGE.',
        );
      }
      const amount = finite(input.amount, at('amount'), 'amount');
      if (amount < 0) {
        throw new ValidationError(
          at('amount'),
          'The amount is a size of change, 0 or more; pick the sign with `direction`.',
        );
      }
      return {
        kind: 'METRIC_CHANGE',
        metric: checkMetricName(input.metric, at('metric')),
        aggregation,
        window: wholeBetween(input.window, 1, MAX_CHANGE_WINDOW, at('window'), 'window'),
        changeType: input.changeType ?? 'ABSOLUTE',
        direction: input.direction,
        amount,
      };
    }
    case 'METRIC_ZSCORE': {
      const threshold = finite(input.threshold, at('threshold'), 'threshold');
      if (threshold <= 0) {
        throw new ValidationError(
          at('threshold'),
          'The threshold is a number of standard deviations, more than 0; pick the side with `direction`.',
        );
      }
      return {
        kind: 'METRIC_ZSCORE',
        metric: checkMetricName(input.metric, at('metric')),
        runs: wholeBetween(
          input.runs ?? DEFAULT_ZSCORE_RUNS,
          2,
          MAX_ZSCORE_RUNS,
          at('runs'),
          'number of runs',
        ),
        direction: input.direction,
        threshold,
      };
    }
    default:
      return input satisfies never;
  }
}

/** The stored cooldown: null for artifact events, the given or default seconds for run events. */
export function checkCooldown(
  eventType: EventType,
  seconds: number | null | undefined,
  field: string,
): number | null {
  if (!isRunEvent(eventType)) {
    if (seconds != null) {
      throw new ValidationError(
        field,
        `A cooldown applies to run events only; remove \`cooldownSeconds\` for ${eventType}.`,
      );
    }
    return null;
  }
  return wholeBetween(
    seconds ?? DEFAULT_COOLDOWN_SECONDS,
    0,
    MAX_COOLDOWN_SECONDS,
    field,
    'cooldown in seconds',
  );
}

// ---------------------------------------------------------------------------------------------
// Descriptions (`${metric_filter}`)

const SYMBOL: Readonly<Record<MetricComparison, string>> = {
  GT: '>',
  GTE: '>=',
  LT: '<',
  LTE: '<=',
  EQ: '==',
  NE: '!=',
};

function reduced(aggregation: MetricAggregation, window: number, metric: string): string {
  if (aggregation === 'LATEST') return `latest ${metric}`;
  const name = { MAX: 'max', MIN: 'min', AVERAGE: 'average' }[aggregation];
  return `${name} of ${metric} over the last ${window} value${window === 1 ? '' : 's'}`;
}

/** The condition for people, e.g. `average of loss over the last 5 values > 0.5`. */
export function describeCondition(condition: RunCondition): string {
  switch (condition.kind) {
    case 'STATE':
      return `run state is ${condition.states.join(' or ')}`;
    case 'METRIC':
      return `${reduced(condition.aggregation, condition.window, condition.metric)} ${SYMBOL[condition.comparison]} ${condition.threshold}`;
    case 'METRIC_CHANGE': {
      const moved = { INCREASE: 'increased', DECREASE: 'decreased', ANY: 'changed' }[
        condition.direction
      ];
      const by =
        condition.changeType === 'RELATIVE'
          ? `${Number((condition.amount * 100).toPrecision(12))}% (relative)`
          : `${condition.amount} (absolute)`;
      return `${reduced(condition.aggregation, condition.window, condition.metric)} ${moved} by more than ${by} against the ${condition.window} value${condition.window === 1 ? '' : 's'} before`;
    }
    case 'METRIC_ZSCORE': {
      const side = { ABOVE: 'above', BELOW: 'below', EITHER: 'above or below' }[
        condition.direction
      ];
      return `latest ${condition.metric} more than ${condition.threshold} standard deviations ${side} the mean of its latest value in the project's last ${condition.runs} other runs`;
    }
    default:
      return condition satisfies never;
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

function passesRunFilter(watcher: RunWatcher, run: StateView['run']): boolean {
  if (watcher.filterRunReportedById !== null && watcher.filterRunReportedById !== run.reportedById)
    return false;
  if (
    watcher.filterRunNamePattern !== null &&
    !patternMatches(watcher.filterRunNamePattern, run.name)
  )
    return false;
  return true;
}

/** Whether the automation's cooldown for this run has passed at `now`. */
export function cooledDown(lastFiredAt: Date | null, cooldownSeconds: number, now: Date): boolean {
  return lastFiredAt === null || now.getTime() - lastFiredAt.getTime() >= cooldownSeconds * 1000;
}

/** The RUN_STATE automations that fire for a state report: the run entered one of their states. */
export function evaluateState(view: StateView, now: Date): RunFiring[] {
  const { run, previous } = view;
  if (previous === run.state) return [];
  const fired: RunFiring[] = [];
  for (const watcher of view.watchers) {
    const condition = watcher.runCondition;
    if (condition.kind !== 'STATE' || !condition.states.includes(run.state)) continue;
    if (!passesRunFilter(watcher, run)) continue;
    if (!cooledDown(view.lastFiredAt(watcher.id), watcher.cooldownSeconds, now)) continue;
    fired.push({
      automation: watcher,
      metricName: null,
      metricValues: null,
      condition: describeCondition(condition),
    });
  }
  return fired;
}

/**
 * One metric's values during a report: the stored window, then the points accepted so far, with
 * running sums so an average over any window is two subtractions.
 */
class Series {
  readonly values: number[];
  /** `sums[i]` is the sum of `values[0..i)`. */
  readonly sums: number[] = [0];
  constructor(readonly window: MetricWindow) {
    this.values = [...window.recent];
    for (const value of this.values) this.sums.push(this.sums.at(-1)! + value);
  }
  push(step: number, value: number): void {
    this.values.push(value);
    this.sums.push(this.sums.at(-1)! + value);
    this.window.lastStep = step;
    this.window.count += 1;
  }
  get length(): number {
    return this.values.length;
  }
  /** `aggregation` over the `n` values ending `skip` values before the latest. */
  reduce(aggregation: MetricAggregation, n: number, skip = 0): number {
    const end = this.values.length - skip;
    const start = end - n;
    switch (aggregation) {
      case 'LATEST':
        return this.values[end - 1]!;
      case 'AVERAGE':
        return (this.sums[end]! - this.sums[start]!) / n;
      case 'MAX': {
        let best = -Infinity;
        for (let i = start; i < end; i++) best = Math.max(best, this.values[i]!);
        return best;
      }
      case 'MIN': {
        let best = Infinity;
        for (let i = start; i < end; i++) best = Math.min(best, this.values[i]!);
        return best;
      }
      default:
        return aggregation satisfies never;
    }
  }
  last(n: number): number[] {
    return this.values.slice(this.values.length - n);
  }
  /** Writes the last values back to the window, at most the cap. */
  settle(): void {
    this.window.recent = this.values.slice(-METRIC_WINDOW_CAP);
  }
}

function compare(value: number, comparison: MetricComparison, threshold: number): boolean {
  switch (comparison) {
    case 'GT':
      return value > threshold;
    case 'GTE':
      return value >= threshold;
    case 'LT':
      return value < threshold;
    case 'LTE':
      return value <= threshold;
    case 'EQ':
      return value === threshold;
    case 'NE':
      return value !== threshold;
    default:
      return comparison satisfies never;
  }
}

/** Mean and sample standard deviation; null below two values or with no spread. */
function spread(values: readonly number[]): { mean: number; std: number } | null {
  if (values.length < 2) return null;
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1);
  const std = Math.sqrt(variance);
  return std > 0 && Number.isFinite(std) ? { mean, std } : null;
}

/**
 * Whether a metric condition holds with the series as it is now, and the values it looked at.
 * Null while the series is too short for the condition's windows, or the z-score undefined.
 */
function holds(
  condition: Exclude<RunCondition, { kind: 'STATE' }>,
  series: Series,
  peers: () => number[],
): number[] | null {
  switch (condition.kind) {
    case 'METRIC': {
      if (series.length < condition.window) return null;
      const value = series.reduce(condition.aggregation, condition.window);
      return compare(value, condition.comparison, condition.threshold)
        ? series.last(condition.window)
        : null;
    }
    case 'METRIC_CHANGE': {
      const n = condition.window;
      if (series.length < 2 * n) return null;
      const current = series.reduce(condition.aggregation, n);
      const prior = series.reduce(condition.aggregation, n, n);
      let change = current - prior;
      if (condition.changeType === 'RELATIVE') {
        if (prior === 0) return null;
        change /= Math.abs(prior);
      }
      const size =
        condition.direction === 'INCREASE'
          ? change
          : condition.direction === 'DECREASE'
            ? -change
            : Math.abs(change);
      return size > condition.amount ? series.last(2 * n) : null;
    }
    case 'METRIC_ZSCORE': {
      if (series.length < 1) return null;
      const stats = spread(peers());
      if (stats === null) return null;
      const latest = series.reduce('LATEST', 1);
      const z = (latest - stats.mean) / stats.std;
      const fires =
        condition.direction === 'ABOVE'
          ? z > condition.threshold
          : condition.direction === 'BELOW'
            ? z < -condition.threshold
            : Math.abs(z) > condition.threshold;
      return fires ? [latest] : null;
    }
    default:
      return condition satisfies never;
  }
}

/**
 * Appends the points to the windows of `view` (in step order; a point at or before its metric's
 * latest step is not accepted, so a re-sent point counts once) and returns the automations that
 * fire: after each accepted point, every watcher of that metric is evaluated once, in constant
 * work for latest values and averages (running sums) and at most its window for MAX and MIN. A
 * watcher fires at most once per report, and not while its cooldown for the run lasts.
 */
export function evaluateMetrics(
  view: MetricsView,
  points: readonly MetricPoint[],
  now: Date,
): { acceptedPoints: number; firings: RunFiring[] } {
  const { run } = view;
  const byMetric = new Map<string, RunWatcher[]>();
  for (const watcher of view.watchers) {
    const condition = watcher.runCondition;
    if (condition.kind === 'STATE') continue;
    if (!passesRunFilter(watcher, run)) continue;
    if (!cooledDown(view.lastFiredAt(watcher.id), watcher.cooldownSeconds, now)) continue;
    const list = byMetric.get(condition.metric);
    if (list) list.push(watcher);
    else byMetric.set(condition.metric, [watcher]);
  }
  const series = new Map<string, Series>();
  const peerCache = new Map<string, number[]>();
  const fired = new Set<string>();
  const firings: RunFiring[] = [];
  let acceptedPoints = 0;
  // Stable: points of one step keep their order.
  const ordered = [...points].sort((a, b) => a.step - b.step);
  for (const point of ordered) {
    const window = view.windows.get(point.name)!;
    if (point.step <= window.lastStep) continue;
    let values = series.get(point.name);
    if (!values) {
      values = new Series(window);
      series.set(point.name, values);
    }
    values.push(point.step, point.value);
    acceptedPoints += 1;
    for (const watcher of byMetric.get(point.name) ?? []) {
      if (fired.has(watcher.id)) continue;
      const condition = watcher.runCondition as Exclude<RunCondition, { kind: 'STATE' }>;
      const looked = holds(condition, values, () => {
        const key = `${condition.metric}\u0000${'runs' in condition ? condition.runs : 0}`;
        let peers = peerCache.get(key);
        if (!peers) {
          peers = view.peerLatest(condition.metric, 'runs' in condition ? condition.runs : 0);
          peerCache.set(key, peers);
        }
        return peers;
      });
      if (looked === null) continue;
      fired.add(watcher.id);
      firings.push({
        automation: watcher,
        metricName: point.name,
        metricValues: looked,
        condition: describeCondition(condition),
      });
    }
  }
  for (const values of series.values()) values.settle();
  return { acceptedPoints, firings };
}
