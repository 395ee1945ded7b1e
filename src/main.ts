import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createApp } from './app.js';
import { bootstrap, loadMasterKey } from './bootstrap.js';
import { createInProcessBus } from './bus/bus.js';
import { createRedisBus } from './bus/redis.js';
import { systemClock } from './clock.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import {
  type DataDirLock,
  DataDirLockedError,
  describeHolder,
  lockDataDir,
} from './data-dir-lock.js';
import { createLogger } from './logger.js';
import { createSecretBox } from './modules/secrets/box.js';
import { createDecryptedSecrets } from './modules/secrets/decrypted.js';
import { createAccessCache } from './modules/users/access-cache.js';
import { startTracing, traceLogFields } from './observability/tracing.js';
import { describeDatabase, openStorage } from './storage/open.js';

/** How often the WAL is copied into the database file, off the server's thread. */
const BACKGROUND_CHECKPOINT_INTERVAL_MS = 250;

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
}

/** `host:port`, with an IPv6 host in brackets. */
function formatAddress(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function listenFailure(error: NodeJS.ErrnoException, address: string): string {
  const start = `Tripline cannot listen on ${address}`;
  switch (error.code) {
    case 'EADDRINUSE':
      return `${start}: the address is already in use (another Tripline, or another program). Stop it, or set PORT (or HOST) to a free address; PORT=0 picks a free port.`;
    case 'EACCES':
      return `${start}: permission denied (ports below 1024 need privileges). Set PORT to 1024 or above.`;
    case 'EADDRNOTAVAIL':
      return `${start}: HOST is not an address of this machine. Set HOST to one of its addresses, such as 127.0.0.1, or 0.0.0.0 for all of them.`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${start}: HOST could not be resolved. Set HOST to an address of this machine, such as 127.0.0.1.`;
    default:
      return `${start}: ${error.message}. Check PORT and HOST.`;
  }
}

/**
 * Binds `server` to the configured address. When that fails (address in use, port not
 * allowed, unknown host), prints why and how to fix it, and exits 1.
 */
function listen(server: Server, config: Config): Promise<void> {
  return new Promise((resolve) => {
    const fail = (error: NodeJS.ErrnoException) => {
      process.stderr.write(`${listenFailure(error, formatAddress(config.host, config.port))}\n`);
      process.exit(1);
    };
    server.once('error', fail);
    server.listen(config.port, config.host, () => {
      server.off('error', fail);
      resolve();
    });
  });
}

/**
 * Takes the data directory for this server (see data-dir-lock.ts); when a live server or command
 * holds it, says which and exits 1.
 */
function lockOrExit(dataDir: string): DataDirLock {
  try {
    return lockDataDir(dataDir, 'server');
  } catch (error) {
    if (!(error instanceof DataDirLockedError)) throw error;
    process.stderr.write(`Tripline cannot start: ${error.message}\n`);
    process.exit(1);
  }
}

// The parent is read when the process starts, not when the watch begins: a parent that dies
// while the server starts must still be noticed.
const parentAtStart = process.ppid;

/**
 * Calls `onGone` once the parent process has exited. npm passes SIGTERM and SIGINT on to the
 * server, but a SIGKILLed npm passes on nothing, and the server would keep serving, orphaned.
 */

function watchParent(onGone: () => void): void {
  const parent = parentAtStart;
  if (process.ppid !== parent) {
    onGone();
    return;
  }
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, 500);
  timer.unref();
}

async function main(): Promise<void> {
  const config = readConfig();
  const logger = createLogger(
    config.logLevel,
    undefined,
    config.tracing.enabled ? { mixin: traceLogFields } : {},
  );
  const tracing = await startTracing(config.tracing, logger);
  // Bind before anything is created: a start that cannot serve must leave no data directory,
  // database or key behind. Nothing is answered before the handlers are attached below, since
  // the start runs synchronously from the bind until they are.
  const server = createServer();
  await listen(server, config);

  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const lock = lockOrExit(config.dataDir);
  process.on('exit', () => lock.release());
  if (lock.takenOverFrom) {
    logger.warn(
      { lockFile: lock.file },
      `took over the data directory from ${describeHolder(lock.takenOverFrom)}, which is no longer running`,
    );
  }
  const storage = await openStorage(config, {
    // SQLite: the WAL goes into the database file from a worker thread, not inside the server's
    // commits. PostgreSQL: pending migrations are applied under an advisory lock, so servers
    // starting together apply each one once.
    backgroundCheckpoints: {
      intervalMs: BACKGROUND_CHECKPOINT_INTERVAL_MS,
      onError: (message) => logger.warn({ err: message }, 'background WAL checkpoint failed'),
    },
  }).catch((error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(
      `Cannot open ${describeDatabase(config)}: ${message}${config.databaseUrl === undefined ? '' : '. Check TRIPLINE_DATABASE_URL, that the database exists (createdb) and that the user may connect and create tables in it.'}\n`,
    );
    process.exit(1);
  });
  const master = loadMasterKey(config);
  if (master.generatedFile) {
    logger.warn(
      { file: master.generatedFile },
      'generated a new master key for secrets; back it up',
    );
  }
  const secretBox = createSecretBox(master.key);
  // Connects in the background, retrying and logging until Redis answers; /readyz says 503 till then.
  const bus = config.redis
    ? createRedisBus({ config: config.redis, logger })
    : createInProcessBus();
  const deps = {
    storage,
    access: createAccessCache({ storage, clock: systemClock, logger }),
    secretBox,
    decrypted: createDecryptedSecrets(secretBox),
    clock: systemClock,
    logger,
    config,
    pubsub: bus.pubsub,
    bus,
    ...(tracing ? { tracer: tracing.tracer } : {}),
  };
  const app = createApp(deps);
  server.on('request', app.handle);
  app.attach(server);
  // Until the first start has created the admin, every request is refused as unauthenticated.
  const first = await bootstrap(deps, config);
  app.start();

  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${formatAddress(config.host, port)}/graphql`;
  logger.info(
    {
      url,
      dataDir: config.dataDir,
      database: describeDatabase(config),
      ...(config.redis ? { redisPrefix: config.redis.prefix } : {}),
    },
    'Tripline is listening',
  );
  const lines = [`\nTripline is running: ${url} (GraphiQL in a browser)`];
  if (first) {
    lines.push(
      `First start: created the admin user and the "${first.entity}" entity.`,
      `Admin API key (shown once${first.keyFile ? `, saved to ${first.keyFile}` : ''}):`,
      `  ${first.apiKey}`,
      `Try: curl -s ${url} -H 'content-type: application/json' -H 'authorization: Bearer ${first.apiKey}' -d '{"query":"{ viewer { user { name } } }"}'`,
    );
  }
  // Standard output carries JSON log lines only; this is for the person at the terminal.
  process.stderr.write(`${lines.join('\n')}\n\n`);

  let stopping = false;
  const stop = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(
      { reason },
      'stopping: /readyz answers 503, no new deliveries; finishing those in flight',
    );
    // The listener stays open while deliveries drain, so probes and clients get answers
    // (503 from /readyz) rather than refused connections.
    await app.stop(config.shutdownGraceMs);
    server.close();
    server.closeAllConnections();
    await bus.close();
    await storage.close();
    await tracing?.shutdown().catch((error: unknown) => {
      logger.warn({ err: error }, 'sending the last spans failed');
    });
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  // npm sets npm_lifecycle_event for the scripts it runs; `npm start` execs node, so the
  // parent is npm itself.
  if (process.env.npm_lifecycle_event) watchParent(() => void stop('parent process exited'));
}

void main();
