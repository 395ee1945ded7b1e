// biome-ignore-all lint/suspicious/noTemplateCurlyInString: templates are written with literal ${…} references.

import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parsePublicId } from '../src/ids.js';
import { automationSecretRefs } from '../src/storage/sqlite/schema.js';
import { createTestApp, fakeClock, sqliteOnly, type TestApp } from './support/app.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly(
  'deletes and returns the automation, after which it is gone',
  'stores filters, a disabled state and a webhook payload template naming a secret',
);

let t: TestApp;
let clock: ReturnType<typeof fakeClock>;
/** Global IDs of the fixtures every test starts with. */
let ids: { webhook: string; slack: string; foreignWebhook: string };

const ERRORS = `... on Error { message ... on ValidationError { field } ... on NotFoundError { field }
  ... on ConflictError { field } ... on PermissionDeniedError { requiredRole } }`;
const AUTOMATION = `id name description enabled eventType createdAt updatedAt
  createdBy { name }
  entity { name }
  scope { type project { name } registry { name } collection { name } }
  filter { collectionName artifactType aliasPattern }
  action { id name kind }
  config { payloadTemplate slackTitle slackMessage slackSeverity }`;
const RESULT = (payload: string) =>
  `__typename ${ERRORS} ... on ${payload} { automation { __typename ${AUTOMATION} } }`;
const CREATE = `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { ${RESULT('CreateAutomationPayload')} } }`;
const UPDATE = `mutation($i: UpdateAutomationInput!) { updateAutomation(input: $i) { ${RESULT('UpdateAutomationPayload')} } }`;
const DELETE = `mutation($i: DeleteAutomationInput!) { deleteAutomation(input: $i) { ${RESULT('DeleteAutomationPayload')} } }`;
const GET = `query($id: ID!) { automation(id: $id) { id name } node(id: $id) { id } }`;

async function must(query: string, variables: Record<string, unknown>, key?: string) {
  const res = await t.gql(query, variables, key);
  const [value] = Object.values(res.data ?? {}) as { __typename: string }[];
  if (!value || 'message' in value) throw new Error(`setup failed: ${JSON.stringify(res)}`);
  return value as Record<string, unknown> & { __typename: string };
}

beforeEach(async () => {
  clock = fakeClock();
  t = await createTestApp({ clock });
  const entity = 'default';
  await must(
    `mutation($i: CreateProjectInput!) { createProject(input: $i) { __typename ${ERRORS} } }`,
    { i: { entity, name: 'vision' } },
  );
  await must(
    `mutation($i: CreateRegistryInput!) { createRegistry(input: $i) { __typename ${ERRORS} } }`,
    { i: { entity, name: 'models' } },
  );
  for (const owner of [{ project: 'vision' }, { registry: 'models' }]) {
    await must(
      `mutation($i: CreateArtifactCollectionInput!) { createArtifactCollection(input: $i) { __typename ${ERRORS} } }`,
      { i: { entity, owner, name: 'resnet', artifactType: 'model' } },
    );
  }
  await createSecret('default', 'API_TOKEN', 'tok-123');
  await createSecret('default', 'SLACK_URL', 'https://hooks.slack.com/services/T/B/x');
  ids = {
    webhook: await createWebhook('default', 'hook'),
    slack: (
      (
        await must(
          `mutation($i: CreateSlackActionInput!) { createSlackAction(input: $i) { __typename ${ERRORS} ... on CreateSlackActionPayload { action { id } } } }`,
          { i: { entity, name: 'alerts', channel: '#ml', webhookUrlSecret: 'SLACK_URL' } },
        )
      ).action as { id: string }
    ).id,
    foreignWebhook: '',
  };
  const stranger = await t.stranger();
  ids.foreignWebhook = await createWebhook('other', 'theirs', stranger);
});
afterEach(() => t.close());

async function createSecret(entity: string, name: string, value: string, key?: string) {
  await must(
    `mutation($i: CreateSecretInput!) { createSecret(input: $i) { __typename ${ERRORS} } }`,
    { i: { entity, name, value } },
    key,
  );
}

async function createWebhook(entity: string, name: string, key?: string): Promise<string> {
  const created = await must(
    `mutation($i: CreateWebhookActionInput!) { createWebhookAction(input: $i) { __typename ${ERRORS}
      ... on CreateWebhookActionPayload { action { id } } } }`,
    { i: { entity, name, url: 'https://example.com/hook' } },
    key,
  );
  return (created.action as { id: string }).id;
}

