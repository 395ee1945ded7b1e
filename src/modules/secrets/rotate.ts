import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { loadMasterKey } from '../../bootstrap.js';
import type { Clock } from '../../clock.js';
import type { Config } from '../../config.js';
import type { LabelledSecret, SecretStore } from '../../storage/config.js';
import { createSecretBox, generateMasterKey, parseMasterKey, type SecretBox } from './box.js';

/**
 * An expected refusal of a master-key rotation (wrong key, undecryptable secrets, no key file,
 * a key file that cannot be written). Nothing was changed when it is thrown. The message names
 * secrets by entity and name, never by value.
 */
export class MasterKeyRotationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MasterKeyRotationError';
  }
}

/** Secret labels quoted in a refusal; the count is always given in full. */
const MAX_LISTED = 10;

/** How a refusal names a secret: never by value. */
const label = (row: LabelledSecret): string => `${row.entityName}/${row.name}`;

/** Labels of the rows `box` cannot open. */
function unopenable(box: SecretBox, rows: readonly LabelledSecret[]): string[] {
  return rows.flatMap((row) => {
    try {
      box.open(row.ciphertext, row.id);
      return [];
    } catch {
      return [label(row)];
    }
  });
}

function refusal(
  keyLabel: string,
  total: number,
  failed: readonly string[],
): MasterKeyRotationError {
  if (failed.length === total) {
    return new MasterKeyRotationError(
      `The current master key (${keyLabel}) opens none of the ${total} secrets: it is not the key this database was encrypted with. Run with the same TRIPLINE_DATA_DIR and TRIPLINE_ENCRYPTION_KEY or TRIPLINE_ENCRYPTION_KEY_FILE as the server; a database restored from a backup taken before a rotation needs the key that rotation kept as <key file>.old-<timestamp>. Nothing was changed.`,
    );
  }
  const listed = failed.slice(0, MAX_LISTED).join(', ');
  const more = failed.length > MAX_LISTED ? ` and ${failed.length - MAX_LISTED} more` : '';
  return new MasterKeyRotationError(
    `${failed.length} of ${total} secrets cannot be decrypted with the current master key (${keyLabel}): ${listed}${more}. They were tampered with or sealed under another key; set their values again with rotateSecret or delete them with deleteSecret, then rotate. Nothing was changed.`,
  );
}

/**
 * Re-encrypts every secret from `from` to `to` in one transaction and returns how many there
 * were. All or nothing: when any secret does not open with `from`, it throws a
 * MasterKeyRotationError naming how many failed (`keyLabel` says where `from` came from) and
 * writes nothing. `beforeCommit` runs after every secret has been resealed in memory and before
 * the commit; whatever it throws rolls the transaction back. The commit is durable before this
 * resolves, so a caller may act on it, e.g. swap key files. Each secret keeps its id as
 * associated data; `rotatedAt` is untouched because the values are.
 */
export async function reencryptSecrets(
  secrets: SecretStore,
  options: { from: SecretBox; to: SecretBox; keyLabel: string; beforeCommit?: () => void },
): Promise<number> {
  return secrets.resealAll((rows) => {
    const failed: string[] = [];
    const resealed = new Map<string, string>();
    for (const row of rows) {
      let plaintext: string;
      try {
        plaintext = options.from.open(row.ciphertext, row.id);
      } catch {
        failed.push(label(row));
        continue;
      }
      resealed.set(row.id, options.to.seal(plaintext, row.id));
    }
    if (failed.length > 0) throw refusal(options.keyLabel, rows.length, failed);
    options.beforeCommit?.();
    return resealed;
  });
}

