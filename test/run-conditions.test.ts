import { describe, expect, it } from 'vitest';
import { buildSlackMessage } from '../src/delivery/slack.js';
import { ValidationError } from '../src/errors.js';
import { renderPayload } from '../src/modules/automations/template.js';
import {
  checkCooldown,
  checkRunCondition,
  describeCondition,
  evaluateMetrics,
  evaluateState,
} from '../src/modules/training-runs/conditions.js';
import { checkPoints } from '../src/modules/training-runs/service.js';
import type { RunCondition } from '../src/storage/config.js';
import type {
  MetricPoint,
  MetricsView,
  MetricWindow,
  RunWatcher,
  TrainingRun,
} from '../src/storage/training-runs.js';
import { sampleContext } from './support/delivery-fixtures.js';

const NOW = new Date('2026-01-01T00:00:00Z');

const run: TrainingRun = {
  id: 'run-1',
  entityId: 'e',
  projectId: 'p',
  name: 'sweep-1',
  state: 'RUNNING',
  reportedById: 'alice',
  createdAt: NOW,
  updatedAt: NOW,
};

function watcher(runCondition: RunCondition, extra: Partial<RunWatcher> = {}): RunWatcher {
  return {
    id: `auto-${runCondition.kind}`,
    name: 'w',
    actionId: 'a',
    eventType:
      runCondition.kind === 'STATE'
        ? 'RUN_STATE'
        : (`RUN_${runCondition.kind}` as RunWatcher['eventType']),
    filterRunNamePattern: null,
    filterRunReportedById: null,
    runCondition,
    cooldownSeconds: 86_400,
    ...extra,
  };
}

/** A metrics view over stored windows (kept across calls, as the store keeps them). */
function store(peers: number[] = []) {
  const windows = new Map<string, MetricWindow>();
  const fired = new Map<string, Date>();
  let peerReads = 0;
  return {
    windows,
    get peerReads() {
      return peerReads;
    },
    log(watchers: RunWatcher[], points: MetricPoint[], now = NOW) {
      const view: MetricsView = {
        run,
        watchers,
        windows: new Map(
          points.map((p) => [
            p.name,
            windows.get(p.name) ?? {
              name: p.name,
              lastStep: -1,
              count: 0,
              recent: [],
              updatedAt: now,
            },
          ]),
        ),
        lastFiredAt: (id) => fired.get(id) ?? null,
        peerLatest: () => {
          peerReads += 1;
          return peers;
        },
      };
      const result = evaluateMetrics(view, points, now);
      for (const [name, w] of view.windows) windows.set(name, w);
      for (const f of result.firings) fired.set(f.automation.id, now);
      return result;
    },
  };
}

const pts = (name: string, values: number[], from = 0): MetricPoint[] =>
  values.map((value, i) => ({ step: from + i, name, value }));

const metric = (extra: Partial<Extract<RunCondition, { kind: 'METRIC' }>>): RunCondition => ({
  kind: 'METRIC',
  metric: 'loss',
  aggregation: 'LATEST',
  window: 1,
  comparison: 'GT',
  threshold: 1,
  ...extra,
});

