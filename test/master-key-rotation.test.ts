// biome-ignore-all lint/suspicious/noTemplateCurlyInString: payload templates hold literal ${…} variables.
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asc, eq } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, createApp } from '../src/app.js';
import { bootstrap, loadMasterKey } from '../src/bootstrap.js';
import { type Config, loadConfig } from '../src/config.js';
import type { AppDeps } from '../src/context.js';
import { buildDeliveryRequest, DeliveryConfigurationError } from '../src/delivery/load.js';
import { verifySignature } from '../src/delivery/signing.js';
import { createLogger } from '../src/logger.js';
import { insertEntity } from '../src/modules/entities/service.js';
import {
  createSecretBox,
  generateMasterKey,
  parseMasterKey,
  type SecretBox,
} from '../src/modules/secrets/box.js';
import { createDecryptedSecrets } from '../src/modules/secrets/decrypted.js';
import {
  MasterKeyRotationError,
  nextKeyFileOf,
  reencryptSecrets,
  rotateMasterKey,
} from '../src/modules/secrets/rotate.js';
import { insertSecret, openSecret } from '../src/modules/secrets/service.js';
import { createAccessCache } from '../src/modules/users/access-cache.js';
import { createTriplinePubSub } from '../src/pubsub.js';
import { openDatabase } from '../src/storage/sqlite/database.js';
import { actions, secrets } from '../src/storage/sqlite/schema.js';
import { openSqliteStorage, type SqliteStorage } from '../src/storage/sqlite/storage.js';
import { type CliResult, runCli, type ServerProcess, startServer } from './support/process.js';
import { type Receiver, startReceiver } from './support/receiver.js';

const at = (iso: string) => ({ now: () => new Date(iso) });
const clock = at('2026-03-01T12:00:00.000Z');
const STAMP = '2026-03-01T12-00-00-000Z';

/** A migrated, bootstrapped app whose secret box uses the master key as the server loads it. */
interface World {
  dir: string;
  config: Config;
  storage: SqliteStorage;
  app: App;
  /** The box the app sealed with: the current key. */
  box: SecretBox;
  /** Every secret's plaintext, by name. */
  values: Map<string, string>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-rotate-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function gql(app: App, key: string, query: string, variables: Record<string, unknown>) {
  const response = await app.yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: Record<string, Record<string, unknown>> };
  const result = Object.values(body.data ?? {})[0];
  if (!result) throw new Error(JSON.stringify(body));
  return result;
}

const CREATE_SECRET = `mutation($i: CreateSecretInput!) { createSecret(input: $i) { __typename } }`;
const CREATE_WEBHOOK = `mutation($i: CreateWebhookActionInput!) { createWebhookAction(input: $i) {
  __typename ... on CreateWebhookActionPayload { signingSecret action { id } } } }`;

/**
 * Secrets of every shape, made through the GraphQL API (and one through the service in a second
 * entity): ASCII, Unicode, the 16 KiB maximum, and a webhook action's generated signing secret.
 */
