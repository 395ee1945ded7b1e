import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newId } from '../src/ids.js';
import { findSecretByName, openSecret, secretNamesOf } from '../src/modules/secrets/service.js';
import { automationSecretRefs, automations } from '../src/storage/sqlite/schema.js';
import { createTestApp, fakeClock, sqliteOnly, type TestApp } from './support/app.js';
import { payloadObjects } from './support/fixtures.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly(
  'appears in no response, no log line and nowhere in the database files',
  'deletes an unused secret and returns it as it was',
  'is bound to its row: an envelope copied onto another secret does not open',
  'is for admins of the entity only',
  'keeps the value exactly, up to 16 KiB of UTF-8',
  'needs a valid API key',
  'refuses a value a Slack action using the secret could not post to',
  'refuses an empty or oversized value and keeps the old one',
  'refuses while actions or automations use it, naming them',
  'replaces the value and records who and when',
  "secretNamesOf lists the entity's names only",
);

const ERROR = `__typename
  ... on Error { message
  ... on ValidationError { field }
  ... on NotFoundError { field }
  ... on ConflictError { field }
  ... on PermissionDeniedError { requiredRole } }`;

const SECRET_FIELDS = `id name createdAt rotatedAt
  createdBy { name } rotatedBy { name }
  usedBy { actions automations }`;

const CREATE = `mutation($input: CreateSecretInput!) {
  createSecret(input: $input) { ${ERROR}
    ... on CreateSecretPayload { secret { __typename ${SECRET_FIELDS} } } } }`;
const ROTATE = `mutation($input: RotateSecretInput!) {
  rotateSecret(input: $input) { ${ERROR}
    ... on RotateSecretPayload { secret { __typename ${SECRET_FIELDS} } } } }`;
const DELETE = `mutation($input: DeleteSecretInput!) {
  deleteSecret(input: $input) { ${ERROR}
    ... on DeleteSecretPayload { secret { __typename ${SECRET_FIELDS} } } } }`;
const LIST = `query($entity: String!, $first: Int, $after: String) {
  entity(name: $entity) { secrets(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { ${SECRET_FIELDS} } } } } }`;
const SLACK_ACTION = `mutation($input: CreateSlackActionInput!) {
  createSlackAction(input: $input) { ${ERROR}
    ... on CreateSlackActionPayload { action { id name } } } }`;
const WEBHOOK_ACTION = `mutation($input: CreateWebhookActionInput!) {
  createWebhookAction(input: $input) { ${ERROR}
    ... on CreateWebhookActionPayload { signingSecret action { id name } } } }`;

/** Every readable field that could conceivably carry a secret value. */
const EVERYTHING = `query($id: ID!) {
  viewer { user { name } entities { role entity { name } } }
  node(id: $id) { id ... on Secret { ${SECRET_FIELDS} } }
  entity(name: "default") {
    secrets(first: 100) { totalCount edges { cursor node { ${SECRET_FIELDS} } } }
    actions(first: 100) { totalCount edges { node {
      id name kind enabled disabledReason createdAt updatedAt usedBy
      ... on WebhookAction { url accessTokenSecret signingSecret headers { name value } }
      ... on SlackAction { channel webhookUrlSecret } } } }
  } }`;