describe('RUN_METRIC', () => {
  it('does not fire before the window is full', () => {
    const s = store();
    const w = watcher(
      metric({ aggregation: 'AVERAGE', window: 3, comparison: 'LT', threshold: 10 }),
    );
    expect(s.log([w], pts('loss', [1, 2])).firings).toEqual([]);
    const third = s.log([w], pts('loss', [3], 2));
    expect(third.firings.map((f) => f.metricValues)).toEqual([[1, 2, 3]]);
  });

  it('treats equal values as the comparison says: == and >= fire, > does not', () => {
    for (const [comparison, fires] of [
      ['EQ', true],
      ['GTE', true],
      ['LTE', true],
      ['GT', false],
      ['LT', false],
      ['NE', false],
    ] as const) {
      const s = store();
      const got = s.log([watcher(metric({ comparison, threshold: 0.5 }))], pts('loss', [0.5]));
      expect(got.firings.length, comparison).toBe(fires ? 1 : 0);
    }
  });

  it('reduces the window with MAX, MIN and AVERAGE over the last N values only', () => {
    const cases = [
      ['MAX', 'LTE', 3, [100, 1, 2, 3]],
      ['MIN', 'GTE', 1, [-5, 1, 2, 3]],
      ['AVERAGE', 'EQ', 2, [100, 1, 2, 3]],
    ] as const;
    for (const [aggregation, comparison, threshold, values] of cases) {
      const s = store();
      const w = watcher(metric({ aggregation, window: 3, comparison, threshold }));
      // The first three values fail the condition; the last three (1, 2, 3) meet it.
      const got = s.log([w], pts('loss', [...values]));
      expect(
        got.firings.map((f) => f.metricValues),
        aggregation,
      ).toEqual([[1, 2, 3]]);
    }
  });

  it('fires at most once per report and not again within the cooldown; again after it', () => {
    const s = store();
    const w = watcher(metric({ threshold: 1 }), { cooldownSeconds: 60 });
    expect(s.log([w], pts('loss', [2, 3, 4])).firings).toHaveLength(1);
    expect(s.log([w], pts('loss', [5], 3), new Date(NOW.getTime() + 59_999)).firings).toEqual([]);
    expect(s.log([w], pts('loss', [6], 4), new Date(NOW.getTime() + 60_000)).firings).toHaveLength(
      1,
    );
  });

  it('does not count a re-sent point twice: points at or before the latest step are not accepted', () => {
    const s = store();
    const w = watcher(
      metric({ aggregation: 'AVERAGE', window: 3, comparison: 'GT', threshold: 1 }),
    );
    expect(s.log([w], pts('loss', [1, 1])).acceptedPoints).toBe(2);
    const again = s.log([w], pts('loss', [1, 1]));
    expect(again).toEqual({ acceptedPoints: 0, firings: [] });
    expect(s.windows.get('loss')).toMatchObject({ count: 2, lastStep: 1, recent: [1, 1] });
  });

  it('applies the points of a call in step order, whatever order they came in', () => {
    const s = store();
    s.log(
      [],
      [
        { step: 2, name: 'loss', value: 3 },
        { step: 0, name: 'loss', value: 1 },
        { step: 1, name: 'loss', value: 2 },
      ],
    );
    expect(s.windows.get('loss')).toMatchObject({ recent: [1, 2, 3], lastStep: 2, count: 3 });
  });

  it('keeps at most 100 values per metric', () => {
    const s = store();
    s.log(
      [],
      pts(
        'loss',
        Array.from({ length: 150 }, (_, i) => i),
      ),
    );
    const w = s.windows.get('loss')!;
    expect(w.recent).toHaveLength(100);
    expect(w.recent[0]).toBe(50);
    expect(w.count).toBe(150);
  });

  it('ignores other metrics, filtered-out runs and runs by other users', () => {
    const s = store();
    const named = watcher(metric({ threshold: 0 }), { filterRunNamePattern: '^baseline' });
    const byBob = watcher(metric({ threshold: 0 }), { id: 'bob', filterRunReportedById: 'bob' });
    const byAlice = watcher(metric({ threshold: 0 }), {
      id: 'alice',
      filterRunReportedById: 'alice',
    });
    const acc = watcher(metric({ metric: 'acc', threshold: 0 }), { id: 'acc' });
    const got = s.log([named, byBob, byAlice, acc], pts('loss', [1]));
    expect(got.firings.map((f) => f.automation.id)).toEqual(['alice']);
  });
});

const change = (
  extra: Partial<Extract<RunCondition, { kind: 'METRIC_CHANGE' }>>,
): RunCondition => ({
  kind: 'METRIC_CHANGE',
  metric: 'loss',
  aggregation: 'AVERAGE',
  window: 2,
  changeType: 'ABSOLUTE',
  direction: 'ANY',
  amount: 1,
  ...extra,
});

