import { describe, expect, it } from 'vitest';
import { compareRuns, matchesFilter, mergeRun, NO_FILTER, type RunRow } from '../src/live';

function run(id: string, createdAt: string, overrides: Partial<RunRow> = {}): RunRow {
  return {
    id,
    status: 'QUEUED',
    automationName: 'notify',
    attemptCount: 0,
    createdAt,
    updatedAt: null,
    result: null,
    automation: { id: 'auto_1' },
    event: {
      id: 'evt_1',
      eventType: 'CREATE_ARTIFACT',
      versionString: 'default/p/m:v0',
      project: { id: 'prj_1', name: 'p' },
      registry: null,
    },
    ...overrides,
  };
}

const newest = { newest: true, hasOlder: false };

describe('mergeRun', () => {
  const page = [run('run_3', '2026-01-01T00:03:00Z'), run('run_1', '2026-01-01T00:01:00Z')];

  it('replaces a shown run where it stands, even when it no longer matches the filter', () => {
    const updated = run('run_1', '2026-01-01T00:01:00Z', { status: 'SUCCEEDED', attemptCount: 1 });
    const merged = mergeRun(page, updated, { ...NO_FILTER, status: 'QUEUED' }, newest);
    expect(merged.map((r) => [r.id, r.status])).toEqual([
      ['run_3', 'QUEUED'],
      ['run_1', 'SUCCEEDED'],
    ]);
    expect(page[1]?.status).toBe('QUEUED');
  });

  it('adds a new matching run in list order on the newest page', () => {
    const merged = mergeRun(page, run('run_4', '2026-01-01T00:04:00Z'), NO_FILTER, newest);
    expect(merged.map((r) => r.id)).toEqual(['run_4', 'run_3', 'run_1']);
    const between = mergeRun(page, run('run_2', '2026-01-01T00:02:00Z'), NO_FILTER, newest);
    expect(between.map((r) => r.id)).toEqual(['run_3', 'run_2', 'run_1']);
  });

  it('leaves out runs the filter or the page position excludes', () => {
    const other = run('run_4', '2026-01-01T00:04:00Z', { automation: { id: 'auto_2' } });
    expect(mergeRun(page, other, { ...NO_FILTER, automationId: 'auto_1' }, newest)).toBe(page);
    const older = run('run_0', '2026-01-01T00:00:00Z');
    expect(mergeRun(page, older, NO_FILTER, { newest: true, hasOlder: true })).toBe(page);
    expect(mergeRun(page, older, NO_FILTER, newest).map((r) => r.id)).toEqual([
      'run_3',
      'run_1',
      'run_0',
    ]);
    const fresh = run('run_5', '2026-01-01T00:05:00Z');
    expect(mergeRun(page, fresh, NO_FILTER, { newest: false, hasOlder: true })).toBe(page);
  });
});

describe('matchesFilter and compareRuns', () => {
  it('matches status, automation, and project or registry', () => {
    const r = run('run_1', '2026-01-01T00:00:00Z', { status: 'FAILED' });
    expect(matchesFilter(r, NO_FILTER)).toBe(true);
    expect(matchesFilter(r, { ...NO_FILTER, status: 'FAILED' })).toBe(true);
    expect(matchesFilter(r, { ...NO_FILTER, status: 'SUCCEEDED' })).toBe(false);
    expect(matchesFilter(r, { ...NO_FILTER, ownerId: 'prj_1' })).toBe(true);
    expect(matchesFilter(r, { ...NO_FILTER, ownerId: 'reg_1' })).toBe(false);
    const linked = run('run_2', '2026-01-01T00:00:00Z', {
      event: { ...r.event!, project: null, registry: { id: 'reg_1', name: 'r' } },
    });
    expect(matchesFilter(linked, { ...NO_FILTER, ownerId: 'reg_1' })).toBe(true);
  });

  it("matches a run event's run by its training run's project", () => {
    const fired = run('run_3', '2026-01-01T00:00:00Z', {
      event: null,
      runEvent: {
        eventType: 'RUN_METRIC',
        condition: 'latest loss > 1',
        runState: 'RUNNING',
        metricName: 'loss',
        metricValues: [2],
        run: { id: 'trun_1', name: 'r1', project: { id: 'prj_2', name: 'vision' } },
      },
    });
    expect(matchesFilter(fired, { ...NO_FILTER, ownerId: 'prj_2' })).toBe(true);
    expect(matchesFilter(fired, { ...NO_FILTER, ownerId: 'prj_1' })).toBe(false);
  });

  it('orders newest first, then by id descending for equal times', () => {
    const a = run('run_a', '2026-01-01T00:00:00Z');
    const b = run('run_b', '2026-01-01T00:00:00Z');
    const later = run('run_0', '2026-01-01T00:00:01Z');
    expect([a, later, b].sort(compareRuns).map((r) => r.id)).toEqual(['run_0', 'run_b', 'run_a']);
  });
});
