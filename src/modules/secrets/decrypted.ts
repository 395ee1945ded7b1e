import { LRUCache } from 'lru-cache';
import type { SealedSecret } from '../../storage/config.js';
import type { SecretBox } from './box.js';

/**
 * A secret that does not open with the current master key (tampered with, or sealed under another
 * key). The message names the secret, never a value.
 */
export class SecretUnreadableError extends Error {
  constructor(readonly secretName: string) {
    super(`Secret ${secretName} could not be decrypted; was the master key changed?`);
    this.name = 'SecretUnreadableError';
  }
}

/**
 * Decrypted secret values, kept so that a delivery does not decrypt the same envelope again. An
 * entry holds the value of one version of a secret (its envelope, which every sealing makes anew):
 * a secret rotated or resealed elsewhere, by another process or the master-key rotation, has a new
 * envelope that misses the entry, so a stale value is never returned. The process that rotates or
 * deletes a secret also drops its entry at once ({@link forget}), so the plaintext does not linger.
 *
 * Bounded by the bytes held (least recently used entries go first). The values live only inside
 * the closure: logging the object, or an object holding it, shows its size and nothing else.
 */
export interface DecryptedSecrets {
  /**
   * The plaintext of `secret` as sealed now. Throws SecretUnreadableError when it does not open;
   * nothing is cached then.
   */
  open(secret: SealedSecret): string;
  /** Drops the value of secret `id`, whatever its version: call on rotation and deletion. */
  forget(id: string): void;
  /** Drops every value. */
  clear(): void;
  /** How many values are held. */
  readonly size: number;
}

/** Holds the values of thousands of typical secrets (a token or URL is a few hundred bytes). */
export const DECRYPTED_SECRETS_MAX_BYTES = 4 * 1024 * 1024;

/** A cache of the values `box` decrypts, holding at most about `maxBytes` of strings. */
export function createDecryptedSecrets(
  box: SecretBox,
  options: { maxBytes?: number } = {},
): DecryptedSecrets {
  const values = new LRUCache<string, { envelope: string; value: string }>({
    maxSize: options.maxBytes ?? DECRYPTED_SECRETS_MAX_BYTES,
    // UTF-16: two bytes a code unit, for the key, the envelope compared on every hit and the value.
    sizeCalculation: (entry, id) => 2 * (id.length + entry.envelope.length + entry.value.length),
  });
  return {
    open(secret) {
      const held = values.get(secret.id);
      if (held?.envelope === secret.ciphertext) return held.value;
      let value: string;
      try {
        value = box.open(secret.ciphertext, secret.id);
      } catch {
        throw new SecretUnreadableError(secret.name);
      }
      values.set(secret.id, { envelope: secret.ciphertext, value });
      return value;
    },
    forget(id) {
      values.delete(id);
    },
    clear() {
      values.clear();
    },
    get size() {
      return values.size;
    },
  };
}

/** The values of a delivery's secrets, by id (the action's) and by name (the templates'). */
export interface OpenedSecrets {
  byId: ReadonlyMap<string, string>;
  byName: ReadonlyMap<string, string>;
}

/**
 * Opens the secrets a delivery loaded sealed, through the cache: those of an action (access token,
 * signing key, Slack URL) and those its automation's templates name, all of one entity. Throws
 * SecretUnreadableError for the first that does not open. The values must go only into the request
 * to the action's destination: never into a log line, an error message or a stored response.
 */
export function openSecrets(
  decrypted: DecryptedSecrets,
  secrets: readonly SealedSecret[],
): OpenedSecrets {
  const byId = new Map<string, string>();
  const byName = new Map<string, string>();
  for (const secret of secrets) {
    const value = decrypted.open(secret);
    byId.set(secret.id, value);
    byName.set(secret.name, value);
  }
  return { byId, byName };
}