describe('RUN_METRIC_CHANGE', () => {
  it('needs both windows full', () => {
    const s = store();
    const w = watcher(change({ direction: 'INCREASE', amount: 0.5 }));
    expect(s.log([w], pts('loss', [0, 0, 5])).firings).toEqual([]);
    expect(s.log([w], pts('loss', [5], 3)).firings.map((f) => f.metricValues)).toEqual([
      [0, 0, 5, 5],
    ]);
  });

  it('needs more than the amount: a change equal to it does not fire', () => {
    const s = store();
    const w = watcher(change({ amount: 1, window: 1 }));
    expect(s.log([w], pts('loss', [1, 2])).firings).toEqual([]);
    expect(s.log([w], pts('loss', [3.5], 2)).firings).toHaveLength(1);
  });

  it('follows the direction, and measures relative change against the prior window', () => {
    const up = watcher(change({ direction: 'INCREASE', window: 1, amount: 0 }), { id: 'up' });
    const down = watcher(change({ direction: 'DECREASE', window: 1, amount: 0 }), { id: 'down' });
    const rel = watcher(
      change({ direction: 'DECREASE', changeType: 'RELATIVE', window: 1, amount: 0.25 }),
      { id: 'rel' },
    );
    const s = store();
    // 4 → 3: a 25% decrease, not more than 25%.
    expect(s.log([up, down, rel], pts('loss', [4, 3])).firings.map((f) => f.automation.id)).toEqual(
      ['down'],
    );
    const t = store();
    expect(t.log([rel], pts('loss', [4, 2.9])).firings.map((f) => f.automation.id)).toEqual([
      'rel',
    ]);
    // A prior window of 0 has no relative change.
    const z = store();
    expect(z.log([rel], pts('loss', [0, -5])).firings).toEqual([]);
  });
});

describe('RUN_METRIC_ZSCORE', () => {
  const z = (extra: Partial<Extract<RunCondition, { kind: 'METRIC_ZSCORE' }>>): RunCondition => ({
    kind: 'METRIC_ZSCORE',
    metric: 'loss',
    runs: 10,
    direction: 'EITHER',
    threshold: 2,
    ...extra,
  });

  it('needs at least two other runs with a spread', () => {
    expect(store([1]).log([watcher(z({}))], pts('loss', [100])).firings).toEqual([]);
    expect(store([1, 1, 1]).log([watcher(z({}))], pts('loss', [100])).firings).toEqual([]);
  });

  it('compares the latest value with the mean and sample deviation of the other runs', () => {
    // Peers 1, 2, 3: mean 2, sample standard deviation 1.
    const peers = [1, 2, 3];
    const above = watcher(z({ direction: 'ABOVE' }), { id: 'above' });
    const below = watcher(z({ direction: 'BELOW' }), { id: 'below' });
    expect(store(peers).log([above, below], pts('loss', [4])).firings).toEqual([]); // z = 2, not more
    expect(
      store(peers)
        .log([above, below], pts('loss', [4.01]))
        .firings.map((f) => f.automation.id),
    ).toEqual(['above']);
    expect(
      store(peers)
        .log([above, below], pts('loss', [-0.5]))
        .firings.map((f) => f.metricValues),
    ).toEqual([[-0.5]]);
  });

  it('reads the other runs once per call, not once per point', () => {
    const s = store([1, 2, 3]);
    s.log([watcher(z({ threshold: 100 }))], pts('loss', [1, 2, 3, 4, 5]));
    expect(s.peerReads).toBe(1);
  });
});

describe('RUN_STATE', () => {
  const states = (list: ('RUNNING' | 'FINISHED' | 'FAILED')[]): RunCondition => ({
    kind: 'STATE',
    states: list,
  });
  const view = (
    previous: 'RUNNING' | 'FINISHED' | 'FAILED' | null,
    state: typeof run.state,
    fired: Date | null = null,
  ) => ({
    previous,
    run: { ...run, state },
    watchers: [watcher(states(['FAILED']), { cooldownSeconds: 10 })],
    lastFiredAt: () => fired,
  });

  it('fires on entering a chosen state, also when the report creates the run', () => {
    expect(evaluateState(view('RUNNING', 'FAILED'), NOW)).toHaveLength(1);
    expect(evaluateState(view(null, 'FAILED'), NOW)).toHaveLength(1);
    expect(evaluateState(view('FAILED', 'FAILED'), NOW)).toEqual([]);
    expect(evaluateState(view('RUNNING', 'FINISHED'), NOW)).toEqual([]);
  });

  it('holds the cooldown', () => {
    expect(evaluateState(view('RUNNING', 'FAILED', new Date(NOW.getTime() - 9_999)), NOW)).toEqual(
      [],
    );
    expect(
      evaluateState(view('RUNNING', 'FAILED', new Date(NOW.getTime() - 10_000)), NOW),
    ).toHaveLength(1);
  });
});

