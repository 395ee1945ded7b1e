import { readFileSync } from 'node:fs';
import { systemClock } from '../clock.js';
import type { MasterKeyRotation } from '../modules/secrets/rotate.js';
import {
  type Command,
  CommandError,
  ENVIRONMENT_HELP,
  holdDataDir,
  type OptionValues,
  out,
  readConfig,
  requireDatabase,
} from './command.js';

// A running server keeps the old key in memory, so secrets it created or rotated afterwards
// would be sealed with a key that is no longer anywhere on disk: the data directory's lock keeps
// the server and this command apart.

/** The new key the operator gave, if any, and where it came from (for messages). */
function newKeyOf(values: OptionValues): { text: string; source: string } | undefined {
  const fromEnv = process.env.TRIPLINE_NEW_ENCRYPTION_KEY || undefined;
  const file = typeof values['new-key-file'] === 'string' ? values['new-key-file'] : undefined;
  if (fromEnv && file) {
    throw new CommandError(
      'Give the new key once: either --new-key-file or TRIPLINE_NEW_ENCRYPTION_KEY.',
      2,
    );
  }
  if (file) {
    try {
      return { text: readFileSync(file, 'utf8'), source: file };
    } catch (error) {
      throw new CommandError(`Cannot read --new-key-file ${file}: ${(error as Error).message}`, 2);
    }
  }
  return fromEnv ? { text: fromEnv, source: 'TRIPLINE_NEW_ENCRYPTION_KEY' } : undefined;
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

export const rotateMasterKeyCommand: Command = {
  name: 'rotate-master-key',
  summary: 're-encrypt every secret under a new master key (server stopped)',
  usage: `Usage: tripline rotate-master-key [--new-key-file PATH]

Stop the server first, then run with its environment (TRIPLINE_DATA_DIR, and
TRIPLINE_ENCRYPTION_KEY or TRIPLINE_ENCRYPTION_KEY_FILE). Every secret is re-encrypted
with a new master key in one transaction; nothing changes if any secret fails to open.
Refused while a server (or another command) holds the data directory.

  --new-key-file PATH   use the key in PATH (64 hex characters or base64 of 32 bytes)
                        instead of generating one; TRIPLINE_NEW_ENCRYPTION_KEY does the same
  -h, --help            show this help

Key file: the new key replaces it, the old one is kept as <file>.old-<timestamp>.
TRIPLINE_ENCRYPTION_KEY: a generated key is printed once; set it before restarting.

${ENVIRONMENT_HELP}
`,
  options: { 'new-key-file': { type: 'string' } },
  async run(values) {
    const config = readConfig();
    const newKey = newKeyOf(values);
    const { MasterKeyRotationError, rotateMasterKey } = await import(
      '../modules/secrets/rotate.js'
    );
    const { openExistingDatabase } = await import('./database.js');
    requireDatabase(config);
    const lock = holdDataDir(config, 'rotate-master-key');
    try {
      const storage = await openExistingDatabase(config);
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
        if (error instanceof MasterKeyRotationError) throw new CommandError(error.message);
        throw error;
      } finally {
        await storage.close();
      }
    } finally {
      lock.release();
    }
  },
};