/** A valid webhook automation on the project, with `overrides` applied. */
function input(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    entity: 'default',
    name: 'on-create',
    eventType: 'CREATE_ARTIFACT',
    scope: { project: 'vision' },
    action: { actionId: ids.webhook },
    ...overrides,
  };
}

/** The automation of a payload, or the error in its place. */
// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary response shapes
const outcome = (result: any) => result.automation ?? result;

async function create(i: Record<string, unknown>, key?: string) {
  return outcome((await t.gql(CREATE, { i }, key)).data.createAutomation);
}

async function update(i: Record<string, unknown>, key?: string) {
  return outcome((await t.gql(UPDATE, { i }, key)).data.updateAutomation);
}

async function remove(i: Record<string, unknown>, key?: string) {
  return outcome((await t.gql(DELETE, { i }, key)).data.deleteAutomation);
}

const stored = (globalId: string) => parsePublicId(globalId)?.id ?? '';

describe('createAutomation', () => {
  it('creates a webhook automation on a project with the default envelope', async () => {
    const created = await create(input({ description: ' new models ' }));
    expect(created).toMatchObject({
      __typename: 'Automation',
      name: 'on-create',
      description: 'new models',
      enabled: true,
      eventType: 'CREATE_ARTIFACT',
      createdBy: { name: 'admin' },
      entity: { name: 'default' },
      scope: { type: 'PROJECT', project: { name: 'vision' }, registry: null, collection: null },
      filter: { collectionName: null, artifactType: null, aliasPattern: null },
      action: { id: ids.webhook, name: 'hook', kind: 'WEBHOOK' },
      config: { payloadTemplate: null, slackTitle: null, slackMessage: null, slackSeverity: null },
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
    });
    const read = await t.gql(GET, { id: created.id });
    expect(read.data).toEqual({
      automation: { id: created.id, name: 'on-create' },
      node: { id: created.id },
    });
  });

  it('accepts each scope with the events it can watch', async () => {
    const cases = [
      {
        eventType: 'CREATE_ARTIFACT',
        scope: { projectCollection: { project: 'vision', collection: 'resnet' } },
        expected: {
          type: 'PROJECT_COLLECTION',
          project: { name: 'vision' },
          registry: null,
          collection: { name: 'resnet' },
        },
      },
      {
        eventType: 'LINK_ARTIFACT',
        scope: { registry: 'models' },
        expected: {
          type: 'REGISTRY',
          project: null,
          registry: { name: 'models' },
          collection: null,
        },
      },
      {
        eventType: 'LINK_ARTIFACT',
        scope: { registryCollection: { registry: 'models', collection: 'resnet' } },
        expected: {
          type: 'REGISTRY_COLLECTION',
          project: null,
          registry: { name: 'models' },
          collection: { name: 'resnet' },
        },
      },
      {
        eventType: 'ADD_ARTIFACT_ALIAS',
        scope: { project: 'vision' },
        expected: {
          type: 'PROJECT',
          project: { name: 'vision' },
          registry: null,
          collection: null,
        },
      },
      {
        eventType: 'ADD_ARTIFACT_ALIAS',
        scope: { registryCollection: { registry: 'models', collection: 'resnet' } },
        expected: {
          type: 'REGISTRY_COLLECTION',
          registry: { name: 'models' },
          collection: { name: 'resnet' },
        },
      },
    ];
    for (const [n, c] of cases.entries()) {
      const created = await create(
        input({ name: `a${n}`, eventType: c.eventType, scope: c.scope }),
      );
      expect(created).toMatchObject({
        __typename: 'Automation',
        eventType: c.eventType,
        scope: c.expected,
      });
    }
  });

  it('stores filters, a disabled state and a webhook payload template naming a secret', async () => {
    const template =
      '{"text": "${artifact_version_string} by ${event_author}", "token": "${API_TOKEN}", "n": 1}';
    const created = await create(
      input({
        enabled: false,
        eventType: 'ADD_ARTIFACT_ALIAS',
        filter: { collectionName: 'resnet', artifactType: 'model', aliasPattern: '^prod' },
        action: { actionId: ids.webhook, payloadTemplate: template },
      }),
    );
    expect(created).toMatchObject({
      __typename: 'Automation',
      enabled: false,
      filter: { collectionName: 'resnet', artifactType: 'model', aliasPattern: '^prod' },
      config: { payloadTemplate: template, slackTitle: null },
    });
    const refs = t.storage.db
      .select()
      .from(automationSecretRefs)
      .where(eq(automationSecretRefs.automationId, stored(created.id)))
      .all();
    expect(refs).toHaveLength(1);
  });

  it('creates Slack automations, with INFO as the default severity', async () => {
    const slack = await create(
      input({
        action: {
          actionId: ids.slack,
          slackTitle: 'New version of ${artifact_collection_name}',
          slackMessage: '${artifact_version_string} was logged by ${event_author}',
        },
      }),
    );
    expect(slack).toMatchObject({
      __typename: 'Automation',
      action: { id: ids.slack, kind: 'SLACK' },
      config: {
        payloadTemplate: null,
        slackTitle: 'New version of ${artifact_collection_name}',
        slackMessage: '${artifact_version_string} was logged by ${event_author}',
        slackSeverity: 'INFO',
      },
    });
    const warn = await create(
      input({
        name: 'warn',
        action: { actionId: ids.slack, slackTitle: 't', slackMessage: 'm', slackSeverity: 'ERROR' },
      }),
    );
    expect(warn.config.slackSeverity).toBe('ERROR');
  });

  it('refuses a taken name and bad names and descriptions', async () => {
    await create(input());
    expect(await create(input())).toMatchObject({
      __typename: 'ConflictError',
      field: 'input.name',
    });
    expect(await create(input({ name: '  ' }))).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.name',
    });
    expect(await create(input({ name: 'x'.repeat(65) }))).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.name',
    });
    expect(await create(input({ name: 'd', description: 'x'.repeat(1025) }))).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.description',
    });
  });

  it('leaves it to GraphQL to refuse scopes naming none, several, a null or half a collection', async () => {
    // `scope` is @oneOf: GraphQL refuses these before the resolver, on create and on update.
    const created = await create(input());
    const cases: [Record<string, unknown>, RegExp][] = [
      [{}, /OneOf.*"AutomationScopeInput"/],
      [{ project: 'vision', registry: 'models' }, /OneOf.*"AutomationScopeInput"/],
      [
        { project: 'vision', projectCollection: { project: 'vision', collection: 'resnet' } },
        /OneOf.*"AutomationScopeInput"/,
      ],
      [{ project: null }, /must be non-null/],
      [{ projectCollection: { project: 'vision' } }, /"collection" of required type "String!"/],
      [{ registryCollection: { collection: 'resnet' } }, /"registry" of required type "String!"/],
      // The old flat shape is gone.
      [{ type: 'PROJECT', project: 'vision' }, /"type" is not defined/],
    ];
    for (const [scope, message] of cases) {
      for (const [document, i] of [
        [CREATE, input({ eventType: 'ADD_ARTIFACT_ALIAS', scope })],
        [UPDATE, { id: created.id, scope }],
      ] as const) {
        const refused = await t.gql(document, { i });
        expect(refused.data, JSON.stringify(scope)).toBeUndefined();
        expect(refused.errors?.[0]?.message, JSON.stringify(scope)).toMatch(/at "i\.scope/);
        expect(refused.errors?.[0]?.message, JSON.stringify(scope)).toMatch(message);
      }
    }
  });

  it('refuses unknown projects, registries and collections, naming the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ project: 'nope' }, 'input.scope.project'],
      [{ registry: 'nope' }, 'input.scope.registry'],
      [
        { projectCollection: { project: 'nope', collection: 'resnet' } },
        'input.scope.projectCollection.project',
      ],
      [
        { projectCollection: { project: 'vision', collection: 'nope' } },
        'input.scope.projectCollection.collection',
      ],
      [
        { registryCollection: { registry: 'nope', collection: 'resnet' } },
        'input.scope.registryCollection.registry',
      ],
      [
        { registryCollection: { registry: 'models', collection: 'nope' } },
        'input.scope.registryCollection.collection',
      ],
      // The stranger's entity has a project `p`; names never reach across entities.
      [{ project: 'p' }, 'input.scope.project'],
    ];
    for (const [scope, field] of cases) {
      const result = await create(input({ eventType: 'ADD_ARTIFACT_ALIAS', scope }));
      expect(result, JSON.stringify(scope)).toMatchObject({ __typename: 'NotFoundError', field });
    }
  });

  it('refuses event types the scope cannot see, listing the scopes that can', async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['CREATE_ARTIFACT', { registry: 'models' }, 'PROJECT, PROJECT_COLLECTION or ENTITY'],
      [
        'CREATE_ARTIFACT',
        { registryCollection: { registry: 'models', collection: 'resnet' } },
        'PROJECT, PROJECT_COLLECTION or ENTITY',
      ],
      ['LINK_ARTIFACT', { project: 'vision' }, 'REGISTRY, REGISTRY_COLLECTION or ENTITY'],
      [
        'LINK_ARTIFACT',
        { projectCollection: { project: 'vision', collection: 'resnet' } },
        'REGISTRY, REGISTRY_COLLECTION or ENTITY',
      ],
    ];
    for (const [eventType, scope, scopes] of cases) {
      const result = await create(input({ eventType, scope }));
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'input.scope' });
      expect(result.message).toContain(scopes);
    }
  });

  it('refuses filters that do not fit the scope or event, or are too long', async () => {
    const collectionScope = { projectCollection: { project: 'vision', collection: 'resnet' } };
    const cases: [Record<string, unknown>, string][] = [
      [{ filter: { aliasPattern: '^prod' } }, 'input.filter.aliasPattern'],
      [
        { eventType: 'ADD_ARTIFACT_ALIAS', filter: { aliasPattern: '(?=prod)' } },
        'input.filter.aliasPattern',
      ],
      [
        { eventType: 'ADD_ARTIFACT_ALIAS', filter: { aliasPattern: 'a'.repeat(257) } },
        'input.filter.aliasPattern',
      ],
      [
        { eventType: 'ADD_ARTIFACT_ALIAS', filter: { aliasPattern: '' } },
        'input.filter.aliasPattern',
      ],
      [
        { scope: collectionScope, filter: { collectionName: 'resnet' } },
        'input.filter.collectionName',
      ],
      [{ filter: { collectionName: 'c'.repeat(65) } }, 'input.filter.collectionName'],
      [{ filter: { artifactType: 't'.repeat(65) } }, 'input.filter.artifactType'],
      [{ filter: { artifactType: '' } }, 'input.filter.artifactType'],
    ];
    for (const [overrides, field] of cases) {
      const result = await create(input(overrides));
      expect(result, JSON.stringify(overrides)).toMatchObject({
        __typename: 'ValidationError',
        field,
      });
    }
    const lookaround = await create(
      input({ eventType: 'ADD_ARTIFACT_ALIAS', filter: { aliasPattern: '(?=prod)' } }),
    );
    expect(lookaround.message).toContain('lookaround');
    expect(
      await create(
        input({ eventType: 'ADD_ARTIFACT_ALIAS', filter: { aliasPattern: 'a'.repeat(256) } }),
      ),
    ).toMatchObject({ __typename: 'Automation' });
  });

  it('refuses unknown, malformed and foreign actions on input.action.actionId', async () => {
    const unknown = Buffer.from('WebhookAction:00000000-0000-0000-0000-000000000000').toString(
      'base64',
    );
    const automationId = (await create(input({ name: 'x' }))).id;
    for (const actionId of [unknown, 'not-an-id', automationId, ids.foreignWebhook]) {
      expect(await create(input({ action: { actionId } })), actionId).toMatchObject({
        __typename: 'NotFoundError',
        field: 'input.action.actionId',
      });
    }
  });

  it('refuses configuration that does not fit the kind of action', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ actionId: ids.webhook, slackTitle: 't' }, 'input.action.slackTitle'],
      [{ actionId: ids.webhook, slackMessage: 'm' }, 'input.action.slackMessage'],
      [{ actionId: ids.webhook, slackSeverity: 'WARN' }, 'input.action.slackSeverity'],
      [{ actionId: ids.slack, slackMessage: 'm' }, 'input.action.slackTitle'],
      [{ actionId: ids.slack, slackTitle: 't' }, 'input.action.slackMessage'],
      [{ actionId: ids.slack, slackTitle: ' ', slackMessage: 'm' }, 'input.action.slackTitle'],
      [
        { actionId: ids.slack, slackTitle: 't', slackMessage: 'm', payloadTemplate: '{}' },
        'input.action.payloadTemplate',
      ],
      [
        { actionId: ids.slack, slackTitle: '${nope}', slackMessage: 'm' },
        'input.action.slackTitle',
      ],
      [
        { actionId: ids.slack, slackTitle: 't', slackMessage: 'hi ${MISSING}' },
        'input.action.slackMessage',
      ],
      [
        { actionId: ids.slack, slackTitle: 't', slackMessage: 'x'.repeat(64 * 1024 + 1) },
        'input.action.slackMessage',
      ],
    ];
    for (const [action, field] of cases) {
      const result = await create(input({ action }));
      expect(result, JSON.stringify(action).slice(0, 200)).toMatchObject({
        __typename: 'ValidationError',
        field,
      });
    }
  });

  it('checks payload templates when saved', async () => {
    const cases: [string, string][] = [
      ['{"a": ', 'Invalid JSON'],
      ['{"a": "${nope}"}', 'unknown variable ${nope}'],
      ['{"a": "${MISSING_TOKEN}"}', 'unknown secret MISSING_TOKEN'],
      ['{"${event_type}": 1}', 'object keys'],
    ];
    for (const [payloadTemplate, message] of cases) {
      const result = await create(input({ action: { actionId: ids.webhook, payloadTemplate } }));
      expect(result).toMatchObject({
        __typename: 'ValidationError',
        field: 'input.action.payloadTemplate',
      });
      expect(result.message).toContain(message);
    }
  });
});