describe('checks at save', () => {
  const refused = (f: () => unknown): ValidationError => {
    try {
      f();
    } catch (error) {
      if (error instanceof ValidationError) return error;
      throw error;
    }
    throw new Error('not refused');
  };
  const field = 'input.runCondition';

  it('names the field and the fix for each bad condition', () => {
    const cases: [Parameters<typeof checkRunCondition>, string, string][] = [
      [['RUN_METRIC', null, field], field, 'need `runCondition: { metric: … }`'],
      [
        ['CREATE_ARTIFACT', { kind: 'STATE', states: ['FAILED'] }, field],
        field,
        'Remove `runCondition`',
      ],
      [
        ['RUN_STATE', { kind: 'METRIC', metric: 'l', comparison: 'GT', threshold: 1 }, field],
        `${field}.metric`,
        'not `metric`',
      ],
      [
        ['RUN_STATE', { kind: 'STATE', states: [] }, field],
        `${field}.state.states`,
        'at least one',
      ],
      [
        [
          'RUN_METRIC',
          { kind: 'METRIC', metric: 'l', comparison: 'GT', threshold: Number.NaN },
          field,
        ],
        `${field}.metric.threshold`,
        'finite',
      ],
      [
        [
          'RUN_METRIC',
          { kind: 'METRIC', metric: 'l', comparison: 'GT', threshold: Number.POSITIVE_INFINITY },
          field,
        ],
        `${field}.metric.threshold`,
        'finite',
      ],
      [
        [
          'RUN_METRIC',
          {
            kind: 'METRIC',
            metric: 'l',
            aggregation: 'MAX',
            window: 0,
            comparison: 'GT',
            threshold: 1,
          },
          field,
        ],
        `${field}.metric.window`,
        'from 1 to 100',
      ],
      [
        [
          'RUN_METRIC',
          {
            kind: 'METRIC',
            metric: 'l',
            aggregation: 'MAX',
            window: 101,
            comparison: 'GT',
            threshold: 1,
          },
          field,
        ],
        `${field}.metric.window`,
        'from 1 to 100',
      ],
      [
        [
          'RUN_METRIC',
          { kind: 'METRIC', metric: 'l', window: 5, comparison: 'GT', threshold: 1 },
          field,
        ],
        `${field}.metric.window`,
        'LATEST looks at one value',
      ],
      [
        ['RUN_METRIC', { kind: 'METRIC', metric: ' ', comparison: 'GT', threshold: 1 }, field],
        `${field}.metric.metric`,
        'Name the metric',
      ],
      [
        [
          'RUN_METRIC_CHANGE',
          { kind: 'METRIC_CHANGE', metric: 'l', window: 51, direction: 'ANY', amount: 1 },
          field,
        ],
        `${field}.metricChange.window`,
        'from 1 to 50',
      ],
      [
        [
          'RUN_METRIC_CHANGE',
          { kind: 'METRIC_CHANGE', metric: 'l', window: 2, direction: 'ANY', amount: -1 },
          field,
        ],
        `${field}.metricChange.amount`,
        '0 or more',
      ],
      [
        [
          'RUN_METRIC_ZSCORE',
          { kind: 'METRIC_ZSCORE', metric: 'l', runs: 1, direction: 'ABOVE', threshold: 2 },
          field,
        ],
        `${field}.metricZScore.runs`,
        'from 2 to 100',
      ],
      [
        [
          'RUN_METRIC_ZSCORE',
          { kind: 'METRIC_ZSCORE', metric: 'l', direction: 'ABOVE', threshold: 0 },
          field,
        ],
        `${field}.metricZScore.threshold`,
        'more than 0',
      ],
    ];
    for (const [args, at, text] of cases) {
      const error = refused(() => checkRunCondition(...args));
      expect(error.field, text).toBe(at);
      expect(error.message).toContain(text);
    }
  });

  it('fills in defaults', () => {
    expect(
      checkRunCondition(
        'RUN_METRIC_ZSCORE',
        { kind: 'METRIC_ZSCORE', metric: 'l', direction: 'EITHER', threshold: 3 },
        field,
      ),
    ).toEqual({
      kind: 'METRIC_ZSCORE',
      metric: 'l',
      runs: 20,
      direction: 'EITHER',
      threshold: 3,
    });
    expect(checkCooldown('RUN_STATE', null, 'input.cooldownSeconds')).toBe(86_400);
    expect(checkCooldown('CREATE_ARTIFACT', null, 'input.cooldownSeconds')).toBeNull();
    expect(refused(() => checkCooldown('CREATE_ARTIFACT', 5, 'input.cooldownSeconds')).field).toBe(
      'input.cooldownSeconds',
    );
    expect(
      refused(() => checkCooldown('RUN_METRIC', -1, 'input.cooldownSeconds')).message,
    ).toContain('from 0');
  });

  it('refuses NaN and infinite values, and bad steps, naming the point', () => {
    const good = { step: 0, name: 'loss', value: 1 };
    for (const [value, text] of [
      [Number.NaN, 'NaN'],
      [Number.POSITIVE_INFINITY, 'Infinity'],
      [Number.NEGATIVE_INFINITY, '-Infinity'],
    ] as const) {
      const error = refused(() => checkPoints([good, good, good, { ...good, value }]));
      expect(error.field).toBe('input.points[3].value');
      expect(error.message).toContain(text);
    }
    expect(refused(() => checkPoints([{ ...good, step: -1 }])).field).toBe('input.points[0].step');
    expect(refused(() => checkPoints([{ ...good, step: 1.5 }])).field).toBe('input.points[0].step');
    expect(refused(() => checkPoints([])).field).toBe('input.points');
  });
});

