import {
  Client,
  cacheExchange,
  fetchExchange,
  type SubscriptionForwarder,
  subscriptionExchange,
} from '@urql/core';
import { createClient as createSSEClient } from 'graphql-sse';
import { createClient as createWSClient } from 'graphql-ws';
import {
  EmitArtifactEventDocument,
  type EmitArtifactEventInput,
  EntityRunsDocument,
  type RunFieldsFragment,
  RunUpdatesDocument,
} from './gql/graphql.js';
import { queuedRuns, type TriplineClientOptions } from './options.js';

/** How subscriptions travel: graphql-ws over a WebSocket, or GraphQL over server-sent events. */
export type SubscriptionTransport = 'graphql-ws' | 'graphql-sse';

/**
 * Subscriptions over graphql-ws, the key in `connectionParams`; `dispose` closes the socket.
 */
function overWebSocket({ url, apiKey, webSocketImpl }: TriplineClientOptions) {
  const ws = createWSClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl,
    connectionParams: { authorization: `Bearer ${apiKey}` },
  });
  const forward: SubscriptionForwarder = (request) => ({
    subscribe: (sink) => ({
      unsubscribe: ws.subscribe({ ...request, query: request.query ?? '' }, sink),
    }),
  });
  return { forward, dispose: () => ws.dispose() };
}

/**
 * Subscriptions over server-sent events, the key in the `Authorization` header of every
 * request (`EventSource` cannot send one; graphql-sse's client uses fetch). One connection per
 * operation; `singleConnection: true` would carry them all on one stream.
 */
function overSSE({ url, apiKey }: TriplineClientOptions) {
  const sse = createSSEClient({ url, headers: { authorization: `Bearer ${apiKey}` } });
  const forward: SubscriptionForwarder = (request) => ({
    subscribe: (sink) => ({
      unsubscribe: sse.subscribe({ ...request, query: request.query ?? '' }, sink),
    }),
  });
  return { forward, dispose: () => sse.dispose() };
}

/**
 * urql for Tripline: queries and mutations over HTTP with the key in `fetchOptions`,
 * subscriptions over `transport`. urql's document cache needs no possibleTypes.
 */
export function createUrqlTripline(
  options: TriplineClientOptions,
  transport: SubscriptionTransport,
) {
  const subscriptions = transport === 'graphql-ws' ? overWebSocket(options) : overSSE(options);
  const client = new Client({
    url: options.url,
    fetchOptions: { headers: { authorization: `Bearer ${options.apiKey}` } },
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({ forwardSubscription: subscriptions.forward }),
    ],
  });

  return {
    client,

    /** One page of the entity's runs, newest first; null when the entity is not yours. */
    async entityRuns(entity: string, after?: string) {
      const { data, error } = await client
        .query(EntityRunsDocument, { entity, first: 20, after }, { requestPolicy: 'network-only' })
        .toPromise();
      if (error) throw error;
      return data?.entity?.triggeredRuns ?? null;
    },

    /** Reports an event and answers the runs it queued; an expected failure is thrown. */
    async reportEvent(input: EmitArtifactEventInput): Promise<RunFieldsFragment[]> {
      const { data, error } = await client
        .mutation(EmitArtifactEventDocument, { input })
        .toPromise();
      if (error) throw error;
      return queuedRuns(data?.emitArtifactEvent);
    },

    /** Calls `onRun` with every status change of the entity's runs until the returned stop. */
    watchRuns(
      entity: string,
      onRun: (run: RunFieldsFragment) => void,
      onError: (error: unknown) => void,
    ): () => void {
      const { unsubscribe } = client
        .subscription(RunUpdatesDocument, { entity })
        .subscribe(({ data, error }) => {
          if (error) onError(error);
          else if (data) onRun(data.triggeredRunUpdated);
        });
      return unsubscribe;
    },

    async close(): Promise<void> {
      await subscriptions.dispose();
    },
  };
}