describe('updateAutomation', () => {
  it('changes fields, keeps the rest and moves updatedAt', async () => {
    const created = await create(input({ description: 'old', filter: { artifactType: 'model' } }));
    clock.advance(60_000);
    const renamed = await update({ id: created.id, name: 'renamed', enabled: false });
    expect(renamed).toMatchObject({
      __typename: 'Automation',
      name: 'renamed',
      enabled: false,
      description: 'old',
      filter: { artifactType: 'model' },
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:01:00.000Z',
    });
    const cleared = await update({ id: created.id, description: null, filter: null });
    expect(cleared).toMatchObject({
      description: null,
      filter: { collectionName: null, artifactType: null, aliasPattern: null },
    });
    expect((await update({ id: created.id, enabled: true })).enabled).toBe(true);
    // Keeping its own name is no conflict.
    expect((await update({ id: created.id, name: 'renamed' })).__typename).toBe('Automation');
  });

  it('re-checks the merged automation', async () => {
    const created = await create(
      input({ eventType: 'ADD_ARTIFACT_ALIAS', filter: { aliasPattern: '^prod' } }),
    );
    await create(input({ name: 'taken' }));
    expect(await update({ id: created.id, name: 'taken' })).toMatchObject({
      __typename: 'ConflictError',
      field: 'input.name',
    });
    // The stored alias pattern does not fit another event type…
    expect(await update({ id: created.id, eventType: 'CREATE_ARTIFACT' })).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.filter.aliasPattern',
    });
    // …and the stored project scope cannot see links.
    expect(
      await update({ id: created.id, eventType: 'LINK_ARTIFACT', filter: null }),
    ).toMatchObject({ __typename: 'ValidationError', field: 'input.scope' });
    const moved = await update({
      id: created.id,
      eventType: 'LINK_ARTIFACT',
      filter: null,
      scope: { registry: 'models' },
    });
    expect(moved).toMatchObject({
      eventType: 'LINK_ARTIFACT',
      scope: { type: 'REGISTRY', registry: { name: 'models' }, project: null },
      filter: { aliasPattern: null },
    });
    expect(await update({ id: created.id, scope: { registry: 'nope' } })).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.scope.registry',
    });
    // A new action configuration replaces the old one whole.
    expect(await update({ id: created.id, action: { actionId: ids.slack } })).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.action.slackTitle',
    });
    const slack = await update({
      id: created.id,
      action: { actionId: ids.slack, slackTitle: 't', slackMessage: 'm', slackSeverity: 'WARN' },
    });
    expect(slack).toMatchObject({
      action: { kind: 'SLACK' },
      config: { payloadTemplate: null, slackTitle: 't', slackMessage: 'm', slackSeverity: 'WARN' },
    });
    const unchanged = await t.gql(`query($id: ID!) { automation(id: $id) { ${AUTOMATION} } }`, {
      id: created.id,
    });
    expect(unchanged.data.automation).toMatchObject({
      eventType: 'LINK_ARTIFACT',
      config: { slackSeverity: 'WARN' },
    });
  });

  it('refuses unknown ids', async () => {
    const created = await create(input());
    await t.gql(DELETE, { i: { id: created.id } });
    for (const id of [created.id, 'garbage', ids.webhook]) {
      expect(await update({ id, enabled: false }), id).toMatchObject({
        __typename: 'NotFoundError',
        field: 'input.id',
      });
    }
  });
});