/** Writes `text` to a new file (never over an existing one) with mode 0600 and flushes it to disk. */
function writeKeyFile(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Makes renames and new names in `dir` durable. Windows cannot open a directory to flush it. */
function syncDirectory(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A key file's contents, as the server writes a generated key. */
const keyText = (key: Buffer): string => `${key.toString('base64')}\n`;

/** Writes `<keyFile>.old-<timestamp>` (a fresh name, mode 0600) holding `key`; returns its path. */
function writeBackup(keyFile: string, key: Buffer, clock: Clock): string {
  const stamp = clock.now().toISOString().replace(/[:.]/g, '-');
  for (let n = 0; ; n++) {
    const path = `${keyFile}.old-${stamp}${n === 0 ? '' : `-${n}`}`;
    if (existsSync(path)) continue;
    writeKeyFile(path, keyText(key));
    return path;
  }
}

/** Where the new key waits beside the key file while the database switches to it. */
export const nextKeyFileOf = (keyFile: string): string => `${keyFile}.next`;

export interface MasterKeyRotationOptions {
  /** Where the secrets are. */
  storage: { secrets: SecretStore };
  /** The server's configuration: the current key is loaded from it as the server loads it. */
  config: Config;
  clock: Clock;
  /**
   * The new key as given by the operator (64 hex characters or base64 of 32 bytes) and where it
   * came from, for messages; a key is generated when absent.
   */
  newKey?: { text: string; source: string };
  /**
   * Called with a generated key when the current key comes from `TRIPLINE_ENCRYPTION_KEY`, before
   * the database commits: the key exists nowhere else, so it must be shown before the old one
   * stops working. Required in that case.
   */
  revealNewKey?: (key: string) => void;
}

export type MasterKeyRotation =
  | {
      mode: 'file';
      /** Secrets now sealed under the key in `keyFile`. */
      reencrypted: number;
      keyFile: string;
      /** Holds the previous key (mode 0600). */
      oldKeyFile: string;
      /** True when this run only finished an earlier rotation that had committed. */
      resumed: boolean;
    }
  | {
      mode: 'env';
      reencrypted: number;
      /** Where the operator finds the new key: printed above, or the source they supplied. */
      newKeySource: string;
    };

/**
 * Rotates the master key of secrets: every secret is decrypted with the current key (from
 * `TRIPLINE_ENCRYPTION_KEY`, else the key file, as the server loads it) and re-encrypted with a
 * new one in one transaction; then the new key is put where the current one came from. The server
 * must be stopped: it holds the old key in memory and would seal new secrets with it.
 *
 * Key file mode, in this order, so that at every instant the key file and the database agree or
 * the key that opens the database is beside them:
 *   1. inside the transaction, once every secret opened: write `<file>.old-<timestamp>` (the
 *      current key) and `<file>.next` (the new key), both 0600 and fsynced;
 *   2. commit, durably;
 *   3. rename `<file>.next` over `<file>` (atomic), fsync the directory.
 * A crash before 2 leaves the old database and the old key file (the `.next` is stale and a later
 * run discards it). A crash between 2 and 3 leaves a new database, the old key file and the new
 * key in `.next`: the next run sees that `.next` opens the secrets and finishes the rename (so can
 * `mv <file>.next <file>`). The key file is never removed, not even for an instant, because the
 * server generates a fresh key when it finds none.
 *
 * Environment mode writes no file: a generated key goes to `revealNewKey` before the commit.
 *
 * Throws MasterKeyRotationError, with nothing changed, when no current key is found, the current
 * key opens none of the secrets, any secret fails to open, the new key is malformed or equals the
 * current one, or a key file cannot be written.
 */
export async function rotateMasterKey(
  options: MasterKeyRotationOptions,
): Promise<MasterKeyRotation> {
  const { config, clock } = options;
  const { secrets } = options.storage;
  const fromEnv = config.encryptionKey !== undefined;
  const keyFile = config.encryptionKeyFile;
  if (!fromEnv && !existsSync(keyFile)) {
    throw new MasterKeyRotationError(
      `No master key at ${keyFile} and TRIPLINE_ENCRYPTION_KEY is not set: there is no key to rotate. Run with the same environment as the server (TRIPLINE_DATA_DIR, TRIPLINE_ENCRYPTION_KEY or TRIPLINE_ENCRYPTION_KEY_FILE).`,
    );
  }
  const keyLabel = fromEnv ? 'TRIPLINE_ENCRYPTION_KEY' : keyFile;
  let current: Buffer;
  try {
    current = loadMasterKey(config).key;
  } catch (error) {
    throw new MasterKeyRotationError(
      `The current master key (${keyLabel}) is malformed: ${(error as Error).message}.`,
    );
  }
  const from = createSecretBox(current);

  if (!fromEnv) {
    const resumed = await settleInterruptedRotation(secrets, keyFile, current, clock);
    if (resumed) return resumed;
  }

  let next: Buffer;
  if (options.newKey) {
    try {
      next = parseMasterKey(options.newKey.text);
    } catch (error) {
      throw new MasterKeyRotationError(
        `The new master key from ${options.newKey.source} is malformed: ${(error as Error).message}.`,
      );
    }
  } else {
    next = parseMasterKey(generateMasterKey());
  }
  if (next.equals(current)) {
    throw new MasterKeyRotationError(
      `The new master key from ${options.newKey?.source ?? 'the generator'} is the current key; give a different one. Nothing was changed.`,
    );
  }
  const to = createSecretBox(next);

  if (fromEnv) {
    const generated = options.newKey === undefined;
    const reveal = options.revealNewKey;
    if (generated && !reveal) throw new Error('revealNewKey is required in environment mode');
    const reencrypted = await reencryptSecrets(secrets, {
      from,
      to,
      keyLabel,
      beforeCommit: () => {
        if (generated) reveal?.(next.toString('base64'));
      },
    });
    return {
      mode: 'env',
      reencrypted,
      newKeySource: options.newKey?.source ?? 'the key printed above',
    };
  }

  const nextFile = nextKeyFileOf(keyFile);
  let oldKeyFile = '';
  const reencrypted = await reencryptSecrets(secrets, {
    from,
    to,
    keyLabel,
    beforeCommit: () =>
      besideKeyFile(keyFile, () => {
        oldKeyFile = writeBackup(keyFile, current, clock);
        writeKeyFile(nextFile, keyText(next));
        syncDirectory(dirname(keyFile));
      }),
  });
  besideKeyFile(keyFile, () => {
    renameSync(nextFile, keyFile);
    syncDirectory(dirname(keyFile));
  });
  return { mode: 'file', reencrypted, keyFile, oldKeyFile, resumed: false };
}

/** Runs file operations next to the key file, turning their failures into a refusal that says where. */
function besideKeyFile(keyFile: string, write: () => void): void {
  try {
    write();
  } catch (error) {
    if (error instanceof MasterKeyRotationError) throw error;
    throw new MasterKeyRotationError(
      `Could not write the key files beside ${keyFile}: ${(error as Error).message}. The directory must be writable (a read-only mount cannot be rotated in place: rotate with TRIPLINE_ENCRYPTION_KEY instead).`,
    );
  }
}

/**
 * Deals with a `<file>.next` left by an earlier run. When the current key opens every secret,
 * that run never committed: the leftover is discarded and undefined returned. When the leftover
 * opens them instead, that run committed but did not rename: the rename is finished (after a
 * fresh backup of the current key) and its result returned. Anything else is refused.
 */
async function settleInterruptedRotation(
  secrets: SecretStore,
  keyFile: string,
  current: Buffer,
  clock: Clock,
): Promise<MasterKeyRotation | undefined> {
  const nextFile = nextKeyFileOf(keyFile);
  if (!existsSync(nextFile)) return undefined;
  const rows = await secrets.everySecret();
  if (unopenable(createSecretBox(current), rows).length === 0) {
    besideKeyFile(keyFile, () => unlinkSync(nextFile));
    return undefined;
  }
  let next: Buffer | undefined;
  try {
    next = parseMasterKey(readFileSync(nextFile, 'utf8'));
  } catch {
    // A `.next` is complete before the commit it belongs to; a partial one never committed.
  }
  const failedWithNext = next ? unopenable(createSecretBox(next), rows) : rows.map(() => '');
  if (!next || failedWithNext.length > 0) {
    throw new MasterKeyRotationError(
      `Neither the current master key (${keyFile}) nor the one left in ${nextFile} by an interrupted rotation opens every secret. If an earlier rotation completed, its previous key is in ${keyFile}.old-*. Nothing was changed.`,
    );
  }
  let oldKeyFile = '';
  besideKeyFile(keyFile, () => {
    oldKeyFile = writeBackup(keyFile, current, clock);
    renameSync(nextFile, keyFile);
    syncDirectory(dirname(keyFile));
  });
  return { mode: 'file', reencrypted: rows.length, keyFile, oldKeyFile, resumed: true };
}
