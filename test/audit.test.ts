import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parsePublicId, publicId } from '../src/ids.js';
import { findSecretByName, openSecret } from '../src/modules/secrets/service.js';
import { createTestApp, fakeClock, sqliteOnly, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createSecret,
  createSlackAction,
  createWebhookAction,
  mutate,
} from './support/fixtures.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly(
  'records API keys created and revoked by id and prefix, never the key',
  'records a service account key made by an admin in the entity of that account',
  'records actions: creation, changed fields with old and new URL and header names, enabling and deletion',
  'records automations created, updated (changed field names) and deleted, by members too',
  'records nothing for a refused change',
  'records secrets created, rotated and deleted by name, never their value',
  'records user creation, its first key, and each membership change with actor and details',
  'rolls the change back when its audit entry cannot be written',
);

let t: TestApp;
let clock: ReturnType<typeof fakeClock>;

let afterBootstrap: string;

beforeEach(async () => {
  clock = fakeClock();
  t = await createTestApp({ clock });
  // The first start records its own entries; the tests below read what comes after them.
  clock.advance(1);
  afterBootstrap = clock.now().toISOString();
});
afterEach(() => t.close());

interface Entry {
  action: string;
  targetType: string;
  targetId: string | null;
  actor: { name: string } | null;
  details: Record<string, unknown>;
  createdAt: string;
}

const ENTRY = 'action targetType targetId actor { name } details createdAt';
const LOG = `query($entity: String!, $action: AuditAction, $targetType: AuditTargetType, $since: DateTime,
    $first: Int, $after: String, $last: Int, $before: String) {
  entity(name: $entity) { auditLog(action: $action, targetType: $targetType, since: $since,
      first: $first, after: $after, last: $last, before: $before) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor startCursor }
    edges { cursor node { ${ENTRY} } } } } }`;

const ERRORS = `__typename ... on Error { message ... on ValidationError { field }
  ... on NotFoundError { field } ... on ConflictError { field }
  ... on PermissionDeniedError { requiredRole } }`;

/** The entity's audit log as `key` sees it (the bootstrap admin by default), newest first. */
async function auditLog(
  variables: Record<string, unknown> = {},
  key?: string,
): Promise<{ totalCount: number; entries: Entry[]; raw: Record<string, unknown> }> {
  const res = await t.gql(
    LOG,
    { entity: 'default', first: 100, since: afterBootstrap, ...variables },
    key,
  );
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  const log = res.data.entity.auditLog;
  return {
    totalCount: log.totalCount,
    entries: log.edges.map((e: { node: Entry }) => e.node),
    raw: log,
  };
}

/** The newest entry with this action code. */
async function latest(action: string): Promise<Entry> {
  const { entries } = await auditLog({ action });
  const entry = entries[0];
  if (!entry) throw new Error(`no ${action} entry`);
  return entry;
}

/** Every audit row, every column, as one string: what a leak would have to hide in. */
function wholeTable(): string {
  return JSON.stringify(t.storage.sqlite.prepare('select * from audit_log').all());
}

const rowCount = (): number =>
  t.storage.sqlite.prepare('select count(*) from audit_log').pluck().get() as number;

async function userIdOf(key: string): Promise<string> {
  return (await t.gql('{ viewer { user { id } } }', {}, key)).data.viewer.user.id;
}

async function run(query: string, variables: Record<string, unknown>, key?: string) {
  return mutate(t, query, variables, key);
}

const UPDATE_ROLE = `mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { ${ERRORS} } }`;
const ADD_MEMBER = `mutation($i: AddMemberInput!) { addMember(input: $i) { ${ERRORS} } }`;
const REMOVE_MEMBER = `mutation($i: RemoveMemberInput!) { removeMember(input: $i) { ${ERRORS} } }`;
const CREATE_KEY = `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) {
  ${ERRORS} ... on CreateApiKeyPayload { secret: plaintextKey apiKey { id prefix } } } }`;