describe('deleteAutomation', () => {
  it('deletes and returns the automation, after which it is gone', async () => {
    const created = await create(
      input({ action: { actionId: ids.webhook, payloadTemplate: '{"t": "${API_TOKEN}"}' } }),
    );
    const deleted = await remove({ id: created.id });
    expect(deleted).toMatchObject({ __typename: 'Automation', id: created.id, name: 'on-create' });
    expect((await t.gql(GET, { id: created.id })).data).toEqual({ automation: null, node: null });
    expect(await remove({ id: created.id })).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.id',
    });
    expect(t.storage.db.select().from(automationSecretRefs).all()).toEqual([]);
    // A name is free again once its automation is deleted.
    expect((await create(input())).__typename).toBe('Automation');
  });
});

describe('Entity.automations', () => {
  const LIST = `query($scopeType: ScopeType, $eventType: EventType, $actionId: ID, $enabled: Boolean, $first: Int) {
    entity(name: "default") { automations(scopeType: $scopeType, eventType: $eventType,
      actionId: $actionId, enabled: $enabled, first: $first) { totalCount edges { node { name } } } } }`;
  const names = async (variables: Record<string, unknown>) => {
    const res = await t.gql(LIST, variables);
    const list = res.data.entity.automations;
    return {
      totalCount: list.totalCount,
      names: list.edges.map((e: { node: { name: string } }) => e.node.name),
    };
  };

  it('lists newest first and filters by scope type, event type, action and state', async () => {
    await create(input({ name: 'first' }));
    clock.advance(1000);
    await create(
      input({
        name: 'second',
        eventType: 'LINK_ARTIFACT',
        scope: { registry: 'models' },
        enabled: false,
      }),
    );
    clock.advance(1000);
    await create(
      input({
        name: 'third',
        eventType: 'ADD_ARTIFACT_ALIAS',
        scope: { projectCollection: { project: 'vision', collection: 'resnet' } },
        action: { actionId: ids.slack, slackTitle: 't', slackMessage: 'm' },
      }),
    );
    expect(await names({})).toEqual({ totalCount: 3, names: ['third', 'second', 'first'] });
    expect(await names({ first: 1 })).toEqual({ totalCount: 3, names: ['third'] });
    expect(await names({ scopeType: 'REGISTRY' })).toEqual({ totalCount: 1, names: ['second'] });
    expect(await names({ eventType: 'CREATE_ARTIFACT' })).toEqual({
      totalCount: 1,
      names: ['first'],
    });
    expect(await names({ actionId: ids.webhook })).toEqual({
      totalCount: 2,
      names: ['second', 'first'],
    });
    expect(await names({ actionId: ids.slack, enabled: true })).toEqual({
      totalCount: 1,
      names: ['third'],
    });
    expect(await names({ enabled: false })).toEqual({ totalCount: 1, names: ['second'] });
    expect(await names({ actionId: 'garbage' })).toEqual({ totalCount: 0, names: [] });
    // Actions report who uses them.
    const usedBy = await t.gql(`query($id: ID!) { node(id: $id) { ... on Action { usedBy } } }`, {
      id: ids.webhook,
    });
    expect(usedBy.data.node.usedBy).toEqual(['first', 'second']);
  });
});

