import { useEffect, useMemo, useState } from 'preact/hooks';
import { type Api, createApi, UnauthenticatedError } from './api';
import { ActionsPage, AutomationsPage } from './automations';
import { DeliveriesPage } from './deliveries';
import type { RunRow } from './live';
import { RUN_UPDATED, VIEWER } from './queries';
import { RunPage, RunsPage } from './runs';
import { SecretsPage } from './secrets';
import { Alert, canAdminister, type Role, type Session } from './ui';

/** The key lives for the browser session only: never localStorage, never a cookie. */
const KEY_STORAGE = 'tripline.apiKey';
const ENTITY_STORAGE = 'tripline.entity';

interface Membership {
  role: Role;
  entity: { name: string };
}

interface ViewerData {
  viewer: { user: { name: string }; entities: Membership[] };
}

type Route =
  | { page: 'runs' }
  | { page: 'run'; id: string }
  | { page: 'automations' }
  | { page: 'actions' }
  | { page: 'secrets' }
  | { page: 'deliveries' };

function parseRoute(hash: string): Route {
  const [page, id] = hash.replace(/^#\/?/, '').split('/');
  switch (page) {
    case 'runs':
      return id ? { page: 'run', id: decodeURIComponent(id) } : { page: 'runs' };
    case 'automations':
    case 'actions':
    case 'secrets':
    case 'deliveries':
      return { page };
    default:
      return { page: 'runs' };
  }
}

function useRoute(): Route {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const changed = () => setHash(window.location.hash);
    window.addEventListener('hashchange', changed);
    return () => window.removeEventListener('hashchange', changed);
  }, []);
  return parseRoute(hash);
}

export function App() {
  const [key, setKey] = useState<string | null>(() => sessionStorage.getItem(KEY_STORAGE));
  const [notice, setNotice] = useState<string | null>(null);
  const signOut = (message: string | null) => {
    sessionStorage.removeItem(KEY_STORAGE);
    setKey(null);
    setNotice(message);
  };
  if (!key) {
    return (
      <SignIn
        notice={notice}
        onSignIn={(given) => {
          sessionStorage.setItem(KEY_STORAGE, given);
          setNotice(null);
          setKey(given);
        }}
      />
    );
  }
  return <SignedIn key={key} apiKey={key} onSignOut={signOut} />;
}

function SignIn({ notice, onSignIn }: { notice: string | null; onSignIn: (key: string) => void }) {
  const [value, setValue] = useState('');
  return (
    <main class="sign-in">
      <h1>Tripline</h1>
      <p>Sign in with an API key. It is kept in this browser tab's session only.</p>
      {notice && <Alert>{notice}</Alert>}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          const trimmed = value.trim();
          if (trimmed) onSignIn(trimmed);
        }}
      >
        <label for="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          placeholder="tl_…"
          required
          value={value}
          onInput={(event) => setValue(event.currentTarget.value)}
        />
        <button type="submit" class="primary">
          Sign in
        </button>
      </form>
      <p class="muted">
        GraphiQL, for the same API by hand, is at <a href="/graphql">/graphql</a>.
      </p>
    </main>
  );
}

