import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { type DocumentNode, GraphQLError, getOperationAST } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from '../logger.js';
import type { Metrics, OperationType, RequestOutcome } from './metrics.js';

export interface ObservabilityOptions {
  logger: Logger;
  /** The GraphQL path; requests to it are GraphQL requests, the rest are probes and pages. */
  graphqlEndpoint: string;
  /** Serves `/metrics` and records request figures when given. */
  metrics?: Metrics;
  /** When set, `/metrics` takes `Authorization: Bearer <token>`. */
  metricsToken?: string;
  /** Spans for requests and GraphQL executions when given. */
  tracer?: Tracer;
}

/** What one HTTP request collects on its way, for its access line, metrics and span. */
interface RequestState {
  start: number;
  requestId: string;
  path: string;
  operationName: string | undefined;
  operationType: OperationType;
  /** The operation name sent beside the document, when it is a GraphQL name. */
  requestedName: string | undefined;
  /** GraphQL operations in the request: more than one is a batch. */
  operations: number;
  errorCodes: string[] | undefined;
  span: Span | undefined;
}

/** `x-request-id` values taken from a client or proxy: printable ASCII without spaces. */
const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/** A GraphQL name, as an operation name given beside the document must be to be shown. */
const OPERATION_NAME = /^[_A-Za-z][_0-9A-Za-z]{0,99}$/;

export const METRICS_PATH = '/metrics';

const headerGetter: TextMapGetter<Headers> = {
  get: (headers, key) => headers.get(key) ?? undefined,
  keys: (headers) => [...headers.keys()],
};

/** The path of a request URL, without parsing the whole URL. */
function pathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  if (start < 0) return '/';
  const query = url.indexOf('?', start);
  return query < 0 ? url.slice(start) : url.slice(start, query);
}

function outcomeOf(status: number, errorCodes: string[] | undefined): RequestOutcome {
  if (status >= 500) return 'failed';
  if (status >= 400) return 'rejected';
  return errorCodes ? 'error' : 'success';
}

type ResultLike = { errors?: readonly unknown[] };

/** Adds `requestId` to the extensions of each error of `result`; returns their codes. */
function tagErrors(result: ResultLike, requestId: string, codes: string[]): void {
  if (!result.errors?.length) return;
  (result as { errors: unknown[] }).errors = result.errors.map((error) => {
    const extensions = (error as { extensions?: Record<string, unknown> }).extensions ?? {};
    codes.push(typeof extensions.code === 'string' ? extensions.code : 'UNKNOWN');
    if (error instanceof GraphQLError) {
      return new GraphQLError(error.message, {
        nodes: error.nodes,
        source: error.source,
        positions: error.positions,
        path: error.path,
        originalError: error.originalError,
        extensions: { ...extensions, requestId },
      });
    }
    return { ...(error as object), extensions: { ...extensions, requestId } };
  });
}

/** Whether `header` is `Bearer <token>`, compared in constant time. */
function bearerMatches(header: string | null, token: string): boolean {
  const given = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1] ?? '';
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(token));
}

/**
 * Request ids, access logs, request metrics, `/metrics`, and spans, for every HTTP request:
 *
 * - the request id is the `x-request-id` header when a client or proxy sent a usable one
 *   (printable ASCII, at most 200 characters), a new UUID otherwise; it is returned in the
 *   `x-request-id` response header and in `extensions.requestId` of every GraphQL error;
 * - one access line per request, when it is answered: `info` for GraphQL requests (`error` for
 *   5xx), `debug` for probes, `/metrics`, GraphiQL and other paths;
 * - GraphQL requests are timed into `tripline_graphql_request_duration_seconds` by operation
 *   name, type and outcome;
 * - `/metrics` answers the Prometheus text format, behind the bearer token when one is set;
 * - with a tracer, a server span per request (continuing the caller's W3C `traceparent`), and a
 *   span per GraphQL execution and subscription inside it.
 *
 * Subscriptions over HTTP count as subscribers while open (graphql-ws ones are counted where
 * they join their shared execution).
 */
