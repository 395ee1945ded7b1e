import { Worker } from 'node:worker_threads';

/** What one background checkpoint did, as SQLite's `wal_checkpoint` reports it. */
export interface CheckpointResult {
  /** Whether a writer or reader kept it from finishing (it then copied what it could). */
  busy: boolean;
  /** Pages in the WAL, and how many of them are now in the database file. */
  walPages: number;
  checkpointedPages: number;
}

export interface Checkpointer {
  /** Stops the worker; its connection is closed when this resolves. Idempotent. */
  stop(): Promise<void>;
}

export interface CheckpointerOptions {
  /** The database file (in WAL mode). */
  file: string;
  /** The driver module to `require` (the same as the main connection's). */
  driver: string;
  /** Between checkpoints. */
  intervalMs: number;
  /** Told of each checkpoint that copied pages, and of failures (for logs and tests). */
  onCheckpoint?: (result: CheckpointResult) => void;
  onError?: (message: string) => void;
}

// CommonJS, evaluated in the worker: no TypeScript loader is needed there.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 100');
const timer = setInterval(() => {
  try {
    const [result] = db.pragma('wal_checkpoint(PASSIVE)');
    if (result.log > 0) parentPort.postMessage({ result });
  } catch (error) {
    parentPort.postMessage({ error: String((error && error.message) || error) });
  }
}, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Copies the WAL into the database file from a worker thread with a connection of its own, so
 * that the server's thread never does it inside a commit. SQLite's automatic checkpoint runs in
 * the commit that crosses its threshold: with the history indexes a run writes, that was a third
 * of the server's time under a steady stream of events (see the README's Performance section).
 * PASSIVE checkpoints never wait for the server's connection and never block it; the server keeps
 * a high automatic threshold as a safety net should this worker fall behind or die.
 */
export function startCheckpointer(options: CheckpointerOptions): Checkpointer {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { file: options.file, driver: options.driver, intervalMs: options.intervalMs },
  });
  worker.unref();
  worker.on('message', (message: { result?: Record<string, number>; error?: string }) => {
    if (message.error !== undefined) options.onError?.(message.error);
    else if (message.result) {
      options.onCheckpoint?.({
        busy: message.result.busy === 1,
        walPages: message.result.log ?? 0,
        checkpointedPages: message.result.checkpointed ?? 0,
      });
    }
  });
  worker.on('error', (error) => options.onError?.(error.message));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        worker.postMessage('stop');
        const timer = setTimeout(() => void worker.terminate(), 2_000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}
