import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { OperationTypeNode } from 'graphql';
import { createClient } from 'graphql-ws';
import {
  EmitArtifactEventDocument,
  type EmitArtifactEventInput,
  EntityRunsDocument,
  type RunFieldsFragment,
  RunUpdatesDocument,
} from './gql/graphql.js';
import fragmentMatcher from './gql/possible-types.js';
import { queuedRuns, type TriplineClientOptions } from './options.js';

/**
 * Apollo Client for Tripline: queries and mutations over HTTP, subscriptions over graphql-ws,
 * the API key on both. `close` stops the client and closes its WebSocket.
 */
export function createApolloTripline({ url, apiKey, webSocketImpl }: TriplineClientOptions) {
  const authorization = `Bearer ${apiKey}`;
  const http = new HttpLink({ uri: url, headers: { authorization } });
  const ws = createClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl,
    // A browser cannot set headers on the WebSocket upgrade: the key travels in connection_init.
    connectionParams: { authorization },
  });
  const client = new ApolloClient({
    // Without possibleTypes the cache cannot know that NotFoundError is an Error, and drops
    // what `... on Error { message }` selected from every result.
    cache: new InMemoryCache({ possibleTypes: fragmentMatcher.possibleTypes }),
    link: ApolloLink.split(
      ({ operationType }) => operationType === OperationTypeNode.SUBSCRIPTION,
      new GraphQLWsLink(ws),
      http,
    ),
  });

  return {
    client,

    /** One page of the entity's runs, newest first; null when the entity is not yours. */
    async entityRuns(entity: string, after?: string) {
      const { data } = await client.query({
        query: EntityRunsDocument,
        variables: { entity, first: 20, after },
        fetchPolicy: 'network-only',
      });
      return data?.entity?.triggeredRuns ?? null;
    },

    /** Reports an event and answers the runs it queued; an expected failure is thrown. */
    async reportEvent(input: EmitArtifactEventInput): Promise<RunFieldsFragment[]> {
      const { data } = await client.mutate({
        mutation: EmitArtifactEventDocument,
        variables: { input },
      });
      return queuedRuns(data?.emitArtifactEvent);
    },

    /** Calls `onRun` with every status change of the entity's runs until the returned stop. */
    watchRuns(
      entity: string,
      onRun: (run: RunFieldsFragment) => void,
      onError: (error: unknown) => void,
    ): () => void {
      const subscription = client
        .subscribe({ query: RunUpdatesDocument, variables: { entity } })
        .subscribe({
          next: ({ data, error }) => {
            if (error) onError(error);
            else if (data) onRun(data.triggeredRunUpdated);
          },
          error: onError,
        });
      return () => subscription.unsubscribe();
    },

    async close(): Promise<void> {
      client.stop();
      await ws.dispose();
    },
  };
}