async function openWorld(env: Record<string, string> = {}): Promise<World> {
  const dir = tempDir();
  const config = loadConfig({ TRIPLINE_DATA_DIR: dir, LOG_LEVEL: 'silent', ...env });
  const storage = openSqliteStorage(config.databaseFile);
  const box = createSecretBox(loadMasterKey(config).key);
  const deps: AppDeps = {
    storage,
    access: createAccessCache({ storage, clock }),
    secretBox: box,
    decrypted: createDecryptedSecrets(box),
    clock,
    logger: createLogger('silent'),
    config,
    pubsub: createTriplinePubSub(),
  };
  const first = await bootstrap(deps, config);
  if (!first) throw new Error('bootstrap did not run');
  const app = createApp(deps);
  cleanups.push(async () => {
    await app.stop(0);
    await storage.close();
  });

  const values = new Map([
    ['API_TOKEN', 'tok-live-0123456789'],
    ['SLACK_URL', 'https://hooks.slack.com/services/T000/B000/XXXX'],
    ['UNICODE_VALUE', 'pässwörd ✓ 秘密'],
    ['BIG_VALUE', 'x'.repeat(16 * 1024)],
  ]);
  for (const [name, value] of values) {
    const created = await gql(app, first.apiKey, CREATE_SECRET, {
      i: { entity: 'default', name, value },
    });
    expect(created.__typename).toBe('CreateSecretPayload');
  }
  const webhook = await gql(app, first.apiKey, CREATE_WEBHOOK, {
    i: {
      entity: 'default',
      name: 'deploy',
      url: 'https://example.com/hook',
      accessTokenSecret: 'API_TOKEN',
    },
  });
  expect(webhook.__typename).toBe('CreateWebhookActionPayload');
  values.set('DEPLOY_SIGNING_SECRET', String(webhook.signingSecret));

  const admin = await deps.access.authenticate(first.apiKey);
  if (!admin) throw new Error('the bootstrap key does not authenticate');
  const other = await insertEntity(deps, 'other', admin.user.id);
  insertSecret(deps, {
    entityId: other.id,
    name: 'OTHER_TOKEN',
    value: 'other-value',
    actorId: null,
  });
  values.set('OTHER_TOKEN', 'other-value');
  return { dir, config, storage, app, box, values };
}

function rows(world: World) {
  return world.storage.db.select().from(secrets).orderBy(asc(secrets.name)).all();
}

/** Everything a rotation could change: the rows and every file of the data directory. */
function state(world: World, extraDir?: string) {
  const files = (dir: string) =>
    readdirSync(dir)
      .filter((name) => !name.startsWith('tripline.db'))
      .sort()
      .map((name) => [name, readFileSync(join(dir, name), 'utf8')]);
  return { rows: rows(world), files: files(world.dir), extra: extraDir ? files(extraDir) : [] };
}

const keyFileBox = (path: string) => createSecretBox(parseMasterKey(readFileSync(path, 'utf8')));
const mode = (path: string) => statSync(path).mode & 0o777;

/** Every secret opens with `box` to its original value, and none opens with `old`. */
function expectSealedUnder(world: World, box: SecretBox, old: SecretBox): void {
  const all = rows(world);
  expect(all.map((row) => row.name).sort()).toEqual([...world.values.keys()].sort());
  for (const row of all) {
    expect(openSecret({ secretBox: box }, row)).toBe(world.values.get(row.name));
    expect(() => old.open(row.ciphertext, row.id)).toThrow();
  }
}

function deployAction(world: World) {
  const action = world.storage.db.select().from(actions).where(eq(actions.name, 'deploy')).get();
  if (!action) throw new Error('no deploy action');
  return action;
}

