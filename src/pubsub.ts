import { setMaxListeners } from 'node:events';
import { createPubSub, type PubSub, type PubSubEventTarget } from 'graphql-yoga';
import type { RunStatus } from './storage/events.js';

/**
 * A run's state right after a change to it committed, as plain JSON: ids, strings, numbers, and
 * times as epoch milliseconds. What a run's subscribers see of it; the engine's lease is left out.
 */
export interface RunUpdate {
  id: string;
  entityId: string;
  /** Null for a run event's run. */
  eventId: string | null;
  /** The run event and training run of a run event's run; null for an artifact event's. */
  runEventId: string | null;
  trainingRunId: string | null;
  automationId: string | null;
  automationName: string;
  actionId: string | null;
  projectId: string | null;
  registryId: string | null;
  status: RunStatus;
  attemptCount: number;
  result: string | null;
  nextAttemptAt: number | null;
  createdAt: number;
  updatedAt: number | null;
  finishedAt: number | null;
}

/**
 * The channels of the server. Messages survive a JSON round trip unchanged (no `Date`s, no class
 * instances, no stored rows), so an event target that crosses processes can carry them.
 */
export type Channels = {
  /** Runs that changed in one commit, in the order they changed. */
  runsUpdated: [RunUpdate[]];
};

export interface TriplinePubSub extends PubSub<Channels> {
  /**
   * Calls `listener` with each message of `topic`, within its publication: for a consumer that
   * acts at once and needs no queue (the delivery engine's wake), where `subscribe`'s async
   * iterator would cost every message a buffer entry and a turn of the microtask queue. An
   * exception `listener` throws is the listener's to catch: it would escape the event target.
   * Returns a function that stops listening.
   */
  listen<K extends keyof Channels>(
    topic: K,
    listener: (...message: Channels[K]) => void,
  ): () => void;
}

/**
 * The pub/sub that carries run updates to subscribers and to the delivery engine. In-memory by
 * default; pass a shared `eventTarget` (e.g. one backed by Redis) to fan out across several
 * server processes.
 */
export function createTriplinePubSub(eventTarget?: PubSubEventTarget<Channels>): TriplinePubSub {
  const shared = eventTarget ?? inProcessTarget();
  return Object.assign(createPubSub<Channels>({ eventTarget: shared }), {
    listen<K extends keyof Channels>(topic: K, listener: (...message: Channels[K]) => void) {
      // createPubSub publishes a message of one argument as the event's `detail`.
      const handler = (event: Event) =>
        listener(...([(event as CustomEvent).detail] as Channels[K]));
      shared.addEventListener(topic, handler as never);
      return () => shared.removeEventListener(topic, handler as never);
    },
  });
}

/** An event target for one process's subscribers. */
function inProcessTarget(): PubSubEventTarget<Channels> {
  const inProcess = new EventTarget();
  // Every distinct subscription listens, and the delivery engine: no warning at 11 listeners.
  setMaxListeners(0, inProcess);
  return inProcess as PubSubEventTarget<Channels>;
}
