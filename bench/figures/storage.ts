// The storage work of the hot paths alone (bench/micro/storage.ts): recording an event with its
// runs, and a delivered run's writes, through the storage layer on SQLite, with no HTTP, GraphQL
// or engine around them, pinned to the server's core. Not in issue 8's table: it shows what the
// emit and delivery figures' goals leave for everything else (see the README's Performance
// section), and a storage change's effect without the HTTP figures' noise. Always SQLite,
// whatever --database says.
import { type BenchContext, type Figure, type Row, round } from '../lib/figure.js';
import { spawnNodeScript } from '../lib/process.js';

interface Measured {
  kind: 'record' | 'deliver';
  size: number;
  cpuUs: number;
  wallUs: number;
}

export const storage: Figure = {
  id: 'storage',
  async run(context: BenchContext): Promise<Row[]> {
    context.log('storage: recording events and delivering runs through the storage layer');
    const child = spawnNodeScript('bench/micro/storage.ts', {
      args: context.quick ? ['--quick'] : [],
    });
    const code = await child.exited;
    if (code !== 0)
      throw new Error(`bench/micro/storage.ts exited with ${code}:\n${child.output()}`);
    const measured = child
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Measured);
    const of = (kind: Measured['kind']) => measured.filter((m) => m.kind === kind);
    const cpu = (list: Measured[]) =>
      list.map((m) => `${Math.round(m.cpuUs).toLocaleString('en')}`).join(' / ');
    const values = (list: Measured[], unit: string) =>
      Object.fromEntries(list.map((m) => [`${unit}${m.size}CpuUs`, round(m.cpuUs, 1)]));
    const recorded = of('record');
    const delivered = of('deliver');
    return [
      {
        figure: `storage work of an event with ${recorded.map((m) => m.size).join(' / ')} runs, 16 events a commit (SQLite, no HTTP or GraphQL)`,
        measured: `${cpu(recorded)} µs CPU per event`,
        baseline: '—',
        ratio: '—',
        goal: '—',
        met: null,
        issue: '—',
        values: values(recorded, 'runs'),
      },
      {
        figure: `storage work of a delivered run (claim, attempt start, load, attempt end), ${delivered.map((m) => m.size).join(' / ')} runs a claim (SQLite)`,
        measured: `${cpu(delivered)} µs CPU per run`,
        baseline: '—',
        ratio: '—',
        goal: '—',
        met: null,
        issue: '—',
        values: values(delivered, 'claim'),
      },
    ];
  },
};
