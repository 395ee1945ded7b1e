import { existsSync, readFileSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { systemClock } from '../clock.js';
import { type Config, ConfigError, loadConfig } from '../config.js';
import {
  type MasterKeyRotation,
  MasterKeyRotationError,
  rotateMasterKey,
} from '../modules/secrets/rotate.js';
import { openSqliteStorage } from '../storage/sqlite/storage.js';

// Re-encrypts every secret under a new master key. Run it with the server STOPPED and with the
// server's environment: a running server keeps the old key in memory, so secrets it creates or
// rotates afterwards would be sealed with a key that is no longer anywhere on disk.

const USAGE = `Usage: npm run rotate-master-key [-- --new-key-file PATH]

Stop the server first, then run with its environment (TRIPLINE_DATA_DIR, and
TRIPLINE_ENCRYPTION_KEY or TRIPLINE_ENCRYPTION_KEY_FILE). Every secret is re-encrypted
with a new master key in one transaction; nothing changes if any secret fails to open.

  --new-key-file PATH   use the key in PATH (64 hex characters or base64 of 32 bytes)
                        instead of generating one; TRIPLINE_NEW_ENCRYPTION_KEY does the same
  -h, --help            show this help

Key file: the new key replaces it, the old one is kept as <file>.old-<timestamp>.
TRIPLINE_ENCRYPTION_KEY: a generated key is printed once; set it before restarting.
`;

const out = (text: string) => writeSync(1, text);
const fail = (text: string, code: number): never => {
  process.stderr.write(`${text}\n`);
  process.exit(code);
};

function readOptions(): { config: Config; newKey?: { text: string; source: string } } {
  let values: { 'new-key-file'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: { 'new-key-file': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (error) {
    return fail(`${(error as Error).message}\n\n${USAGE}`, 2);
  }
  if (values.help) {
    out(USAGE);
    process.exit(0);
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return fail(error.message, 2);
  }
  const fromEnv = process.env.TRIPLINE_NEW_ENCRYPTION_KEY || undefined;
  const file = values['new-key-file'];
  if (fromEnv && file) {
    return fail('Give the new key once: either --new-key-file or TRIPLINE_NEW_ENCRYPTION_KEY.', 2);
  }
  if (file) {
    try {
      return { config, newKey: { text: readFileSync(file, 'utf8'), source: file } };
    } catch (error) {
      return fail(`Cannot read --new-key-file ${file}: ${(error as Error).message}`, 2);
    }
  }
  if (fromEnv) return { config, newKey: { text: fromEnv, source: 'TRIPLINE_NEW_ENCRYPTION_KEY' } };
  return { config };
}

function summary(result: MasterKeyRotation): string {
  if (result.mode === 'env') {
    return [
      `Re-encrypted ${result.reencrypted} secrets with the new master key; the old key no longer opens them.`,
      `New key: ${result.newKeySource}. Set TRIPLINE_ENCRYPTION_KEY to it before starting the server.`,
      'Old key: still the current value of TRIPLINE_ENCRYPTION_KEY; keep it only as long as you keep database backups taken before this rotation.',
    ].join('\n');
  }
  return [
    result.resumed
      ? `Finished an interrupted rotation: its database change had committed; ${result.reencrypted} secrets open with the new key.`
      : `Re-encrypted ${result.reencrypted} secrets with a new master key.`,
    `New key: ${result.keyFile} (mode 0600).`,
    `Old key kept: ${result.oldKeyFile} (mode 0600); keep it as long as you keep database backups taken before this rotation, then delete it.`,
    'Start the server again with the same environment.',
  ].join('\n');
}

async function main(): Promise<void> {
  const { config, newKey } = readOptions();
  if (!existsSync(config.databaseFile)) {
    fail(
      `No database at ${config.databaseFile}; set TRIPLINE_DATA_DIR to the server's data directory.`,
      1,
    );
  }
  const storage = openSqliteStorage(config.databaseFile);
  try {
    const result = await rotateMasterKey({
      storage,
      config,
      clock: systemClock,
      ...(newKey ? { newKey } : {}),
      // Written synchronously before the commit: the key must be on screen before it is the
      // only key that opens the secrets.
      revealNewKey: (key) =>
        out(
          `New master key (shown once; it is in effect only if "Re-encrypted" follows):\n  ${key}\n`,
        ),
    });
    out(`${summary(result)}\n`);
  } catch (error) {
    if (!(error instanceof MasterKeyRotationError)) throw error;
    await storage.close();
    fail(error.message, 1);
  }
  await storage.close();
}

await main();
