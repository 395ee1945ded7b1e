import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/** Encrypts and decrypts secret values with AES-256-GCM under one master key. */
export interface SecretBox {
  /** Returns `v1.<iv>.<tag>.<ciphertext>` (base64url parts); a fresh IV every call. */
  seal(plaintext: string, associatedData: string): string;
  /**
   * Returns the plaintext of an envelope made by `seal` with the same associated data.
   * Throws if the envelope was tampered with, moved to another record, or sealed by another key.
   */
  open(envelope: string, associatedData: string): string;
}

const KEY_BYTES = 32;

/**
 * Parses a master key given as 64 hex characters or as base64 of 32 bytes.
 * Throws an Error naming the expected form when it is neither.
 */
export function parseMasterKey(text: string): Buffer {
  const trimmed = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return Buffer.from(trimmed, 'hex');
  const decoded = Buffer.from(trimmed, 'base64');
  if (decoded.length === KEY_BYTES) return decoded;
  throw new Error('The master key must be 32 bytes, written as 64 hex characters or as base64');
}

export function generateMasterKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== KEY_BYTES) throw new Error('The master key must be 32 bytes');
  return {
    seal(plaintext, associatedData) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(associatedData));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return ['v1', iv, cipher.getAuthTag(), body]
        .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
        .join('.');
    },
    open(envelope, associatedData) {
      const [version, iv, tag, body] = envelope.split('.');
      if (version !== 'v1' || iv === undefined || tag === undefined || body === undefined) {
        throw new Error('Unrecognised secret envelope');
      }
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAAD(Buffer.from(associatedData));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([
        decipher.update(Buffer.from(body, 'base64url')),
        decipher.final(),
      ]).toString('utf8');
    },
  };
}
