import type { ExecutionResult } from 'graphql';
import type { Logger } from '../logger.js';

/** One subscriber of a shared subscription: a graphql-ws subscription or an event stream. */
export interface Subscriber {
  /** One result of the shared execution with its JSON text, serialised once for all subscribers. */
  next(json: string, result: ExecutionResult): void;
  /**
   * The shared stream ended: it completed, or it failed with `error` (already logged). Not called
   * after the subscriber left.
   */
  end(error?: unknown): void;
}

/**
 * Starts the execution a group shares: a stream of results, or one result (errors) when the
 * subscription is refused.
 */
export type StartSubscription = () => Promise<AsyncIterable<ExecutionResult> | ExecutionResult>;

/** A subscriber's place in a group. */
export interface Membership {
  /**
   * Resolves once the shared execution listens (from then on the subscriber misses nothing), or
   * with the result that refused the subscription; the subscriber is then no member.
   */
  ready: Promise<ExecutionResult | undefined>;
  /** Leaves the group; the last to leave stops the execution. Idempotent. */
  leave(): void;
}

/**
 * Shares the execution of subscriptions: subscribers that would get the same results — the same
 * document, variables and viewer access, as `key` says — form a group that executes and
 * serialises each update once and hands the text to every member.
 */
export interface SubscriptionHub {
  /** Subscribers whose execution is listening: every graphql-ws subscription and event stream. */
  readonly size: number;
  /** Distinct subscriptions executing. */
  readonly groups: number;
  /**
   * Adds `subscriber` to the group `key`, starting the group with `start` when there is none.
   * Subscribers that join while a group starts share its start.
   */
  join(key: string, start: StartSubscription, subscriber: Subscriber): Membership;
  /** Calls `listener` whenever `size` or `groups` changed; returns the function that stops it. */
  watch(listener: () => void): () => void;
  /**
   * Stops every execution. Subscribers are not told: a completed subscription would not be taken
   * up again by a client that reconnects, so their connections are closed instead, by the server.
   */
  close(): void;
}

interface Group {
  key: string;
  subscribers: Set<Subscriber>;
  ready: Promise<ExecutionResult | undefined>;
  live: boolean;
  stopped: boolean;
  iterator?: AsyncIterator<ExecutionResult>;
}

const isStream = (value: unknown): value is AsyncIterable<ExecutionResult> =>
  typeof (value as AsyncIterable<unknown>)?.[Symbol.asyncIterator] === 'function';

export function createSubscriptionHub(logger: Logger): SubscriptionHub {
  const groups = new Map<string, Group>();
  const watchers = new Set<() => void>();
  let size = 0;
  let live = 0;

  const changed = () => {
    for (const watcher of watchers) watcher();
  };

  /**
   * Removes the group from the hub, uncounts its subscribers and stops its execution (again, when
   * the execution started after the group was stopped).
   */
  const stop = (group: Group) => {
    if (!group.stopped) {
      group.stopped = true;
      if (groups.get(group.key) === group) groups.delete(group.key);
      if (group.live) {
        size -= group.subscribers.size;
        live -= 1;
        changed();
      }
    }
    const { iterator } = group;
    group.iterator = undefined;
    // `return` settles a pending `next`, so the pub/sub listener goes at once.
    iterator?.return?.().catch((error: unknown) => {
      logger.warn({ err: error }, 'a subscription did not stop cleanly');
    });
  };

  const deliver = (group: Group, result: ExecutionResult) => {
    const json = JSON.stringify(result);
    for (const subscriber of group.subscribers) {
      try {
        subscriber.next(json, result);
      } catch (error) {
        logger.error({ err: error }, 'a subscriber failed to take an update');
      }
    }
  };

  const end = (group: Group, error?: unknown) => {
    const subscribers = [...group.subscribers];
    stop(group);
    group.subscribers.clear();
    for (const subscriber of subscribers) subscriber.end(error);
  };

  /** Pulls results one at a time, so they reach subscribers in order. */
  const pump = async (group: Group, iterator: AsyncIterator<ExecutionResult>) => {
    try {
      for (;;) {
        const step = await iterator.next();
        if (step.done || group.stopped) break;
        deliver(group, step.value);
      }
      if (!group.stopped) end(group);
    } catch (error) {
      if (group.stopped) return;
      logger.error({ err: error }, 'a shared subscription failed');
      end(group, error);
    }
  };

  const begin = async (group: Group, start: StartSubscription) => {
    let started: AsyncIterable<ExecutionResult> | ExecutionResult;
    try {
      started = await start();
    } catch (error) {
      stop(group);
      group.subscribers.clear();
      throw error;
    }
    if (!isStream(started)) {
      stop(group);
      group.subscribers.clear();
      return started;
    }
    const iterator = started[Symbol.asyncIterator]();
    group.iterator = iterator;
    // Everyone left while it started, or the hub closed.
    if (group.stopped || group.subscribers.size === 0) {
      stop(group);
      return undefined;
    }
    group.live = true;
    live += 1;
    size += group.subscribers.size;
    // The first `next()` attaches the pub/sub listener before this function returns, so a
    // subscriber told it is ready misses nothing published afterwards.
    void pump(group, iterator);
    changed();
    return undefined;
  };

  return {
    get size() {
      return size;
    },
    get groups() {
      return live;
    },
    join(key, start, subscriber) {
      let group = groups.get(key);
      if (!group) {
        const created: Group = {
          key,
          subscribers: new Set(),
          ready: Promise.resolve(undefined),
          live: false,
          stopped: false,
        };
        groups.set(key, created);
        created.ready = begin(created, start);
        group = created;
      }
      const joined = group;
      joined.subscribers.add(subscriber);
      if (joined.live) {
        size += 1;
        changed();
      }
      let left = false;
      return {
        ready: joined.ready,
        leave() {
          if (left) return;
          left = true;
          if (!joined.subscribers.delete(subscriber) || joined.stopped) return;
          if (joined.live) {
            size -= 1;
            changed();
          }
          if (joined.subscribers.size === 0 && joined.live) stop(joined);
        },
      };
    },
    watch(listener) {
      watchers.add(listener);
      return () => watchers.delete(listener);
    },
    close() {
      for (const group of [...groups.values()]) stop(group);
    },
  };
}
