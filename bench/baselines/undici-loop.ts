// Baseline for delivery throughput: what sending the same webhooks costs without Tripline.
// POSTs one body `count` times to `url` with `concurrency` requests in flight, each signed with
// Standard Webhooks headers by the server's own signing function, through an undici Agent set up
// like the delivery engine's (its SSRF connector aside). Started on the server core.
//
// Usage: node --import tsx bench/baselines/undici-loop.ts <url> <concurrency> <count>
// with the signing secret in BENCH_SIGNING_SECRET. It prints `ready`, reads the body (base64,
// one line) on stdin, sends, prints `done …` and exits; 1 if any answer was not 200.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Agent, request } from 'undici';
import { USER_AGENT } from '../../src/delivery/send.js';
import { webhookSignatureHeaders } from '../../src/delivery/signing.js';

const [url, concurrencyArg, countArg] = process.argv.slice(2);
const concurrency = Number(concurrencyArg);
const count = Number(countArg);
const secret = process.env.BENCH_SIGNING_SECRET ?? '';
if (!url || !(concurrency > 0) || !(count > 0) || !secret) {
  process.stderr.write('usage: undici-loop.ts <url> <concurrency> <count> (see the header)\n');
  process.exit(2);
}

const agent = new Agent({ keepAliveTimeout: 4_000 });
let started = 0;
let failures = 0;

process.stdout.write('ready\n');
const lines = createInterface({ input: process.stdin });
const [line] = await once(lines, 'line');
lines.close();
const body = Buffer.from(String(line), 'base64').toString('utf8');

async function worker(): Promise<void> {
  while (started < count) {
    started += 1;
    const headers = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      ...webhookSignatureHeaders(secret, randomUUID(), new Date(), body),
    };
    const response = await request(url!, { method: 'POST', headers, body, dispatcher: agent });
    await response.body.text();
    if (response.statusCode !== 200) failures += 1;
  }
}

const begin = performance.now();
await Promise.all(Array.from({ length: concurrency }, worker));
process.stdout.write(
  `done ${count} in ${(performance.now() - begin).toFixed(0)} ms, ${failures} failed\n`,
);
await agent.close();
process.exit(failures === 0 ? 0 : 1);