describe('secrets', () => {
  let t: TestApp;
  const clock = fakeClock();

  beforeEach(async () => {
    t = await createTestApp({ clock });
  });
  afterEach(() => t.close());

  const gqlObjects = async (...args: Parameters<TestApp['gql']>) =>
    payloadObjects(await t.gql(...args));
  const create = async (name: string, value: string, key?: string | null, entity = 'default') =>
    payloadObjects(await t.gql(CREATE, { input: { entity, name, value } }, key));

  async function revokedKey(): Promise<string> {
    const created = await t.gql(
      `mutation { createApiKey(input: { name: "soon revoked" }) {
        ... on CreateApiKeyPayload { secret: plaintextKey apiKey { id } } } }`,
    );
    const { secret, apiKey } = created.data.createApiKey;
    const revoked = await t.gql(
      `mutation($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`,
      {
        id: apiKey.id,
      },
    );
    expect(revoked.data.revokeApiKey.__typename).toBe('RevokeApiKeyPayload');
    return secret;
  }

  /** Stands in for the automations module: an automation whose template names the secret. */
  async function automationUsing(secretName: string, name: string): Promise<void> {
    const entityId = entityIdOfDefault();
    const secret = await findSecretByName(t.deps, entityId, secretName);
    const actionId = t.storage.sqlite.prepare('select id from actions limit 1').pluck().get();
    if (!secret || typeof actionId !== 'string')
      throw new Error('create a secret and an action first');
    const automationId = newId();
    t.storage.db
      .insert(automations)
      .values({
        id: automationId,
        entityId,
        name,
        eventType: 'CREATE_ARTIFACT',
        scopeType: 'PROJECT',
        scopeId: newId(),
        actionId,
      })
      .run();
    t.storage.db.insert(automationSecretRefs).values({ automationId, secretId: secret.id }).run();
  }

  function entityIdOfDefault(): string {
    const row = t.storage.sqlite
      .prepare(`select id from entities where name = 'default'`)
      .get() as { id: string };
    return row.id;
  }

  describe('createSecret', () => {
    it('stores a secret and shows its name, author and users, never its value', async () => {
      const result = await create('SLACK_URL', 'https://hooks.slack.com/services/T/B/x');
      const secret = result.data.createSecret;
      expect(secret).toMatchObject({
        __typename: 'Secret',
        name: 'SLACK_URL',
        rotatedAt: null,
        rotatedBy: null,
        usedBy: { actions: [], automations: [] },
      });
      expect(secret.createdBy.name).toBeTruthy();
      expect(JSON.stringify(result)).not.toContain('hooks.slack.com');
      expect(t.logLines.some((line) => line.includes('secret created'))).toBe(true);
    });

    it('keeps the value exactly, up to 16 KiB of UTF-8', async () => {
      const value = `  ${'é'.repeat(8190)}  `; // 16384 bytes, surrounding spaces kept
      expect((await create('BIG', value)).data.createSecret.__typename).toBe('Secret');
      const row = await findSecretByName(t.deps, entityIdOfDefault(), 'BIG');
      expect(row && openSecret(t.deps, row)).toBe(value);
    });

    it.each([
      ['lower_case'],
      ['1STARTS_WITH_DIGIT'],
      ['_LEADING'],
      ['HAS-DASH'],
      ['HAS SPACE'],
      [''],
      [`A${'B'.repeat(64)}`],
    ])('refuses the name %j', async (name) => {
      const result = (await create(name, 'v4lue')).data.createSecret;
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.name' });
      expect(result.message).toMatch(/capital letters, digits and underscores/);
    });

    it('accepts a 64-character name', async () => {
      const name = `A${'_'.repeat(62)}Z`;
      expect((await create(name, 'x')).data.createSecret.name).toBe(name);
    });

    it('refuses an empty value', async () => {
      const result = (await create('EMPTY', '')).data.createSecret;
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.value' });
      expect(result.message).toMatch(/empty/);
    });

    it('refuses a value over 16 KiB without quoting it', async () => {
      const value = `secret-${'é'.repeat(8190)}`;
      const result = (await create('HUGE', value)).data.createSecret;
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.value' });
      expect(result.message).toMatch(/16384 bytes/);
      expect(result.message).not.toContain('secret-');
    });

    it('refuses a duplicate name without echoing either value', async () => {
      await create('TOKEN', 'first-value-123');
      const result = (await create('TOKEN', 'second-value-456')).data.createSecret;
      expect(result).toMatchObject({ __typename: 'ConflictError', field: 'input.name' });
      expect(result.message).toMatch(/rotateSecret/);
      expect(JSON.stringify(result)).not.toMatch(/first-value|second-value/);
    });

    it('allows the same name in another entity', async () => {
      const key = await t.stranger();
      await create('TOKEN', 'a');
      expect((await create('TOKEN', 'b', key, 'other')).data.createSecret.name).toBe('TOKEN');
    });

    it('is for admins only', async () => {
      for (const role of ['MEMBER', 'VIEWER'] as const) {
        const result = (await create('TOKEN', 'v', await t.member(role))).data.createSecret;
        expect(result).toMatchObject({
          __typename: 'PermissionDeniedError',
          requiredRole: 'ADMIN',
        });
      }
      expect((await create('TOKEN', 'v', await t.member('ADMIN'))).data.createSecret.name).toBe(
        'TOKEN',
      );
    });

    it('treats another entity as nonexistent', async () => {
      const result = (await create('TOKEN', 'v', await t.stranger())).data.createSecret;
      expect(result).toMatchObject({ __typename: 'NotFoundError', field: 'input.entity' });
    });

    it('needs a valid API key', async () => {
      for (const key of [null, await revokedKey()]) {
        const result = await create('TOKEN', 'v', key);
        expect(result.status).toBe(401);
        expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      }
      expect((await secretNamesOf(t.deps, entityIdOfDefault())).size).toBe(0);
    });
  });

  describe('rotateSecret', () => {
    it('replaces the value and records who and when', async () => {
      await create('TOKEN', 'old-value');
      clock.advance(60_000);
      const rotator = await t.member('ADMIN', 'rotator');
      const result = (
        await gqlObjects(
          ROTATE,
          { input: { entity: 'default', name: 'TOKEN', value: 'new-value' } },
          rotator,
        )
      ).data.rotateSecret;
      expect(result).toMatchObject({ name: 'TOKEN', rotatedBy: { name: 'rotator' } });
      expect(result.rotatedAt).toBe(clock.now().toISOString());
      const row = await findSecretByName(t.deps, entityIdOfDefault(), 'TOKEN');
      expect(row && openSecret(t.deps, row)).toBe('new-value');
      expect(t.logLines.some((line) => line.includes('secret rotated'))).toBe(true);
    });

    it('refuses an unknown secret', async () => {
      const result = (
        await gqlObjects(ROTATE, { input: { entity: 'default', name: 'NOPE', value: 'v' } })
      ).data.rotateSecret;
      expect(result).toMatchObject({ __typename: 'NotFoundError', field: 'input.name' });
      expect(result.message).toMatch(/create it first/);
    });

    it('refuses an empty or oversized value and keeps the old one', async () => {
      await create('TOKEN', 'kept');
      for (const value of ['', 'x'.repeat(16 * 1024 + 1)]) {
        const result = (
          await gqlObjects(ROTATE, { input: { entity: 'default', name: 'TOKEN', value } })
        ).data.rotateSecret;
        expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.value' });
      }
      const row = await findSecretByName(t.deps, entityIdOfDefault(), 'TOKEN');
      expect(row && openSecret(t.deps, row)).toBe('kept');
    });

    it('refuses a value a Slack action using the secret could not post to', async () => {
      await create('SLACK_URL', 'https://hooks.slack.com/services/T/B/x');
      const slack = await t.gql(SLACK_ACTION, {
        input: { entity: 'default', name: 'alerts', channel: '#ml', webhookUrlSecret: 'SLACK_URL' },
      });
      expect(slack.data.createSlackAction.__typename).toBe('CreateSlackActionPayload');
      for (const value of ['http://hooks.slack.com/services/T/B/y', 'not a url']) {
        const result = (
          await gqlObjects(ROTATE, { input: { entity: 'default', name: 'SLACK_URL', value } })
        ).data.rotateSecret;
        expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.value' });
        expect(result.message).toMatch(/Slack action "alerts"/);
        expect(result.message).toMatch(/https/);
        expect(result.message).not.toContain('hooks.slack.com/services/T/B/y');
      }
      const row = await findSecretByName(t.deps, entityIdOfDefault(), 'SLACK_URL');
      expect(row && openSecret(t.deps, row)).toBe('https://hooks.slack.com/services/T/B/x');
      const ok = (
        await gqlObjects(ROTATE, {
          input: {
            entity: 'default',
            name: 'SLACK_URL',
            value: 'https://hooks.slack.com/services/T/B/z',
          },
        })
      ).data.rotateSecret;
      expect(ok.name).toBe('SLACK_URL');
    });

    it('is for admins of the entity only', async () => {
      await create('TOKEN', 'kept');
      const input = { entity: 'default', name: 'TOKEN', value: 'changed' };
      for (const role of ['MEMBER', 'VIEWER'] as const) {
        const result = (await gqlObjects(ROTATE, { input }, await t.member(role))).data
          .rotateSecret;
        expect(result).toMatchObject({
          __typename: 'PermissionDeniedError',
          requiredRole: 'ADMIN',
        });
      }
      const foreign = (await gqlObjects(ROTATE, { input }, await t.stranger())).data.rotateSecret;
      expect(foreign).toMatchObject({ __typename: 'NotFoundError', field: 'input.entity' });
      for (const key of [null, await revokedKey()]) {
        expect((await gqlObjects(ROTATE, { input }, key)).status).toBe(401);
      }
      const row = await findSecretByName(t.deps, entityIdOfDefault(), 'TOKEN');
      expect(row && openSecret(t.deps, row)).toBe('kept');
    });
  });

  describe('deleteSecret', () => {
    it('deletes an unused secret and returns it as it was', async () => {
      await create('TOKEN', 'v');
      const result = (await gqlObjects(DELETE, { input: { entity: 'default', name: 'TOKEN' } }))
        .data.deleteSecret;
      expect(result).toMatchObject({ __typename: 'Secret', name: 'TOKEN' });
      expect((await secretNamesOf(t.deps, entityIdOfDefault())).has('TOKEN')).toBe(false);
      const node = await t.gql(`query($id: ID!) { node(id: $id) { id } }`, { id: result.id });
      expect(node.data.node).toBeNull();
    });

    it('refuses an unknown secret', async () => {
      const result = (await gqlObjects(DELETE, { input: { entity: 'default', name: 'NOPE' } })).data
        .deleteSecret;
      expect(result).toMatchObject({ __typename: 'NotFoundError', field: 'input.name' });
    });

    it('refuses while actions or automations use it, naming them', async () => {
      await create('SLACK_URL', 'https://hooks.slack.com/services/T/B/x');
      await create('TOKEN', 'bearer-token');
      const slack = await t.gql(SLACK_ACTION, {
        input: { entity: 'default', name: 'alerts', channel: '#ml', webhookUrlSecret: 'SLACK_URL' },
      });
      const hook = await t.gql(WEBHOOK_ACTION, {
        input: {
          entity: 'default',
          name: 'deploy',
          url: 'https://example.com/hook',
          accessTokenSecret: 'TOKEN',
        },
      });
      expect(slack.data.createSlackAction.action.name).toBe('alerts');
      expect(hook.data.createWebhookAction.action.name).toBe('deploy');
      await automationUsing('TOKEN', 'nightly');

      const slackUse = (
        await gqlObjects(DELETE, { input: { entity: 'default', name: 'SLACK_URL' } })
      ).data.deleteSecret;
      expect(slackUse).toMatchObject({ __typename: 'ConflictError', field: 'input.name' });
      expect(slackUse.message).toBe(
        'Secret "SLACK_URL" is used by actions "alerts"; point them at another secret or delete them first.',
      );
      const tokenUse = (await gqlObjects(DELETE, { input: { entity: 'default', name: 'TOKEN' } }))
        .data.deleteSecret;
      expect(tokenUse.message).toBe(
        'Secret "TOKEN" is used by actions "deploy" and automations "nightly"; point them at another secret or delete them first.',
      );
      const signing = (
        await gqlObjects(DELETE, { input: { entity: 'default', name: 'DEPLOY_SIGNING_SECRET' } })
      ).data.deleteSecret;
      expect(signing.message).toMatch(/used by actions "deploy"/);

      const list = await t.gql(LIST, { entity: 'default' });
      const usedBy = Object.fromEntries(
        list.data.entity.secrets.edges.map((e: { node: { name: string; usedBy: unknown } }) => [
          e.node.name,
          e.node.usedBy,
        ]),
      );
      expect(usedBy).toEqual({
        DEPLOY_SIGNING_SECRET: { actions: ['deploy'], automations: [] },
        SLACK_URL: { actions: ['alerts'], automations: [] },
        TOKEN: { actions: ['deploy'], automations: ['nightly'] },
      });
    });

    it('is for admins of the entity only', async () => {
      await create('TOKEN', 'v');
      const input = { entity: 'default', name: 'TOKEN' };
      for (const role of ['MEMBER', 'VIEWER'] as const) {
        const result = (await gqlObjects(DELETE, { input }, await t.member(role))).data
          .deleteSecret;
        expect(result).toMatchObject({
          __typename: 'PermissionDeniedError',
          requiredRole: 'ADMIN',
        });
      }
      const foreign = (await gqlObjects(DELETE, { input }, await t.stranger())).data.deleteSecret;
      expect(foreign).toMatchObject({ __typename: 'NotFoundError', field: 'input.entity' });
      for (const key of [null, await revokedKey()]) {
        expect((await gqlObjects(DELETE, { input }, key)).status).toBe(401);
      }
      expect((await secretNamesOf(t.deps, entityIdOfDefault())).has('TOKEN')).toBe(true);
    });
  });

  describe('Entity.secrets', () => {
    it('lists names by name in pages, for every role', async () => {
      for (const name of ['ZETA', 'ALPHA', 'MID']) await create(name, `value-of-${name}`);
      for (const role of ['ADMIN', 'MEMBER', 'VIEWER'] as const) {
        const page = await t.gql(LIST, { entity: 'default', first: 2 }, await t.member(role));
        const secrets = page.data.entity.secrets;
        expect(secrets.totalCount).toBe(3);
        expect(secrets.edges.map((e: { node: { name: string } }) => e.node.name)).toEqual([
          'ALPHA',
          'MID',
        ]);
        expect(secrets.pageInfo.hasNextPage).toBe(true);
        const next = await t.gql(LIST, {
          entity: 'default',
          first: 2,
          after: secrets.pageInfo.endCursor,
        });
        expect(
          next.data.entity.secrets.edges.map((e: { node: { name: string } }) => e.node.name),
        ).toEqual(['ZETA']);
      }
    });

    it("hides another entity's secrets, in lists and by id", async () => {
      const created = (await create('TOKEN', 'v')).data.createSecret;
      const key = await t.stranger();
      expect((await t.gql(LIST, { entity: 'default' }, key)).data.entity).toBeNull();
      const node = await t.gql(`query($id: ID!) { node(id: $id) { id } }`, { id: created.id }, key);
      expect(node.data.node).toBeNull();
      const own = await t.gql(
        `query($id: ID!) { node(id: $id) { ... on Secret { name } } }`,
        { id: created.id },
        await t.member('VIEWER'),
      );
      expect(own.data.node.name).toBe('TOKEN');
    });
  });

  describe('the value', () => {
    it('appears in no response, no log line and nowhere in the database files', async () => {
      const value = 'sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0';
      const rotated = 'sk-live-rotated-0a1b2c3d4e5f60718293a4b5c6d7e8f9';
      const responses: unknown[] = [];
      const record = async (request: Promise<unknown>) => {
        responses.push(await request);
      };

      await record(create('API_TOKEN', value));
      await record(create('API_TOKEN', value)); // conflict
      await record(create('bad name', value)); // validation
      await record(create('API_TOKEN', value, await t.member('MEMBER'))); // permission
      await record(
        t.gql(WEBHOOK_ACTION, {
          input: {
            entity: 'default',
            name: 'hook',
            url: 'https://example.com/',
            accessTokenSecret: 'API_TOKEN',
          },
        }),
      );
      const id = (await findSecretByName(t.deps, entityIdOfDefault(), 'API_TOKEN'))?.id;
      const secret = (responses[0] as { data: { createSecret: { id: string } } }).data.createSecret;
      await record(t.gql(EVERYTHING, { id: secret.id }));
      await record(
        t.gql(ROTATE, { input: { entity: 'default', name: 'API_TOKEN', value: rotated } }),
      );
      await record(t.gql(ROTATE, { input: { entity: 'default', name: 'NOPE', value: rotated } }));
      await record(t.gql(EVERYTHING, { id: secret.id }));
      await record(t.gql(DELETE, { input: { entity: 'default', name: 'API_TOKEN' } }));

      expect(id).toBeDefined();
      const row = await findSecretByName(t.deps, entityIdOfDefault(), 'API_TOKEN');
      expect(row && openSecret(t.deps, row)).toBe(rotated);

      const everything = JSON.stringify(responses);
      expect(everything).toContain('API_TOKEN');
      for (const text of [value, rotated]) {
        expect(everything).not.toContain(text);
        expect(t.logLines.join('\n')).not.toContain(text);
      }
      expect(t.logLines.join('\n')).toContain('API_TOKEN');

      t.storage.sqlite.pragma('wal_checkpoint(FULL)');
      const files = [t.config.databaseFile, `${t.config.databaseFile}-wal`].map((file) =>
        readFileSync(file),
      );
      // The search works: the secret's name is stored in the clear.
      expect(files.some((bytes) => bytes.includes('API_TOKEN'))).toBe(true);
      for (const bytes of files) {
        for (const text of [value, rotated]) {
          expect(bytes.includes(text)).toBe(false);
          expect(bytes.includes(Buffer.from(text).toString('base64'))).toBe(false);
          expect(bytes.includes(Buffer.from(text, 'utf16le'))).toBe(false);
        }
      }
    });

    it('is bound to its row: an envelope copied onto another secret does not open', async () => {
      await create('FIRST', 'first-value');
      await create('SECOND', 'second-value');
      const first = await findSecretByName(t.deps, entityIdOfDefault(), 'FIRST');
      const second = await findSecretByName(t.deps, entityIdOfDefault(), 'SECOND');
      if (!first || !second) throw new Error('secrets missing');
      expect(openSecret(t.deps, first)).toBe('first-value');
      expect(() => openSecret(t.deps, { ...second, ciphertext: first.ciphertext })).toThrow();
    });
  });

  it("secretNamesOf lists the entity's names only", async () => {
    const key = await t.stranger();
    await create('ONE', 'v');
    await create('TWO', 'v');
    await create('THEIRS', 'v', key, 'other');
    expect([...(await secretNamesOf(t.deps, entityIdOfDefault()))].sort()).toEqual(['ONE', 'TWO']);
  });
});
