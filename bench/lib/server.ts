import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { cpuProfilesIn, type NodeChild, spawnNodeScript } from './process.js';

/**
 * Environment every benched server gets on top of the caller's:
 * - rate limits off, or the load would measure the limiter's 429s;
 * - loopback allowed as a destination, since the receiver runs on 127.0.0.1;
 * - a long delivery timeout, so a receiver that holds requests open keeps them open for the
 *   whole measurement (see the emit figures);
 * - a short shutdown grace, so stopping between figures does not wait on such requests;
 * - warnings only in the log: the default `info` writes a JSON line per delivery attempt.
 */
export const BENCH_SERVER_ENV: Readonly<Record<string, string>> = {
  PORT: '0',
  HOST: '127.0.0.1',
  LOG_LEVEL: 'warn',
  TRIPLINE_RATE_LIMIT_EVENTS_PER_MINUTE: '0',
  TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '0',
  TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1',
  TRIPLINE_DELIVERY_TIMEOUT_MS: '600000',
  TRIPLINE_DELIVERY_LEASE_MS: '900000',
  TRIPLINE_SHUTDOWN_GRACE_MS: '200',
};

export interface TriplineServer {
  /** `http://127.0.0.1:<port>/graphql` */
  url: string;
  /** `ws://127.0.0.1:<port>/graphql` */
  wsUrl: string;
  /** The bootstrap admin key, read from `<data dir>/admin-api-key` as an operator would. */
  adminKey: string;
  pid: number;
  process: NodeChild;
  /** Stops the server through its SIGTERM path; returns the CPU profiles it wrote, if profiling. */
  stop(): Promise<string[]>;
  /**
   * Runs a full garbage collection in the server through the inspector, so memory figures count
   * what is retained, not garbage not yet collected. Needs `inspect` at start.
   */
  collectGarbage(): Promise<void>;
  /** Bytes of the V8 heap in use, through the inspector. Needs `inspect` at start. */
  heapUsed(): Promise<number>;
}

export interface StartOptions {
  dataDir: string;
  env?: Record<string, string>;
  /** Write a V8 CPU profile of the server into this directory when it stops. */
  profileDir?: string;
  /** Open the inspector on a free loopback port, for {@link TriplineServer.collectGarbage}. */
  inspect?: boolean;
  /** The cores it runs on when the bench is pinned (`taskset -c` list); the server core unless given. */
  cores?: string;
}

/** Starts `src/main.ts` the way `npm start` does (`node --import tsx src/main.ts`), pinned. */
export async function startTripline(options: StartOptions): Promise<TriplineServer> {
  const nodeFlags: string[] = [];
  if (options.profileDir) {
    mkdirSync(options.profileDir, { recursive: true });
    nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${options.profileDir}`);
  }
  if (options.inspect) nodeFlags.push('--inspect=127.0.0.1:0');
  const child = spawnNodeScript('src/main.ts', {
    nodeFlags,
    ...(options.cores ? { cores: options.cores } : {}),
    env: { ...BENCH_SERVER_ENV, TRIPLINE_DATA_DIR: options.dataDir, ...options.env },
  });
  try {
    const [, url] = await child.waitFor(/running: (http:\/\/\S+\/graphql)/);
    const adminKey = readFileSync(join(options.dataDir, 'admin-api-key'), 'utf8').trim();
    const inspector = options.inspect
      ? (await child.waitFor(/Debugger listening on (ws:\/\/\S+)/))[1]
      : undefined;
    return {
      url: url!,
      wsUrl: url!.replace(/^http/, 'ws'),
      adminKey,
      pid: child.pid,
      process: child,
      async stop() {
        await child.stop();
        return options.profileDir ? cpuProfilesIn(options.profileDir) : [];
      },
      async collectGarbage() {
        if (!inspector) throw new Error('start the server with `inspect` to collect garbage');
        await inspectorCall(inspector, 'HeapProfiler.collectGarbage');
      },
      async heapUsed() {
        if (!inspector) throw new Error('start the server with `inspect` to read its heap');
        const usage = (await inspectorCall(inspector, 'Runtime.getHeapUsage')) as {
          usedSize: number;
        };
        return usage.usedSize;
      },
    };
  } catch (error) {
    await child.stop(0);
    throw error;
  }
}

/** Sends one Chrome DevTools Protocol command to the inspector at `url`; resolves with its result. */
function inspectorCall(url: string, method: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.once('error', reject);
    socket.once('open', () => socket.send(JSON.stringify({ id: 1, method })));
    socket.on('message', (data: Buffer) => {
      const reply = JSON.parse(data.toString('utf8')) as {
        id?: number;
        error?: unknown;
        result?: unknown;
      };
      if (reply.id !== 1) return;
      socket.close();
      if (reply.error) reject(new Error(`${method}: ${JSON.stringify(reply.error)}`));
      else resolve(reply.result);
    });
  });
}
