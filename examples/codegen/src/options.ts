import type { EmitArtifactEventMutation, RunFieldsFragment } from './gql/graphql.js';

/** Where Tripline answers, and as whom. */
export interface TriplineClientOptions {
  /** The GraphQL endpoint, such as `http://127.0.0.1:4000/graphql`; WebSockets use its path too. */
  url: string;
  /** An API key, `tl_…`. */
  apiKey: string;
  /** A WebSocket class where the platform has none, such as `ws`'s on Node.js 20. */
  webSocketImpl?: unknown;
}

/**
 * The runs an `emitArtifactEvent` result queued, or its expected failure thrown as an Error
 * (a ValidationError's message prefixed with the input field it names). Both set-ups use it.
 */
export function queuedRuns(
  result: EmitArtifactEventMutation['emitArtifactEvent'] | undefined,
): RunFieldsFragment[] {
  if (!result) throw new Error('emitArtifactEvent answered nothing');
  switch (result.__typename) {
    case 'EmitArtifactEventPayload':
      return result.triggeredRuns;
    case 'ValidationError':
      throw new Error(`${result.field}: ${result.message}`);
    default:
      throw new Error(result.message);
  }
}
