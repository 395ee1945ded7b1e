// The pub/sub's direct listeners (TriplinePubSub.listen): what the delivery engine's wake uses
// instead of an async iterator per message.
import { describe, expect, it } from 'vitest';
import { createTriplinePubSub, type RunUpdate } from '../src/pubsub.js';

const update = (id: string): RunUpdate => ({
  id,
  entityId: 'e',
  eventId: 'ev',
  runEventId: null,
  trainingRunId: null,
  automationId: 'au',
  automationName: 'notify',
  actionId: 'ac',
  projectId: 'p',
  registryId: null,
  status: 'QUEUED',
  attemptCount: 0,
  result: null,
  nextAttemptAt: null,
  createdAt: 1,
  updatedAt: null,
  finishedAt: null,
});

describe('TriplinePubSub.listen', () => {
  it('hands each message over within its publication, and stops when asked', async () => {
    const pubsub = createTriplinePubSub();
    const seen: string[][] = [];
    const stop = pubsub.listen('runsUpdated', (runs) => seen.push(runs.map((run) => run.id)));
    const subscribed = pubsub.subscribe('runsUpdated')[Symbol.asyncIterator]();
    const next = subscribed.next();
    pubsub.publish('runsUpdated', [update('a'), update('b')]);
    // Already there when publish returns; a subscriber's iterator gets it later.
    expect(seen).toEqual([['a', 'b']]);
    expect((await next).value.map((run: RunUpdate) => run.id)).toEqual(['a', 'b']);
    stop();
    pubsub.publish('runsUpdated', [update('c')]);
    expect(seen).toEqual([['a', 'b']]);
    await subscribed.return?.();
  });
});
