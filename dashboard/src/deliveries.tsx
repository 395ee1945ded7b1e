import { useEffect, useMemo } from 'preact/hooks';
import { DELIVERY_STATS } from './queries';
import {
  bucketByMinute,
  bucketTotal,
  latencyPercentiles,
  type MinuteBucket,
  OUTCOMES,
  type Outcome,
  type Sample,
} from './stats';
import { Alert, type Session, useDebounced, useLoad } from './ui';

const WINDOW_MINUTES = 60;
/** The window slides on even without updates. */
const REFRESH_MS = 30_000;

interface Stats {
  until: string;
  truncated: boolean;
  attempts: { startedAt: string; durationMs: number | null; outcome: Outcome }[];
  backlog: { queued: number; running: number; retrying: number; total: number };
}

const OUTCOME_LABELS: Record<Outcome, string> = {
  SUCCEEDED: 'succeeded (2xx)',
  HTTP_ERROR: 'HTTP error',
  NO_RESPONSE: 'no response',
  IN_FLIGHT: 'in flight',
};

export function DeliveriesPage({ session }: { session: Session }) {
  const { api, entity } = session;
  const stats = useLoad(
    async () =>
      (
        await api.request<{ entity: { deliveryStats: Stats } }>(DELIVERY_STATS, {
          entity,
          minutes: WINDOW_MINUTES,
        })
      ).entity.deliveryStats,
    [api, entity],
  );
  const refresh = useDebounced(stats.reload, 1000);
  useEffect(() => session.onRun(refresh), [session, refresh]);
  useEffect(() => {
    const timer = setInterval(stats.reload, REFRESH_MS);
    return () => clearInterval(timer);
  }, [stats.reload]);

  const view = useMemo(() => {
    if (!stats.data) return null;
    const samples: Sample[] = stats.data.attempts.map((a) => ({
      startedAt: Date.parse(a.startedAt),
      durationMs: a.durationMs,
      outcome: a.outcome,
    }));
    return {
      buckets: bucketByMinute(samples, Date.parse(stats.data.until), WINDOW_MINUTES),
      overall: latencyPercentiles(samples),
      total: samples.length,
    };
  }, [stats.data]);

  return (
    <section aria-labelledby="deliveries-title">
      <h1 id="deliveries-title">Deliveries</h1>
      {stats.error && <Alert>{stats.error}</Alert>}
      {stats.data && view && (
        <>
          <div class="tiles">
            <Tile
              label="Backlog"
              value={stats.data.backlog.total}
              detail={`${stats.data.backlog.queued} queued · ${stats.data.backlog.running} running · ${stats.data.backlog.retrying} retrying`}
            />
            <Tile
              label="Attempts, last hour"
              value={view.total}
              detail={stats.data.truncated ? 'newest only: the hour held more' : ''}
            />
            <Tile label="p50 latency" value={ms(view.overall.p50)} />
            <Tile label="p95 latency" value={ms(view.overall.p95)} />
            <Tile label="p99 latency" value={ms(view.overall.p99)} />
          </div>
          <h2 id="per-minute-title">Deliveries per minute by outcome</h2>
          <OutcomeChart buckets={view.buckets} />
          <h2 id="latency-title">Attempt latency per minute (p50, p95, p99)</h2>
          <LatencyChart buckets={view.buckets} />
        </>
      )}
    </section>
  );
}

const ms = (value: number | null): string => (value === null ? '—' : `${value} ms`);

function Tile({
  label,
  value,
  detail,
}: {
  label: string;
  value: string | number;
  detail?: string;
}) {
  return (
    <div class="tile">
      <div class="tile-label">{label}</div>
      <div class="tile-value">{value}</div>
      {detail && <div class="muted">{detail}</div>}
    </div>
  );
}

const WIDTH = 720;
const HEIGHT = 180;
const PAD = { left: 40, right: 8, top: 8, bottom: 22 };

const clock = (at: number) =>
  new Date(at).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });

/** Axis ticks: the top value and a middle one, rounded. */
function Axis({ max, unit }: { max: number; unit: string }) {
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  return (
    <g class="axis">
      {[0, max / 2, max].map((value) => {
        const y = PAD.top + plotHeight - (value / max) * plotHeight;
        return (
          <g key={value}>
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y} y2={y} class="grid" />
            <text x={PAD.left - 4} y={y + 4} text-anchor="end">
              {Math.round(value)}
              {unit}
            </text>
          </g>
        );
      })}
    </g>
  );
}