describe('secrets named by templates', () => {
  const DELETE_SECRET = `mutation($i: DeleteSecretInput!) { deleteSecret(input: $i) { __typename ${ERRORS} } }`;
  const deleteSecret = async (name: string) =>
    (await t.gql(DELETE_SECRET, { i: { entity: 'default', name } })).data.deleteSecret;

  it('cannot be deleted while an automation uses them', async () => {
    await createSecret('default', 'TITLE_WORD', 'Hello');
    const hook = await create(
      input({ action: { actionId: ids.webhook, payloadTemplate: '{"t": "Bearer ${API_TOKEN}"}' } }),
    );
    const slack = await create(
      input({
        name: 'slack',
        action: { actionId: ids.slack, slackTitle: '${TITLE_WORD}', slackMessage: 'm' },
      }),
    );
    const refused = await deleteSecret('API_TOKEN');
    expect(refused).toMatchObject({ __typename: 'ConflictError', field: 'input.name' });
    expect(refused.message).toContain('"on-create"');
    expect((await deleteSecret('TITLE_WORD')).message).toContain('"slack"');

    // Updating the templates away from a secret releases it.
    await update({ id: hook.id, action: { actionId: ids.webhook } });
    expect((await deleteSecret('API_TOKEN')).__typename).toBe('DeleteSecretPayload');
    await t.gql(DELETE, { i: { id: slack.id } });
    expect((await deleteSecret('TITLE_WORD')).__typename).toBe('DeleteSecretPayload');
  });
});

