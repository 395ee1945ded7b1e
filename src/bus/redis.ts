import { createHash, randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import type { PubSubEventTarget } from 'graphql-yoga';
import { Redis, type RedisOptions } from 'ioredis';
import type { RedisConfig } from '../config.js';
import {
  type BucketDemand,
  createMemoryRateLimitStore,
  type RateLimitStore,
  refusal,
} from '../limits/rate-limit.js';
import type { Logger } from '../logger.js';
import type { AccessCache, AccessChange } from '../modules/users/access-cache.js';
import { type Channels, createTriplinePubSub } from '../pubsub.js';
import type { BusState, SharedBus } from './bus.js';

export interface RedisBusOptions {
  config: RedisConfig;
  logger: Logger;
  /**
   * Where messages are handed to this instance's listeners (its own at once, the others' as
   * they arrive from Redis); a new EventTarget by default. Tests pass one that checks messages
   * survive JSON.
   */
  local?: EventTarget;
  /** Names this instance in its messages, so it skips its own echo; random by default. */
  instanceId?: string;
}

/** Run updates waiting for a connection beyond which more are dropped (and logged). */
const MAX_PENDING_UPDATES = 10_000;

/** How long a mutation waits for Redis's rate-limit answer before it is decided in memory. */
const RATE_LIMIT_TIMEOUT_MS = 500;

/** Reconnection delays: 100 ms, doubling, at most 5 s, for as long as it takes. */
export function reconnectDelayMs(attempt: number): number {
  return Math.min(100 * 2 ** Math.max(0, attempt - 1), 5_000);
}

/**
 * Takes tokens from every bucket or from none, as `createMemoryRateLimitStore` does (same refill,
 * same debt for a demand larger than the bucket), in one atomic step shared by all instances.
 * KEYS: the buckets. ARGV[1]: now in ms; ARGV[2i], ARGV[2i+1]: cost and per-minute rate of bucket
 * i. Returns {0} when taken, or {i, level} naming the first bucket that lacks tokens and what it
 * holds, for `refusal` to compute the wait. A bucket expires once it would be full again: a full
 * bucket and an absent one are the same.
 */
const TAKE_TOKENS = `
local now = tonumber(ARGV[1])
local levels = {}
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[2 * i])
  local perMinute = tonumber(ARGV[2 * i + 1])
  local bucket = redis.call('HMGET', key, 'tokens', 'at')
  local level = perMinute
  if bucket[1] then
    local refilled = math.max(0, now - tonumber(bucket[2])) * perMinute / 60000
    level = math.min(perMinute, tonumber(bucket[1]) + refilled)
  end
  if math.min(cost, perMinute) - level > 0 then
    return {i, string.format('%.17g', level)}
  end
  levels[i] = level
end
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[2 * i])
  local perMinute = tonumber(ARGV[2 * i + 1])
  local tokens = levels[i] - cost
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'at', ARGV[1])
  redis.call('PEXPIRE', key, math.ceil((perMinute - tokens) * 60000 / perMinute) + 1000)
end
return {0}
`;
const TAKE_TOKENS_SHA = createHash('sha1').update(TAKE_TOKENS).digest('hex');

/** A message between instances: who sent it, so the sender skips its own. */
interface Envelope<T> {
  from: string;
  message: T;
}

/** The URL without its credentials, for logs. */
function describe(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname}`;
}

/**
 * The bus over Redis (see {@link SharedBus}): two connections per instance, one that publishes
 * and runs the rate-limit script, one that subscribes. Every key and channel starts with
 * `config.prefix`: `<prefix>runsUpdated` and `<prefix>access` (channels), `<prefix>ratelimit:*`
 * (buckets, expiring once full).
 *
 * Messages are handed to this instance's own listeners at once and published for the others,
 * which skip their own echo; so subscribers and the engine of an instance keep hearing its own
 * updates while Redis is away.
 *
 * Connection: made in the background and retried for ever with backoff
 * ({@link reconnectDelayMs}), each failure logged with the address (never the password). While
 * disconnected, `state()` says so (`/readyz` answers 503), run updates and access changes wait
 * in ioredis's queue and go out on reconnect (run updates beyond {@link MAX_PENDING_UPDATES} are
 * dropped: the database has them, subscribers see the next), rate limits are counted in memory,
 * and engines find queued runs by polling. On every (re)connect the subscription is renewed
 * first, then every shared access cache is read again, since invalidations published meanwhile
 * were missed.
 */
export function createRedisBus(options: RedisBusOptions): SharedBus {
  const { config } = options;
  const logger = options.logger.child({ component: 'redis' });
  const instanceId = options.instanceId ?? randomUUID();
  const target = describe(config.url);
  const runsChannel = `${config.prefix}runsUpdated`;
  const accessChannel = `${config.prefix}access`;
  const local = options.local ?? new EventTarget();
  if (!options.local) setMaxListeners(0, local);
  const caches = new Set<AccessCache>();
  const fallback = createMemoryRateLimitStore();
  let closed = false;
  let pendingUpdates = 0;
  let droppedUpdates = 0;
  let since = Date.now();
  let connected = false;
  /** Subscribed on the current connection, and the caches read again since. */
  let subscribed = false;

  const connect = (role: 'commands' | 'subscriber'): Redis => {
    const settings: RedisOptions = {
      connectionName: `${config.prefix}${role}:${instanceId}`.replace(/\s/g, '_'),
      // Commands wait for a connection rather than fail: see the function's comment.
      maxRetriesPerRequest: null,
      retryStrategy: reconnectDelayMs,
    };
    const client = new Redis(config.url, settings);
    let lastError: string | undefined;
    client.on('error', (error: Error) => {
      lastError = error.message;
    });
    client.on('reconnecting', (delay: number) => {
      // Both connections fail alike when Redis is away: one line per attempt is enough.
      if (closed || (role === 'subscriber' && commands.status !== 'ready')) return;
      logger.warn(
        { redis: target, connection: role, retryInMs: delay, err: lastError },
        `Redis at ${target} is unreachable${lastError ? ` (${lastError})` : ''}; retrying in ${delay} ms. Check TRIPLINE_REDIS_URL and that Redis is running.`,
      );
      updateState();
    });
    client.on('ready', () => {
      lastError = undefined;
      updateState();
    });
    client.on('close', updateState);
    return client;
  };

  const commands = connect('commands');
  const subscriber = connect('subscriber');

  function updateState(): void {
    const now = commands.status === 'ready' && subscriber.status === 'ready' && subscribed;
    if (now === connected) return;
    connected = now;
    since = Date.now();
    if (now) logger.info({ redis: target }, `connected to Redis at ${target}`);
  }

  const publish = (channel: string, message: unknown, essential: boolean): void => {
    if (closed) return;
    if (!essential) {
      if (pendingUpdates >= MAX_PENDING_UPDATES) {
        if (droppedUpdates++ % 1000 === 0) {
          logger.warn(
            { redis: target, dropped: droppedUpdates },
            'Redis is not keeping up (or away): run updates for other instances are being dropped; subscribers there see the next update of each run',
          );
        }
        return;
      }
      pendingUpdates += 1;
    }
    const text = JSON.stringify({ from: instanceId, message } satisfies Envelope<unknown>);
    commands
      .publish(channel, text)
      .catch((error: unknown) => {
        if (!closed) logger.warn({ err: error, channel }, 'publishing to Redis failed');
      })
      .finally(() => {
        if (!essential) pendingUpdates -= 1;
      });
  };

  // Receiving: the Redis event target keeps the channel subscriptions and parses the messages.
  // Publishing goes through `publish` above, which handles failures.
  const remote = createRedisEventTarget<CustomEvent>({
    publishClient: commands,
    subscribeClient: subscriber,
    serializer: {
      stringify: JSON.stringify,
      // Something else publishing on our channels must not break the connection's reader.
      parse: (text) => {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          logger.warn(
            { text: text.slice(0, 200) },
            'ignored a message from Redis that is not JSON',
          );
          return null;
        }
      },
    },
  });
  const fromOthers = <T>(handle: (message: T) => void) => {
    return (event: CustomEvent) => {
      const envelope = event.detail as Envelope<T> | null;
      if (!envelope || envelope.from === instanceId) return;
      try {
        handle(envelope.message);
      } catch (error) {
        logger.error(
          { err: error, channel: event.type },
          'a message from Redis could not be handled',
        );
      }
    };
  };
  const onRuns = fromOthers<Channels['runsUpdated'][0]>((runs) => {
    local.dispatchEvent(new CustomEvent('runsUpdated', { detail: runs }));
  });
  const onAccess = fromOthers<AccessChange>((change) => {
    for (const cache of caches) {
      cache.apply(change).catch((error: unknown) => {
        logger.error({ err: error, change }, 'applying an access change from Redis failed');
      });
    }
  });
  let listening = false;
  let connectedBefore = false;
  subscriber.on('close', () => {
    subscribed = false;
    updateState();
  });
  subscriber.on('ready', () => {
    void (async () => {
      try {
        // Subscribed again before the caches are read again: a change published from now on
        // arrives, one published before is in the database.
        await subscriber.subscribe(runsChannel, accessChannel);
        if (!listening) {
          listening = true;
          remote.addEventListener(runsChannel, onRuns);
          remote.addEventListener(accessChannel, onAccess);
        }
        // Also on the first connection: requests were answered while it was being made.
        await Promise.all([...caches].map((cache) => cache.revalidate()));
        if (connectedBefore) {
          logger.info(
            { redis: target },
            'subscribed to Redis again; read the access cache again (invalidations may have been missed while disconnected)',
          );
        }
        connectedBefore = true;
        subscribed = subscriber.status === 'ready';
        updateState();
      } catch (error) {
        if (!closed) logger.error({ err: error }, 'subscribing to Redis failed');
      }
    })();
  });

  const eventTarget: PubSubEventTarget<Channels> = {
    addEventListener: (type, listener) =>
      local.addEventListener(type, listener as EventListenerOrEventListenerObject | null),
    removeEventListener: (type, listener) =>
      local.removeEventListener(type, listener as EventListenerOrEventListenerObject | null),
    dispatchEvent(event) {
      local.dispatchEvent(event);
      publish(`${config.prefix}${event.type}`, event.detail, false);
      return true;
    },
  };

  const takeInRedis = async (demands: readonly BucketDemand[], now: number) => {
    const keys = demands.map((d) => `${config.prefix}ratelimit:${d.key}`);
    const args = [String(now), ...demands.flatMap((d) => [String(d.cost), String(d.perMinute)])];
    try {
      return await commands.evalsha(TAKE_TOKENS_SHA, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return commands.eval(TAKE_TOKENS, keys.length, ...keys, ...args);
    }
  };

  let lastRateLimitWarning = 0;
  const rateLimits: RateLimitStore = {
    async take(demands, now) {
      if (commands.status !== 'ready') return fallback.take(demands, now);
      let timer: NodeJS.Timeout | undefined;
      try {
        const answer = (await Promise.race([
          takeInRedis(demands, now),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`no answer within ${RATE_LIMIT_TIMEOUT_MS} ms`)),
              RATE_LIMIT_TIMEOUT_MS,
            );
          }),
        ])) as [number, string?];
        const index = Number(answer[0]);
        if (index === 0) return { allowed: true };
        const demand = demands[index - 1];
        const refused = demand && refusal(demand, Number(answer[1]));
        if (!refused) throw new Error(`unexpected rate-limit answer ${JSON.stringify(answer)}`);
        return refused;
      } catch (error) {
        const at = Date.now();
        if (at - lastRateLimitWarning >= 10_000) {
          lastRateLimitWarning = at;
          logger.warn(
            { err: error },
            'rate limits could not be counted in Redis; counted in this instance only (logged at most every 10 s)',
          );
        }
        return fallback.take(demands, now);
      } finally {
        clearTimeout(timer);
      }
    },
  };

  return {
    pubsub: createTriplinePubSub(eventTarget),
    rateLimits,
    shareAccess(access) {
      caches.add(access);
      const stop = access.onChange((change) => publish(accessChannel, change, true));
      return () => {
        stop();
        caches.delete(access);
      };
    },
    state: (): BusState => ({ kind: 'redis', connected, since }),
    async close() {
      if (closed) return;
      closed = true;
      remote.removeEventListener(runsChannel, onRuns);
      remote.removeEventListener(accessChannel, onAccess);
      // QUIT lets queued publishes go out first; without a connection there is nobody to tell.
      await Promise.all(
        [commands, subscriber].map((client) =>
          client.status === 'ready'
            ? client.quit().then(
                () => {},
                () => client.disconnect(),
              )
            : client.disconnect(),
        ),
      );
    },
  };
}
