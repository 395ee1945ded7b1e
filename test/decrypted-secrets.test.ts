// biome-ignore-all lint/suspicious/noTemplateCurlyInString: payload templates use ${…} literally
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSecretBox } from '../src/modules/secrets/box.js';
import {
  createDecryptedSecrets,
  openSecrets,
  SecretUnreadableError,
} from '../src/modules/secrets/decrypted.js';
import { findSecretByName } from '../src/modules/secrets/service.js';
import type { SealedSecret } from '../src/storage/config.js';
import { createTestApp, sqliteOnly, type TestApp } from './support/app.js';
import { createSecret, createSlackAction, mutate } from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly(
  'forgets a value when its secret is rotated or deleted',
  'keeps values out of every log line',
);

const box = createSecretBox(randomBytes(32));
const seal = (id: string, name: string, value: string): SealedSecret => ({
  id,
  name,
  ciphertext: box.seal(value, id),
});

describe('the cache of decrypted secrets', () => {
  it('decrypts each version of a secret once', () => {
    const open = vi.spyOn(box, 'open');
    const cache = createDecryptedSecrets(box);
    const v1 = seal('s1', 'TOKEN', 'first-value');
    expect(cache.open(v1)).toBe('first-value');
    expect(cache.open({ ...v1 })).toBe('first-value');
    expect(open).toHaveBeenCalledTimes(1);

    // A new envelope is a new version, even when this process was not told of the change.
    const v2 = seal('s1', 'TOKEN', 'second-value');
    expect(cache.open(v2)).toBe('second-value');
    expect(cache.open(v2)).toBe('second-value');
    expect(open).toHaveBeenCalledTimes(2);
    expect(cache.size).toBe(1);
    open.mockRestore();
  });

  it('holds a bounded number of bytes, dropping the least recently used values', () => {
    const value = 'v'.repeat(100);
    const one = seal('s1', 'ONE', value);
    // Room for about two entries (key, envelope and value, two bytes a character).
    const entry = 2 * (one.id.length + one.ciphertext.length + value.length);
    const cache = createDecryptedSecrets(box, { maxBytes: 2 * entry + 10 });
    const secrets = ['s1', 's2', 's3', 's4'].map((id) => seal(id, id.toUpperCase(), value));
    for (const secret of secrets) cache.open(secret);
    expect(cache.size).toBe(2);

    const open = vi.spyOn(box, 'open');
    cache.open(secrets[3] as SealedSecret);
    expect(open).not.toHaveBeenCalled();
    cache.open(secrets[0] as SealedSecret);
    expect(open).toHaveBeenCalledTimes(1);
    open.mockRestore();
  });

  it('refuses an envelope that does not open, naming the secret and caching nothing', () => {
    const cache = createDecryptedSecrets(box);
    const moved = { ...seal('s1', 'TOKEN', 'tok-123'), id: 's2' };
    expect(() => cache.open(moved)).toThrow(SecretUnreadableError);
    expect(() => cache.open(moved)).toThrow(
      'Secret TOKEN could not be decrypted; was the master key changed?',
    );
    expect(cache.size).toBe(0);
  });

  it('opens what a delivery loaded by id and by name', () => {
    const cache = createDecryptedSecrets(box);
    const opened = openSecrets(cache, [
      seal('s1', 'HOOK_TOKEN', 'tok'),
      seal('s2', 'HOOK_SIGNING_SECRET', 'whsec_x'),
    ]);
    expect(opened.byId).toEqual(
      new Map([
        ['s1', 'tok'],
        ['s2', 'whsec_x'],
      ]),
    );
    expect(opened.byName.get('HOOK_SIGNING_SECRET')).toBe('whsec_x');
  });

  it('shows nothing but its size when logged', () => {
    const cache = createDecryptedSecrets(box);
    cache.open(seal('s1', 'TOKEN', 'tok-never-shown'));
    expect(JSON.stringify({ cache })).toBe('{"cache":{"size":1}}');
  });
});

