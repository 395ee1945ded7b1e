import { useEffect, useState } from 'preact/hooks';
import {
  FINISHED,
  mergeRun,
  NO_FILTER,
  RUN_STATUSES,
  type RunRow,
  type RunStatus,
  type RunsFilter,
} from './live';
import {
  ENTITY_RUNS,
  errorOf,
  FILTER_CHOICES,
  type MutationResult,
  OWNER_RUNS,
  RETRY_RUN,
  RUN,
} from './queries';
import { Alert, canOperate, type Session, StatusBadge, Time, useLoad } from './ui';

const PAGE_SIZE = 20;

interface Named {
  id: string;
  name: string;
}

interface Choices {
  automations: Named[];
  projects: Named[];
  registries: Named[];
}

interface RunPage {
  totalCount: number;
  pageInfo: {
    hasNextPage: boolean;
    hasPreviousPage: boolean;
    startCursor: string | null;
    endCursor: string | null;
  };
  edges: { node: RunRow }[];
}

/** Where the table is in the list: the newest page, or the page after or before a cursor. */
type Position = { after: string } | { before: string } | null;

const nodes = <T,>(connection: { edges: { node: T }[] }): T[] =>
  connection.edges.map((e) => e.node);

export function RunsPage({ session }: { session: Session }) {
  const { api, entity } = session;
  const [filter, setFilter] = useState<RunsFilter>(NO_FILTER);
  const [position, setPosition] = useState<Position>(null);
  const [rows, setRows] = useState<readonly RunRow[]>([]);
  const [page, setPage] = useState<RunPage | null>(null);

  const choices = useLoad(async () => {
    const data = await api.request<{
      entity: {
        automations: { edges: { node: Named }[] };
        projects: { edges: { node: Named }[] };
        registries: { edges: { node: Named }[] };
      };
    }>(FILTER_CHOICES, { entity });
    return {
      automations: nodes(data.entity.automations),
      projects: nodes(data.entity.projects),
      registries: nodes(data.entity.registries),
    } satisfies Choices;
  }, [api, entity]);

  const runs = useLoad(async () => {
    const variables = {
      entity,
      owner: filter.ownerId,
      filter: {
        ...(filter.status ? { statuses: [filter.status] } : {}),
        ...(filter.automationId ? { automationId: filter.automationId } : {}),
      },
      ...(position && 'before' in position
        ? { last: PAGE_SIZE, before: position.before }
        : { first: PAGE_SIZE, after: position?.after ?? null }),
    };
    if (filter.ownerId) {
      const data = await api.request<{ node: { triggeredRuns?: RunPage } | null }>(
        OWNER_RUNS,
        variables,
      );
      if (!data.node?.triggeredRuns) throw new Error('That project or registry no longer exists.');
      return data.node.triggeredRuns;
    }
    const data = await api.request<{ entity: { triggeredRuns: RunPage } }>(ENTITY_RUNS, variables);
    return data.entity.triggeredRuns;
  }, [api, entity, filter, position]);

  useEffect(() => {
    if (!runs.data) return;
    setPage(runs.data);
    setRows(nodes(runs.data));
  }, [runs.data]);

  // Live: every update of a run merges into the page shown.
  const newest = position === null || (page !== null && !page.pageInfo.hasPreviousPage);
  const hasOlder = page?.pageInfo.hasNextPage ?? false;
  useEffect(
    () =>
      session.onRun((run) =>
        setRows((current) => mergeRun(current, run, filter, { newest, hasOlder })),
      ),
    [session, filter, newest, hasOlder],
  );

  // Runs added live since the page was read count too.
  const matching = (page?.totalCount ?? 0) + Math.max(0, rows.length - (page?.edges.length ?? 0));

  const change = (next: Partial<RunsFilter>) => {
    setFilter({ ...filter, ...next });
    setPosition(null);
  };

  return (
    <section aria-labelledby="runs-title">
      <h1 id="runs-title">Runs</h1>
      <form class="filters" onSubmit={(event) => event.preventDefault()}>
        <label>
          Status
          <select
            value={filter.status ?? ''}
            onChange={(event) =>
              change({ status: (event.currentTarget.value || null) as RunStatus | null })
            }
          >
            <option value="">Any status</option>
            {RUN_STATUSES.map((status) => (
              <option key={status} value={status}>
                {status}
              </option>
            ))}
          </select>
        </label>
        <label>
          Automation
          <select
            value={filter.automationId ?? ''}
            onChange={(event) => change({ automationId: event.currentTarget.value || null })}
          >
            <option value="">Any automation</option>
            {choices.data?.automations.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Project or registry
          <select
            value={filter.ownerId ?? ''}
            onChange={(event) => change({ ownerId: event.currentTarget.value || null })}
          >
            <option value="">Anywhere</option>
            {(choices.data?.projects.length ?? 0) > 0 && (
              <optgroup label="Projects">
                {choices.data?.projects.map((p) => (
                  <option key={p.id} value={p.id}>
                    {p.name}
                  </option>
                ))}
              </optgroup>
            )}
            {(choices.data?.registries.length ?? 0) > 0 && (
              <optgroup label="Registries">
                {choices.data?.registries.map((r) => (
                  <option key={r.id} value={r.id}>
                    {r.name}
                  </option>
                ))}
              </optgroup>
            )}
          </select>
        </label>
      </form>
      {runs.error && <Alert>{runs.error}</Alert>}
      {page && (
        <p class="muted" aria-live="polite">
          {matching} {matching === 1 ? 'run' : 'runs'} match
        </p>
      )}
      <div class="table-wrap">
        <table class="runs">
          <caption class="visually-hidden">Triggered runs, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">Status</th>
              <th scope="col">Automation</th>
              <th scope="col">Event</th>
              <th scope="col" class="wide-only">
                Attempts
              </th>
              <th scope="col" class="wide-only">
                Queued
              </th>
              <th scope="col" class="wide-only">
                Result
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((run) => (
              <tr key={run.id} data-run-id={run.id}>
                <td>
                  <a href={`#/runs/${encodeURIComponent(run.id)}`} class="mono run-id">
                    {shortId(run.id)}
                  </a>
                </td>
                <td>
                  <StatusBadge status={run.status} />
                </td>
                <td>{run.automationName}</td>
                <td>
                  {run.event ? (
                    <>
                      <span class="event-type">{run.event.eventType}</span>{' '}
                      <span class="mono">{run.event.versionString}</span>
                    </>
                  ) : (
                    <>
                      <span class="event-type">{run.runEvent?.eventType}</span>{' '}
                      <span class="mono">{run.runEvent?.run.name}</span>
                    </>
                  )}
                </td>
                <td class="num wide-only">{run.attemptCount}</td>
                <td class="wide-only">
                  <Time value={run.createdAt} />
                </td>
                <td class="result wide-only">{run.result ?? ''}</td>
              </tr>
            ))}
            {rows.length === 0 && !runs.loading && (
              <tr>
                <td colSpan={7} class="muted">
                  No runs match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <nav class="pager" aria-label="Pages of runs">
        <button
          type="button"
          disabled={!page?.pageInfo.hasPreviousPage || !page.pageInfo.startCursor}
          onClick={() =>
            page?.pageInfo.startCursor && setPosition({ before: page.pageInfo.startCursor })
          }
        >
          ← Newer
        </button>
        <button type="button" disabled={position === null} onClick={() => setPosition(null)}>
          Newest
        </button>
        <button
          type="button"
          disabled={!page?.pageInfo.hasNextPage || !page.pageInfo.endCursor}
          onClick={() =>
            page?.pageInfo.endCursor && setPosition({ after: page.pageInfo.endCursor })
          }
        >
          Older →
        </button>
      </nav>
    </section>
  );
}

/** The id without its type prefix's bulk: enough to tell runs apart in a table. */
function shortId(id: string): string {
  return id.length > 16 ? `${id.slice(0, 12)}…${id.slice(-4)}` : id;
}

interface Attempt {
  attemptNumber: number;
  startedAt: string;
  durationMs: number | null;
  statusCode: number | null;
  errorClass: string | null;
  errorMessage: string | null;
  responseBody: string | null;
}

interface RunDetail extends RunRow {
  nextAttemptAt: string | null;
  finishedAt: string | null;
  event:
    | (NonNullable<RunRow['event']> & {
        author: string;
        createdAt: string;
        collectionName: string;
        artifactType: string;
        versionIndex: number | null;
        alias: string | null;
        tag: string | null;
        metadata: Record<string, unknown> | null;
        versionUri: string;
      })
    | null;
  attempts: Attempt[];
}

export function RunPage({ session, id }: { session: Session; id: string }) {
  const { api } = session;
  const run = useLoad(
    async () => (await api.request<{ triggeredRun: RunDetail | null }>(RUN, { id })).triggeredRun,
    [api, id],
  );
  const [message, setMessage] = useState<{ text: string; tone: 'error' | 'ok' } | null>(null);
  const [busy, setBusy] = useState(false);
  const { reload } = run;
  useEffect(() => session.onRun((update) => update.id === id && reload()), [session, id, reload]);

  if (run.error) return <Alert>{run.error}</Alert>;
  if (run.data === undefined) return <p class="loading">Loading the run…</p>;
  const detail = run.data;
  if (detail === null) return <Alert>No run {id} that you can see.</Alert>;
  const { event } = detail;

  const retry = async () => {
    setBusy(true);
    setMessage(null);
    try {
      const data = await api.request<{ retryTriggeredRun: MutationResult<{ run: RunRow }> }>(
        RETRY_RUN,
        { id },
      );
      const error = errorOf(data.retryTriggeredRun);
      setMessage(
        error ? { text: error, tone: 'error' } : { text: 'Queued for delivery again.', tone: 'ok' },
      );
      reload();
    } catch (failure) {
      setMessage({
        text: failure instanceof Error ? failure.message : String(failure),
        tone: 'error',
      });
    } finally {
      setBusy(false);
    }
  };

  return (
    <article aria-labelledby="run-title">
      <p>
        <a href="#/runs">← All runs</a>
      </p>
      <h1 id="run-title">
        Run <span class="mono">{detail.id}</span> <StatusBadge status={detail.status} />
      </h1>
      {canOperate(session.role) && FINISHED.includes(detail.status) && (
        <p>
          <button type="button" class="primary" onClick={retry} disabled={busy}>
            Retry
          </button>
        </p>
      )}
      {message && <Alert tone={message.tone}>{message.text}</Alert>}
      <dl class="facts">
        <dt>Automation</dt>
        <dd>{detail.automationName}</dd>
        <dt>Result</dt>
        <dd>{detail.result ?? '—'}</dd>
        <dt>Attempts</dt>
        <dd>{detail.attemptCount}</dd>
        <dt>Queued</dt>
        <dd>
          <Time value={detail.createdAt} />
        </dd>
        <dt>Next attempt</dt>
        <dd>
          <Time value={detail.nextAttemptAt} />
        </dd>
        <dt>Finished</dt>
        <dd>
          <Time value={detail.finishedAt} />
        </dd>
      </dl>
      {event === null ? (
        <RunEventFacts detail={detail} />
      ) : (
        <ArtifactEventFacts detail={detail} event={event} />
      )}
      <h2>Attempts</h2>
      {detail.attempts.length === 0 ? (
        <p class="muted">No attempt yet.</p>
      ) : (
        <div class="table-wrap">
          <table class="attempts">
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Started</th>
                <th scope="col">Duration</th>
                <th scope="col">Status code</th>
                <th scope="col">Error class</th>
                <th scope="col">Response body</th>
              </tr>
            </thead>
            <tbody>
              {detail.attempts.map((a) => (
                <tr key={a.attemptNumber}>
                  <td class="num">{a.attemptNumber}</td>
                  <td>
                    <Time value={a.startedAt} />
                  </td>
                  <td class="num">{a.durationMs === null ? 'in flight' : `${a.durationMs} ms`}</td>
                  <td class="num">{a.statusCode ?? '—'}</td>
                  <td>
                    {a.errorClass ?? '—'}
                    {a.errorMessage && <div class="muted">{a.errorMessage}</div>}
                  </td>
                  <td>
                    {a.responseBody ? (
                      <pre class="body">{a.responseBody}</pre>
                    ) : (
                      <span class="muted">—</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </article>
  );
}

/** What an artifact event's run shows of its event, with the default envelope's fields. */
function ArtifactEventFacts({
  detail,
  event,
}: {
  detail: RunDetail;
  event: NonNullable<RunDetail['event']>;
}) {
  return (
    <>
      <h2>Event</h2>
      <dl class="facts">
        <dt>Type</dt>
        <dd>{event.eventType}</dd>
        <dt>Version</dt>
        <dd class="mono">{event.versionString}</dd>
        <dt>Where</dt>
        <dd>
          {event.project ? `project ${event.project.name}` : ''}
          {event.registry ? `registry ${event.registry.name}` : ''}
        </dd>
        <dt>Collection</dt>
        <dd>
          {event.collectionName} ({event.artifactType})
        </dd>
        {event.alias && (
          <>
            <dt>Alias</dt>
            <dd>{event.alias}</dd>
          </>
        )}
        {event.tag && (
          <>
            <dt>Tag</dt>
            <dd>{event.tag}</dd>
          </>
        )}
        <dt>Reported by</dt>
        <dd>
          {event.author}, <Time value={event.createdAt} />
        </dd>
        <dt>Event id</dt>
        <dd class="mono">{event.id}</dd>
      </dl>
      <h3>Payload summary</h3>
      <pre class="body">{JSON.stringify(payloadSummary(detail, event), null, 2)}</pre>
    </>
  );
}

/** What a run event's run shows: the training run and the condition that fired. */
function RunEventFacts({ detail }: { detail: RunDetail }) {
  const fired = detail.runEvent;
  if (!fired) return <p class="muted">The event is gone.</p>;
  return (
    <>
      <h2>Run event</h2>
      <dl class="facts">
        <dt>Type</dt>
        <dd>{fired.eventType}</dd>
        <dt>Run</dt>
        <dd class="mono">
          {fired.run.project.name}/{fired.run.name}
        </dd>
        <dt>Run state</dt>
        <dd>{fired.runState}</dd>
        <dt>Condition</dt>
        <dd>{fired.condition}</dd>
        {fired.metricName && (
          <>
            <dt>Metric</dt>
            <dd>{fired.metricName}</dd>
            <dt>Values</dt>
            <dd class="mono">{(fired.metricValues ?? []).join(', ')}</dd>
          </>
        )}
      </dl>
    </>
  );
}

/** The event fields a default webhook envelope carries, as a person reads them. */
function payloadSummary(
  run: RunDetail,
  event: NonNullable<RunDetail['event']>,
): Record<string, unknown> {
  return {
    event_type: event.eventType,
    event_id: event.id,
    event_author: event.author,
    automation_name: run.automationName,
    project_name: event.project?.name ?? event.registry?.name ?? null,
    artifact_collection_name: event.collectionName,
    artifact_type: event.artifactType,
    artifact_version_index: event.versionIndex,
    artifact_version: event.versionUri,
    artifact_version_string: event.versionString,
    alias: event.alias,
    tag: event.tag,
    artifact_metadata: event.metadata ?? {},
  };
}
