import { builder } from '../../builder.js';
import type { RunCondition } from '../../storage/config.js';
import { METRIC_WINDOW_CAP } from '../../storage/training-runs.js';
import {
  DEFAULT_COOLDOWN_SECONDS,
  DEFAULT_ZSCORE_RUNS,
  MAX_CHANGE_WINDOW,
  MAX_ZSCORE_RUNS,
  type RunConditionInput,
} from '../training-runs/conditions.js';

export const RunStateEnum = builder.enumType('RunState', {
  description: 'Where a training run is.',
  values: {
    RUNNING: { description: 'Training.' },
    FINISHED: { description: 'Ended normally.' },
    FAILED: { description: 'Ended with an error, or crashed (reported as CRASHED).' },
  } as const,
});

export const ReportedRunStateEnum = builder.enumType('ReportedRunState', {
  description: 'A state a pipeline reports for a training run.',
  values: {
    RUNNING: { description: 'Training.' },
    FINISHED: { description: 'Ended normally.' },
    FAILED: { description: 'Ended with an error.' },
    CRASHED: { description: "W&B's crashed state: stored, shown and matched as FAILED." },
  } as const,
});

const MetricAggregationEnum = builder.enumType('MetricAggregation', {
  description: 'How a window of metric values is reduced to one number.',
  values: {
    LATEST: { description: 'The latest value (a window of 1).' },
    MAX: { description: 'The largest value in the window.' },
    MIN: { description: 'The smallest value in the window.' },
    AVERAGE: { description: 'The mean of the window.' },
  } as const,
});

const MetricComparisonEnum = builder.enumType('MetricComparison', {
  description: 'How a metric is compared with a threshold.',
  values: {
    GT: { description: '`>`' },
    GTE: { description: '`>=`' },
    LT: { description: '`<`' },
    LTE: { description: '`<=`' },
    EQ: { description: '`==` (exact equality of the two numbers)' },
    NE: { description: '`!=`' },
  } as const,
});

const MetricChangeTypeEnum = builder.enumType('MetricChangeType', {
  description: 'How a change between two windows is measured.',
  values: {
    ABSOLUTE: { description: 'current − prior.' },
    RELATIVE: {
      description:
        '(current − prior) / |prior|, e.g. 0.1 for 10%; never fires while the prior window reduces to 0.',
    },
  } as const,
});

const MetricChangeDirectionEnum = builder.enumType('MetricChangeDirection', {
  description: 'Which changes count.',
  values: {
    INCREASE: { description: 'Only increases by more than the amount.' },
    DECREASE: { description: 'Only decreases by more than the amount.' },
    ANY: { description: 'Either, by more than the amount.' },
  } as const,
});

const ZScoreDirectionEnum = builder.enumType('ZScoreDirection', {
  description: 'Which side of the mean counts.',
  values: {
    ABOVE: { description: 'z > threshold.' },
    BELOW: { description: 'z < −threshold.' },
    EITHER: { description: '|z| > threshold.' },
  } as const,
});

type Of<K extends RunCondition['kind']> = Extract<RunCondition, { kind: K }>;

const RunStateConditionRef = builder.objectRef<Of<'STATE'>>('RunStateCondition').implement({
  description: 'RUN_STATE: fires when a run enters one of `states`.',
  fields: (t) => ({
    states: t.field({
      type: [RunStateEnum],
      description: 'The states that fire it.',
      resolve: (c) => c.states,
    }),
  }),
});

const RunMetricConditionRef = builder.objectRef<Of<'METRIC'>>('RunMetricCondition').implement({
  description:
    'RUN_METRIC: fires when `aggregation` of the last `window` values of `metric` compares with `threshold` as `comparison` says (not before the run has logged `window` values).',
  fields: (t) => ({
    metric: t.exposeString('metric', { description: 'The metric name, e.g. `val/loss`.' }),
    aggregation: t.field({
      type: MetricAggregationEnum,
      description: 'How the window is reduced.',
      resolve: (c) => c.aggregation,
    }),
    window: t.exposeInt('window', { description: 'How many of the latest values.' }),
    comparison: t.field({
      type: MetricComparisonEnum,
      description: 'The comparison.',
      resolve: (c) => c.comparison,
    }),
    threshold: t.exposeFloat('threshold', { description: 'The threshold.' }),
  }),
});