describe('access', () => {
  it('lets admins and members manage automations, and viewers only read them', async () => {
    const member = await t.member('MEMBER');
    const viewer = await t.member('VIEWER');
    const mine = await create(input({ name: 'by-member' }), member);
    expect(mine).toMatchObject({ __typename: 'Automation', createdBy: { name: 'member-1' } });
    expect((await update({ id: mine.id, enabled: false }, member)).enabled).toBe(false);
    const admins = await create(input({ name: 'by-admin' }));
    expect((await update({ id: admins.id, name: 'renamed' }, member)).name).toBe('renamed');

    expect(await create(input({ name: 'by-viewer' }), viewer)).toMatchObject({
      __typename: 'PermissionDeniedError',
      requiredRole: 'MEMBER',
    });
    expect(await update({ id: mine.id, enabled: true }, viewer)).toMatchObject({
      __typename: 'PermissionDeniedError',
    });
    expect(await remove({ id: mine.id }, viewer)).toMatchObject({
      __typename: 'PermissionDeniedError',
    });
    expect((await t.gql(GET, { id: mine.id }, viewer)).data.automation.name).toBe('by-member');
    const listed = await t.gql(
      `{ entity(name: "default") { automations { totalCount } } }`,
      {},
      viewer,
    );
    expect(listed.data.entity.automations.totalCount).toBe(2);

    expect((await remove({ id: mine.id }, member)).__typename).toBe('Automation');
  });

  it('hides automations from other entities', async () => {
    const stranger = await t.stranger();
    const ours = await create(input());
    expect(await create(input(), stranger)).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.entity',
    });
    expect(await update({ id: ours.id, enabled: false }, stranger)).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.id',
    });
    expect(await remove({ id: ours.id }, stranger)).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.id',
    });
    expect((await t.gql(GET, { id: ours.id }, stranger)).data).toEqual({
      automation: null,
      node: null,
    });
    // The stranger's own automations stay theirs, with their own actions only.
    const theirs = await create(
      input({
        entity: 'other',
        scope: { project: 'p' },
        action: { actionId: ids.foreignWebhook },
      }),
      stranger,
    );
    expect(theirs).toMatchObject({ __typename: 'Automation', name: 'on-create' });
    expect(
      await create(input({ entity: 'other', name: 'x', scope: { project: 'p' } }), stranger),
    ).toMatchObject({ __typename: 'NotFoundError', field: 'input.action.actionId' });
    const list = await t.gql(
      `{ entity(name: "default") { automations { totalCount } } }`,
      {},
      stranger,
    );
    expect(list.data.entity).toBeNull();
  });

  it('refuses requests without a key or with a revoked key', async () => {
    const anonymous = await t.gql(CREATE, { i: input() }, null);
    expect(anonymous.status).toBe(401);
    expect(anonymous.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');

    const member = await t.member('MEMBER');
    const keys = await t.gql(`{ viewer { apiKeys { edges { node { id } } } } }`, {}, member);
    const keyId = keys.data.viewer.apiKeys.edges[0].node.id;
    await t.gql(
      `mutation($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`,
      { id: keyId },
      member,
    );
    const revoked = await t.gql(CREATE, { i: input() }, member);
    expect(revoked.status).toBe(401);
    expect(revoked.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(
      (await t.gql(`{ entity(name: "default") { automations { totalCount } } }`)).data.entity
        .automations.totalCount,
    ).toBe(0);
  });
});
