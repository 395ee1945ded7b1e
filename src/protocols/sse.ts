import { randomUUID } from 'node:crypto';
import { type ExecutionArgs, GraphQLError, getOperationAST } from 'graphql';
import { TOKEN_HEADER_KEY, TOKEN_QUERY_KEY } from 'graphql-sse';
import { createHandler } from 'graphql-sse/lib/use/fetch';
import type { Plugin, YogaServerInstance } from 'graphql-yoga';
import { type AppDeps, type Context, createContext } from '../context.js';
import { withBoundedBody } from '../limits/request-limits.js';

export interface SingleConnectionSSEOptions {
  /**
   * How long a reserved stream waits for its event stream to be opened before it is dropped,
   * with any operation already sent to it.
   */
  reservationTimeoutMs?: number;
}

/** graphql-sse's answer to a request it refuses: a body and its status. */
type Refusal = readonly [
  body: string,
  init: { status: number; statusText: string; headers: Record<string, string> },
];

function refusal(status: number, statusText: string, error: GraphQLError | string): Refusal {
  const body =
    typeof error === 'string'
      ? { errors: [{ message: error }] }
      : { errors: [{ message: error.message, extensions: { code: error.extensions.code } }] };
  return [
    JSON.stringify(body),
    { status, statusText, headers: { 'content-type': 'application/json; charset=utf-8' } },
  ];
}

/** The status an error thrown with yoga's `extensions.http` asks for, 400 when it names none. */
function statusOf(error: GraphQLError): number {
  const http = error.extensions.http as { status?: number } | undefined;
  return http?.status ?? 400;
}

/**
 * A result graphql-sse forwards unchanged: it takes a plain result only when it has `data`, so
 * one carrying only errors (a syntax error, a refused limit) goes as a stream of one.
 */
async function* once<T>(result: T): AsyncGenerator<T> {
  yield result;
}

/**
 * The single-connection mode of the GraphQL over SSE protocol (graphql-sse), on the GraphQL
 * endpoint itself: `PUT` reserves a stream and answers its token, `GET` with the token (header
 * `x-graphql-event-stream-token` or query `token`) and `Accept: text/event-stream` opens it,
 * `POST` with the token and an `extensions.operationId` runs an operation onto it (202), and
 * `DELETE ?operationId=` stops one. Only requests in that mode (PUT, DELETE, or a token) are
 * taken here; yoga serves every other request, event streams of the distinct-connections mode
 * included.
 *
 * Every request is authenticated as on other transports, by the API key in `Authorization`,
 * and a token serves only the key that reserved it; operations run through yoga's envelope, so
 * limits, rate limits and error masking are the same as over HTTP. A reservation whose stream
 * is not opened within `reservationTimeoutMs` is dropped, so reserved streams cannot pile up.
 */
export function useSingleConnectionSSE(
  deps: AppDeps,
  { reservationTimeoutMs = 30_000 }: SingleConnectionSSEOptions = {},
): Plugin<Record<string, unknown>, Context> {
  type Yoga = YogaServerInstance<Record<string, unknown>, Context>;
  let yoga: Yoga;
  let handler: (request: Request) => Promise<Response>;
  /** Reserved streams not yet opened, with the timer that drops them. */
  const unopened = new Map<string, NodeJS.Timeout>();
  /** Requests the plugin makes itself, to drop a reservation. */
  const internal = new WeakSet<Request>();

  const tokenOf = (request: Request): string | null =>
    request.headers.get(TOKEN_HEADER_KEY) ?? new URL(request.url).searchParams.get(TOKEN_QUERY_KEY);

  // graphql-sse has no call to drop a stream; opening one on a request already aborted makes
  // it dispose of the stream and its operations.
  const drop = (token: string) => {
    unopened.delete(token);
    const request = new yoga.fetchAPI.Request(`http://localhost${yoga.graphqlEndpoint}`, {
      headers: { accept: 'text/event-stream', [TOKEN_HEADER_KEY]: token },
      signal: AbortSignal.abort(),
    });
    internal.add(request);
    void handler(request).catch((error: unknown) =>
      deps.logger.error({ err: error }, 'could not drop an unopened SSE reservation'),
    );
  };

  const authenticate = async (request: Request): Promise<Refusal | string | undefined> => {
    if (internal.has(request)) return tokenOf(request) ?? undefined;
    let viewer: Context['viewer'];
    try {
      ({ viewer } = await createContext(deps, request.headers.get('authorization')));
    } catch (error) {
      if (error instanceof GraphQLError) return refusal(401, 'Unauthorized', error);
      throw error;
    }
    // The key's id is part of the token, so the token serves that key only.
    const owner = `.${viewer.apiKeyId}`;
    if (request.method === 'PUT') {
      const token = `${randomUUID()}${owner}`;
      unopened.set(token, setTimeout(() => drop(token), reservationTimeoutMs).unref());
      return token;
    }
    const token = tokenOf(request);
    if (token === null) return undefined;
    if (!token.endsWith(owner)) return refusal(404, 'Not Found', 'Stream not found');
    if (request.method === 'GET' && unopened.has(token)) {
      clearTimeout(unopened.get(token));
      unopened.delete(token);
    }
    return token;
  };

  return {
    onYogaInit({ yoga: instance }) {
      yoga = instance as unknown as Yoga;
      handler = createHandler(
        {
          authenticate: (req) => authenticate(req.raw),
          onSubscribe: async (req, params) => {
            const enveloped = yoga.getEnveloped({ request: req.raw, params });
            try {
              const document = enveloped.parse(params.query);
              const errors = enveloped.validate(enveloped.schema, document);
              if (errors.length > 0) return once({ errors });
              const args: ExecutionArgs = {
                schema: enveloped.schema,
                document,
                operationName: params.operationName ?? null,
                variableValues: params.variables ?? null,
                contextValue: await enveloped.contextFactory(),
              };
              const operation = getOperationAST(document, params.operationName);
              const result = await (operation?.operation === 'subscription'
                ? enveloped.subscribe(args)
                : enveloped.execute(args));
              return Symbol.asyncIterator in result ? result : once(result);
            } catch (error) {
              // A syntax error, a parse-time limit or a key revoked since the request was
              // authenticated is the client's: answer it on the stream.
              if (error instanceof GraphQLError) return once({ errors: [error] });
              throw error;
            }
          },
        },
        yoga.fetchAPI,
      );
    },
    // Synchronous for requests outside the mode (nearly all): see persisted-queries.ts.
    onRequest({ request, url, endResponse, fetchAPI }) {
      if (url.pathname !== yoga.graphqlEndpoint) return;
      const inMode =
        request.method === 'PUT' || request.method === 'DELETE' || tokenOf(request) !== null;
      if (!inMode) return;
      return (async () => {
        try {
          endResponse(
            await handler(await withBoundedBody(request, deps.config.maxRequestBytes, fetchAPI)),
          );
        } catch (error) {
          if (!(error instanceof GraphQLError)) throw error;
          endResponse(new fetchAPI.Response(...refusal(statusOf(error), '', error)));
        }
      })();
    },
  };
}
