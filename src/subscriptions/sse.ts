import type { ExecutionArgs, ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Context } from '../context.js';
import type { Subscriber, SubscriptionHub } from './hub.js';
import { type SubscriptionRequest, shareKey } from './key.js';

/**
 * Subscriptions over HTTP (server-sent events) share executions through the hub: a subscriber
 * joins the group of its document, variables and viewer access, and the first one's execution
 * serves them all. Each subscriber's results still pass through the plugins' result hooks (error
 * masking) and yoga's serialisation, so these groups carry raw results and are kept apart from
 * the WebSocket ones. graphql-ws subscriptions do not come here: src/subscriptions/ws.ts hands them
 * to the hub itself.
 */
export function useSharedSubscriptions(hub: SubscriptionHub): Plugin<Context> {
  return {
    onSubscribe({ args, subscribeFn, setSubscribeFn }) {
      const context = args.contextValue as Context & {
        request?: Request;
        params?: Partial<SubscriptionRequest>;
      };
      // Only HTTP requests carry `request`; a document given without its text cannot be keyed.
      const query = context.params?.query;
      if (!context.request || typeof query !== 'string') return;
      const key = `sse\n${shareKey({ ...context.params, query }, context)}`;
      setSubscribeFn((async (subscribeArgs: ExecutionArgs) => {
        const queue = resultQueue();
        const membership = hub.join(key, async () => subscribeFn(subscribeArgs), queue.subscriber);
        queue.onReturn(membership.leave);
        const refused = await membership.ready;
        return refused ?? queue.results;
      }) as typeof subscribeFn);
    },
  };
}

/** A subscriber that buffers results until its stream is read, and the stream that reads them. */
function resultQueue() {
  const buffered: ExecutionResult[] = [];
  let waiting: ((step: IteratorResult<ExecutionResult>) => void) | undefined;
  let failed: ((error: unknown) => void) | undefined;
  let ended: { error?: unknown } | undefined;
  let release = () => {};

  const subscriber: Subscriber = {
    next(_json, result) {
      if (waiting) {
        const resolve = waiting;
        waiting = undefined;
        failed = undefined;
        resolve({ value: result, done: false });
      } else {
        buffered.push(result);
      }
    },
    end(error) {
      ended = error === undefined ? {} : { error };
      if (!waiting) return;
      const [resolve, reject] = [waiting, failed];
      waiting = undefined;
      failed = undefined;
      if (error === undefined) resolve({ value: undefined, done: true });
      else reject?.(error);
    },
  };

  const results: AsyncIterableIterator<ExecutionResult> = {
    next() {
      const value = buffered.shift();
      if (value) return Promise.resolve({ value, done: false });
      if (ended) {
        return ended.error === undefined
          ? Promise.resolve({ value: undefined, done: true })
          : Promise.reject(ended.error);
      }
      return new Promise((resolve, reject) => {
        waiting = resolve;
        failed = reject;
      });
    },
    return() {
      release();
      ended ??= {};
      buffered.length = 0;
      waiting?.({ value: undefined, done: true });
      waiting = undefined;
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };

  return {
    subscriber,
    results,
    /** Calls `leave` when the reader stops reading. */
    onReturn(leave: () => void) {
      release = leave;
    },
  };
}