describe('rotateMasterKey with a key file', () => {
  it('re-encrypts every secret, swaps the key file and keeps the old key beside it', async () => {
    const world = await openWorld();
    const keyFile = world.config.encryptionKeyFile;
    const oldKeyText = readFileSync(keyFile, 'utf8');
    const before = rows(world);

    const result = await rotateMasterKey({ storage: world.storage, config: world.config, clock });

    expect(result).toEqual({
      mode: 'file',
      reencrypted: 6,
      keyFile,
      oldKeyFile: `${keyFile}.old-${STAMP}`,
      resumed: false,
    });
    expect(readFileSync(keyFile, 'utf8')).not.toBe(oldKeyText);
    expect(mode(keyFile)).toBe(0o600);
    expect(parseMasterKey(readFileSync(`${keyFile}.old-${STAMP}`, 'utf8'))).toEqual(
      parseMasterKey(oldKeyText),
    );
    expect(mode(`${keyFile}.old-${STAMP}`)).toBe(0o600);
    expect(existsSync(nextKeyFileOf(keyFile))).toBe(false);
    expect(
      readdirSync(world.dir)
        .filter((n) => !n.startsWith('tripline.db'))
        .sort(),
    ).toEqual(['admin-api-key', 'master.key', `master.key.old-${STAMP}`]);

    const newBox = keyFileBox(keyFile);
    expectSealedUnder(world, newBox, world.box);
    const after = rows(world);
    for (const [index, row] of after.entries()) {
      const previous = before[index];
      expect(row.id).toBe(previous?.id);
      expect(row.ciphertext).not.toBe(previous?.ciphertext);
      // The values did not change, so neither does their rotation record.
      expect(row.rotatedAt).toEqual(previous?.rotatedAt);
    }

    // The delivery path reads the action's secrets with the new key, and no longer with the old.
    const action = deployAction(world);
    const input = {
      action,
      secrets: await world.storage.delivery.findSecrets(action.entityId, {
        ids: [action.accessTokenSecretId, action.signingSecretId].filter(
          (id): id is string => id !== null,
        ),
        names: ['API_TOKEN', 'UNICODE_VALUE'],
      }),
      content: {
        payloadTemplate: '{"token": "${API_TOKEN}", "u": "${UNICODE_VALUE}"}',
        slackTitle: null,
        slackMessage: null,
        slackSeverity: null,
      },
      context: {
        eventType: 'CREATE_ARTIFACT',
        eventAuthor: 'admin',
        eventId: 'e1',
        automationName: 'a',
        entityName: 'default',
        projectName: 'p',
        artifactCollectionName: 'm',
        artifactType: 'model',
        artifactVersionIndex: 0,
        alias: null,
        tag: null,
        metadata: {},
      },
      collectionOwner: 'PROJECT',
      webhookId: 'w1',
    } as const;
    const request = buildDeliveryRequest(createDecryptedSecrets(newBox), input);
    expect(request.target).toMatchObject({
      kind: 'WEBHOOK',
      accessToken: world.values.get('API_TOKEN'),
      signingSecret: world.values.get('DEPLOY_SIGNING_SECRET'),
    });
    expect(request.secrets.get('UNICODE_VALUE')).toBe(world.values.get('UNICODE_VALUE'));
    expect(() => buildDeliveryRequest(createDecryptedSecrets(world.box), input)).toThrow(
      DeliveryConfigurationError,
    );

    // A second rotation in the same millisecond keeps both old keys.
    const firstNewKeyText = readFileSync(keyFile, 'utf8');
    const again = await rotateMasterKey({ storage: world.storage, config: world.config, clock });
    expect(again).toMatchObject({ reencrypted: 6, oldKeyFile: `${keyFile}.old-${STAMP}-1` });
    expectSealedUnder(world, keyFileBox(keyFile), newBox);
    expect(readFileSync(`${keyFile}.old-${STAMP}-1`, 'utf8')).toBe(firstNewKeyText);
  });

  it('refuses a key that is not the database key, and changes nothing', async () => {
    const world = await openWorld();
    const elsewhere = tempDir();
    const wrongFile = join(elsewhere, 'wrong.key');
    writeFileSync(wrongFile, `${generateMasterKey()}\n`, { mode: 0o600 });
    const before = state(world, elsewhere);

    const config = loadConfig({
      TRIPLINE_DATA_DIR: world.dir,
      TRIPLINE_ENCRYPTION_KEY_FILE: wrongFile,
    });
    await expect(rotateMasterKey({ storage: world.storage, config, clock })).rejects.toThrow(
      `The current master key (${wrongFile}) opens none of the 6 secrets: it is not the key this database was encrypted with.`,
    );
    expect(state(world, elsewhere)).toEqual(before);
    expectSealedUnder(world, world.box, createSecretBox(parseMasterKey(generateMasterKey())));
  });

  it('aborts the whole rotation when any secret does not open, naming them but no value', async () => {
    const world = await openWorld();
    const db = world.storage.db;
    const [apiToken, bigValue] = ['API_TOKEN', 'BIG_VALUE'].map((name) =>
      db.select().from(secrets).where(eq(secrets.name, name)).get(),
    );
    // An envelope moved onto another row, and one cut short.
    db.update(secrets)
      .set({ ciphertext: String(apiToken?.ciphertext) })
      .where(eq(secrets.name, 'SLACK_URL'))
      .run();
    db.update(secrets)
      .set({ ciphertext: String(bigValue?.ciphertext).slice(0, -4) })
      .where(eq(secrets.name, 'BIG_VALUE'))
      .run();
    const before = state(world);

    let error: unknown;
    try {
      await rotateMasterKey({ storage: world.storage, config: world.config, clock });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(MasterKeyRotationError);
    const message = (error as Error).message;
    expect(message).toContain('2 of 6 secrets cannot be decrypted with the current master key');
    expect(message).toContain('default/BIG_VALUE, default/SLACK_URL');
    expect(message).toContain('Nothing was changed.');
    for (const value of world.values.values()) expect(message).not.toContain(value);

    expect(state(world)).toEqual(before);
    const token = rows(world).find((row) => row.name === 'API_TOKEN');
    expect(token && openSecret({ secretBox: world.box }, token)).toBe('tok-live-0123456789');
  });

  it('uses an operator-supplied key, and refuses a malformed one or the current one', async () => {
    const world = await openWorld();
    const keyFile = world.config.encryptionKeyFile;
    const supplied = parseMasterKey(generateMasterKey()).toString('hex');
    const before = state(world);

    await expect(
      rotateMasterKey({
        storage: world.storage,
        config: world.config,
        clock,
        newKey: { text: 'not-a-key', source: '/keys/new.key' },
      }),
    ).rejects.toThrow(
      'The new master key from /keys/new.key is malformed: The master key must be 32 bytes',
    );
    await expect(
      rotateMasterKey({
        storage: world.storage,
        config: world.config,
        clock,
        newKey: { text: readFileSync(keyFile, 'utf8'), source: keyFile },
      }),
    ).rejects.toThrow(
      `The new master key from ${keyFile} is the current key; give a different one.`,
    );
    expect(state(world)).toEqual(before);

    const result = await rotateMasterKey({
      storage: world.storage,
      config: world.config,
      clock,
      newKey: { text: `${supplied}\n`, source: '/keys/new.key' },
    });
    expect(result).toMatchObject({ mode: 'file', reencrypted: 6 });
    expect(parseMasterKey(readFileSync(keyFile, 'utf8')).toString('hex')).toBe(supplied);
    expectSealedUnder(world, createSecretBox(Buffer.from(supplied, 'hex')), world.box);
  });

  it('finishes a rotation interrupted between the commit and the rename', async () => {
    const world = await openWorld();
    const keyFile = world.config.encryptionKeyFile;
    const oldKeyText = readFileSync(keyFile, 'utf8');
    const newKeyText = `${generateMasterKey()}\n`;
    const newBox = createSecretBox(parseMasterKey(newKeyText));
    // The state a crash right after the commit leaves: new database, old key file, `.next` beside.
    await reencryptSecrets(world.storage.secrets, {
      from: world.box,
      to: newBox,
      keyLabel: keyFile,
    });
    writeFileSync(nextKeyFileOf(keyFile), newKeyText, { mode: 0o600 });

    const result = await rotateMasterKey({ storage: world.storage, config: world.config, clock });

    expect(result).toEqual({
      mode: 'file',
      reencrypted: 6,
      keyFile,
      oldKeyFile: `${keyFile}.old-${STAMP}`,
      resumed: true,
    });
    expect(readFileSync(keyFile, 'utf8')).toBe(newKeyText);
    expect(readFileSync(`${keyFile}.old-${STAMP}`, 'utf8')).toBe(oldKeyText);
    expect(existsSync(nextKeyFileOf(keyFile))).toBe(false);
    expectSealedUnder(world, newBox, world.box);
  });

  it('discards a `.next` left by a rotation that never committed, then rotates', async () => {
    const world = await openWorld();
    const keyFile = world.config.encryptionKeyFile;
    const stale = `${generateMasterKey()}\n`;
    writeFileSync(nextKeyFileOf(keyFile), stale, { mode: 0o600 });

    const result = await rotateMasterKey({ storage: world.storage, config: world.config, clock });

    expect(result).toMatchObject({ mode: 'file', reencrypted: 6, resumed: false });
    expect(existsSync(nextKeyFileOf(keyFile))).toBe(false);
    expect(readFileSync(keyFile, 'utf8')).not.toBe(stale);
    expectSealedUnder(world, keyFileBox(keyFile), world.box);
  });

  it('refuses when neither the key file nor a leftover `.next` opens the secrets', async () => {
    const world = await openWorld();
    const keyFile = world.config.encryptionKeyFile;
    const lost = createSecretBox(parseMasterKey(generateMasterKey()));
    await reencryptSecrets(world.storage.secrets, { from: world.box, to: lost, keyLabel: keyFile });
    writeFileSync(nextKeyFileOf(keyFile), `${generateMasterKey()}\n`, { mode: 0o600 });
    const before = state(world);

    await expect(
      rotateMasterKey({ storage: world.storage, config: world.config, clock }),
    ).rejects.toThrow(
      `Neither the current master key (${keyFile}) nor the one left in ${keyFile}.next`,
    );
    expect(state(world)).toEqual(before);
  });

  it('refuses to run without a key instead of generating one', async () => {
    const world = await openWorld();
    const missing = join(world.dir, 'missing.key');
    const config = loadConfig({
      TRIPLINE_DATA_DIR: world.dir,
      TRIPLINE_ENCRYPTION_KEY_FILE: missing,
    });
    await expect(rotateMasterKey({ storage: world.storage, config, clock })).rejects.toThrow(
      `No master key at ${missing} and TRIPLINE_ENCRYPTION_KEY is not set`,
    );
    expect(existsSync(missing)).toBe(false);
  });
});

describe('rotateMasterKey with TRIPLINE_ENCRYPTION_KEY', () => {
  it('reveals a generated key once, writes no file, and re-encrypts under it', async () => {
    const oldKey = generateMasterKey();
    const world = await openWorld({ TRIPLINE_ENCRYPTION_KEY: oldKey });
    const before = state(world);
    expect(before.files.map(([name]) => name)).toEqual(['admin-api-key']);
    const revealed: string[] = [];

    const result = await rotateMasterKey({
      storage: world.storage,
      config: world.config,
      clock,
      revealNewKey: (key) => revealed.push(key),
    });

    expect(result).toEqual({ mode: 'env', reencrypted: 6, newKeySource: 'the key printed above' });
    expect(revealed).toHaveLength(1);
    expect(state(world).files).toEqual(before.files);
    expectSealedUnder(world, createSecretBox(parseMasterKey(String(revealed[0]))), world.box);
  });

  it('rolls back when the new key cannot be shown, since it would exist nowhere', async () => {
    const world = await openWorld({ TRIPLINE_ENCRYPTION_KEY: generateMasterKey() });
    const before = state(world);
    await expect(
      rotateMasterKey({
        storage: world.storage,
        config: world.config,
        clock,
        revealNewKey: () => {
          throw new Error('EPIPE: stdout closed');
        },
      }),
    ).rejects.toThrow('EPIPE');
    expect(state(world)).toEqual(before);
    expectSealedUnder(world, world.box, createSecretBox(parseMasterKey(generateMasterKey())));
  });

  it('refuses a wrong key without revealing anything', async () => {
    const world = await openWorld({ TRIPLINE_ENCRYPTION_KEY: generateMasterKey() });
    const before = state(world);
    const config = loadConfig({
      TRIPLINE_DATA_DIR: world.dir,
      TRIPLINE_ENCRYPTION_KEY: generateMasterKey(),
    });
    const revealed: string[] = [];
    await expect(
      rotateMasterKey({
        storage: world.storage,
        config,
        clock,
        revealNewKey: (key) => revealed.push(key),
      }),
    ).rejects.toThrow(
      'The current master key (TRIPLINE_ENCRYPTION_KEY) opens none of the 6 secrets',
    );
    expect(revealed).toEqual([]);
    expect(state(world)).toEqual(before);
  });
});

/** The environment of a child process: this one's, without any Tripline setting leaking in. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('TRIPLINE_')),
  );
  return { ...base, ...env };
}

function runRotateCommand(env: Record<string, string>, args: string[] = []): Promise<CliResult> {
  return runCli(['rotate-master-key', ...args], env);
}

describe('tripline rotate-master-key', () => {
  const ADMIN_KEY = 'tl_rotation-test-admin-key';
  let receiver: Receiver | undefined;
  const servers: ServerProcess[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) server.child.kill('SIGKILL');
    await receiver?.close();
    receiver = undefined;
  });

  async function serve(dataDir: string): Promise<string> {
    const server = startServer(
      childEnv({
        TRIPLINE_DATA_DIR: dataDir,
        TRIPLINE_ADMIN_API_KEY: ADMIN_KEY,
        TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1',
      }) as Record<string, string>,
    );
    servers.push(server);
    return server.url;
  }

  async function stop(): Promise<void> {
    const server = servers.pop();
    server?.child.kill('SIGTERM');
    expect(await server?.exited).toBe(0);
  }

  async function call(url: string, query: string, variables: Record<string, unknown>) {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json()) as { data?: Record<string, Record<string, unknown>> };
    const result = Object.values(body.data ?? {})[0];
    if (!result) throw new Error(JSON.stringify(body));
    return result;
  }

  it('rotates a stopped server’s key file; the restarted server still delivers with its secrets', async () => {
    const dataDir = join(tempDir(), 'data');
    receiver = await startReceiver();
    let url = await serve(dataDir);
    expect(
      (
        await call(url, CREATE_SECRET, {
          i: { entity: 'default', name: 'API_TOKEN', value: 'tok-xyz' },
        })
      ).__typename,
    ).toBe('CreateSecretPayload');
    const created = await call(url, CREATE_WEBHOOK, {
      i: {
        entity: 'default',
        name: 'deploy',
        url: `${receiver.url}/hook`,
        accessTokenSecret: 'API_TOKEN',
      },
    });
    const signingSecret = String(created.signingSecret);
    const actionId = (created as { action: { id: string } }).action.id;
    await stop();

    const keyFile = join(dataDir, 'master.key');
    const oldKeyText = readFileSync(keyFile, 'utf8');
    const run = await runRotateCommand({ TRIPLINE_DATA_DIR: dataDir });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Re-encrypted 2 secrets with a new master key.');
    expect(run.stdout).toContain(`New key: ${keyFile} (mode 0600).`);
    const backup = /Old key kept: (\S+) \(mode 0600\)/.exec(run.stdout)?.[1];
    expect(backup).toMatch(new RegExp(`^${keyFile.replace(/[.]/g, '\\.')}\\.old-`));
    expect(readFileSync(String(backup), 'utf8')).toBe(oldKeyText);
    expect(readFileSync(keyFile, 'utf8')).not.toBe(oldKeyText);
    expect(run.stdout).not.toContain('tok-xyz');
    expect(run.stdout).not.toContain(readFileSync(keyFile, 'utf8').trim());

    // In process: every secret opens with the new key file, through the service and delivery loaders.
    const storage = openDatabase(join(dataDir, 'tripline.db'));
    try {
      const newBox = keyFileBox(keyFile);
      const byName = new Map(
        storage.db
          .select()
          .from(secrets)
          .all()
          .map((row) => [row.name, openSecret({ secretBox: newBox }, row)]),
      );
      expect(byName.get('API_TOKEN')).toBe('tok-xyz');
      expect(byName.get('DEPLOY_SIGNING_SECRET')).toBe(signingSecret);
      const action = storage.db.select().from(actions).where(eq(actions.name, 'deploy')).get();
      if (!action) throw new Error('no deploy action');
      const sealed = storage.db.select().from(secrets).all();
      const request = buildDeliveryRequest(createDecryptedSecrets(newBox), {
        action,
        secrets: sealed,
        content: {
          payloadTemplate: null,
          slackTitle: null,
          slackMessage: null,
          slackSeverity: null,
        },
        context: {
          eventType: 'CREATE_ARTIFACT',
          eventAuthor: 'admin',
          eventId: 'e1',
          automationName: 'a',
          entityName: 'default',
          projectName: 'p',
          artifactCollectionName: 'm',
          artifactType: 'model',
          artifactVersionIndex: 0,
          alias: null,
          tag: null,
          metadata: {},
        },
        collectionOwner: 'PROJECT',
        webhookId: 'w1',
      });
      expect(request.target).toMatchObject({ accessToken: 'tok-xyz', signingSecret });
    } finally {
      storage.close();
    }

    // The real server, restarted on the rotated key, sends the token and a verifiable signature.
    url = await serve(dataDir);
    const tested = await call(
      url,
      `mutation($i: TestActionInput!) { testAction(input: $i) { __typename
        ... on TestActionPayload { response { __typename success statusCode errorMessage } } } }`,
      { i: { id: actionId } },
    );
    expect(tested.response).toMatchObject({
      __typename: 'ActionTestResponse',
      success: true,
      statusCode: 200,
    });
    const [request] = await receiver.waitForRequests(1);
    expect(request?.headers.authorization).toBe('Bearer tok-xyz');
    expect(
      verifySignature({
        secret: signingSecret,
        headers: request?.headers ?? {},
        body: request?.body ?? '',
      }),
    ).toBe(true);
    await stop();
  }, 60_000);

  it('prints a generated key once in environment mode and writes no file', async () => {
    const world = await openWorld({ TRIPLINE_ENCRYPTION_KEY: generateMasterKey() });
    const oldKey = String(world.config.encryptionKey);
    await world.app.stop(0);
    const before = state(world).files;

    const run = await runRotateCommand({
      TRIPLINE_DATA_DIR: world.dir,
      TRIPLINE_ENCRYPTION_KEY: oldKey,
    });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const printed = /shown once[^\n]*\n {2}(\S+)\n/.exec(run.stdout)?.[1];
    expect(printed).toBeDefined();
    expect(run.stdout.indexOf(String(printed))).toBe(run.stdout.lastIndexOf(String(printed)));
    expect(run.stdout).toContain('Re-encrypted 6 secrets with the new master key');
    expect(run.stdout).toContain('Set TRIPLINE_ENCRYPTION_KEY to it before starting the server.');
    expect(state(world).files).toEqual(before);
    expectSealedUnder(world, createSecretBox(parseMasterKey(String(printed))), world.box);
  });

  it('exits non-zero with a clear message for a wrong key, a missing database or bad arguments', async () => {
    const world = await openWorld();
    const before = state(world);
    const wrong = await runRotateCommand({
      TRIPLINE_DATA_DIR: world.dir,
      TRIPLINE_ENCRYPTION_KEY: generateMasterKey(),
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toBe('');
    expect(wrong.stderr).toContain(
      'The current master key (TRIPLINE_ENCRYPTION_KEY) opens none of the 6 secrets',
    );
    expect(state(world)).toEqual(before);

    const empty = join(tempDir(), 'nothing-here');
    const missing = await runRotateCommand({ TRIPLINE_DATA_DIR: empty });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`No database at ${join(empty, 'tripline.db')}`);
    expect(existsSync(empty)).toBe(false);

    const both = await runRotateCommand(
      { TRIPLINE_DATA_DIR: world.dir, TRIPLINE_NEW_ENCRYPTION_KEY: generateMasterKey() },
      ['--new-key-file', join(world.dir, 'x.key')],
    );
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('either --new-key-file or TRIPLINE_NEW_ENCRYPTION_KEY');
    expect(state(world)).toEqual(before);
  });
});