describe('the app’s cache of decrypted secrets', () => {
  let t: TestApp;
  let receiver: Receiver | undefined;
  afterEach(async () => {
    await receiver?.close();
    receiver = undefined;
    await t.close();
  });

  const SLACK_URL = 'https://hooks.slack.com/services/T000/B000/XXXXXXXX';
  const ROTATE = `mutation($i: RotateSecretInput!) { rotateSecret(input: $i) { __typename } }`;
  const DELETE = `mutation($i: DeleteSecretInput!) { deleteSecret(input: $i) { __typename } }`;
  const entityId = () =>
    t.storage.sqlite
      .prepare(`select id from entities where name = 'default'`)
      .pluck()
      .get() as string;
  /** Opens a stored secret through the app's cache, as a delivery does. */
  const deliver = async (name: string) => {
    const secret = await findSecretByName(t.deps, entityId(), name);
    if (!secret) throw new Error(`no secret ${name}`);
    return t.deps.decrypted.open(secret);
  };

  it('forgets a value when its secret is rotated or deleted', async () => {
    t = await createTestApp();
    await createSecret(t, 'SLACK_URL', SLACK_URL);
    await createSecret(t, 'TOKEN', 'tok-old');
    // Saving a Slack action checks its URL through the cache.
    await createSlackAction(t, {
      name: 'alerts',
      channel: '#alerts',
      webhookUrlSecret: 'SLACK_URL',
    });
    expect(t.deps.decrypted.size).toBe(1);
    expect(await deliver('TOKEN')).toBe('tok-old');
    expect(t.deps.decrypted.size).toBe(2);

    expect(
      await mutate(t, ROTATE, { i: { entity: 'default', name: 'TOKEN', value: 'tok-new' } }),
    ).toMatchObject({ __typename: 'RotateSecretPayload' });
    expect(t.deps.decrypted.size).toBe(1);
    expect(await deliver('TOKEN')).toBe('tok-new');
    expect(t.deps.decrypted.size).toBe(2);

    expect(await mutate(t, DELETE, { i: { entity: 'default', name: 'TOKEN' } })).toMatchObject({
      __typename: 'DeleteSecretPayload',
    });
    expect(t.deps.decrypted.size).toBe(1);
    // The Slack URL is still held: only the secret that changed is dropped.
    const open = vi.spyOn(t.deps.secretBox, 'open');
    expect(await deliver('SLACK_URL')).toBe(SLACK_URL);
    expect(open).not.toHaveBeenCalled();
    open.mockRestore();
  });

  it('keeps values out of every log line', async () => {
    t = await createTestApp({ env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
    receiver = await startReceiver(() => ({ status: 200 }));
    const values = ['tok-log-check-1', SLACK_URL, 'tok-log-check-2'];
    await createSecret(t, 'TOKEN', 'tok-log-check-1');
    await createSecret(t, 'SLACK_URL', SLACK_URL);
    const hook = await mutate(
      t,
      `mutation($i: CreateWebhookActionInput!) { createWebhookAction(input: $i) {
        __typename ... on CreateWebhookActionPayload { signingSecret action { id } } } }`,
      {
        i: {
          entity: 'default',
          name: 'hook',
          url: `${receiver.url}/h`,
          accessTokenSecret: 'TOKEN',
        },
      },
    );
    values.push(hook.signingSecret);
    await createSlackAction(t, {
      name: 'alerts',
      channel: '#alerts',
      webhookUrlSecret: 'SLACK_URL',
    });
    const tested = await mutate(
      t,
      `mutation($i: TestActionInput!) { testAction(input: $i) { __typename ... on TestActionPayload { response { success } } } }`,
      { i: { id: hook.action.id, payloadTemplate: '{"t":"${TOKEN}"}' } },
    );
    expect(tested).toMatchObject({ __typename: 'TestActionPayload', response: { success: true } });
    expect(await deliver('TOKEN')).toBe('tok-log-check-1');
    await mutate(t, ROTATE, { i: { entity: 'default', name: 'TOKEN', value: 'tok-log-check-2' } });
    // A value that cannot go to the Slack action using the secret is refused without quoting it.
    const refused = await t.gql(
      `mutation($i: RotateSecretInput!) { rotateSecret(input: $i) { __typename ... on Error { message } } }`,
      { i: { entity: 'default', name: 'SLACK_URL', value: 'http://tok-log-check-3.example' } },
    );
    expect(refused.data.rotateSecret.__typename).toBe('ValidationError');
    values.push('tok-log-check-3');
    t.deps.logger.info({ decrypted: t.deps.decrypted }, 'cache state');

    const log = t.logLines.join('');
    expect(log).toContain('"decrypted":{"size":');
    expect(log).toContain('secret rotated');
    for (const value of values) expect(log).not.toContain(value);
    expect(JSON.stringify(refused)).not.toContain('tok-log-check-3');
  });
});
