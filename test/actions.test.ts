import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { signPayload } from '../src/delivery/signing.js';
import { newId, parsePublicId, publicId } from '../src/ids.js';
import { findSecretByName, openSecret } from '../src/modules/secrets/service.js';
import { automations } from '../src/storage/sqlite/schema.js';
import { createTestApp, fakeClock, sqliteOnly, type TestApp } from './support/app.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly(
  'deletes an unused action and keeps its secrets',
  'disables with a reason and re-enables, clearing it',
  'generates a signing secret, stores it as a secret and shows it once',
  'never shows or stores the generated signing secret in the clear again',
  'refuses a bad or taken name',
  'refuses while automations use it, naming them',
  'uses a named signing secret and then shows none',
);

const ERROR = `__typename
  ... on Error { message
  ... on ValidationError { field }
  ... on NotFoundError { field }
  ... on ConflictError { field }
  ... on PermissionDeniedError { requiredRole } }`;

const ACTION_FIELDS = `__typename id name kind enabled disabledReason createdAt updatedAt usedBy
  ... on WebhookAction { url accessTokenSecret signingSecret headers { name value } }
  ... on SlackAction { channel webhookUrlSecret }`;

const CREATE_WEBHOOK = `mutation($input: CreateWebhookActionInput!) {
  createWebhookAction(input: $input) { ${ERROR}
    ... on CreateWebhookActionPayload { signingSecret action { ... on Action { ${ACTION_FIELDS} } } } } }`;
const CREATE_SLACK = `mutation($input: CreateSlackActionInput!) {
  createSlackAction(input: $input) { ${ERROR}
    ... on CreateSlackActionPayload { action { ... on Action { ${ACTION_FIELDS} } } } } }`;
const UPDATE = `mutation($input: UpdateActionInput!) {
  updateAction(input: $input) { ${ERROR} ... on UpdateActionPayload { action { ${ACTION_FIELDS} } } } }`;
const DELETE = `mutation($input: DeleteActionInput!) {
  deleteAction(input: $input) { ${ERROR} ... on DeleteActionPayload { action { ${ACTION_FIELDS} } } } }`;
const CREATE_SECRET = `mutation($input: CreateSecretInput!) {
  createSecret(input: $input) { ${ERROR} ... on CreateSecretPayload { secret { name } } } }`;
const LIST = `query($kind: ActionKind, $enabled: Boolean, $first: Int) {
  entity(name: "default") { actions(kind: $kind, enabled: $enabled, first: $first) {
    totalCount pageInfo { hasNextPage } edges { node { ${ACTION_FIELDS} } } } } }`;
const NODE = `query($id: ID!) { node(id: $id) { id ... on Action { ${ACTION_FIELDS} } } }`;

const SLACK_URL = 'https://hooks.slack.com/services/T000/B000/XXXXXXXX';
const SIGNING_KEY = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

