import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { Agent, request } from 'undici';
import { waitIdle } from './process.js';

/** Keep-alive connections for the bench's own requests (setup, open-loop emits, paging). */
const agent = new Agent({ connections: 256, pipelining: 1 });

export interface GraphQLResult<T = Record<string, unknown>> {
  data?: T;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** The body of a GraphQL POST, as sent by every request of the bench. */
export function graphqlBody(query: string, variables?: Record<string, unknown>): string {
  return JSON.stringify(variables ? { query, variables } : { query });
}

export function authHeaders(key: string | undefined): Record<string, string> {
  return {
    'content-type': 'application/json',
    ...(key ? { authorization: `Bearer ${key}` } : {}),
  };
}

/** Sends one GraphQL request; resolves with the parsed answer and its round-trip time in ms. */
export async function gql<T = Record<string, unknown>>(
  url: string,
  key: string | undefined,
  query: string,
  variables?: Record<string, unknown>,
): Promise<GraphQLResult<T> & { ms: number; status: number }> {
  const started = performance.now();
  const response = await request(url, {
    method: 'POST',
    headers: authHeaders(key),
    body: graphqlBody(query, variables),
    dispatcher: agent,
  });
  const parsed = (await response.body.json()) as GraphQLResult<T>;
  return { ...parsed, ms: performance.now() - started, status: response.statusCode };
}

/** Like {@link gql}, but throws when the answer has errors or the typename is not `expected`. */
export async function mutate<T extends Record<string, unknown>>(
  url: string,
  key: string,
  query: string,
  variables: Record<string, unknown>,
  expected: string,
): Promise<T> {
  const result = await gql<Record<string, T & { __typename: string; message?: string }>>(
    url,
    key,
    query,
    variables,
  );
  const field = result.data && Object.values(result.data)[0];
  if (result.errors || field?.__typename !== expected) {
    throw new Error(
      `expected ${expected}, got ${JSON.stringify(result.errors ?? field)} for ${query.slice(0, 80)}`,
    );
  }
  return field;
}

export interface Throughput {
  /** 2xx answers per second over the whole window. */
  perSecond: number;
  requests: number;
  seconds: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Non-2xx answers, connection errors and timeouts: any of them spoils the figure. */
  failures: number;
  /**
   * Share of a core this process (the load generator) used meanwhile. Near 1, the load, not the
   * server, set the pace, and the figure understates the server.
   */
  loadCpuShare: number;
}

/**
 * Closed-loop load with autocannon: `connections` keep-alive connections, each sending `body`
 * again as soon as the previous answer arrived, for `seconds`. First waits until the processes
 * `idle` (the servers on the server core) are idle, so no earlier load's tail is measured.
 */
export async function hammer(options: {
  url: string;
  key?: string;
  body: string;
  connections: number;
  seconds: number;
  idle: readonly number[];
}): Promise<Throughput> {
  for (const pid of options.idle) await waitIdle(pid);
  const cpu = process.cpuUsage();
  const result = await autocannon({
    url: options.url,
    method: 'POST',
    headers: authHeaders(options.key),
    body: options.body,
    connections: options.connections,
    duration: options.seconds,
    timeout: 30,
  });
  const ok = result['2xx'];
  return {
    perSecond: ok / result.duration,
    requests: ok,
    seconds: result.duration,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    failures: result.non2xx + result.errors + result.timeouts,
    loadCpuShare: cpuShare(cpu, result.duration),
  };
}

/** Share of one core this process used since `since` (a process.cpuUsage()), over `seconds`. */
export function cpuShare(since: NodeJS.CpuUsage, seconds: number): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6 / seconds;
}

/** Adds up rounds of {@link hammer} against one target into one figure. */
export function combine(rounds: readonly Throughput[]): Throughput {
  const requests = rounds.reduce((sum, r) => sum + r.requests, 0);
  const seconds = rounds.reduce((sum, r) => sum + r.seconds, 0);
  return {
    perSecond: requests / seconds,
    requests,
    seconds,
    // Latency percentiles do not add up; the worst round's is the honest one to show.
    latencyP50Ms: Math.max(...rounds.map((r) => r.latencyP50Ms)),
    latencyP99Ms: Math.max(...rounds.map((r) => r.latencyP99Ms)),
    failures: rounds.reduce((sum, r) => sum + r.failures, 0),
    loadCpuShare: Math.max(...rounds.map((r) => r.loadCpuShare)),
  };
}

export async function closeHttp(): Promise<void> {
  await agent.close();
}

/**
 * Open-loop load: calls `send(i)` for i = 0 … count-1 at `perSecond`, each on schedule whether or
 * not earlier ones were answered, as independent clients would. Resolves when every call settled;
 * rejects with the first failure.
 */
export async function paced(
  count: number,
  perSecond: number,
  send: (i: number) => Promise<void>,
): Promise<void> {
  const begin = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < count; i += 1) {
    const wait = begin + (i * 1000) / perSecond - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(send(i));
  }
  await Promise.all(pending);
}