function SignedIn({
  apiKey,
  onSignOut,
}: {
  apiKey: string;
  onSignOut: (message: string | null) => void;
}) {
  const api = useMemo<Api>(() => createApi(apiKey, (message) => onSignOut(message)), [apiKey]);
  useEffect(() => () => void api.close(), [api]);
  const [viewer, setViewer] = useState<ViewerData['viewer'] | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [entity, setEntity] = useState<string | null>(() => sessionStorage.getItem(ENTITY_STORAGE));

  useEffect(() => {
    api.request<ViewerData>(VIEWER).then(
      (data) => setViewer(data.viewer),
      (error: unknown) => {
        if (error instanceof UnauthenticatedError) return;
        setFailure(error instanceof Error ? error.message : String(error));
      },
    );
  }, [api]);

  const membership =
    viewer?.entities.find((m) => m.entity.name === entity) ?? viewer?.entities[0] ?? null;

  if (failure) {
    return (
      <main class="sign-in">
        <Alert>Could not reach the API: {failure}</Alert>
        <button type="button" onClick={() => onSignOut(null)}>
          Sign out
        </button>
      </main>
    );
  }
  if (!viewer) return <p class="loading">Signing in…</p>;
  if (!membership) {
    return (
      <main class="sign-in">
        <Alert>This key's user belongs to no entity, so there is nothing to show.</Alert>
        <button type="button" onClick={() => onSignOut(null)}>
          Sign out
        </button>
      </main>
    );
  }
  return (
    <Shell
      api={api}
      userName={viewer.user.name}
      memberships={viewer.entities}
      membership={membership}
      onEntity={(name) => {
        sessionStorage.setItem(ENTITY_STORAGE, name);
        setEntity(name);
      }}
      onSignOut={() => onSignOut(null)}
    />
  );
}

function Shell(props: {
  api: Api;
  userName: string;
  memberships: Membership[];
  membership: Membership;
  onEntity: (name: string) => void;
  onSignOut: () => void;
}) {
  const { api, membership } = props;
  const entity = membership.entity.name;
  const route = useRoute();
  const [live, setLive] = useState(false);
  useEffect(() => api.onLive(setLive), [api]);

  // One subscription for the entity; pages listen to it.
  const listeners = useMemo(() => new Set<(run: RunRow) => void>(), []);
  const session = useMemo<Session>(
    () => ({
      api,
      entity,
      role: membership.role,
      onRun(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    }),
    [api, entity, membership.role, listeners],
  );
  useEffect(
    () =>
      api.subscribe<{ triggeredRunUpdated: RunRow }>(RUN_UPDATED, { entity }, (data) => {
        for (const listener of listeners) listener(data.triggeredRunUpdated);
      }),
    [api, entity, listeners],
  );

  const links: [Route['page'], string][] = [
    ['runs', 'Runs'],
    ['deliveries', 'Deliveries'],
    ['automations', 'Automations'],
    ['actions', 'Actions'],
    ...(canAdminister(membership.role)
      ? ([['secrets', 'Secrets']] as [Route['page'], string][])
      : []),
  ];
  const current = route.page === 'run' ? 'runs' : route.page;

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Tripline</span>
        <nav aria-label="Sections">
          {links.map(([page, label]) => (
            <a key={page} href={`#/${page}`} aria-current={current === page ? 'page' : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <div class="who">
          <span
            class={`live ${live ? 'live-on' : 'live-off'}`}
            role="status"
            title={live ? 'Receiving run updates' : 'Not receiving run updates; reconnecting'}
          >
            {live ? 'Live' : 'Offline'}
          </span>
          {props.memberships.length > 1 ? (
            <label>
              <span class="visually-hidden">Entity</span>
              <select
                value={entity}
                onChange={(event) => props.onEntity(event.currentTarget.value)}
              >
                {props.memberships.map((m) => (
                  <option key={m.entity.name} value={m.entity.name}>
                    {m.entity.name}
                  </option>
                ))}
              </select>
            </label>
          ) : (
            <span class="entity">{entity}</span>
          )}
          <span class="user">
            {props.userName} <span class="badge role">{membership.role}</span>
          </span>
          <button type="button" onClick={props.onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" key={entity}>
        <Page route={route} session={session} />
      </main>
    </>
  );
}

function Page({ route, session }: { route: Route; session: Session }) {
  switch (route.page) {
    case 'runs':
      return <RunsPage session={session} />;
    case 'run':
      return <RunPage session={session} id={route.id} />;
    case 'automations':
      return <AutomationsPage session={session} />;
    case 'actions':
      return <ActionsPage session={session} />;
    case 'secrets':
      return canAdminister(session.role) ? (
        <SecretsPage session={session} />
      ) : (
        <Alert>Only admins manage secrets.</Alert>
      );
    case 'deliveries':
      return <DeliveriesPage session={session} />;
    default: {
      const never: never = route;
      return never;
    }
  }
}
