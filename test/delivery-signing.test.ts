import { describe, expect, it } from 'vitest';
import {
  generateSigningSecret,
  signPayload,
  verifySignature,
  webhookSignatureHeaders,
} from '../src/delivery/signing.js';

describe('Standard Webhooks signing', () => {
  it('matches the reference vector of the Standard Webhooks specification', () => {
    expect(
      signPayload(
        'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        'msg_p5jXN8AQM9LWM0D4loKWxJek',
        1614265330,
        '{"test": 2432232314}',
      ),
    ).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('generates whsec_ secrets holding 32 random bytes', () => {
    const secret = generateSigningSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(Buffer.from(secret.slice(6), 'base64')).toHaveLength(32);
    expect(generateSigningSecret()).not.toBe(secret);
  });

  it('produces headers a receiver verifies, and rejects tampering', () => {
    const secret = generateSigningSecret();
    const now = new Date('2025-01-01T00:00:00Z');
    const body = '{"hello":"world"}';
    const headers = { ...webhookSignatureHeaders(secret, 'run-1', now, body) };
    expect(headers['webhook-timestamp']).toBe(String(now.getTime() / 1000));
    expect(verifySignature({ secret, headers, body, now })).toBe(true);
    expect(verifySignature({ secret, headers, body: `${body} `, now })).toBe(false);
    expect(verifySignature({ secret: generateSigningSecret(), headers, body, now })).toBe(false);
    expect(
      verifySignature({ secret, headers: { ...headers, 'webhook-id': 'run-2' }, body, now }),
    ).toBe(false);
    const later = new Date(now.getTime() + 301_000);
    expect(verifySignature({ secret, headers, body, now: later })).toBe(false);
    expect(
      verifySignature({
        secret,
        headers: { ...headers, 'webhook-signature': `v1,bogus ${headers['webhook-signature']}` },
        body,
        now,
      }),
    ).toBe(true);
    expect(verifySignature({ secret, headers: {}, body, now })).toBe(false);
  });
});