const RunMetricChangeConditionRef = builder
  .objectRef<Of<'METRIC_CHANGE'>>('RunMetricChangeCondition')
  .implement({
    description:
      'RUN_METRIC_CHANGE: fires when `aggregation` of the last `window` values of `metric` (the current window) differs from that of the `window` values before them (the prior window) by more than `amount`, in `direction` (not before the run has logged 2 × `window` values).',
    fields: (t) => ({
      metric: t.exposeString('metric', { description: 'The metric name.' }),
      aggregation: t.field({
        type: MetricAggregationEnum,
        description: 'How each window is reduced.',
        resolve: (c) => c.aggregation,
      }),
      window: t.exposeInt('window', { description: 'Values in each of the two windows.' }),
      changeType: t.field({
        type: MetricChangeTypeEnum,
        description: 'Absolute or relative change.',
        resolve: (c) => c.changeType,
      }),
      direction: t.field({
        type: MetricChangeDirectionEnum,
        description: 'Which changes count.',
        resolve: (c) => c.direction,
      }),
      amount: t.exposeFloat('amount', {
        description: 'The change must be larger than this (a fraction for RELATIVE: 0.1 is 10%).',
      }),
    }),
  });

const RunMetricZScoreConditionRef = builder
  .objectRef<Of<'METRIC_ZSCORE'>>('RunMetricZScoreCondition')
  .implement({
    description:
      "RUN_METRIC_ZSCORE: fires when the run's latest value of `metric` lies more than `threshold` standard deviations from the mean of the same metric's latest value in the project's `runs` most recently updated other runs that logged it (sample standard deviation; needs at least 2 such runs with different values).",
    fields: (t) => ({
      metric: t.exposeString('metric', { description: 'The metric name.' }),
      runs: t.exposeInt('runs', { description: 'How many other runs to compare with.' }),
      direction: t.field({
        type: ZScoreDirectionEnum,
        description: 'Which side of the mean counts.',
        resolve: (c) => c.direction,
      }),
      threshold: t.exposeFloat('threshold', {
        description: 'Standard deviations, more than 0.',
      }),
    }),
  });

const REF_OF_KIND = {
  STATE: RunStateConditionRef,
  METRIC: RunMetricConditionRef,
  METRIC_CHANGE: RunMetricChangeConditionRef,
  METRIC_ZSCORE: RunMetricZScoreConditionRef,
} as const;

export const RunConditionRef = builder.unionType('RunCondition', {
  description: "What fires a run automation; the kind follows the automation's event type.",
  types: [
    RunStateConditionRef,
    RunMetricConditionRef,
    RunMetricChangeConditionRef,
    RunMetricZScoreConditionRef,
  ],
  resolveType: (condition) => REF_OF_KIND[(condition as RunCondition).kind],
});

const RunStateConditionInput = builder.inputType('RunStateConditionInput', {
  description: 'RUN_STATE: the states that fire the automation.',
  fields: (f) => ({
    states: f.field({ type: [RunStateEnum], description: 'At least one state.' }),
  }),
});

const RunMetricConditionInput = builder.inputType('RunMetricConditionInput', {
  description:
    'RUN_METRIC: a metric (or its MAX, MIN or AVERAGE over a window) against a threshold.',
  fields: (f) => ({
    metric: f.string({ description: 'The metric name (1 to 128 characters).' }),
    aggregation: f.field({
      type: MetricAggregationEnum,
      required: false,
      description: 'LATEST when left out.',
    }),
    window: f.int({
      required: false,
      description: `The last N values, 1 to ${METRIC_WINDOW_CAP}; 1 when left out (and must be 1 for LATEST).`,
    }),
    comparison: f.field({ type: MetricComparisonEnum, description: 'The comparison.' }),
    threshold: f.float({ description: 'A finite threshold.' }),
  }),
});