const REVOKE_KEY = `mutation($id: ID!) { revokeApiKey(input: { id: $id }) { ${ERRORS} } }`;
const CREATE_SECRET = `mutation($i: CreateSecretInput!) { createSecret(input: $i) { ${ERRORS} } }`;
const ROTATE_SECRET = `mutation($i: RotateSecretInput!) { rotateSecret(input: $i) { ${ERRORS} } }`;
const DELETE_SECRET = `mutation($i: DeleteSecretInput!) { deleteSecret(input: $i) { ${ERRORS} } }`;
const UPDATE_ACTION = `mutation($i: UpdateActionInput!) { updateAction(input: $i) { ${ERRORS} } }`;
const DELETE_ACTION = `mutation($i: DeleteActionInput!) { deleteAction(input: $i) { ${ERRORS} } }`;
const CREATE_AUTOMATION = `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) {
  ${ERRORS} ... on CreateAutomationPayload { automation { id } } } }`;
const UPDATE_AUTOMATION = `mutation($i: UpdateAutomationInput!) { updateAutomation(input: $i) { ${ERRORS} } }`;
const DELETE_AUTOMATION = `mutation($i: DeleteAutomationInput!) { deleteAutomation(input: $i) { ${ERRORS} } }`;

describe('recording changes', () => {
  it('records user creation, its first key, and each membership change with actor and details', async () => {
    const bobKey = await t.member('MEMBER', 'bob');
    const bobId = await userIdOf(bobKey);

    const created = await latest('USER_CREATED');
    expect(created).toMatchObject({
      targetType: 'USER',
      targetId: bobId,
      actor: { name: 'admin' },
      details: { name: 'bob', kind: 'USER', role: 'MEMBER' },
      createdAt: clock.now().toISOString(),
    });
    const firstKey = await latest('API_KEY_CREATED');
    expect(firstKey).toMatchObject({ targetType: 'API_KEY', actor: { name: 'admin' } });
    expect(firstKey.details).toEqual({
      prefix: bobKey.slice(0, 9),
      name: 'first key',
      user: 'bob',
    });

    clock.advance(1000);
    expect(
      (await run(UPDATE_ROLE, { i: { entity: 'default', userId: bobId, role: 'ADMIN' } }))
        .__typename,
    ).toBe('UpdateMemberRolePayload');
    expect(await latest('MEMBER_ROLE_CHANGED')).toMatchObject({
      targetType: 'USER',
      targetId: bobId,
      actor: { name: 'admin' },
      details: { user: 'bob', from: 'MEMBER', to: 'ADMIN' },
      createdAt: clock.now().toISOString(),
    });

    // Setting the role a member already has changes nothing, so records nothing.
    const before = rowCount();
    await run(UPDATE_ROLE, { i: { entity: 'default', userId: bobId, role: 'ADMIN' } });
    expect(rowCount()).toBe(before);

    // bob, now an admin, removes the bootstrap admin: the actor is bob.
    const adminId = await userIdOf(t.adminKey);
    expect(
      (await run(REMOVE_MEMBER, { i: { entity: 'default', userId: adminId } }, bobKey)).__typename,
    ).toBe('RemoveMemberPayload');
    const removed = (await auditLog({ action: 'MEMBER_REMOVED' }, bobKey)).entries[0];
    expect(removed).toMatchObject({
      targetId: adminId,
      actor: { name: 'bob' },
      details: { user: 'admin', role: 'ADMIN' },
    });

    expect(
      (await run(ADD_MEMBER, { i: { entity: 'default', userId: adminId, role: 'VIEWER' } }, bobKey))
        .__typename,
    ).toBe('AddMemberPayload');
    expect((await auditLog({ action: 'MEMBER_ADDED' }, bobKey)).entries[0]).toMatchObject({
      targetType: 'USER',
      targetId: adminId,
      actor: { name: 'bob' },
      details: { user: 'admin', role: 'VIEWER' },
    });
  });

  it('records the first start: the default entity and the admin key', async () => {
    const { entries } = await auditLog({ since: null });
    expect(entries.map((e) => [e.action, e.actor?.name, e.details.name])).toEqual([
      ['API_KEY_CREATED', 'admin', 'bootstrap admin key'],
      ['ENTITY_CREATED', 'admin', 'default'],
    ]);
    expect(JSON.stringify(entries)).not.toContain(t.adminKey);
  });

  it('records a new entity in that entity’s log, not in the others', async () => {
    expect(
      (await run(`mutation { createEntity(input: { name: "research" }) { ${ERRORS} } }`, {}))
        .__typename,
    ).toBe('CreateEntityPayload');
    const { entries } = await auditLog({ entity: 'research' });
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      action: 'ENTITY_CREATED',
      targetType: 'ENTITY',
      actor: { name: 'admin' },
      details: { name: 'research' },
    });
    const id = entries[0]?.targetId ?? '';
    expect(parsePublicId(id)?.kind).toBe('entity');
    expect((await t.gql('query($id: ID!) { node(id: $id) { id } }', { id })).data.node.id).toBe(id);
    expect((await auditLog({ action: 'ENTITY_CREATED' })).entries).toEqual([]);
  });

  it('records API keys created and revoked by id and prefix, never the key', async () => {
    const viewerKey = await t.member('VIEWER', 'vera');
    const made = await run(CREATE_KEY, { i: { name: 'laptop' } }, viewerKey);
    expect(made.__typename).toBe('CreateApiKeyPayload');
    const entry = await latest('API_KEY_CREATED');
    expect(entry).toMatchObject({
      targetType: 'API_KEY',
      targetId: made.apiKey.id,
      actor: { name: 'vera' },
      details: { prefix: made.apiKey.prefix, name: 'laptop', user: 'vera' },
    });

    clock.advance(5);
    expect((await run(REVOKE_KEY, { id: made.apiKey.id }, viewerKey)).__typename).toBe(
      'RevokeApiKeyPayload',
    );
    expect(await latest('API_KEY_REVOKED')).toMatchObject({
      targetId: made.apiKey.id,
      actor: { name: 'vera' },
      details: { prefix: made.apiKey.prefix },
      createdAt: clock.now().toISOString(),
    });

    // Revoking again changes nothing.
    const before = rowCount();
    await run(REVOKE_KEY, { id: made.apiKey.id }, viewerKey);
    expect(rowCount()).toBe(before);

    const table = wholeTable();
    for (const key of [made.secret, viewerKey, t.adminKey]) expect(table).not.toContain(key);
  });

  it('records a service account key made by an admin in the entity of that account', async () => {
    const created = await run(
      `mutation($i: CreateUserInput!) { createUser(input: $i) { ${ERRORS}
        ... on CreateUserPayload { secret: plaintextKey user { id } } } }`,
      { i: { entity: 'default', name: 'ci-bot', kind: 'SERVICE_ACCOUNT', role: 'MEMBER' } },
    );
    expect(await latest('USER_CREATED')).toMatchObject({
      details: { name: 'ci-bot', kind: 'SERVICE_ACCOUNT', role: 'MEMBER' },
    });
    const made = await run(CREATE_KEY, { i: { name: 'pipeline', userId: created.user.id } });
    expect(await latest('API_KEY_CREATED')).toMatchObject({
      targetId: made.apiKey.id,
      actor: { name: 'admin' },
      details: { name: 'pipeline', user: 'ci-bot' },
    });
    expect(wholeTable()).not.toContain(made.secret);
    expect(wholeTable()).not.toContain(created.secret);
  });

  it('records secrets created, rotated and deleted by name, never their value', async () => {
    await createSecret(t, 'API_TOKEN', 'first-value-4f9a');
    const secretId = publicId(
      'secret',
      (await findSecretByName(t.deps, await defaultEntityId(), 'API_TOKEN'))?.id ?? '',
    );
    expect(await latest('SECRET_CREATED')).toMatchObject({
      targetType: 'SECRET',
      targetId: secretId,
      actor: { name: 'admin' },
      details: { name: 'API_TOKEN' },
    });

    clock.advance(10);
    expect(
      (
        await run(ROTATE_SECRET, {
          i: { entity: 'default', name: 'API_TOKEN', value: 'second-value-77c1' },
        })
      ).__typename,
    ).toBe('RotateSecretPayload');
    expect(await latest('SECRET_ROTATED')).toMatchObject({
      targetId: secretId,
      details: { name: 'API_TOKEN' },
      createdAt: clock.now().toISOString(),
    });

    expect(
      (await run(DELETE_SECRET, { i: { entity: 'default', name: 'API_TOKEN' } })).__typename,
    ).toBe('DeleteSecretPayload');
    expect(await latest('SECRET_DELETED')).toMatchObject({
      targetId: secretId,
      actor: { name: 'admin' },
      details: { name: 'API_TOKEN' },
    });

    const table = wholeTable();
    expect(table).not.toContain('first-value-4f9a');
    expect(table).not.toContain('second-value-77c1');
  });

  it('records actions: creation, changed fields with old and new URL and header names, enabling and deletion', async () => {
    await createSecret(t, 'TOKEN', 'token-value-d00d');
    const { id, signingSecret } = await createWebhookAction(t, {
      name: 'hook',
      url: 'https://example.com/a',
      accessTokenSecret: 'TOKEN',
      headers: [{ name: 'X-Api-Key', value: 'header-credential-1' }],
    });
    // The generated signing secret is itself a new secret.
    expect(await latest('SECRET_CREATED')).toMatchObject({
      details: { name: 'HOOK_SIGNING_SECRET' },
    });
    expect(await latest('ACTION_CREATED')).toMatchObject({
      targetType: 'WEBHOOK_ACTION',
      targetId: id,
      actor: { name: 'admin' },
      details: {
        name: 'hook',
        kind: 'WEBHOOK',
        url: 'https://example.com/a',
        headerNames: ['X-Api-Key'],
        accessTokenSecret: 'TOKEN',
        signingSecret: 'HOOK_SIGNING_SECRET',
        signingSecretGenerated: true,
      },
    });

    const updated = await run(UPDATE_ACTION, {
      i: {
        id,
        url: 'https://example.com/b',
        headers: [
          { name: 'X-Api-Key', value: 'header-credential-2' },
          { name: 'X-Team', value: 'vision' },
        ],
        accessTokenSecret: null,
      },
    });
    expect(updated.__typename).toBe('UpdateActionPayload');
    expect((await latest('ACTION_UPDATED')).details).toEqual({
      name: 'hook',
      changed: ['url', 'accessTokenSecret', 'headers'],
      from: {
        url: 'https://example.com/a',
        accessTokenSecret: 'TOKEN',
        headerNames: ['X-Api-Key'],
      },
      to: {
        url: 'https://example.com/b',
        accessTokenSecret: null,
        headerNames: ['X-Api-Key', 'X-Team'],
      },
    });

    // A change of a header's value alone is recorded, by name only.
    await run(UPDATE_ACTION, {
      i: {
        id,
        headers: [
          { name: 'X-Api-Key', value: 'header-credential-3' },
          { name: 'X-Team', value: 'vision' },
        ],
      },
    });
    expect((await latest('ACTION_UPDATED')).details).toMatchObject({
      changed: ['headers'],
      from: { headerNames: ['X-Api-Key', 'X-Team'] },
      to: { headerNames: ['X-Api-Key', 'X-Team'] },
    });

    // Disabling is its own entry; a rename in the same call is an update beside it.
    const before = (await auditLog()).totalCount;
    await run(UPDATE_ACTION, { i: { id, enabled: false, name: 'hook-2' } });
    const { entries, totalCount } = await auditLog();
    expect(totalCount).toBe(before + 2);
    expect(entries.slice(0, 2).map((e) => e.action)).toEqual(['ACTION_DISABLED', 'ACTION_UPDATED']);
    expect(entries[1]?.details).toMatchObject({
      changed: ['name'],
      from: { name: 'hook' },
      to: { name: 'hook-2' },
    });
    await run(UPDATE_ACTION, { i: { id, enabled: true } });
    expect(await latest('ACTION_ENABLED')).toMatchObject({
      targetId: id,
      details: { name: 'hook-2' },
    });

    // A change that changes nothing records nothing.
    const unchanged = rowCount();
    await run(UPDATE_ACTION, { i: { id, enabled: true, url: 'https://example.com/b' } });
    expect(rowCount()).toBe(unchanged);

    await createSecret(t, 'SLACK_URL', 'https://hooks.slack.com/services/T/B/slack-secret-path');
    const slack = await createSlackAction(t, {
      name: 'alerts',
      channel: '#ml',
      webhookUrlSecret: 'SLACK_URL',
    });
    expect(await latest('ACTION_CREATED')).toMatchObject({
      targetType: 'SLACK_ACTION',
      targetId: slack,
      details: { name: 'alerts', kind: 'SLACK', channel: '#ml', webhookUrlSecret: 'SLACK_URL' },
    });

    expect((await run(DELETE_ACTION, { i: { id } })).__typename).toBe('DeleteActionPayload');
    expect(await latest('ACTION_DELETED')).toMatchObject({
      targetType: 'WEBHOOK_ACTION',
      targetId: id,
      actor: { name: 'admin' },
      details: { name: 'hook-2', kind: 'WEBHOOK' },
    });

    const table = wholeTable();
    for (const value of [
      'token-value-d00d',
      'header-credential-1',
      'header-credential-2',
      'header-credential-3',
      'slack-secret-path',
      signingSecret,
    ]) {
      expect(table).not.toContain(value);
    }
  });

  it('records automations created, updated (changed field names) and deleted, by members too', async () => {
    await createProject(t, 'p');
    const { id: actionId } = await createWebhookAction(t, {
      name: 'hook',
      url: 'https://example.com/a',
    });
    const memberKey = await t.member('MEMBER', 'mia');
    const created = await run(
      CREATE_AUTOMATION,
      {
        i: {
          entity: 'default',
          name: 'notify',
          eventType: 'CREATE_ARTIFACT',
          scope: { project: 'p' },
          action: { actionId },
        },
      },
      memberKey,
    );
    expect(created.__typename).toBe('CreateAutomationPayload');
    const id = created.automation.id;
    expect(await latest('AUTOMATION_CREATED')).toMatchObject({
      targetType: 'AUTOMATION',
      targetId: id,
      actor: { name: 'mia' },
      details: {
        name: 'notify',
        eventType: 'CREATE_ARTIFACT',
        scopeType: 'PROJECT',
        enabled: true,
      },
    });

    await run(
      UPDATE_AUTOMATION,
      {
        i: {
          id,
          name: 'notify-2',
          enabled: false,
          // biome-ignore lint/suspicious/noTemplateCurlyInString: a template variable, written literally
          action: { actionId, payloadTemplate: '{"text": "${event_type}"}' },
        },
      },
      memberKey,
    );
    expect(await latest('AUTOMATION_UPDATED')).toMatchObject({
      targetId: id,
      actor: { name: 'mia' },
      details: { name: 'notify-2', changed: ['name', 'enabled', 'config.payloadTemplate'] },
    });

    const unchanged = rowCount();
    await run(UPDATE_AUTOMATION, { i: { id, enabled: false } }, memberKey);
    expect(rowCount()).toBe(unchanged);

    expect((await run(DELETE_AUTOMATION, { i: { id } }, memberKey)).__typename).toBe(
      'DeleteAutomationPayload',
    );
    expect(await latest('AUTOMATION_DELETED')).toMatchObject({
      targetId: id,
      actor: { name: 'mia' },
      details: { name: 'notify-2' },
    });
  });
});

