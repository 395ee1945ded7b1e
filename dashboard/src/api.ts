import { type Client, createClient } from 'graphql-ws/client';

/** The API refused the key: missing, unknown, revoked or expired. */
export class UnauthenticatedError extends Error {
  override name = 'UnauthenticatedError';
}

/** What the API answers a dashboard user when its key is refused, in the user's words. */
export const KEY_REFUSED =
  'Your API key was refused: it is unknown, revoked or expired. Sign in again with a valid key.';

type Variables = Record<string, unknown>;

interface GraphQLBody<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** A signed-in connection to the GraphQL API: HTTP for queries and mutations, graphql-ws for live updates. */
export interface Api {
  /** Runs a query or mutation; throws UnauthenticatedError for a refused key, Error for other GraphQL errors. */
  request<T>(query: string, variables?: Variables): Promise<T>;
  /**
   * Starts a subscription; `onData` gets each result's data. Reconnects after a dropped
   * connection; a refused key ends it and calls the API's `onUnauthenticated`. Returns a stop
   * function.
   */
  subscribe<T>(query: string, variables: Variables, onData: (data: T) => void): () => void;
  /** Whether the live connection is up, and a listener for its changes. */
  onLive(listener: (up: boolean) => void): () => void;
  /** Closes the live connection; resolves once it is closed, and never rejects. */
  close(): Promise<void>;
}

/** The GraphQL endpoint beside the dashboard, over HTTP and WebSocket. */
function endpoints(): { http: string; ws: string } {
  const { protocol, host } = window.location;
  return {
    http: '/graphql',
    ws: `${protocol === 'https:' ? 'wss' : 'ws'}://${host}/graphql`,
  };
}

/** Whether a GraphQL answer says the key was refused. */
export function isUnauthenticated(status: number, body: GraphQLBody<unknown>): boolean {
  return (
    status === 401 || (body.errors ?? []).some((e) => e.extensions?.code === 'UNAUTHENTICATED')
  );
}

/** The close code graphql-ws connections get when the server refuses their key. */
const KEY_REFUSED_CLOSE = 4403;

export function createApi(key: string, onUnauthenticated: (message: string) => void): Api {
  const authorization = `Bearer ${key}`;
  const { http, ws } = endpoints();
  const liveListeners = new Set<(up: boolean) => void>();
  const setLive = (up: boolean) => {
    for (const listener of liveListeners) listener(up);
  };
  let refused = false;
  const client: Client = createClient({
    url: ws,
    connectionParams: { authorization },
    lazy: true,
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: (event) =>
      !(
        typeof event === 'object' &&
        event !== null &&
        'code' in event &&
        event.code === KEY_REFUSED_CLOSE
      ),
    on: {
      connected: () => setLive(true),
      closed: (event) => {
        setLive(false);
        const code = (event as { code?: number } | undefined)?.code;
        if (code === KEY_REFUSED_CLOSE && !refused) {
          refused = true;
          onUnauthenticated(KEY_REFUSED);
        }
      },
    },
  });

  return {
    async request<T>(query: string, variables: Variables = {}): Promise<T> {
      const response = await fetch(http, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          authorization,
        },
        body: JSON.stringify({ query, variables }),
      });
      let body: GraphQLBody<T>;
      try {
        body = (await response.json()) as GraphQLBody<T>;
      } catch {
        throw new Error(`The server answered HTTP ${response.status} without a GraphQL result.`);
      }
      if (isUnauthenticated(response.status, body)) {
        if (!refused) {
          refused = true;
          onUnauthenticated(KEY_REFUSED);
        }
        throw new UnauthenticatedError(KEY_REFUSED);
      }
      if (body.errors?.length) throw new Error(body.errors.map((e) => e.message).join('\n'));
      if (!body.data) throw new Error('The server answered without data.');
      return body.data;
    },
    subscribe<T>(query: string, variables: Variables, onData: (data: T) => void) {
      return client.subscribe<T>(
        { query, variables },
        {
          next: (result) => {
            if (result.data) onData(result.data as T);
          },
          error: () => {},
          complete: () => {},
        },
      );
    },
    onLive(listener) {
      liveListeners.add(listener);
      return () => liveListeners.delete(listener);
    },
    async close() {
      try {
        await client.dispose();
      } catch {
        // A connection that closes (or is refused) before it opened rejects the dispose with its
        // close event: there is then nothing left to close.
      }
    },
  };
}