describe('messages', () => {
  const condition: RunCondition = {
    kind: 'METRIC',
    metric: 'val/loss',
    aggregation: 'AVERAGE',
    window: 3,
    comparison: 'LT',
    threshold: 0.4,
  };
  const ctx = sampleContext({
    eventType: 'RUN_METRIC',
    run: {
      id: 'trun_1',
      name: 'sweep-1',
      status: 'RUNNING',
      metricName: 'val/loss',
      metricValues: [0.41, 0.39, 0.38],
      metricFilter: describeCondition(condition),
    },
  });

  it('describes each condition for people', () => {
    expect(describeCondition(condition)).toBe('average of val/loss over the last 3 values < 0.4');
    expect(describeCondition({ kind: 'STATE', states: ['FINISHED', 'FAILED'] })).toBe(
      'run state is FINISHED or FAILED',
    );
  });

  it('sends the run, metric, window, values and condition in the default envelope', () => {
    const body = JSON.parse(renderPayload(null, ctx, new Map()));
    expect(body).toMatchObject({
      event_type: 'RUN_METRIC',
      run_id: 'trun_1',
      run_name: 'sweep-1',
      run_status: 'RUNNING',
      metric_name: 'val/loss',
      metric_values: [0.41, 0.39, 0.38],
      metric_filter: 'average of val/loss over the last 3 values < 0.4',
    });
    expect(body).not.toHaveProperty('artifact_version');
  });

  it('posts a Slack message naming the metric, the condition with its window, and the values', () => {
    const message = buildSlackMessage({
      title: null,
      message: null,
      severity: 'WARN',
      context: ctx,
      collectionOwner: 'PROJECT',
    });
    expect(message.text).toContain('average of val/loss over the last 3 values < 0.4');
    expect(message.text).toContain('values: 0.41, 0.39, 0.38');
    const fields = (message.blocks.at(-1) as { fields: { text: string }[] }).fields.map(
      (f) => f.text,
    );
    expect(fields).toEqual([
      `*Entity*\n${ctx.entityName}`,
      `*Project*\n${ctx.projectName}`,
      '*Run*\nsweep-1',
      '*State*\nRUNNING',
      '*Metric*\nval/loss',
      '*Condition*\naverage of val/loss over the last 3 values &lt; 0.4',
      '*Values*\n0.41, 0.39, 0.38',
    ]);
    expect((message.blocks[0] as { text: { text: string } }).text.text).toBe(
      'Run sweep-1: val/loss crossed its threshold',
    );
  });
});
