import type { Receiver } from './receiver.js';
import type { TriplineServer } from './server.js';
import type { Template } from './setup.js';

/** One line of the results table: a figure of issue 8 as measured in this run. */
export interface Row {
  /** What is measured, in the issue's words. */
  figure: string;
  measured: string;
  /** The baseline taken in the same run, or `—` where the figure is absolute. */
  baseline: string;
  ratio: string;
  goal: string;
  /** Whether this run meets the goal; null for a figure without one. */
  met: boolean | null;
  /** The issue's "today", for comparison. */
  issue: string;
  /** The numbers behind the row, for bench/results/*.json. */
  values: Record<string, number | string | boolean | null>;
}

export interface BenchContext {
  quick: boolean;
  receiver: Receiver;
  template: Template;
  /**
   * Starts Tripline on `dataDir` with the bench environment plus `env`; profiled under --profile.
   * Under --database postgres it runs on a PostgreSQL copy of `dataDir`'s database, unless `env`
   * names a database of its own in TRIPLINE_DATABASE_URL.
   */
  startServer(
    dataDir: string,
    env?: Record<string, string>,
    options?: { inspect?: boolean; cores?: string },
  ): Promise<TriplineServer>;
  /** Progress on stderr, so stdout keeps only the results. */
  log(message: string): void;
}

export interface Figure {
  /** Name for `--only`. */
  id: string;
  run(context: BenchContext): Promise<Row[]>;
}

export const formatRate = (perSecond: number, unit: string): string =>
  `${perSecond >= 1000 ? `${(perSecond / 1000).toFixed(2)}k` : perSecond.toFixed(perSecond < 10 ? 2 : 0)} ${unit}`;

export const formatMs = (ms: number): string =>
  ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;

export const formatRatio = (ratio: number): string =>
  Number.isFinite(ratio) ? ratio.toFixed(ratio < 0.1 ? 3 : 2) : 'n/a';

/** Rounds for the `values` of a row: enough digits to compare runs, no noise. */
export const round = (value: number, digits = 3): number =>
  Number.isFinite(value) ? Number(value.toFixed(digits)) : Number.NaN;
