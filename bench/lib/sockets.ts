import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { sleep } from './stats.js';

/** A message one client received, with its size on the wire and its arrival time. */
export interface Received {
  bytes: number;
  at: number;
}

export interface Clients {
  /** Messages received by all clients since the last `reset()`. */
  readonly messages: number;
  readonly bytes: number;
  /** performance.now() of the latest message. */
  readonly lastAt: number;
  /** Clients that have received at least one message since they opened. */
  readonly live: number;
  reset(): void;
  /**
   * Resolves when `total` messages have arrived since the last reset, or when none arrived for
   * `stallMs`, or after `capMs`; returns whether all arrived.
   */
  waitForMessages(total: number, stallMs: number, capMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** What a graphql-ws client hands on: the `next` payload's data, parsed. */
export type OnData = (data: Record<string, unknown>, received: Received) => void;

/**
 * How a `next` message with data starts, as Tripline writes it (src/subscriptions/ws.ts) for the
 * bench's subscription id `1`: such a frame is counted without parsing when nothing wants its data.
 */
const NEXT_WITH_DATA = Buffer.from('{"id":"1","type":"next","payload":{"data":');

const OPEN_BATCH = 50;

async function openAll(
  count: number,
  open: (i: number) => Promise<WebSocket>,
): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  // In batches, so the server is not asked for a thousand handshakes in one tick.
  for (let i = 0; i < count; i += OPEN_BATCH) {
    const batch = Array.from({ length: Math.min(OPEN_BATCH, count - i) }, (_, j) => open(i + j));
    sockets.push(...(await Promise.all(batch)));
  }
  return sockets;
}

interface Counters {
  messages: number;
  bytes: number;
  lastAt: number;
  live: number;
}

function newCounters(): Counters {
  return { messages: 0, bytes: 0, lastAt: 0, live: 0 };
}

/** Counts one message; `first` says whether it is the first its client received. */
function countMessage(counters: Counters, bytes: number, at: number, first: boolean): void {
  counters.messages += 1;
  counters.bytes += bytes;
  counters.lastAt = at;
  if (first) counters.live += 1;
}

function clientSet(sockets: WebSocket[], counters: Counters): Clients {
  return {
    get messages() {
      return counters.messages;
    },
    get bytes() {
      return counters.bytes;
    },
    get lastAt() {
      return counters.lastAt;
    },
    get live() {
      return counters.live;
    },
    reset() {
      counters.messages = 0;
      counters.bytes = 0;
    },
    async waitForMessages(total, stallMs, capMs) {
      const begin = performance.now();
      let seen = counters.messages;
      let progressAt = begin;
      for (;;) {
        if (counters.messages >= total) return true;
        const now = performance.now();
        if (counters.messages !== seen) {
          seen = counters.messages;
          progressAt = now;
        }
        if (now - progressAt > stallMs || now - begin > capMs) return false;
        await sleep(20);
      }
    },
    async close() {
      await Promise.all(
        sockets.map(
          (socket) =>
            new Promise<void>((resolve) => {
              if (socket.readyState === WebSocket.CLOSED) return resolve();
              socket.once('close', () => resolve());
              socket.terminate();
            }),
        ),
      );
    },
  };
}

/**
 * Opens `count` graphql-ws (graphql-transport-ws protocol) connections authenticated with `key`,
 * each running `query` as a subscription, and calls `onData` for every `next` message. The
 * protocol is spoken directly over `ws` to keep a thousand clients cheap on the load core.
 * Without `onData`, a `next` message with data is counted from its first bytes, unparsed: where
 * every emit is hundreds of messages (figures/emit-subscribers.ts), parsing them all would make
 * the bench's core, not the server, set the pace. Anything else is parsed and checked as before.
 * Resolves once every connection is acknowledged and its subscription sent.
 */
export async function openSubscribers(options: {
  url: string;
  key: string;
  count: number;
  query: string;
  onData?: OnData;
}): Promise<Clients> {
  const counters = newCounters();
  const open = () =>
    new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(options.url, 'graphql-transport-ws');
      let seen = false;
      socket.once('error', reject);
      socket.once('open', () => {
        socket.send(
          JSON.stringify({
            type: 'connection_init',
            payload: { authorization: `Bearer ${options.key}` },
          }),
        );
      });
      socket.on('message', (data: Buffer) => {
        const at = performance.now();
        if (
          !options.onData &&
          data.length > NEXT_WITH_DATA.length &&
          data.subarray(0, NEXT_WITH_DATA.length).equals(NEXT_WITH_DATA)
        ) {
          countMessage(counters, data.length, at, !seen);
          seen = true;
          return;
        }
        const message = JSON.parse(data.toString('utf8')) as {
          type: string;
          payload?: { data?: Record<string, unknown>; errors?: unknown };
        };
        if (message.type === 'connection_ack') {
          socket.send(
            JSON.stringify({ id: '1', type: 'subscribe', payload: { query: options.query } }),
          );
          resolve(socket);
        } else if (message.type === 'next' && message.payload?.data) {
          countMessage(counters, data.length, at, !seen);
          seen = true;
          options.onData?.(message.payload.data, { bytes: data.length, at });
        } else if (message.type === 'error' || message.payload?.errors) {
          reject(new Error(`subscription refused: ${data.toString('utf8')}`));
        }
      });
      socket.once('close', (code) =>
        reject(new Error(`socket closed (${code}) before connection_ack`)),
      );
    });
  return clientSet(await openAll(options.count, open), counters);
}

/**
 * Opens `count` plain WebSocket clients to `url`; each frame is JSON with the sender's time in
 * `t` (performance.timeOrigin-based ms), from which `onFrame` gets the latency.
 */
export async function openRawClients(options: {
  url: string;
  count: number;
  onFrame: (latencyMs: number) => void;
}): Promise<Clients> {
  const counters = newCounters();
  const open = () =>
    new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(options.url);
      let seen = false;
      socket.once('error', reject);
      socket.once('open', () => resolve(socket));
      socket.on('message', (data: Buffer) => {
        const at = performance.now();
        countMessage(counters, data.length, at, !seen);
        seen = true;
        const { t } = JSON.parse(data.toString('utf8')) as { t: number };
        options.onFrame(performance.timeOrigin + at - t);
      });
    });
  return clientSet(await openAll(options.count, open), counters);
}

/**
 * Resolves once every one of `clients` has received a message, calling `probe` (something that
 * publishes one) until they have: a subscription counts from when the server has processed it,
 * which the client cannot see. Then waits for the traffic to stop and resets the counters.
 */
export async function whenAllLive(
  clients: Clients,
  count: number,
  probe: () => Promise<void>,
): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    await probe();
    const begin = performance.now();
    while (clients.live < count && performance.now() - begin < 3_000) await sleep(20);
    if (clients.live >= count) {
      await clients.waitForMessages(Number.POSITIVE_INFINITY, 500, 120_000);
      clients.reset();
      return;
    }
  }
  throw new Error(`only ${clients.live} of ${count} subscribers received anything`);
}