describe('actions', () => {
  let t: TestApp;
  const clock = fakeClock();

  beforeEach(async () => {
    t = await createTestApp({ clock });
    for (const [name, value] of [
      ['TOKEN', 'bearer-token-value'],
      ['SLACK_URL', SLACK_URL],
      ['MY_SIGNING_KEY', SIGNING_KEY],
      ['NOT_A_KEY', 'just some words'],
    ]) {
      const created = await t.gql(CREATE_SECRET, { input: { entity: 'default', name, value } });
      expect(created.data.createSecret.secret.name).toBe(name);
    }
  });
  afterEach(() => t.close());

  const webhook = (input: Record<string, unknown>, key?: string | null) =>
    t.gql(
      CREATE_WEBHOOK,
      {
        input: { entity: 'default', name: 'deploy', url: 'https://example.com/hook', ...input },
      },
      key,
    );
  const slack = (input: Record<string, unknown>, key?: string | null) =>
    t.gql(
      CREATE_SLACK,
      {
        input: {
          entity: 'default',
          name: 'alerts',
          channel: '#ml-alerts',
          webhookUrlSecret: 'SLACK_URL',
          ...input,
        },
      },
      key,
    );
  /** The created Slack action, or the error in its place. */
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary response shapes
  const slackOutcome = (res: any) =>
    res.data.createSlackAction.action ?? res.data.createSlackAction;
  const update = (input: Record<string, unknown>, key?: string | null) =>
    t.gql(UPDATE, { input }, key);

  async function createdWebhook(input: Record<string, unknown> = {}) {
    const response = await webhook(input);
    if (!response.data) throw new Error(JSON.stringify(response.errors));
    const result = response.data.createWebhookAction;
    expect(result.__typename).toBe('CreateWebhookActionPayload');
    return result.action;
  }

  function defaultEntityId(): string {
    return t.storage.sqlite
      .prepare(`select id from entities where name = 'default'`)
      .pluck()
      .get() as string;
  }

  /** Stands in for the automations module: an automation that uses the action. */
  function automationUsing(actionGlobalId: string, name: string): void {
    const actionId = parsePublicId(actionGlobalId)?.id ?? '';
    t.storage.db
      .insert(automations)
      .values({
        id: newId(),
        entityId: defaultEntityId(),
        name,
        eventType: 'CREATE_ARTIFACT',
        scopeType: 'PROJECT',
        scopeId: newId(),
        actionId,
      })
      .run();
  }

  async function revokedKey(): Promise<string> {
    const created = await t.gql(
      `mutation { createApiKey(input: { name: "soon revoked" }) {
        ... on CreateApiKeyPayload { plaintextKey apiKey { id } } } }`,
    );
    const { plaintextKey: secret, apiKey } = created.data.createApiKey;
    await t.gql(`mutation($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`, {
      id: apiKey.id,
    });
    return secret;
  }

  describe('createWebhookAction', () => {
    it('generates a signing secret, stores it as a secret and shows it once', async () => {
      const result = (
        await webhook({ accessTokenSecret: 'TOKEN', headers: [{ name: 'X-Team', value: 'ml' }] })
      ).data.createWebhookAction;
      expect(result.signingSecret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
      expect(result.action).toMatchObject({
        __typename: 'WebhookAction',
        name: 'deploy',
        kind: 'WEBHOOK',
        enabled: true,
        disabledReason: null,
        url: 'https://example.com/hook',
        accessTokenSecret: 'TOKEN',
        signingSecret: 'DEPLOY_SIGNING_SECRET',
        headers: [{ name: 'X-Team', value: 'ml' }],
        usedBy: [],
      });
      const stored = await findSecretByName(t.deps, defaultEntityId(), 'DEPLOY_SIGNING_SECRET');
      expect(stored && openSecret(t.deps, stored)).toBe(result.signingSecret);
      // What the receiver was shown verifies what Tripline will sign with.
      expect(signPayload(result.signingSecret, 'msg_1', 1, '{}')).toBe(
        signPayload(stored ? openSecret(t.deps, stored) : '', 'msg_1', 1, '{}'),
      );
    });

    it('never shows or stores the generated signing secret in the clear again', async () => {
      const { signingSecret, action } = (await webhook({})).data.createWebhookAction;
      const later = JSON.stringify([
        await t.gql(NODE, { id: action.id }),
        await t.gql(LIST, {}),
        await t.gql(`{ entity(name: "default") { secrets { edges { node {
          name createdAt rotatedAt usedBy { actions automations } } } } } }`),
      ]);
      expect(later).toContain('DEPLOY_SIGNING_SECRET');
      expect(later).not.toContain(signingSecret);
      expect(t.logLines.join('\n')).not.toContain(signingSecret);
      expect(t.logLines.join('\n')).toContain('webhook action created');
      t.storage.sqlite.pragma('wal_checkpoint(FULL)');
      for (const file of [t.config.databaseFile, `${t.config.databaseFile}-wal`]) {
        expect(readFileSync(file).includes(signingSecret)).toBe(false);
        expect(readFileSync(file).includes(signingSecret.slice('whsec_'.length))).toBe(false);
      }
    });

    it('uses a named signing secret and then shows none', async () => {
      const result = (await webhook({ signingSecret: 'MY_SIGNING_KEY' })).data.createWebhookAction;
      expect(result.signingSecret).toBeNull();
      expect(result.action.signingSecret).toBe('MY_SIGNING_KEY');
      expect(
        await findSecretByName(t.deps, defaultEntityId(), 'DEPLOY_SIGNING_SECRET'),
      ).toBeUndefined();
    });

    it('refuses a named signing secret that holds no whsec_ key, without quoting it', async () => {
      const result = (await webhook({ signingSecret: 'NOT_A_KEY' })).data.createWebhookAction;
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.signingSecret' });
      expect(result.message).toMatch(/whsec_/);
      expect(result.message).not.toContain('just some words');
    });

    it('names generated secrets after the action, with a counter when taken', async () => {
      await t.gql(CREATE_SECRET, {
        input: { entity: 'default', name: 'DEPLOY_HOOK_SIGNING_SECRET', value: 'taken' },
      });
      const names: string[] = [];
      for (const name of [
        'Deploy hook',
        'deploy-hook!',
        'Déploy  hook',
        '123 go',
        '日本',
        'x'.repeat(64),
      ]) {
        const result = (await webhook({ name })).data.createWebhookAction;
        names.push(result.action.signingSecret);
      }
      expect(names).toEqual([
        'DEPLOY_HOOK_SIGNING_SECRET_2',
        'DEPLOY_HOOK_SIGNING_SECRET_3',
        'DEPLOY_HOOK_SIGNING_SECRET_4',
        'ACTION_123_GO_SIGNING_SECRET',
        'ACTION_SIGNING_SECRET',
        `${'X'.repeat(45)}_SIGNING_SECRET`,
      ]);
    });

    it.each([
      ['ftp://example.com/x', /"ftp" is not supported/],
      ['javascript:alert(1)', /"javascript" is not supported/],
      ['not a url', /cannot be parsed/],
      ['/relative/path', /cannot be parsed/],
      [`https://example.com/${'a'.repeat(2048)}`, /keep it to 2048/],
    ])('refuses the URL %s', async (url, message) => {
      const result = (await webhook({ url })).data.createWebhookAction;
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.url' });
      expect(result.message).toMatch(message);
    });

    it('refuses credentials in the URL without repeating them', async () => {
      for (const url of ['https://user:hunter2@example.com/x', 'https://user@example.com/x']) {
        const result = (await webhook({ url })).data.createWebhookAction;
        expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.url' });
        expect(result.message).toMatch(/accessTokenSecret/);
        expect(result.message).not.toMatch(/hunter2|user@/);
      }
    });

    it('accepts http and https URLs of up to 2048 characters', async () => {
      const url = `http://example.com/${'a'.repeat(2048 - 'http://example.com/'.length)}`;
      expect((await createdWebhook({ url })).url).toBe(url);
    });

    it.each([
      [[{ name: 'X Team', value: 'v' }], 'input.headers[0].name', /not a valid header name/],
      [[{ name: 'X-Team:', value: 'v' }], 'input.headers[0].name', /not a valid header name/],
      [[{ name: '', value: 'v' }], 'input.headers[0].name', /not a valid header name/],
      [[{ name: 'Content-Type', value: 'text/plain' }], 'input.headers[0].name', /always JSON/],
      [[{ name: 'content-length', value: '1' }], 'input.headers[0].name', /computed/],
      [[{ name: 'HOST', value: 'evil' }], 'input.headers[0].name', /from the URL/],
      [[{ name: 'Authorization', value: 'x' }], 'input.headers[0].name', /accessTokenSecret/],
      [[{ name: 'User-Agent', value: 'x' }], 'input.headers[0].name', /identifies Tripline/],
      [[{ name: 'Webhook-Signature', value: 'x' }], 'input.headers[0].name', /Standard Webhooks/],
      [[{ name: 'webhook-custom', value: 'x' }], 'input.headers[0].name', /webhook-\*/],
      [[{ name: 'Connection', value: 'close' }], 'input.headers[0].name', /connection/],
      [[{ name: 'Transfer-Encoding', value: 'chunked' }], 'input.headers[0].name', /framing/],
      [[{ name: 'Keep-Alive', value: 'timeout=5' }], 'input.headers[0].name', /connection/],
      [
        [
          { name: 'X-A', value: '1' },
          { name: 'x-a', value: '2' },
        ],
        'input.headers[1].name',
        /given twice/,
      ],
      [[{ name: 'X-A', value: 'one\r\nX-Injected: yes' }], 'input.headers[0].value', /line break/],
      [[{ name: 'X-A', value: 'a\nb' }], 'input.headers[0].value', /line break/],
      [[{ name: 'X-A', value: 'x'.repeat(1025) }], 'input.headers[0].value', /keep it to 1024/],
      [
        Array.from({ length: 21 }, (_, i) => ({ name: `X-${i}`, value: 'v' })),
        'input.headers',
        /at most 20/,
      ],
    ])('refuses headers %#', async (headers, field, message) => {
      const result = (await webhook({ headers })).data.createWebhookAction;
      expect(result).toMatchObject({ __typename: 'ValidationError', field });
      expect(result.message).toMatch(message);
    });

    it('accepts 20 headers, a tab and 1024-character values, in order', async () => {
      const headers = Array.from({ length: 20 }, (_, i) => ({
        name: `X-${20 - i}`,
        value: i === 0 ? 'a\tb' : 'v'.repeat(1024),
      }));
      expect((await createdWebhook({ headers })).headers).toEqual(headers);
    });

    it.each([['accessTokenSecret'], ['signingSecret']])(
      'refuses a %s that does not exist, or exists in another entity',
      async (field) => {
        const key = await t.stranger();
        await t.gql(
          CREATE_SECRET,
          { input: { entity: 'other', name: 'THEIRS', value: SIGNING_KEY } },
          key,
        );
        for (const name of ['MISSING', 'THEIRS']) {
          const result = (await webhook({ [field]: name })).data.createWebhookAction;
          expect(result).toMatchObject({ __typename: 'NotFoundError', field: `input.${field}` });
          expect(result.message).toMatch(/create it first/);
        }
      },
    );

    it('refuses a bad or taken name', async () => {
      for (const name of ['', '   ', 'x'.repeat(65), 'two\nlines']) {
        const result = (await webhook({ name })).data.createWebhookAction;
        expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.name' });
      }
      await createdWebhook();
      await slack({ name: 'alerts' });
      for (const name of ['deploy', ' deploy ', 'alerts']) {
        const result = (await webhook({ name })).data.createWebhookAction;
        expect(result).toMatchObject({ __typename: 'ConflictError', field: 'input.name' });
      }
      // A refused action leaves no generated secret behind.
      expect(
        await findSecretByName(t.deps, defaultEntityId(), 'ALERTS_SIGNING_SECRET'),
      ).toBeUndefined();
    });

    it('is for admins of the entity only', async () => {
      for (const role of ['MEMBER', 'VIEWER'] as const) {
        const result = (await webhook({}, await t.member(role))).data.createWebhookAction;
        expect(result).toMatchObject({
          __typename: 'PermissionDeniedError',
          requiredRole: 'ADMIN',
        });
      }
      const foreign = (await webhook({}, await t.stranger())).data.createWebhookAction;
      expect(foreign).toMatchObject({ __typename: 'NotFoundError', field: 'input.entity' });
      for (const key of [null, await revokedKey()]) {
        const result = await webhook({}, key);
        expect(result.status).toBe(401);
        expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      }
      expect((await t.gql(LIST, {})).data.entity.actions.totalCount).toBe(0);
      const admin = (await webhook({}, await t.member('ADMIN'))).data.createWebhookAction;
      expect(admin.action.name).toBe('deploy');
    });
  });

  describe('createSlackAction', () => {
    it('creates a Slack action', async () => {
      const result = slackOutcome(await slack({}));
      expect(result).toMatchObject({
        __typename: 'SlackAction',
        kind: 'SLACK',
        name: 'alerts',
        channel: '#ml-alerts',
        webhookUrlSecret: 'SLACK_URL',
        enabled: true,
        usedBy: [],
      });
      expect(JSON.stringify(result)).not.toContain('hooks.slack.com');
    });

    it('refuses a missing secret, one without an https URL, and a bad channel or name', async () => {
      const missing = slackOutcome(await slack({ webhookUrlSecret: 'NOPE' }));
      expect(missing).toMatchObject({
        __typename: 'NotFoundError',
        field: 'input.webhookUrlSecret',
      });
      const notUrl = slackOutcome(await slack({ webhookUrlSecret: 'NOT_A_KEY' }));
      expect(notUrl).toMatchObject({
        __typename: 'ValidationError',
        field: 'input.webhookUrlSecret',
      });
      expect(notUrl.message).not.toContain('just some words');
      for (const channel of ['', 'x'.repeat(65)]) {
        const bad = slackOutcome(await slack({ channel }));
        expect(bad).toMatchObject({ __typename: 'ValidationError', field: 'input.channel' });
      }
      const badName = slackOutcome(await slack({ name: '' }));
      expect(badName).toMatchObject({ __typename: 'ValidationError', field: 'input.name' });
      await slack({});
      const taken = slackOutcome(await slack({}));
      expect(taken).toMatchObject({ __typename: 'ConflictError', field: 'input.name' });
    });

    it('is for admins of the entity only', async () => {
      for (const role of ['MEMBER', 'VIEWER'] as const) {
        const result = slackOutcome(await slack({}, await t.member(role)));
        expect(result).toMatchObject({
          __typename: 'PermissionDeniedError',
          requiredRole: 'ADMIN',
        });
      }
      const foreign = slackOutcome(await slack({}, await t.stranger()));
      expect(foreign).toMatchObject({ __typename: 'NotFoundError', field: 'input.entity' });
      for (const key of [null, await revokedKey()]) {
        expect((await slack({}, key)).status).toBe(401);
      }
    });
  });

  describe('updateAction', () => {
    it('changes webhook fields and keeps the omitted ones', async () => {
      const created = await createdWebhook({ headers: [{ name: 'X-A', value: '1' }] });
      clock.advance(5_000);
      const result = (
        await update({
          id: created.id,
          name: 'deploy-v2',
          url: 'https://example.org/v2',
          accessTokenSecret: 'TOKEN',
          signingSecret: 'MY_SIGNING_KEY',
          headers: [{ name: 'X-B', value: '2' }],
        })
      ).data.updateAction.action;
      expect(result).toMatchObject({
        id: created.id,
        name: 'deploy-v2',
        url: 'https://example.org/v2',
        accessTokenSecret: 'TOKEN',
        signingSecret: 'MY_SIGNING_KEY',
        headers: [{ name: 'X-B', value: '2' }],
        enabled: true,
        createdAt: created.createdAt,
      });
      expect(result.updatedAt).toBe(clock.now().toISOString());

      const cleared = (await update({ id: created.id, accessTokenSecret: null, headers: null }))
        .data.updateAction.action;
      expect(cleared).toMatchObject({
        name: 'deploy-v2',
        url: 'https://example.org/v2',
        accessTokenSecret: null,
        signingSecret: 'MY_SIGNING_KEY',
        headers: [],
      });
    });

    it('changes Slack fields', async () => {
      const created = slackOutcome(await slack({}));
      await t.gql(CREATE_SECRET, {
        input: { entity: 'default', name: 'OTHER_SLACK', value: `${SLACK_URL}/2` },
      });
      const result = (
        await update({ id: created.id, channel: '#ops', webhookUrlSecret: 'OTHER_SLACK' })
      ).data.updateAction.action;
      expect(result).toMatchObject({ channel: '#ops', webhookUrlSecret: 'OTHER_SLACK' });
    });

    it('disables with a reason and re-enables, clearing it', async () => {
      const created = await createdWebhook();
      const admin = await t.member('ADMIN', 'Ada');
      const disabled = (await update({ id: created.id, enabled: false }, admin)).data.updateAction
        .action;
      expect(disabled).toMatchObject({ enabled: false, disabledReason: 'Disabled by Ada.' });
      // Disabling again keeps the original reason.
      await update({ id: created.id, enabled: false });
      expect((await t.gql(NODE, { id: created.id })).data.node.disabledReason).toBe(
        'Disabled by Ada.',
      );
      t.storage.sqlite
        .prepare(`update actions set disabled_reason = 'The receiver answered 410 Gone.'`)
        .run();
      const enabled = (await update({ id: created.id, enabled: true })).data.updateAction.action;
      expect(enabled).toMatchObject({ enabled: true, disabledReason: null });
    });

    it('refuses fields of the other kind, and nulls for required fields', async () => {
      const hook = await createdWebhook();
      const chat = slackOutcome(await slack({}));
      const cases: [string, Record<string, unknown>, string, RegExp][] = [
        [hook.id, { channel: '#x' }, 'input.channel', /applies to Slack actions only/],
        [hook.id, { webhookUrlSecret: 'SLACK_URL' }, 'input.webhookUrlSecret', /Slack/],
        [chat.id, { url: 'https://example.com' }, 'input.url', /applies to webhook actions only/],
        [chat.id, { headers: [] }, 'input.headers', /webhook actions only/],
        [chat.id, { accessTokenSecret: null }, 'input.accessTokenSecret', /webhook/],
        [chat.id, { signingSecret: 'MY_SIGNING_KEY' }, 'input.signingSecret', /webhook/],
        [hook.id, { name: null }, 'input.name', /cannot be null/],
        [hook.id, { url: null }, 'input.url', /cannot be null/],
        [hook.id, { signingSecret: null }, 'input.signingSecret', /cannot be null/],
        [hook.id, { enabled: null }, 'input.enabled', /cannot be null/],
        [chat.id, { channel: null }, 'input.channel', /cannot be null/],
        [chat.id, { webhookUrlSecret: null }, 'input.webhookUrlSecret', /cannot be null/],
        [hook.id, { url: 'ftp://x' }, 'input.url', /"ftp"/],
        [hook.id, { name: '' }, 'input.name', /1 to 64/],
        [hook.id, { headers: [{ name: 'Host', value: 'x' }] }, 'input.headers[0].name', /Host/],
        [hook.id, { signingSecret: 'NOT_A_KEY' }, 'input.signingSecret', /whsec_/],
        [chat.id, { webhookUrlSecret: 'NOT_A_KEY' }, 'input.webhookUrlSecret', /https URL/],
        [chat.id, { channel: '' }, 'input.channel', /1 to 64/],
      ];
      for (const [id, fields, field, message] of cases) {
        const result = (await update({ id, ...fields })).data.updateAction;
        expect(result, JSON.stringify(fields)).toMatchObject({
          __typename: 'ValidationError',
          field,
        });
        expect(result.message).toMatch(message);
      }
      expect((await t.gql(NODE, { id: hook.id })).data.node).toEqual(hook);
    });

    it('refuses a missing secret and a taken name', async () => {
      const hook = await createdWebhook();
      await slack({});
      for (const field of ['accessTokenSecret', 'signingSecret']) {
        const result = (await update({ id: hook.id, [field]: 'MISSING' })).data.updateAction;
        expect(result).toMatchObject({ __typename: 'NotFoundError', field: `input.${field}` });
      }
      const taken = (await update({ id: hook.id, name: 'alerts' })).data.updateAction;
      expect(taken).toMatchObject({ __typename: 'ConflictError', field: 'input.name' });
      const same = (await update({ id: hook.id, name: 'deploy' })).data.updateAction;
      expect(same.action.name).toBe('deploy');
    });

    it('refuses unknown, malformed and mistyped ids', async () => {
      const hook = await createdWebhook();
      const rawId = parsePublicId(hook.id)?.id ?? '';
      for (const id of [
        'nonsense',
        publicId('webhookAction', newId()),
        publicId('slackAction', rawId),
        publicId('secret', rawId),
      ]) {
        const result = (await update({ id, enabled: false })).data.updateAction;
        expect(result).toMatchObject({ __typename: 'NotFoundError', field: 'input.id' });
      }
    });

    it('is for admins of the entity only', async () => {
      const hook = await createdWebhook();
      for (const role of ['MEMBER', 'VIEWER'] as const) {
        const result = (await update({ id: hook.id, enabled: false }, await t.member(role))).data
          .updateAction;
        expect(result).toMatchObject({
          __typename: 'PermissionDeniedError',
          requiredRole: 'ADMIN',
        });
      }
      const foreign = (await update({ id: hook.id, enabled: false }, await t.stranger())).data
        .updateAction;
      expect(foreign).toMatchObject({ __typename: 'NotFoundError', field: 'input.id' });
      for (const key of [null, await revokedKey()]) {
        expect((await update({ id: hook.id, enabled: false }, key)).status).toBe(401);
      }
      expect((await t.gql(NODE, { id: hook.id })).data.node.enabled).toBe(true);
    });
  });

  describe('deleteAction', () => {
    it('deletes an unused action and keeps its secrets', async () => {
      const hook = await createdWebhook();
      const result = (await t.gql(DELETE, { input: { id: hook.id } })).data.deleteAction;
      expect(result.action).toMatchObject({ id: hook.id, name: 'deploy' });
      expect((await t.gql(NODE, { id: hook.id })).data.node).toBeNull();
      expect(
        await findSecretByName(t.deps, defaultEntityId(), 'DEPLOY_SIGNING_SECRET'),
      ).toBeDefined();
      const again = (await t.gql(DELETE, { input: { id: hook.id } })).data.deleteAction;
      expect(again).toMatchObject({ __typename: 'NotFoundError', field: 'input.id' });
    });

    it('refuses while automations use it, naming them', async () => {
      const hook = await createdWebhook();
      automationUsing(hook.id, 'nightly');
      automationUsing(hook.id, 'after-train');
      expect((await t.gql(NODE, { id: hook.id })).data.node.usedBy).toEqual([
        'after-train',
        'nightly',
      ]);
      const result = (await t.gql(DELETE, { input: { id: hook.id } })).data.deleteAction;
      expect(result).toMatchObject({ __typename: 'ConflictError', field: 'input.id' });
      expect(result.message).toBe(
        'Action "deploy" is used by automations "after-train", "nightly"; delete them or point them at another action first.',
      );
    });

    it('is for admins of the entity only', async () => {
      const hook = await createdWebhook();
      for (const role of ['MEMBER', 'VIEWER'] as const) {
        const result = (await t.gql(DELETE, { input: { id: hook.id } }, await t.member(role))).data
          .deleteAction;
        expect(result).toMatchObject({
          __typename: 'PermissionDeniedError',
          requiredRole: 'ADMIN',
        });
      }
      const foreign = (await t.gql(DELETE, { input: { id: hook.id } }, await t.stranger())).data
        .deleteAction;
      expect(foreign).toMatchObject({ __typename: 'NotFoundError', field: 'input.id' });
      for (const key of [null, await revokedKey()]) {
        expect((await t.gql(DELETE, { input: { id: hook.id } }, key)).status).toBe(401);
      }
      expect((await t.gql(NODE, { id: hook.id })).data.node.name).toBe('deploy');
    });
  });

  describe('reading', () => {
    it('lists actions by name with kind and enabled filters, for every role', async () => {
      await createdWebhook({ name: 'b-hook' });
      const off = await createdWebhook({ name: 'a-hook' });
      await slack({ name: 'c-slack' });
      await update({ id: off.id, enabled: false });
      for (const role of ['ADMIN', 'MEMBER', 'VIEWER'] as const) {
        const key = await t.member(role);
        const names = async (vars: Record<string, unknown>) => {
          const list = (await t.gql(LIST, vars, key)).data.entity.actions;
          return {
            total: list.totalCount,
            names: list.edges.map((e: { node: { name: string } }) => e.node.name),
          };
        };
        expect(await names({})).toEqual({ total: 3, names: ['a-hook', 'b-hook', 'c-slack'] });
        expect(await names({ kind: 'WEBHOOK' })).toEqual({ total: 2, names: ['a-hook', 'b-hook'] });
        expect(await names({ kind: 'SLACK' })).toEqual({ total: 1, names: ['c-slack'] });
        expect(await names({ enabled: false })).toEqual({ total: 1, names: ['a-hook'] });
        expect(await names({ enabled: true, kind: 'WEBHOOK' })).toEqual({
          total: 1,
          names: ['b-hook'],
        });
        expect(await names({ first: 1 })).toEqual({ total: 3, names: ['a-hook'] });
      }
    });

    it('loads actions by id for members and hides them from others', async () => {
      const hook = await createdWebhook({ accessTokenSecret: 'TOKEN' });
      const chat = slackOutcome(await slack({}));
      const viewer = await t.member('VIEWER');
      expect((await t.gql(NODE, { id: hook.id }, viewer)).data.node).toEqual(hook);
      expect((await t.gql(NODE, { id: chat.id }, viewer)).data.node).toEqual(chat);
      const key = await t.stranger();
      expect((await t.gql(NODE, { id: hook.id }, key)).data.node).toBeNull();
      expect((await t.gql(LIST, {}, key)).data.entity).toBeNull();
      const rawId = parsePublicId(hook.id)?.id ?? '';
      const mistyped = await t.gql(NODE, { id: publicId('slackAction', rawId) });
      expect(mistyped.data.node).toBeNull();
    });
  });
});