async function defaultEntityId(): Promise<string> {
  const res = await t.gql('{ entity(name: "default") { id } }');
  return parsePublicId(res.data.entity.id)?.id ?? '';
}

describe('atomicity', () => {
  it('records nothing for a refused change', async () => {
    await createProject(t, 'p');
    await createSecret(t, 'IN_USE', 'value-in-use');
    const { id: actionId } = await createWebhookAction(t, {
      name: 'hook',
      url: 'https://example.com/a',
      accessTokenSecret: 'IN_USE',
    });
    await createAutomation(t, {
      name: 'auto',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    const memberKey = await t.member('MEMBER');
    const adminId = await userIdOf(t.adminKey);
    const before = rowCount();

    const refused: [string, Record<string, unknown>, string | undefined, string][] = [
      [
        CREATE_SECRET,
        { i: { entity: 'default', name: 'IN_USE', value: 'x' } },
        undefined,
        'ConflictError',
      ],
      [
        CREATE_SECRET,
        { i: { entity: 'default', name: 'NEW', value: 'x' } },
        memberKey,
        'PermissionDeniedError',
      ],
      [
        CREATE_SECRET,
        { i: { entity: 'default', name: 'bad name', value: 'x' } },
        undefined,
        'ValidationError',
      ],
      [
        ROTATE_SECRET,
        { i: { entity: 'default', name: 'MISSING', value: 'x' } },
        undefined,
        'NotFoundError',
      ],
      [
        ROTATE_SECRET,
        { i: { entity: 'default', name: 'IN_USE', value: '' } },
        undefined,
        'ValidationError',
      ],
      [DELETE_SECRET, { i: { entity: 'default', name: 'IN_USE' } }, undefined, 'ConflictError'],
      [
        UPDATE_ROLE,
        { i: { entity: 'default', userId: adminId, role: 'MEMBER' } },
        undefined,
        'ConflictError',
      ],
      [
        REMOVE_MEMBER,
        { i: { entity: 'default', userId: adminId } },
        memberKey,
        'PermissionDeniedError',
      ],
      [
        ADD_MEMBER,
        { i: { entity: 'default', userId: adminId, role: 'VIEWER' } },
        undefined,
        'ConflictError',
      ],
      [CREATE_KEY, { i: { name: ' ' } }, undefined, 'ValidationError'],
      [CREATE_KEY, { i: { name: 'x', userId: adminId } }, memberKey, 'NotFoundError'],
      [
        UPDATE_ACTION,
        { i: { id: actionId, url: 'ftp://example.com' } },
        undefined,
        'ValidationError',
      ],
      [UPDATE_ACTION, { i: { id: actionId, enabled: false } }, memberKey, 'PermissionDeniedError'],
      [DELETE_ACTION, { i: { id: actionId } }, undefined, 'ConflictError'],
      [
        CREATE_AUTOMATION,
        {
          i: {
            entity: 'default',
            name: 'auto',
            eventType: 'CREATE_ARTIFACT',
            scope: { project: 'p' },
            action: { actionId },
          },
        },
        undefined,
        'ConflictError',
      ],
      [
        DELETE_AUTOMATION,
        { i: { id: publicId('automation', 'nope') } },
        undefined,
        'NotFoundError',
      ],
      [
        `mutation { createEntity(input: { name: "default" }) { ${ERRORS} } }`,
        {},
        undefined,
        'ConflictError',
      ],
    ];
    for (const [query, variables, key, typename] of refused) {
      const result = await run(query, variables, key);
      expect(result.__typename, `${query} ${JSON.stringify(variables)}`).toBe(typename);
    }
    expect(rowCount()).toBe(before);
  });

  it('rolls the change back when its audit entry cannot be written', async () => {
    await createSecret(t, 'KEPT', 'original-value');
    const entityId = await defaultEntityId();
    const stored = () => findSecretByName(t.deps, entityId, 'KEPT');
    const { id: actionId } = await createWebhookAction(t, {
      name: 'hook',
      url: 'https://example.com/a',
    });
    const bobKey = await t.member('VIEWER', 'bob');
    const bobId = await userIdOf(bobKey);
    const before = rowCount();
    t.storage.sqlite.exec(`create trigger audit_down before insert on audit_log
      begin select raise(abort, 'audit log unavailable'); end`);

    const failing: [string, Record<string, unknown>][] = [
      [CREATE_SECRET, { i: { entity: 'default', name: 'NEW', value: 'v' } }],
      [ROTATE_SECRET, { i: { entity: 'default', name: 'KEPT', value: 'changed-value' } }],
      [DELETE_SECRET, { i: { entity: 'default', name: 'KEPT' } }],
      [UPDATE_ROLE, { i: { entity: 'default', userId: bobId, role: 'ADMIN' } }],
      [REMOVE_MEMBER, { i: { entity: 'default', userId: bobId } }],
      [CREATE_KEY, { i: { name: 'never' } }],
      [UPDATE_ACTION, { i: { id: actionId, url: 'https://example.com/b' } }],
      [DELETE_ACTION, { i: { id: actionId } }],
      [`mutation { createEntity(input: { name: "ghost" }) { ${ERRORS} } }`, {}],
    ];
    for (const [query, variables] of failing) {
      const res = await t.gql(query, variables);
      expect(res.errors?.[0]?.message, query).toBe('Unexpected error.');
    }
    t.storage.sqlite.exec('drop trigger audit_down');

    expect(rowCount()).toBe(before);
    const kept = await stored();
    expect(kept && openSecret(t.deps, kept)).toBe('original-value');
    expect(await findSecretByName(t.deps, entityId, 'NEW')).toBeUndefined();
    const members = await t.gql(
      '{ entity(name: "default") { members(first: 10) { edges { node { role user { name } } } } } }',
    );
    expect(members.data.entity.members.edges.map((e: { node: unknown }) => e.node)).toContainEqual({
      role: 'VIEWER',
      user: { name: 'bob' },
    });
    const keys = await t.gql('{ viewer { apiKeys { edges { node { name } } } } }');
    expect(
      keys.data.viewer.apiKeys.edges.map((e: { node: { name: string } }) => e.node.name),
    ).not.toContain('never');
    const action = await t.gql(
      'query($id: ID!) { node(id: $id) { ... on WebhookAction { url } } }',
      {
        id: actionId,
      },
    );
    expect(action.data.node.url).toBe('https://example.com/a');
    expect((await t.gql('{ entity(name: "ghost") { id } }')).data.entity).toBeNull();
  });
});

describe('reading the log', () => {
  it('is for admins: members and viewers get null, without an error', async () => {
    await createSecret(t, 'S', 'v');
    const adminKey = await t.member('ADMIN', 'ada');
    expect((await auditLog({}, adminKey)).totalCount).toBeGreaterThan(0);
    for (const role of ['MEMBER', 'VIEWER'] as const) {
      const res = await t.gql(LOG, { entity: 'default' }, await t.member(role));
      expect(res.errors).toBeUndefined();
      expect(res.data.entity.auditLog).toBeNull();
    }
  });

  it('shows a stranger nothing of another entity, and only its own entity’s entries', async () => {
    await createSecret(t, 'DEFAULT_ONLY', 'v');
    const strangerKey = await t.stranger();
    const entityId = (await t.gql('{ entity(name: "default") { id } }')).data.entity.id;

    expect((await t.gql(LOG, { entity: 'default' }, strangerKey)).data.entity).toBeNull();
    const byNode = await t.gql(
      'query($id: ID!) { node(id: $id) { ... on Entity { auditLog { totalCount } } } }',
      { id: entityId },
      strangerKey,
    );
    expect(byNode.errors).toBeUndefined();
    expect(byNode.data.node).toBeNull();

    const own = await auditLog({ entity: 'other' }, strangerKey);
    expect(own.entries.map((e) => e.action).sort()).toEqual([
      'API_KEY_CREATED',
      'ENTITY_CREATED',
      'USER_CREATED',
    ]);
    expect(JSON.stringify(own.entries)).not.toContain('DEFAULT_ONLY');
  });

  it('refuses no key and a revoked key with UNAUTHENTICATED', async () => {
    expect((await t.gql(LOG, { entity: 'default' }, null)).errors?.[0]?.extensions?.code).toBe(
      'UNAUTHENTICATED',
    );
    const made = await run(CREATE_KEY, { i: { name: 'soon revoked' } });
    await run(REVOKE_KEY, { id: made.apiKey.id });
    const res = await t.gql(LOG, { entity: 'default' }, made.secret);
    expect(res.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('lists newest first and filters by action, target type and time', async () => {
    const start = clock.now();
    await createSecret(t, 'A', 'v');
    clock.advance(1000);
    const middle = clock.now();
    await createSecret(t, 'B', 'v');
    await run(ROTATE_SECRET, { i: { entity: 'default', name: 'A', value: 'w' } });
    clock.advance(1000);
    await t.member('VIEWER', 'vic');

    const all = await auditLog();
    expect(all.entries.map((e) => [e.action, e.details.name])).toEqual([
      ['API_KEY_CREATED', 'first key'],
      ['USER_CREATED', 'vic'],
      ['SECRET_ROTATED', 'A'],
      ['SECRET_CREATED', 'B'],
      ['SECRET_CREATED', 'A'],
    ]);
    expect(all.totalCount).toBe(5);

    const created = await auditLog({ action: 'SECRET_CREATED' });
    expect(created.totalCount).toBe(2);
    expect(created.entries.map((e) => e.details.name)).toEqual(['B', 'A']);

    const secrets = await auditLog({ targetType: 'SECRET' });
    expect(secrets.totalCount).toBe(3);
    expect(secrets.entries.every((e) => e.targetType === 'SECRET')).toBe(true);

    const since = await auditLog({ since: middle.toISOString(), targetType: 'SECRET' });
    expect(since.entries.map((e) => [e.action, e.details.name])).toEqual([
      ['SECRET_ROTATED', 'A'],
      ['SECRET_CREATED', 'B'],
    ]);
    expect((await auditLog({ since: start.toISOString() })).totalCount).toBe(5);
    expect(
      (await auditLog({ since: new Date(clock.now().getTime() + 1).toISOString() })).totalCount,
    ).toBe(0);
    expect((await auditLog({ action: 'SECRET_DELETED' })).entries).toEqual([]);
  });

  it('pages with first/after and last/before, keeping totalCount', async () => {
    for (const name of ['S1', 'S2', 'S3', 'S4', 'S5']) await createSecret(t, name, 'v');
    const page1 = await auditLog({ first: 2 });
    expect(page1.totalCount).toBe(5);
    expect(page1.entries.map((e) => e.details.name)).toEqual(['S5', 'S4']);
    const info1 = page1.raw.pageInfo as { hasNextPage: boolean; endCursor: string };
    expect(info1.hasNextPage).toBe(true);

    const page2 = await auditLog({ first: 2, after: info1.endCursor });
    expect(page2.entries.map((e) => e.details.name)).toEqual(['S3', 'S2']);
    const info2 = page2.raw.pageInfo as { endCursor: string };
    const page3 = await auditLog({ first: 2, after: info2.endCursor });
    expect(page3.entries.map((e) => e.details.name)).toEqual(['S1']);
    expect((page3.raw.pageInfo as { hasNextPage: boolean }).hasNextPage).toBe(false);
    expect(page3.totalCount).toBe(5);

    const last = await auditLog({ first: null, last: 2 });
    expect(last.entries.map((e) => e.details.name)).toEqual(['S2', 'S1']);
  });
});
