// Baseline for subscriptions: a raw `ws` server that broadcasts frames of a given size to every
// connected client, the floor under what graphql-ws fan-out costs. Started on the server core.
// Prints `listening on <port>`; then reads commands on stdin, one per line:
//   broadcast <bytes> <frames per second> <frames>
// sends `<frames>` frames, each a JSON text of exactly `<bytes>` bytes carrying its send time
// (performance.timeOrigin + performance.now(), ms) in `t`, to every client, paced at the rate,
// and prints `sent <frames>` when done.
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('listening', () => {
  process.stdout.write(`listening on ${(wss.address() as AddressInfo).port}\n`);
});

/** A JSON text of exactly `bytes` bytes (at least the envelope's size) sent at `t`. */
function frame(bytes: number, t: number): string {
  const head = `{"t":${t.toFixed(3)},"pad":"`;
  return `${head}${'x'.repeat(Math.max(0, bytes - head.length - 2))}"}`;
}

async function broadcast(bytes: number, perSecond: number, frames: number): Promise<void> {
  const begin = performance.now();
  for (let i = 0; i < frames; i += 1) {
    const due = begin + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const data = frame(bytes, performance.timeOrigin + performance.now());
    for (const client of wss.clients) client.send(data);
  }
  process.stdout.write(`sent ${frames}\n`);
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, ...args] = line.trim().split(/\s+/);
  if (command === 'broadcast') {
    const [bytes, perSecond, frames] = args.map(Number);
    void broadcast(bytes!, perSecond!, frames!);
  }
});
process.on('SIGTERM', () => {
  for (const client of wss.clients) client.terminate();
  wss.close(() => process.exit(0));
});
