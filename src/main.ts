import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { createApp } from './app.js';
import { bootstrap, loadMasterKey } from './bootstrap.js';
import { systemClock } from './clock.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import { openDatabase } from './db/client.js';
import { createLogger } from './logger.js';
import { createSecretBox } from './modules/secrets/box.js';
import { createTriplinePubSub } from './pubsub.js';

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
}

function main(): void {
  const config = readConfig();
  const logger = createLogger(config.logLevel);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const storage = openDatabase(config.databaseFile);
  const master = loadMasterKey(config);
  if (master.generatedFile) {
    logger.warn(
      { file: master.generatedFile },
      'generated a new master key for secrets; back it up',
    );
  }
  const deps = {
    db: storage.db,
    secretBox: createSecretBox(master.key),
    clock: systemClock,
    logger,
    config,
    pubsub: createTriplinePubSub(),
  };
  const first = bootstrap(storage.db, config);
  const app = createApp(deps);
  const server = createServer(app.handle);
  app.attach(server);

  server.listen(config.port, config.host, () => {
    app.start();
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `http://${host}:${port}/graphql`;
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
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: no new deliveries; finishing those in flight');
    server.close();
    server.closeIdleConnections();
    await app.stop(config.shutdownGraceMs);
    server.closeAllConnections();
    storage.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main();