const RunMetricChangeConditionInput = builder.inputType('RunMetricChangeConditionInput', {
  description: 'RUN_METRIC_CHANGE: a change between the current window and the prior one.',
  fields: (f) => ({
    metric: f.string({ description: 'The metric name (1 to 128 characters).' }),
    aggregation: f.field({
      type: MetricAggregationEnum,
      required: false,
      description: 'How each window is reduced; AVERAGE when left out.',
    }),
    window: f.int({ description: `Values in each window, 1 to ${MAX_CHANGE_WINDOW}.` }),
    changeType: f.field({
      type: MetricChangeTypeEnum,
      required: false,
      description: 'ABSOLUTE when left out.',
    }),
    direction: f.field({ type: MetricChangeDirectionEnum, description: 'Which changes count.' }),
    amount: f.float({
      description:
        'The change must be larger than this finite amount, 0 or more (0.1 is 10% for RELATIVE).',
    }),
  }),
});

const RunMetricZScoreConditionInput = builder.inputType('RunMetricZScoreConditionInput', {
  description: "RUN_METRIC_ZSCORE: the run's latest value against the project's other recent runs.",
  fields: (f) => ({
    metric: f.string({ description: 'The metric name (1 to 128 characters).' }),
    runs: f.int({
      required: false,
      description: `How many of the project's most recently updated other runs that logged the metric to compare with, 2 to ${MAX_ZSCORE_RUNS}; ${DEFAULT_ZSCORE_RUNS} when left out.`,
    }),
    direction: f.field({
      type: ZScoreDirectionEnum,
      description: 'Which side of the mean counts.',
    }),
    threshold: f.float({ description: 'Standard deviations, a finite number more than 0.' }),
  }),
});

export const RunConditionInputRef = builder.inputType('RunConditionInput', {
  description: `What fires a run automation: exactly one field, the one its event type names (state for RUN_STATE, metric for RUN_METRIC, metricChange for RUN_METRIC_CHANGE, metricZScore for RUN_METRIC_ZSCORE). Checked when saved. A run automation fires at most once per run per cooldown (\`cooldownSeconds\`, ${DEFAULT_COOLDOWN_SECONDS} by default).`,
  isOneOf: true,
  fields: (f) => ({
    state: f.field({ type: RunStateConditionInput, required: false, description: 'RUN_STATE.' }),
    metric: f.field({ type: RunMetricConditionInput, required: false, description: 'RUN_METRIC.' }),
    metricChange: f.field({
      type: RunMetricChangeConditionInput,
      required: false,
      description: 'RUN_METRIC_CHANGE.',
    }),
    metricZScore: f.field({
      type: RunMetricZScoreConditionInput,
      required: false,
      description: 'RUN_METRIC_ZSCORE.',
    }),
  }),
});

/** The service's form of a `RunConditionInput`, which GraphQL has checked names one kind. */
export function runConditionOf(input: {
  state?: { states: ('RUNNING' | 'FINISHED' | 'FAILED')[] } | null;
  metric?: Omit<Extract<RunConditionInput, { kind: 'METRIC' }>, 'kind'> | null;
  metricChange?: Omit<Extract<RunConditionInput, { kind: 'METRIC_CHANGE' }>, 'kind'> | null;
  metricZScore?: Omit<Extract<RunConditionInput, { kind: 'METRIC_ZSCORE' }>, 'kind'> | null;
}): RunConditionInput {
  if (input.state != null) return { kind: 'STATE', ...input.state };
  if (input.metric != null) return { kind: 'METRIC', ...input.metric };
  if (input.metricChange != null) return { kind: 'METRIC_CHANGE', ...input.metricChange };
  if (input.metricZScore != null) return { kind: 'METRIC_ZSCORE', ...input.metricZScore };
  throw new Error('RunConditionInput is @oneOf: GraphQL lets no empty one through');
}