export function useObservability(options: ObservabilityOptions): Plugin {
  const { logger, metrics, metricsToken, tracer, graphqlEndpoint } = options;
  const states = new WeakMap<Request, RequestState>();

  const begin = (request: Request): RequestState => {
    const given = request.headers.get('x-request-id');
    const state: RequestState = {
      start: performance.now(),
      requestId: given !== null && REQUEST_ID.test(given) ? given : randomUUID(),
      path: pathOf(request.url),
      operationName: undefined,
      requestedName: undefined,
      operationType: 'unknown',
      operations: 0,
      errorCodes: undefined,
      span: undefined,
    };
    states.set(request, state);
    return state;
  };

  /** Names the active (execution) span after the operation it runs. */
  const nameSpan = (
    document: Parameters<typeof getOperationAST>[0],
    operationName: string | null | undefined,
  ): void => {
    const span = trace.getActiveSpan();
    if (!span) return;
    const operation = getOperationAST(document, operationName);
    const name = operation?.name?.value;
    const type = operation?.operation ?? 'unknown';
    span.updateName(name ? `${type} ${name}` : type);
    span.setAttributes({
      'graphql.operation.type': type,
      ...(name ? { 'graphql.operation.name': name } : {}),
    });
  };

  const instrumentation: Plugin['instrumentation'] = {
    request({ request }, wrapped) {
      const state = begin(request);
      if (!tracer) return wrapped();
      const parent = propagation.extract(ROOT_CONTEXT, request.headers, headerGetter);
      state.span = tracer.startSpan(
        `${request.method} ${state.path}`,
        {
          kind: SpanKind.SERVER,
          attributes: {
            'http.request.method': request.method,
            'url.path': state.path,
            'tripline.request_id': state.requestId,
          },
        },
        parent,
      );
      return context.with(trace.setSpan(parent, state.span), wrapped);
    },
  };
  if (tracer) {
    const operationSpan = (
      _payload: unknown,
      wrapped: () => Promise<void> | void,
    ): Promise<void> | void => {
      const span = tracer.startSpan('graphql', { kind: SpanKind.INTERNAL });
      const done = (error?: unknown) => {
        if (error !== undefined) {
          span.recordException(error instanceof Error ? error : String(error));
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        span.end();
      };
      try {
        const result = context.with(trace.setSpan(context.active(), span), wrapped);
        if (result instanceof Promise) {
          return result.then(
            () => done(),
            (error: unknown) => {
              done(error);
              throw error;
            },
          );
        }
        done();
        return result;
      } catch (error) {
        done(error);
        throw error;
      }
    };
    instrumentation.execute = operationSpan;
    instrumentation.subscribe = operationSpan;
  }

  return {
    instrumentation,
    onParams({ request, params }) {
      const state = states.get(request);
      if (!state) return;
      state.operations += 1;
      if (state.operations > 1) {
        state.operationType = 'batch';
        state.operationName = undefined;
      } else if (params.operationName && OPERATION_NAME.test(params.operationName)) {
        // Until the document is parsed (it may not be), the name the client gave.
        state.operationName = params.operationName;
        state.requestedName = params.operationName;
      }
    },
    onRequest({ request, url, endResponse, fetchAPI }) {
      if (!metrics || url.pathname !== METRICS_PATH) return;
      if (
        metricsToken !== undefined &&
        !bearerMatches(request.headers.get('authorization'), metricsToken)
      ) {
        endResponse(
          new fetchAPI.Response(
            'Reading metrics takes Authorization: Bearer <TRIPLINE_METRICS_TOKEN>.\n',
            {
              status: 401,
              headers: { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' },
            },
          ),
        );
        return;
      }
      return metrics.render().then((text) => {
        endResponse(
          new fetchAPI.Response(text, { headers: { 'content-type': metrics.contentType } }),
        );
      });
    },
    onParse({ context }) {
      // Parsing comes before authentication, so even a refused request gets its operation.
      const request = (context as { request?: Request }).request;
      const state = request && states.get(request);
      if (!state || state.operationType === 'batch') return;
      return ({ result }) => {
        if (result === null || result instanceof Error) return;
        const operation = getOperationAST(result as DocumentNode, state.requestedName ?? null);
        state.operationType = operation?.operation ?? 'unknown';
        state.operationName = operation?.name?.value;
      };
    },
    ...(tracer
      ? {
          onExecute({ args }) {
            nameSpan(args.document, args.operationName);
          },
        }
      : {}),
    onSubscribe({ args }) {
      if (tracer) nameSpan(args.document, args.operationName);
      if (!metrics) return;
      // graphql-ws subscribers share executions (src/subscriptions/ws.ts counts them there).
      if (!(args.contextValue as { request?: Request }).request) return;
      const transport = 'http';
      return {
        onSubscribeResult({ result }) {
          if (!(Symbol.asyncIterator in result)) return;
          metrics.subscriberJoined(transport);
          return { onEnd: () => metrics.subscriberLeft(transport) };
        },
      };
    },
    onResultProcess({ request, result }) {
      const state = states.get(request);
      if (!state || Symbol.asyncIterator in result) return;
      const codes: string[] = [];
      for (const one of Array.isArray(result) ? result : [result]) {
        tagErrors(one as ResultLike, state.requestId, codes);
      }
      if (codes.length > 0) state.errorCodes = codes;
    },
    onResponse({ request, response }) {
      const state = states.get(request);
      if (!state) return;
      response.headers.set('x-request-id', state.requestId);
      const status = response.status;
      const seconds = (performance.now() - state.start) / 1000;
      const graphql =
        state.path === graphqlEndpoint &&
        !response.headers.get('content-type')?.startsWith('text/html');
      if (state.span) {
        state.span.setAttribute('http.response.status_code', status);
        if (status >= 500) state.span.setStatus({ code: SpanStatusCode.ERROR });
        state.span.end();
      }
      if (graphql) {
        metrics?.observeRequest(
          state.operationName,
          state.operationType,
          outcomeOf(status, state.errorCodes),
          seconds,
        );
      }
      const level = !graphql ? 'debug' : status >= 500 ? 'error' : 'info';
      if (!logger.isLevelEnabled(level)) return;
      logger[level](
        {
          requestId: state.requestId,
          method: request.method,
          path: state.path,
          ...(graphql
            ? {
                operationName: state.operationName ?? null,
                operationType: state.operationType,
                ...(state.errorCodes ? { errorCodes: state.errorCodes } : {}),
              }
            : {}),
          status,
          durationMs: Math.round(seconds * 1e6) / 1e3,
        },
        'request',
      );
    },
  };
}
