import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Standard Webhooks (https://www.standardwebhooks.com) signing. Every delivery carries
 * `webhook-id`, `webhook-timestamp` and `webhook-signature`; receivers recompute the HMAC to
 * prove the request came from Tripline, and de-duplicate on `webhook-id`.
 */

const SECRET_PREFIX = 'whsec_';
const SIGNING_KEY_BYTES = 32;
/** Receivers commonly refuse timestamps further than this from their own clock. */
const DEFAULT_TOLERANCE_SECONDS = 5 * 60;

export interface WebhookSignatureHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/**
 * Returns a new signing secret: `whsec_` followed by base64 of 32 random bytes. Shown once at
 * action creation so the receiver can store it; Tripline keeps it only as an encrypted secret.
 */
export function generateSigningSecret(): string {
  return SECRET_PREFIX + randomBytes(SIGNING_KEY_BYTES).toString('base64');
}

/**
 * The HMAC key of a signing secret: the base64-decoded text after `whsec_` (a secret written
 * without the prefix is decoded whole). Throws when nothing decodes, since an empty key would
 * produce signatures anyone can forge.
 */
function signingKey(secret: string): Buffer {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  const key = Buffer.from(encoded, 'base64');
  if (key.length === 0) throw new Error('The signing secret holds no key after "whsec_"');
  return key;
}

/**
 * Returns `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. `timestampSeconds` is Unix time in
 * whole seconds. Throws when the secret holds no key.
 */
export function signPayload(
  secret: string,
  webhookId: string,
  timestampSeconds: number,
  body: string,
): string {
  const mac = createHmac('sha256', signingKey(secret))
    .update(`${webhookId}.${timestampSeconds}.${body}`)
    .digest('base64');
  return `v1,${mac}`;
}

/**
 * The three Standard Webhooks headers for one request. `webhookId` must be the run id, so every
 * retry and re-delivery of a run carries the same id. Throws when the secret holds no key.
 */
export function webhookSignatureHeaders(
  secret: string,
  webhookId: string,
  timestamp: Date,
  body: string,
): WebhookSignatureHeaders {
  const seconds = Math.floor(timestamp.getTime() / 1000);
  return {
    'webhook-id': webhookId,
    'webhook-timestamp': String(seconds),
    'webhook-signature': signPayload(secret, webhookId, seconds, body),
  };
}

export interface VerifyInput {
  secret: string;
  /** Header values as received; lookup is by lower-case name. */
  headers: Record<string, string | string[] | undefined>;
  /** The raw request body, exactly as received. */
  body: string | Buffer;
  /** The receiver's clock; defaults to the system time. */
  now?: Date;
  /** Allowed distance between `webhook-timestamp` and `now`; default 300 seconds. */
  toleranceSeconds?: number;
}

/**
 * Verifies a Standard Webhooks request as a receiver would. Returns true when the timestamp is
 * within tolerance and any `v1,` entry of the (space-separated) signature header matches; false
 * otherwise, including for missing headers or a secret without a key. Never throws.
 */
export function verifySignature(input: VerifyInput): boolean {
  const header = (name: string): string | undefined => {
    const value = input.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const id = header('webhook-id');
  const timestamp = header('webhook-timestamp');
  const signatures = header('webhook-signature');
  if (!id || !timestamp || !signatures || !/^\d+$/.test(timestamp)) return false;
  const seconds = Number(timestamp);
  const now = Math.floor((input.now ?? new Date()).getTime() / 1000);
  if (Math.abs(now - seconds) > (input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) return false;
  let expected: Buffer;
  try {
    const body = typeof input.body === 'string' ? input.body : input.body.toString('utf8');
    expected = Buffer.from(signPayload(input.secret, id, seconds, body).slice(3), 'base64');
  } catch {
    return false;
  }
  return signatures.split(' ').some((entry) => {
    const [version, mac] = entry.split(',', 2);
    if (version !== 'v1' || mac === undefined) return false;
    const given = Buffer.from(mac, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
