import { useEffect, useState } from 'preact/hooks';
import type { RunStatus } from './live';
import {
  AUTOMATIONS,
  errorOf,
  type MutationResult,
  SET_ACTION_ENABLED,
  SET_AUTOMATION_ENABLED,
  TEST_ACTION,
} from './queries';
import {
  Alert,
  canAdminister,
  canOperate,
  type Session,
  StatusBadge,
  Time,
  useDebounced,
  useLoad,
} from './ui';

interface LastRun {
  id: string;
  status: RunStatus;
  createdAt: string;
}

interface Automation {
  id: string;
  name: string;
  description: string | null;
  enabled: boolean;
  eventType: string;
  scope: {
    type: string;
    project: { name: string } | null;
    registry: { name: string } | null;
    collection: { name: string } | null;
  };
  action: { id: string; name: string; kind: string };
  triggeredRuns: { edges: { node: LastRun }[] };
}

interface Action {
  __typename: string;
  id: string;
  name: string;
  kind: string;
  enabled: boolean;
  disabledReason: string | null;
  usedBy: string[];
  url?: string;
  channel?: string;
}

interface Lists {
  automations: Automation[];
  actions: Action[];
}

/** Automations and actions, reloaded (at most once a second) as runs change. */
function useLists(session: Session) {
  const { api, entity } = session;
  const lists = useLoad(async () => {
    const data = await api.request<{
      entity: {
        automations: { edges: { node: Automation }[] };
        actions: { edges: { node: Action }[] };
      };
    }>(AUTOMATIONS, { entity });
    return {
      automations: data.entity.automations.edges.map((e) => e.node),
      actions: data.entity.actions.edges.map((e) => e.node),
    } satisfies Lists;
  }, [api, entity]);
  const refresh = useDebounced(lists.reload, 1000);
  useEffect(() => session.onRun(refresh), [session, refresh]);
  return lists;
}

function LastRunCell({ run }: { run: LastRun | undefined }) {
  if (!run) return <span class="muted">never run</span>;
  return (
    <a href={`#/runs/${encodeURIComponent(run.id)}`} class="last-run">
      <StatusBadge status={run.status} /> <Time value={run.createdAt} />
    </a>
  );
}

function scopeText(scope: Automation['scope']): string {
  const where = [scope.project?.name, scope.registry?.name, scope.collection?.name]
    .filter(Boolean)
    .join(' / ');
  return where
    ? `${scope.type.toLowerCase().replace('_', ' ')} ${where}`
    : scope.type.toLowerCase();
}

