import { createPubSub, type PubSub, type PubSubEventTarget } from 'graphql-yoga';
import type { TriggeredRun } from './storage/events.js';

export type { TriggeredRun };

/** The channels of the server: each carries a snapshot taken right after its change committed. */
export type Channels = {
  triggeredRunUpdated: [TriggeredRun];
};

export type TriplinePubSub = PubSub<Channels>;

/**
 * The pub/sub that carries run status to subscribers. In-memory by default; pass a shared
 * `eventTarget` (e.g. one backed by Redis) to fan out across several server processes.
 */
export function createTriplinePubSub(eventTarget?: PubSubEventTarget<Channels>): TriplinePubSub {
  return createPubSub<Channels>(eventTarget ? { eventTarget } : {});
}
