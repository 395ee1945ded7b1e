import { readFileSync } from 'node:fs';
import {
  createServer,
  type IncomingHttpHeaders,
  type RequestListener,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

const tlsFile = (name: string): string =>
  readFileSync(new URL(`./tls/${name}`, import.meta.url), 'utf8');

/**
 * The self-signed certificate (for 127.0.0.1 and localhost, valid until 2126) an https receiver
 * serves. Pass it as the delivery's trusted `ca` to reach that receiver.
 */
export const RECEIVER_CA: string = tlsFile('receiver-cert.pem');

/** One request as the receiver saw it. */
export interface ReceivedRequest {
  method: string;
  /** Path and query, e.g. `/hooks?x=1`. */
  path: string;
  /** Lower-case header names, as Node parses them. */
  headers: IncomingHttpHeaders;
  /** The raw body bytes, exactly as sent. */
  body: Buffer;
  /** The body as UTF-8 text. */
  text: string;
  /** The body parsed as JSON; throws if it is not JSON. */
  json<T = unknown>(): T;
}

/**
 * How to answer one request:
 * - `{ status, headers, body }`: a normal response (defaults: 200, empty body);
 * - `{ hang: true }`: never answer; the socket is closed by `close()`;
 * - `{ destroy: true }`: reset the connection without answering;
 * - `{ drip }`: send the status and headers at once, then the body one byte every `everyMs`
 *   milliseconds, `bytes` in all (a receiver slow enough to hold a request, never idle enough
 *   to trip a per-read timeout).
 */
export type ReceiverResponse =
  | { status?: number; headers?: Record<string, string>; body?: string | Buffer }
  | { hang: true }
  | { destroy: true }
  | { drip: { status?: number; bytes: number; everyMs: number } };

/** Decides the response to the request numbered `index` (0-based). May wait, e.g. on a deferred. */
export type Responder = (
  request: ReceivedRequest,
  index: number,
) => ReceiverResponse | Promise<ReceiverResponse>;

export interface Receiver {
  /** Base URL, `http://127.0.0.1:<port>` (`https://…` when started with `tls`). */
  url: string;
  port: number;
  /** Every request received so far, in arrival order. */
  requests: ReceivedRequest[];
  /** Answers the next requests with these, in order; after them, the default responder answers. */
  enqueue(...responses: ReceiverResponse[]): void;
  /** Replaces the default responder (initially: 200 with body `ok`). */
  respond(responder: Responder): void;
  /** Resolves once at least `count` requests have arrived. */
  waitForRequests(count: number): Promise<ReceivedRequest[]>;
  /** Destroys open sockets (hanging requests included) and stops listening. */
  close(): Promise<void>;
}

/**
 * Starts a local HTTP receiver on 127.0.0.1 at a free port; with `tls`, an https one serving the
 * certificate in {@link RECEIVER_CA}. Every request is recorded with its raw body before it is
 * answered. Always `close()` it (e.g. in `afterEach`).
 */
export async function startReceiver(
  responder?: Responder,
  options: { tls?: boolean } = {},
): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const queue: ReceiverResponse[] = [];
  const waiters: { count: number; resolve: (requests: ReceivedRequest[]) => void }[] = [];
  const sockets = new Set<Socket>();
  let fallback: Responder = responder ?? (() => ({ status: 200, body: 'ok' }));

  const answer = (res: ServerResponse, response: ReceiverResponse, socket: Socket): void => {
    if ('hang' in response) return;
    if ('destroy' in response) {
      socket.destroy();
      return;
    }
    if ('drip' in response) {
      const { status = 200, bytes, everyMs } = response.drip;
      res.writeHead(status, { 'content-length': String(bytes) });
      res.flushHeaders();
      let sent = 0;
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        sent += 1;
        if (sent < bytes) res.write('.');
        else {
          clearInterval(timer);
          res.end('.');
        }
      }, everyMs);
      res.on('close', () => clearInterval(timer));
      return;
    }
    res.writeHead(response.status ?? 200, response.headers ?? {});
    res.end(response.body ?? '');
  };

  const handle: RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      const received: ReceivedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body,
        text,
        json: <T>() => JSON.parse(text) as T,
      };
      const index = requests.push(received) - 1;
      for (const waiter of [...waiters]) {
        if (requests.length >= waiter.count) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(requests.slice());
        }
      }
      const queued = queue.shift();
      Promise.resolve(queued ?? fallback(received, index)).then(
        (response) => answer(res, response, req.socket),
        () => req.socket.destroy(),
      );
    });
  };
  const server = options.tls
    ? createHttpsServer({ key: tlsFile('receiver-key.pem'), cert: RECEIVER_CA }, handle)
    : createServer(handle);
  // For https, `secureConnection` would miss sockets still in the handshake; `connection` sees all.
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests,
    enqueue: (...responses) => {
      queue.push(...responses);
    },
    respond: (next) => {
      fallback = next;
    },
    waitForRequests: (count) =>
      requests.length >= count
        ? Promise.resolve(requests.slice())
        : new Promise((resolve) => waiters.push({ count, resolve })),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
