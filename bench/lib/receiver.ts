import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/** A webhook request as the receiver saw it, with its arrival time (performance.now()). */
export interface Arrival {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  at: number;
}

/** Counts arrivals on `/ok` from the moment it was made. */
export interface ArrivalCounter {
  count: number;
  /** performance.now() of the first and the latest arrival. */
  first: number;
  last: number;
  /** Resolves once `count` arrivals were counted; rejects after `timeoutMs`. */
  waitFor(count: number, timeoutMs: number): Promise<void>;
  /** Arrivals per second between the first and the last one. */
  rate(): number;
  stop(): void;
}

export interface Receiver {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Starts counting `/ok` arrivals. */
  count(): ArrivalCounter;
  /** Calls `inspect` with every `/ok` request and its raw body until the returned function is called. */
  inspect(inspect: (arrival: Arrival) => void): () => void;
  close(): Promise<void>;
}

/**
 * The local webhook receiver the benched actions point at, in the bench process on the load core.
 * `/ok` answers 200 at once; `/hang` reads the request and never answers, so the server keeps it
 * in flight (the sockets are destroyed on close). It stores nothing and parses nothing unless
 * asked to, so it stays far faster than what it measures.
 */
export async function startReceiver(): Promise<Receiver> {
  const counters = new Set<ArrivalCounter & { arrive(at: number): void }>();
  const inspectors = new Set<(arrival: Arrival) => void>();
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const hang = req.url === '/hang';
    const chunks: Buffer[] = [];
    if (inspectors.size > 0 && !hang) req.on('data', (chunk: Buffer) => chunks.push(chunk));
    else req.resume();
    req.on('end', () => {
      if (hang) return;
      const at = performance.now();
      for (const counter of counters) counter.arrive(at);
      if (inspectors.size > 0) {
        const arrival = {
          path: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks),
          at,
        };
        for (const inspect of inspectors) inspect(arrival);
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    count() {
      const waiters = new Set<{ count: number; resolve: () => void }>();
      const counter = {
        count: 0,
        first: 0,
        last: 0,
        arrive(at: number) {
          if (counter.count === 0) counter.first = at;
          counter.count += 1;
          counter.last = at;
          for (const waiter of waiters) {
            if (counter.count < waiter.count) continue;
            waiters.delete(waiter);
            waiter.resolve();
          }
        },
        waitFor(count: number, timeoutMs: number) {
          if (counter.count >= count) return Promise.resolve();
          return new Promise<void>((resolve, reject) => {
            const waiter = {
              count,
              resolve: () => {
                clearTimeout(timer);
                resolve();
              },
            };
            const timer = setTimeout(() => {
              waiters.delete(waiter);
              reject(
                new Error(`receiver: ${counter.count} of ${count} arrivals in ${timeoutMs} ms`),
              );
            }, timeoutMs);
            waiters.add(waiter);
          });
        },
        rate: () =>
          counter.count < 2 ? 0 : ((counter.count - 1) * 1000) / (counter.last - counter.first),
        stop: () => counters.delete(counter),
      };
      counters.add(counter);
      return counter;
    },
    inspect(inspect) {
      inspectors.add(inspect);
      return () => inspectors.delete(inspect);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