export function AutomationsPage({ session }: { session: Session }) {
  const lists = useLists(session);
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const mayToggle = canOperate(session.role);

  const toggle = async (automation: Automation) => {
    setBusy(automation.id);
    setMessage(null);
    try {
      const data = await session.api.request<{ updateAutomation: MutationResult<object> }>(
        SET_AUTOMATION_ENABLED,
        { id: automation.id, enabled: !automation.enabled },
      );
      setMessage(errorOf(data.updateAutomation));
      lists.reload();
    } catch (failure) {
      setMessage(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(null);
    }
  };

  return (
    <section aria-labelledby="automations-title">
      <h1 id="automations-title">Automations</h1>
      {lists.error && <Alert>{lists.error}</Alert>}
      {message && <Alert>{message}</Alert>}
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">State</th>
              <th scope="col">When</th>
              <th scope="col">Action</th>
              <th scope="col">Last run</th>
              {mayToggle && <th scope="col">Switch</th>}
            </tr>
          </thead>
          <tbody>
            {lists.data?.automations.map((automation) => (
              <tr key={automation.id}>
                <td>
                  <strong>{automation.name}</strong>
                  {automation.description && <div class="muted">{automation.description}</div>}
                </td>
                <td>
                  <EnabledBadge enabled={automation.enabled} />
                </td>
                <td>
                  {automation.eventType} in {scopeText(automation.scope)}
                </td>
                <td>{automation.action.name}</td>
                <td>
                  <LastRunCell run={automation.triggeredRuns.edges[0]?.node} />
                </td>
                {mayToggle && (
                  <td>
                    <button
                      type="button"
                      disabled={busy === automation.id}
                      onClick={() => toggle(automation)}
                      aria-label={`${automation.enabled ? 'Disable' : 'Enable'} ${automation.name}`}
                    >
                      {automation.enabled ? 'Disable' : 'Enable'}
                    </button>
                  </td>
                )}
              </tr>
            ))}
            {lists.data?.automations.length === 0 && (
              <tr>
                <td colSpan={6} class="muted">
                  No automations yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function EnabledBadge({ enabled }: { enabled: boolean }) {
  return (
    <span class={`badge ${enabled ? 'enabled' : 'disabled'}`}>
      {enabled ? 'enabled' : 'disabled'}
    </span>
  );
}

interface TestResponse {
  success: boolean;
  sent: boolean;
  statusCode: number | null;
  durationMs: number;
  errorClass: string | null;
  errorMessage: string | null;
  responseBody: string | null;
}

export function ActionsPage({ session }: { session: Session }) {
  const lists = useLists(session);
  const admin = canAdminister(session.role);
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [tests, setTests] = useState<Record<string, TestResponse | string>>({});

  /** Each action's latest run: the newest last run among the automations that use it. */
  const lastRuns = new Map<string, LastRun>();
  for (const automation of lists.data?.automations ?? []) {
    const run = automation.triggeredRuns.edges[0]?.node;
    const known = lastRuns.get(automation.action.id);
    if (run && (!known || Date.parse(run.createdAt) > Date.parse(known.createdAt))) {
      lastRuns.set(automation.action.id, run);
    }
  }

  const act = async (id: string, work: () => Promise<void>) => {
    setBusy(id);
    setMessage(null);
    try {
      await work();
    } catch (failure) {
      setMessage(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(null);
    }
  };
  const toggle = (action: Action) =>
    act(action.id, async () => {
      const data = await session.api.request<{ updateAction: MutationResult<object> }>(
        SET_ACTION_ENABLED,
        { id: action.id, enabled: !action.enabled },
      );
      setMessage(errorOf(data.updateAction));
      lists.reload();
    });
  const test = (action: Action) =>
    act(action.id, async () => {
      const data = await session.api.request<{
        testAction: MutationResult<{ response: TestResponse }>;
      }>(TEST_ACTION, { id: action.id });
      const result = data.testAction;
      const error = errorOf(result);
      setTests((all) => ({
        ...all,
        [action.id]: error ?? (result as { response: TestResponse }).response,
      }));
    });

  return (
    <section aria-labelledby="actions-title">
      <h1 id="actions-title">Actions</h1>
      {lists.error && <Alert>{lists.error}</Alert>}
      {message && <Alert>{message}</Alert>}
      <ul class="cards">
        {lists.data?.actions.map((action) => {
          const tested = tests[action.id];
          return (
            <li key={action.id} class="card" data-action-id={action.id}>
              <h2>
                {action.name} <span class="badge kind">{action.kind}</span>{' '}
                <EnabledBadge enabled={action.enabled} />
              </h2>
              <dl class="facts">
                {action.url && (
                  <>
                    <dt>URL</dt>
                    <dd class="mono">{action.url}</dd>
                  </>
                )}
                {action.channel && (
                  <>
                    <dt>Channel</dt>
                    <dd>{action.channel}</dd>
                  </>
                )}
                {action.disabledReason && (
                  <>
                    <dt>Disabled because</dt>
                    <dd>{action.disabledReason}</dd>
                  </>
                )}
                <dt>Used by</dt>
                <dd>{action.usedBy.length ? action.usedBy.join(', ') : '—'}</dd>
                <dt>Last run</dt>
                <dd>
                  <LastRunCell run={lastRuns.get(action.id)} />
                </dd>
              </dl>
              {admin && (
                <p class="buttons">
                  <button
                    type="button"
                    disabled={busy === action.id}
                    onClick={() => test(action)}
                    aria-label={`Test ${action.name}`}
                  >
                    Test
                  </button>
                  <button
                    type="button"
                    disabled={busy === action.id}
                    onClick={() => toggle(action)}
                    aria-label={`${action.enabled ? 'Disable' : 'Enable'} ${action.name}`}
                  >
                    {action.enabled ? 'Disable' : 'Enable'}
                  </button>
                </p>
              )}
              {tested !== undefined && <TestAnswer answer={tested} />}
            </li>
          );
        })}
      </ul>
      {lists.data?.actions.length === 0 && <p class="muted">No actions yet.</p>}
    </section>
  );
}

function TestAnswer({ answer }: { answer: TestResponse | string }) {
  if (typeof answer === 'string') return <Alert>{answer}</Alert>;
  return (
    <div class="test-answer" role="status">
      <p>
        <strong>{answer.success ? 'Test delivered' : 'Test failed'}</strong>
        {answer.sent ? '' : ' (nothing is sent for this kind of action)'}
        {answer.statusCode !== null && <> — HTTP {answer.statusCode}</>}
        {answer.errorClass && <> — {answer.errorClass}</>} in {answer.durationMs} ms
      </p>
      {answer.errorMessage && <p class="muted">{answer.errorMessage}</p>}
      {answer.responseBody && (
        <>
          <p class="muted">The receiver answered:</p>
          <pre class="body">{answer.responseBody}</pre>
        </>
      )}
    </div>
  );
}