function TimeAxis({ buckets }: { buckets: MinuteBucket[] }) {
  const step = (WIDTH - PAD.left - PAD.right) / buckets.length;
  return (
    <g class="axis">
      {buckets.map((bucket, index) =>
        index % 15 === 0 || index === buckets.length - 1 ? (
          <text
            key={bucket.start}
            x={index === buckets.length - 1 ? WIDTH - PAD.right : PAD.left + index * step}
            y={HEIGHT - 6}
            text-anchor={index === buckets.length - 1 ? 'end' : 'start'}
          >
            {clock(bucket.start)}
          </text>
        ) : null,
      )}
    </g>
  );
}

function Legend({ items }: { items: [string, string][] }) {
  return (
    <ul class="legend">
      {items.map(([className, label]) => (
        <li key={className}>
          <span class={`swatch ${className}`} aria-hidden="true" /> {label}
        </li>
      ))}
    </ul>
  );
}

function OutcomeChart({ buckets }: { buckets: MinuteBucket[] }) {
  const max = Math.max(1, ...buckets.map(bucketTotal));
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const step = (WIDTH - PAD.left - PAD.right) / buckets.length;
  const totals = OUTCOMES.map((o) => buckets.reduce((sum, b) => sum + b.counts[o], 0));
  return (
    <figure>
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-labelledby="per-minute-title per-minute-summary"
        class="chart"
      >
        <title>Deliveries per minute by outcome, last hour</title>
        <Axis max={max} unit="" />
        {buckets.map((bucket, index) => {
          let y = PAD.top + plotHeight;
          return (
            <g key={bucket.start}>
              <title>
                {clock(bucket.start)}:{' '}
                {OUTCOMES.map((o) => `${bucket.counts[o]} ${OUTCOME_LABELS[o]}`).join(', ')}
              </title>
              {OUTCOMES.map((outcome) => {
                const height = (bucket.counts[outcome] / max) * plotHeight;
                y -= height;
                return height > 0 ? (
                  <rect
                    key={outcome}
                    class={`bar outcome-${outcome.toLowerCase()}`}
                    x={PAD.left + index * step + 1}
                    y={y}
                    width={Math.max(1, step - 2)}
                    height={height}
                  />
                ) : null;
              })}
            </g>
          );
        })}
        <TimeAxis buckets={buckets} />
      </svg>
      <figcaption id="per-minute-summary">
        <Legend
          items={OUTCOMES.map((o, i) => [
            `outcome-${o.toLowerCase()}`,
            `${OUTCOME_LABELS[o]}: ${totals[i]}`,
          ])}
        />
      </figcaption>
    </figure>
  );
}

function LatencyChart({ buckets }: { buckets: MinuteBucket[] }) {
  const keys = ['p50', 'p95', 'p99'] as const;
  const max = Math.max(1, ...buckets.flatMap((b) => keys.map((k) => b.latency[k] ?? 0)));
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const step = (WIDTH - PAD.left - PAD.right) / buckets.length;
  const line = (key: (typeof keys)[number]) =>
    buckets
      .map((bucket, index) => {
        const value = bucket.latency[key];
        if (value === null) return null;
        const x = PAD.left + index * step + step / 2;
        const y = PAD.top + plotHeight - (value / max) * plotHeight;
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      })
      .filter((point): point is string => point !== null)
      .join(' ');
  return (
    <figure>
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-labelledby="latency-title"
        class="chart"
      >
        <title>Attempt latency per minute, last hour</title>
        <Axis max={max} unit=" ms" />
        {keys.map((key) => {
          const points = line(key);
          return points.includes(' ') ? (
            <polyline key={key} class={`line ${key}`} points={points} />
          ) : (
            points && (
              <circle
                key={key}
                class={`dot ${key}`}
                cx={points.split(',')[0]}
                cy={points.split(',')[1]}
                r="3"
              />
            )
          );
        })}
        <TimeAxis buckets={buckets} />
      </svg>
      <figcaption>
        <Legend items={keys.map((k) => [k, k])} />
      </figcaption>
    </figure>
  );
}
