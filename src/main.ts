import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { createApp } from './app.js';
import { bootstrap, loadMasterKey } from './bootstrap.js';
import { systemClock } from './clock.js';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase } from './db/client.js';
import { createLogger } from './logger.js';
import { createSecretBox } from './modules/secrets/box.js';

function main(): void {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const storage = openDatabase(config.databaseFile);
  const master = loadMasterKey(config);
  if (master.generatedFile)
    logger.warn(
      { file: master.generatedFile },
      'generated a new master key for secrets; back it up',
    );
  const deps = {
    db: storage.db,
    secretBox: createSecretBox(master.key),
    clock: systemClock,
    logger,
    config,
  };
  const first = bootstrap(storage.db, config);
  const app = createApp(deps);
  const server = createServer(app.handle);

  server.listen(config.port, config.host, () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}/graphql`;
    logger.info({ url, dataDir: config.dataDir }, 'Tripline is listening');
    const lines = [`\nTripline is running: ${url} (GraphiQL in a browser)`];
    if (first) {
      lines.push(
        `First start: created the admin user and the "${first.entity}" entity.`,
        `Admin API key (shown once${first.keyFile ? `, saved to ${first.keyFile}` : ''}):`,
        `  ${first.apiKey}`,
        `Try: curl -s ${url} -H 'content-type: application/json' -H 'authorization: Bearer ${first.apiKey}' -d '{"query":"{ viewer { user { name } } }"}'`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n\n`);
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    app.beginShutdown();
    const force = setTimeout(() => {
      logger.warn('shutdown grace period over; closing connections');
      server.closeAllConnections();
    }, config.shutdownGraceMs);
    force.unref();
    server.close(() => {
      storage.close();
      logger.info('stopped');
      process.exit(0);
    });
    server.closeIdleConnections();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main();
