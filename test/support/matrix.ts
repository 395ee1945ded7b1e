import { type Client, createClient } from 'graphql-ws';
import { expect } from 'vitest';
import WebSocket from 'ws';
import type { GraphQLResponse } from './app.js';

/** Who sends a request in the access matrix. */
export type Caller = 'ADMIN' | 'MEMBER' | 'VIEWER' | 'stranger' | 'revoked' | 'anonymous';

export const CALLERS: readonly Caller[] = [
  'ADMIN',
  'MEMBER',
  'VIEWER',
  'stranger',
  'revoked',
  'anonymous',
];

/** The least role in entity `default` an operation needs; ANY for the caller's own account. */
export type Needs = 'ANY' | 'ADMIN' | 'MEMBER' | 'VIEWER';

/**
 * What a cell must show: `ok` success; `denied` PermissionDeniedError naming the role (a read
 * can only answer null); `notFound` NotFoundError or null, exactly as for a missing object;
 * `unauthenticated` HTTP 401 with the code UNAUTHENTICATED.
 */
export type Outcome = 'ok' | 'denied' | 'notFound' | 'unauthenticated';

const RANK = { VIEWER: 1, MEMBER: 2, ADMIN: 3 } as const;

/** The outcome the design documents for `caller` on an operation that needs `needs`. */
export function documentedOutcome(needs: Needs, caller: Caller): Outcome {
  if (caller === 'revoked' || caller === 'anonymous') return 'unauthenticated';
  if (needs === 'ANY') return 'ok';
  if (caller === 'stranger') return 'notFound';
  return RANK[caller] >= RANK[needs] ? 'ok' : 'denied';
}

/** One operation of the access matrix, as one kind of target object. */
export interface Row {
  /** Root field (`createSecret`, `node`), or `entity.<list>` for a list on Entity. */
  field: string;
  /** Which variant, when a field has several rows (`node` of each type, own key or not). */
  variant?: string;
  needs: Needs;
  /** The operation; its field is aliased `result`. */
  document: string;
  /**
   * Variables for one cell, with fresh objects when the operation changes state. `key` is the
   * caller's API key (null for no key).
   */
  variables: (caller: Caller, key: string | null) => Promise<Record<string, unknown>>;
  /** Queries: the value judged, from the response data; `data.result` when left out. */
  // biome-ignore lint/suspicious/noExplicitAny: results are arbitrary response shapes
  pick?: (data: any) => unknown;
  /** Mutations: the `__typename` of success. */
  okType?: string;
  /** Queries: checks a successful `result`. */
  // biome-ignore lint/suspicious/noExplicitAny: results are arbitrary response shapes
  ok?: (result: any, caller: Caller) => void;
  /** After a refused cell: proves the refusal changed nothing, given the cell's variables. */
  untouched?: (variables: Record<string, unknown>) => Promise<void>;
  /**
   * Cells whose outcome is not the one `needs` documents, because the object is shared with
   * entity `other` (a service account in both): there the stranger is an admin of its other side.
   */
  outcomes?: Partial<Record<Caller, Outcome>>;
  /** Cells that fail today because of an access bug, and the bug. */
  bug?: { callers: readonly Caller[]; note: string };
}

export const rowName = (row: Row): string =>
  row.variant ? `${row.field} (${row.variant})` : row.field;

const isAbsent = (value: unknown): boolean =>
  value === null || (Array.isArray(value) && value.every((v) => v === null));

/** Asserts that one response shows `outcome` for `row`. */
export function expectOutcome(
  res: GraphQLResponse,
  row: Row,
  outcome: Outcome,
  caller: Caller,
): void {
  const shown = JSON.stringify({ status: res.status, data: res.data, errors: res.errors });
  if (outcome === 'unauthenticated') {
    expect(res.status, shown).toBe(401);
    expect(res.errors?.[0]?.extensions?.code, shown).toBe('UNAUTHENTICATED');
    expect(res.data ?? null, shown).toBeNull();
    return;
  }
  expect(res.status, shown).toBe(200);
  expect(res.errors, shown).toBeUndefined();
  const result = row.pick ? row.pick(res.data) : res.data?.result;
  if (row.okType) {
    const expected = {
      ok: row.okType,
      denied: 'PermissionDeniedError',
      notFound: 'NotFoundError',
    }[outcome];
    const typed = result as { __typename?: string; requiredRole?: string } | undefined;
    expect(typed?.__typename, shown).toBe(expected);
    if (outcome === 'denied') expect(typed?.requiredRole, shown).toBe(row.needs);
    return;
  }
  if (outcome === 'ok') {
    expect(result, shown).not.toBeNull();
    row.ok?.(result, caller);
  } else {
    expect(isAbsent(result), shown).toBe(true);
  }
}

/** The selection every mutation row asks for: enough to tell the outcomes apart. */
export const RESULT =
  '{ __typename ... on Error { message ... on PermissionDeniedError { requiredRole } } }';

/** `mutation { result: <field>(input: $v) … }` for a field taking one `input` argument. */
export const mutationOf = (field: string, inputType: string): string =>
  `mutation($v: ${inputType}!) { result: ${field}(input: $v) ${RESULT} }`;

/** A graphql-ws client on `url` (http or ws) that sends `key`; the caller disposes it. */
export function wsClient(url: string, key: string | null): Client {
  return createClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: key ? { authorization: `Bearer ${key}` } : {},
    retryAttempts: 0,
    lazy: false,
    // Failures surface through the `closed` event and the sinks; keep test output quiet.
    onNonLazyError: () => {},
  });
}

/** Resolves with the close code of a client's socket. */
export function closeCode(client: Client): Promise<number> {
  return new Promise((resolve) =>
    client.on('closed', (event) => resolve((event as { code: number }).code)),
  );
}

/** A subscription's received run ids; `first` resolves with the first one. */
export interface Collected {
  runIds: string[];
  first: Promise<string>;
}

/** Subscribes with `query` and records the run id of every update; errors reject `first`. */
export function collectRuns(client: Client, query: string): Collected {
  const runIds: string[] = [];
  let resolve: (id: string) => void = () => {};
  let reject: (e: unknown) => void = () => {};
  const first = new Promise<string>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  client.subscribe<{ triggeredRunUpdated: { id: string } }>(
    { query },
    {
      next: (message) => {
        if (message.errors) reject(new Error(JSON.stringify(message.errors)));
        const id = message.data?.triggeredRunUpdated?.id;
        if (id) {
          runIds.push(id);
          resolve(id);
        }
      },
      error: reject,
      complete: () => {},
    },
  );
  return { runIds, first };
}

/**
 * Resolves after one query has made the round trip over `client`'s socket. A publish reaches
 * every subscription in microtasks, before the server reads the next socket message, so any
 * update the server sends on this socket for an earlier publish arrives before this answer.
 */
export function roundTrip(client: Client): Promise<void> {
  return new Promise((resolve, reject) => {
    client.subscribe(
      { query: '{ viewer { user { id } } }' },
      { next: () => {}, error: reject, complete: resolve },
    );
  });
}
