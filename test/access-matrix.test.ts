import { isInterfaceType, isObjectType } from 'graphql';
import type { Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/schema.js';
import { createTestApp, type TestApp } from './support/app.js';
import {
  createAutomation,
  createNoOpAction,
  createProject,
  createRegistry,
  createSecret,
  createSlackAction,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';
import {
  CALLERS,
  type Caller,
  closeCode,
  collectRuns,
  documentedOutcome,
  expectOutcome,
  mutationOf,
  type Row,
  roundTrip,
  rowName,
  wsClient,
} from './support/matrix.js';

/*
 * Every operation × six callers: ADMIN, MEMBER and VIEWER of entity `default`, the admin of
 * entity `other` (the stranger), a revoked key of an admin of `default`, and no key. The
 * objects named are `default`'s; the fixture admin (the bootstrap account, an admin of every
 * entity here) makes them. A service account shared by `default` (VIEWER) and `other` (ADMIN)
 * is the one object with two sides: each side's admin may see and revoke its keys, and neither
 * may issue one, since the key would act in the entity the issuer does not administer.
 */

// Loopback is refused by the SSRF guard, so deliveries and test sends fail at once, offline.
const URL = 'http://127.0.0.1:9/hook';
let t: TestApp;
let n = 0;
const next = () => ++n;

interface Fixtures {
  keys: Record<Caller, string | null>;
  revokedKeyId: string;
  entityId: string;
  projectId: string;
  registryId: string;
  collectionId: string;
  secretId: string;
  webhookActionId: string;
  slackActionId: string;
  noOpActionId: string;
  automationId: string;
  eventId: string;
  runId: string;
  trainingRunId: string;
  userId: string;
  serviceId: string;
  serviceKeyId: string;
  sharedServiceId: string;
  sharedServiceKeyId: string;
}
let fx: Fixtures;

/** Creates a VIEWER of `entity` with the fixture admin; returns its ids and key. */
async function newUser(
  entity: string,
  kind: 'USER' | 'SERVICE_ACCOUNT' = 'USER',
): Promise<{ userId: string; keyId: string; secret: string }> {
  const r = await mutate(
    t,
    `mutation($v: CreateUserInput!) { createUser(input: $v) {
      __typename ... on CreateUserPayload { plaintextKey user { id } apiKey { id } } ... on Error { message } } }`,
    { v: { entity, name: `user-${next()}`, kind, role: 'VIEWER' } },
  );
  expect(r.__typename, r.message).toBe('CreateUserPayload');
  return { userId: r.user.id, keyId: r.apiKey.id, secret: r.plaintextKey };
}

async function ownKeyId(key: string): Promise<string> {
  const r = await mutate(
    t,
    `mutation { createApiKey(input: { name: "extra" }) { ... on CreateApiKeyPayload { apiKey { id } } } }`,
    {},
    key,
  );
  return r.apiKey.id;
}

/** A new key of the caller's; without a working key, the revoked key's id. */
const ownKeyIdOrRevoked = (key: string | null) =>
  key && key !== fx.keys.revoked ? ownKeyId(key) : Promise.resolve(fx.revokedKeyId);

async function freshSecret(): Promise<string> {
  const name = `DOOMED_${next()}`;
  await createSecret(t, name, 'value');
  return name;
}

const freshWebhook = async () =>
  (await createWebhookAction(t, { name: `hook-${next()}`, url: URL })).id;

const freshAutomation = () =>
  createAutomation(t, {
    name: `auto-${next()}`,
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'quiet' },
    actionId: fx.webhookActionId,
  });

/** A FAILED run of `notify` (its delivery is refused), with its event. */
async function finishedRun(): Promise<{ runId: string; eventId: string }> {
  const emitted = await emit(t, { versionIndex: next() });
  await t.app.engine.drain();
  return { runId: emitted.triggeredRuns[0].id, eventId: emitted.event.id };
}

/** The stranger's webhook action in `other`, made with the stranger's key. */
async function strangerAction(): Promise<string> {
  const r = await mutate(
    t,
    `mutation($v: CreateWebhookActionInput!) { createWebhookAction(input: $v) {
      __typename ... on CreateWebhookActionPayload { action { id } } ... on Error { message } } }`,
    { v: { entity: 'other', name: `theirs-${next()}`, url: URL } },
    fx.keys.stranger as string,
  );
  expect(r.__typename, r.message).toBe('CreateWebhookActionPayload');
  return r.action.id;
}

/** As the fixture admin: the data of `query`, which must not fail. */
// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary response shapes
async function read(query: string, variables: Record<string, unknown> = {}): Promise<any> {
  const res = await t.gql(query, variables);
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  return res.data;
}

async function roleIn(userId: string, entity = 'default'): Promise<string | undefined> {
  const data = await read(
    'query($e: String!) { entity(name: $e) { members(first: 100) { edges { node { role user { id } } } } } }',
    { e: entity },
  );
  const edges: { node: { role: string; user: { id: string } } }[] = data.entity.members.edges;
  return edges.find((e) => e.node.user.id === userId)?.node.role;
}

/** A new key of the shared service account, issued by the fixture admin (an admin of both sides). */
async function sharedServiceKey(): Promise<{ id: string; secret: string }> {
  const r = await mutate(
    t,
    `mutation($u: ID!) { createApiKey(input: { name: "shared", userId: $u }) {
      __typename ... on CreateApiKeyPayload { plaintextKey apiKey { id } } ... on Error { message } } }`,
    { u: fx.sharedServiceId },
  );
  expect(r.__typename, r.message).toBe('CreateApiKeyPayload');
  return { id: r.apiKey.id, secret: r.plaintextKey };
}

async function keyNames(userId: string): Promise<string[]> {
  const data = await read(
    'query($id: ID!) { node(id: $id) { ... on User { apiKeys { edges { node { name } } } } } }',
    {
      id: userId,
    },
  );
  return data.node.apiKeys.edges.map((e: { node: { name: string } }) => e.node.name);
}

/** `User.apiKeys` of a service account, through `node`; null when the caller may not see them. */
const keyListRow = (variant: string, userId: () => string, extra: Partial<Row> = {}): Row => ({
  field: 'node',
  variant: `User.apiKeys, ${variant}`,
  needs: 'ADMIN',
  document:
    'query($id: ID!) { result: node(id: $id) { ... on User { apiKeys { edges { node { id } } } } } }',
  variables: async () => ({ id: userId() }),
  pick: (data) => data.result?.apiKeys?.edges ?? null,
  ok: (keys) => expect(keys.length).toBeGreaterThan(0),
  ...extra,
});

async function secretNames(): Promise<string[]> {
  const data = await read(
    '{ entity(name: "default") { secrets(first: 100) { edges { node { name } } } } }',
  );
  return data.entity.secrets.edges.map((e: { node: { name: string } }) => e.node.name);
}

const inputOf = (variables: Record<string, unknown>) => variables.v as Record<string, string>;

/** A list on entity `default`; the stranger sees no entity, so no list either. */
const entityList = (list: string, needs: Row['needs'] = 'VIEWER'): Row => ({
  field: `entity.${list}`,
  needs,
  document: `{ result: entity(name: "default") { ${list} { totalCount edges { node { __typename } } } } }`,
  variables: async () => ({}),
  pick: (data) => data.result?.[list] ?? null,
  ok: (connection) => expect(connection.totalCount).toBeGreaterThan(0),
});

const nodeRow = (typename: string, id: () => string, extra: Partial<Row> = {}): Row => ({
  field: 'node',
  variant: typename,
  needs: 'VIEWER',
  document: 'query($id: ID!) { result: node(id: $id) { __typename id } }',
  variables: async () => ({ id: id() }),
  ok: (result) => expect(result).toEqual({ __typename: typename, id: id() }),
  ...extra,
});

const ROWS: Row[] = [
  // Reads.
  {
    field: 'viewer',
    needs: 'ANY',
    document: '{ result: viewer { user { id } entities { role entity { name } } } }',
    variables: async () => ({}),
    ok: (result, caller) => {
      const roles = Object.fromEntries(
        result.entities.map((m: { role: string; entity: { name: string } }) => [
          m.entity.name,
          m.role,
        ]),
      );
      expect(roles.default).toBe(caller === 'stranger' ? undefined : caller);
    },
  },
  {
    field: 'entity',
    needs: 'VIEWER',
    document: '{ result: entity(name: "default") { id name viewerRole } }',
    variables: async () => ({}),
    ok: (result, caller) =>
      expect(result).toEqual({ id: fx.entityId, name: 'default', viewerRole: caller }),
  },
  ...[
    'projects',
    'registries',
    'secrets',
    'actions',
    'automations',
    'triggeredRuns',
    'events',
    'members',
  ].map((list) => entityList(list)),
  // Admins only: null for members and viewers.
  entityList('auditLog', 'ADMIN'),
  {
    field: 'entity.deliveryStats',
    needs: 'VIEWER',
    document:
      '{ result: entity(name: "default") { deliveryStats(minutes: 60) { since backlog { __typename } } } }',
    variables: async () => ({}),
    pick: (data) => data.result?.deliveryStats ?? null,
    ok: (stats) => expect(stats.since).toEqual(expect.any(String)),
  },
  {
    field: 'automation',
    needs: 'VIEWER',
    document: 'query($id: ID!) { result: automation(id: $id) { id name } }',
    variables: async () => ({ id: fx.automationId }),
    ok: (result) => expect(result).toEqual({ id: fx.automationId, name: 'notify' }),
  },
  {
    field: 'triggeredRun',
    needs: 'VIEWER',
    document: 'query($id: ID!) { result: triggeredRun(id: $id) { id status } }',
    variables: async () => ({ id: fx.runId }),
    ok: (result) => expect(result).toEqual({ id: fx.runId, status: 'FAILED' }),
  },
  nodeRow('Entity', () => fx.entityId),
  nodeRow('Project', () => fx.projectId),
  nodeRow('Registry', () => fx.registryId),
  nodeRow('ArtifactCollection', () => fx.collectionId),
  nodeRow('Secret', () => fx.secretId),
  nodeRow('WebhookAction', () => fx.webhookActionId),
  nodeRow('SlackAction', () => fx.slackActionId),
  nodeRow('NoOpAction', () => fx.noOpActionId),
  nodeRow('Automation', () => fx.automationId),
  nodeRow('ArtifactEvent', () => fx.eventId),
  nodeRow('TriggeredRun', () => fx.runId),
  nodeRow('Run', () => fx.trainingRunId),
  nodeRow('User', () => fx.userId),
  {
    field: 'node',
    variant: "ApiKey, the caller's own",
    needs: 'ANY',
    document: 'query($id: ID!) { result: node(id: $id) { __typename id } }',
    variables: async (_caller, key) => ({ id: await ownKeyIdOrRevoked(key) }),
    ok: (result) => expect(result.__typename).toBe('ApiKey'),
  },
  nodeRow('ApiKey', () => fx.serviceKeyId, {
    variant: "ApiKey, a service account's in default",
    needs: 'ADMIN',
  }),
  nodeRow('ApiKey', () => fx.sharedServiceKeyId, {
    variant: "ApiKey, a service account's shared by default and other",
    needs: 'ADMIN',
    outcomes: { stranger: 'ok' },
  }),
  keyListRow('a service account in default', () => fx.serviceId),
  keyListRow('a service account shared by default and other', () => fx.sharedServiceId, {
    outcomes: { stranger: 'ok' },
  }),
  {
    field: 'nodes',
    needs: 'VIEWER',
    document: 'query($ids: [ID!]!) { result: nodes(ids: $ids) { __typename id } }',
    variables: async () => ({
      ids: [
        fx.entityId,
        fx.projectId,
        fx.registryId,
        fx.collectionId,
        fx.secretId,
        fx.webhookActionId,
        fx.slackActionId,
        fx.automationId,
        fx.eventId,
        fx.runId,
        fx.userId,
      ],
    }),
    ok: (result) => {
      expect(result).toHaveLength(11);
      for (const node of result) expect(node).not.toBeNull();
    },
  },

  // Membership and keys.
  {
    field: 'createUser',
    needs: 'ADMIN',
    document: mutationOf('createUser', 'CreateUserInput'),
    variables: async () => ({
      v: { entity: 'default', name: `user-${next()}`, kind: 'USER', role: 'VIEWER' },
    }),
    okType: 'CreateUserPayload',
  },
  {
    field: 'addMember',
    needs: 'ADMIN',
    document: mutationOf('addMember', 'AddMemberInput'),
    variables: async () => ({
      v: { entity: 'default', userId: (await newUser('pool')).userId, role: 'VIEWER' },
    }),
    okType: 'AddMemberPayload',
    untouched: async (v) => expect(await roleIn(inputOf(v).userId!)).toBeUndefined(),
  },
  {
    field: 'addMember',
    variant: 'a service account of other',
    needs: 'ADMIN',
    // Default's admin cannot see it. Adding it would let them issue keys that act in `other`.
    outcomes: { ADMIN: 'notFound' },
    document: mutationOf('addMember', 'AddMemberInput'),
    variables: async () => ({
      v: {
        entity: 'default',
        userId: (await newUser('other', 'SERVICE_ACCOUNT')).userId,
        role: 'VIEWER',
      },
    }),
    okType: 'AddMemberPayload',
    untouched: async (v) => expect(await roleIn(inputOf(v).userId!)).toBeUndefined(),
  },
  {
    field: 'addMember',
    variant: 'a service account of default, into other',
    needs: 'ADMIN',
    // The stranger administers `other` but cannot see default's account; no one else is in `other`.
    outcomes: { ADMIN: 'notFound', MEMBER: 'notFound', VIEWER: 'notFound' },
    document: mutationOf('addMember', 'AddMemberInput'),
    variables: async () => ({
      v: {
        entity: 'other',
        userId: (await newUser('default', 'SERVICE_ACCOUNT')).userId,
        role: 'VIEWER',
      },
    }),
    okType: 'AddMemberPayload',
    untouched: async (v) => expect(await roleIn(inputOf(v).userId!, 'other')).toBeUndefined(),
  },
  {
    field: 'updateMemberRole',
    needs: 'ADMIN',
    document: mutationOf('updateMemberRole', 'UpdateMemberRoleInput'),
    variables: async () => ({
      v: { entity: 'default', userId: (await newUser('default')).userId, role: 'MEMBER' },
    }),
    okType: 'UpdateMemberRolePayload',
    untouched: async (v) => expect(await roleIn(inputOf(v).userId!)).toBe('VIEWER'),
  },
  {
    field: 'removeMember',
    needs: 'ADMIN',
    document: mutationOf('removeMember', 'RemoveMemberInput'),
    variables: async () => ({
      v: { entity: 'default', userId: (await newUser('default')).userId },
    }),
    okType: 'RemoveMemberPayload',
    untouched: async (v) => expect(await roleIn(inputOf(v).userId!)).toBe('VIEWER'),
  },
  {
    field: 'createEntity',
    needs: 'ANY',
    document: mutationOf('createEntity', 'CreateEntityInput'),
    variables: async () => ({ v: { name: `team-${next()}` } }),
    okType: 'CreateEntityPayload',
  },
  {
    field: 'createApiKey',
    variant: 'own',
    needs: 'ANY',
    document: mutationOf('createApiKey', 'CreateApiKeyInput'),
    variables: async () => ({ v: { name: 'mine' } }),
    okType: 'CreateApiKeyPayload',
  },
  {
    field: 'createApiKey',
    variant: "a service account's in default",
    needs: 'ADMIN',
    document: mutationOf('createApiKey', 'CreateApiKeyInput'),
    variables: async () => ({
      v: { name: 'for ci', userId: (await newUser('default', 'SERVICE_ACCOUNT')).userId },
    }),
    okType: 'CreateApiKeyPayload',
  },
  {
    field: 'createApiKey',
    variant: 'a service account shared by default and other',
    needs: 'ADMIN',
    // Each side's admin administers only one of the two entities the key would act in.
    outcomes: { ADMIN: 'denied', stranger: 'denied' },
    document: mutationOf('createApiKey', 'CreateApiKeyInput'),
    variables: async () => ({ v: { name: `takeover-${next()}`, userId: fx.sharedServiceId } }),
    okType: 'CreateApiKeyPayload',
    untouched: async (v) =>
      expect(await keyNames(fx.sharedServiceId)).not.toContain(inputOf(v).name),
  },
  {
    field: 'revokeApiKey',
    variant: 'own',
    needs: 'ANY',
    document: mutationOf('revokeApiKey', 'RevokeApiKeyInput'),
    variables: async (_caller, key) => ({ v: { id: await ownKeyIdOrRevoked(key) } }),
    okType: 'RevokeApiKeyPayload',
  },
  {
    field: 'revokeApiKey',
    variant: "a service account's in default",
    needs: 'ADMIN',
    document: mutationOf('revokeApiKey', 'RevokeApiKeyInput'),
    variables: async () => {
      const account = await newUser('default', 'SERVICE_ACCOUNT');
      return { v: { id: account.keyId }, secret: account.secret };
    },
    okType: 'RevokeApiKeyPayload',
    // The key still authenticates.
    untouched: async (v) =>
      expect((await t.gql('{ viewer { user { id } } }', {}, v.secret as string)).status).toBe(200),
  },
  {
    field: 'revokeApiKey',
    variant: "a service account's shared by default and other",
    needs: 'ADMIN',
    // Revoking grants nothing, and the key opens the stranger's entity too.
    outcomes: { stranger: 'ok' },
    document: mutationOf('revokeApiKey', 'RevokeApiKeyInput'),
    variables: async () => {
      const key = await sharedServiceKey();
      return { v: { id: key.id }, secret: key.secret };
    },
    okType: 'RevokeApiKeyPayload',
    untouched: async (v) =>
      expect((await t.gql('{ viewer { user { id } } }', {}, v.secret as string)).status).toBe(200),
  },

  // Projects and registries.
  {
    field: 'createProject',
    needs: 'MEMBER',
    document: mutationOf('createProject', 'CreateProjectInput'),
    variables: async () => ({ v: { entity: 'default', name: `proj-${next()}` } }),
    okType: 'CreateProjectPayload',
  },
  {
    field: 'createRegistry',
    needs: 'MEMBER',
    document: mutationOf('createRegistry', 'CreateRegistryInput'),
    variables: async () => ({ v: { entity: 'default', name: `reg-${next()}` } }),
    okType: 'CreateRegistryPayload',
  },
  {
    field: 'createArtifactCollection',
    needs: 'MEMBER',
    document: mutationOf('createArtifactCollection', 'CreateArtifactCollectionInput'),
    variables: async () => ({
      v: {
        entity: 'default',
        owner: { project: 'p' },
        name: `coll-${next()}`,
        artifactType: 'model',
      },
    }),
    okType: 'CreateArtifactCollectionPayload',
  },

  // Secrets.
  {
    field: 'createSecret',
    needs: 'ADMIN',
    document: mutationOf('createSecret', 'CreateSecretInput'),
    variables: async () => ({ v: { entity: 'default', name: `NEW_${next()}`, value: 'v' } }),
    okType: 'CreateSecretPayload',
    untouched: async (v) => expect(await secretNames()).not.toContain(inputOf(v).name),
  },
  {
    field: 'rotateSecret',
    needs: 'ADMIN',
    document: mutationOf('rotateSecret', 'RotateSecretInput'),
    variables: async () => ({ v: { entity: 'default', name: await freshSecret(), value: 'new' } }),
    okType: 'RotateSecretPayload',
    untouched: async (v) => {
      const data = await read(
        '{ entity(name: "default") { secrets(first: 100) { edges { node { name rotatedAt } } } } }',
      );
      const secret = data.entity.secrets.edges.find(
        (e: { node: { name: string } }) => e.node.name === inputOf(v).name,
      );
      expect(secret.node.rotatedAt).toBeNull();
    },
  },
  {
    field: 'deleteSecret',
    needs: 'ADMIN',
    document: mutationOf('deleteSecret', 'DeleteSecretInput'),
    variables: async () => ({ v: { entity: 'default', name: await freshSecret() } }),
    okType: 'DeleteSecretPayload',
    untouched: async (v) => expect(await secretNames()).toContain(inputOf(v).name),
  },

  // Actions.
  {
    field: 'createWebhookAction',
    needs: 'ADMIN',
    document: mutationOf('createWebhookAction', 'CreateWebhookActionInput'),
    variables: async () => ({ v: { entity: 'default', name: `hook-${next()}`, url: URL } }),
    okType: 'CreateWebhookActionPayload',
  },
  {
    field: 'createSlackAction',
    needs: 'ADMIN',
    document: mutationOf('createSlackAction', 'CreateSlackActionInput'),
    variables: async () => ({
      v: {
        entity: 'default',
        name: `slack-${next()}`,
        channel: '#ml',
        webhookUrlSecret: 'SLACK_URL',
      },
    }),
    okType: 'CreateSlackActionPayload',
  },
  {
    field: 'createNoOpAction',
    needs: 'ADMIN',
    document: mutationOf('createNoOpAction', 'CreateNoOpActionInput'),
    variables: async () => ({ v: { entity: 'default', name: `noop-${next()}` } }),
    okType: 'CreateNoOpActionPayload',
  },
  {
    field: 'updateAction',
    needs: 'ADMIN',
    document: mutationOf('updateAction', 'UpdateActionInput'),
    variables: async () => ({ v: { id: await freshWebhook(), enabled: false } }),
    okType: 'UpdateActionPayload',
    untouched: async (v) => {
      const data = await read('query($id: ID!) { node(id: $id) { ... on Action { enabled } } }', {
        id: inputOf(v).id,
      });
      expect(data.node).toEqual({ enabled: true });
    },
  },
  {
    field: 'deleteAction',
    needs: 'ADMIN',
    document: mutationOf('deleteAction', 'DeleteActionInput'),
    variables: async () => ({ v: { id: await freshWebhook() } }),
    okType: 'DeleteActionPayload',
    untouched: async (v) => {
      const data = await read('query($id: ID!) { node(id: $id) { id } }', { id: inputOf(v).id });
      expect(data.node).not.toBeNull();
    },
  },
  {
    field: 'testAction',
    needs: 'MEMBER',
    document: mutationOf('testAction', 'TestActionInput'),
    variables: async () => ({ v: { id: fx.webhookActionId } }),
    okType: 'TestActionPayload',
  },

  // Automations.
  {
    field: 'createAutomation',
    needs: 'MEMBER',
    document: mutationOf('createAutomation', 'CreateAutomationInput'),
    variables: async () => ({
      v: {
        entity: 'default',
        name: `auto-${next()}`,
        eventType: 'CREATE_ARTIFACT',
        scope: { project: 'quiet' },
        action: { actionId: fx.webhookActionId },
      },
    }),
    okType: 'CreateAutomationPayload',
  },
  {
    field: 'updateAutomation',
    needs: 'MEMBER',
    document: mutationOf('updateAutomation', 'UpdateAutomationInput'),
    variables: async () => ({ v: { id: await freshAutomation(), enabled: false } }),
    okType: 'UpdateAutomationPayload',
    untouched: async (v) => {
      const data = await read('query($id: ID!) { automation(id: $id) { enabled } }', {
        id: inputOf(v).id,
      });
      expect(data.automation).toEqual({ enabled: true });
    },
  },
  {
    field: 'deleteAutomation',
    needs: 'MEMBER',
    document: mutationOf('deleteAutomation', 'DeleteAutomationInput'),
    variables: async () => ({ v: { id: await freshAutomation() } }),
    okType: 'DeleteAutomationPayload',
    untouched: async (v) => {
      const data = await read('query($id: ID!) { automation(id: $id) { id } }', {
        id: inputOf(v).id,
      });
      expect(data.automation).not.toBeNull();
    },
  },

  // Events and runs.
  {
    field: 'emitArtifactEvent',
    needs: 'MEMBER',
    document: mutationOf('emitArtifactEvent', 'EmitArtifactEventInput'),
    variables: async () => ({
      v: {
        entity: 'default',
        eventType: 'CREATE_ARTIFACT',
        owner: { project: 'emits' },
        collection: 'my-model',
        artifactType: 'model',
        versionIndex: next(),
      },
    }),
    okType: 'EmitArtifactEventPayload',
  },
  {
    field: 'reportRunState',
    needs: 'MEMBER',
    document: mutationOf('reportRunState', 'ReportRunStateInput'),
    variables: async () => ({
      v: { entity: 'default', project: 'emits', run: `run-${next()}`, state: 'RUNNING' },
    }),
    okType: 'ReportRunStatePayload',
    untouched: async (v) => {
      const data = await read(`{ entity(name: "default") { projects(first: 3) { edges { node {
        name runs(first: 50) { edges { node { name } } } } } } } }`);
      const names = data.entity.projects.edges.flatMap(
        (e: { node: { runs: { edges: { node: { name: string } }[] } } }) =>
          e.node.runs.edges.map((r) => r.node.name),
      );
      expect(names).not.toContain(inputOf(v).run);
    },
  },
  {
    field: 'logRunMetrics',
    needs: 'MEMBER',
    document: mutationOf('logRunMetrics', 'LogRunMetricsInput'),
    variables: async () => ({
      v: {
        entity: 'default',
        project: 'p',
        run: 'fixture-run',
        points: [{ step: next(), name: 'loss', value: 0.5 }],
      },
    }),
    okType: 'LogRunMetricsPayload',
  },
  {
    field: 'retryTriggeredRun',
    needs: 'MEMBER',
    document: mutationOf('retryTriggeredRun', 'RetryTriggeredRunInput'),
    variables: async () => ({ v: { id: (await finishedRun()).runId } }),
    okType: 'RetryTriggeredRunPayload',
    untouched: async (v) => {
      const data = await read('query($id: ID!) { triggeredRun(id: $id) { status } }', inputOf(v));
      expect(data.triggeredRun).toEqual({ status: 'FAILED' });
    },
  },
];

const SUBSCRIPTION_FIELDS = ['triggeredRunUpdated'];

const EMIT_IN_OTHER = `mutation($v: EmitArtifactEventInput!) { emitArtifactEvent(input: $v) {
  ... on EmitArtifactEventPayload { triggeredRuns { id } } } }`;

beforeAll(async () => {
  t = await createTestApp();
  const strangerKey = await t.stranger();
  const [admin, member, viewer, revoked] = [
    await t.member('ADMIN'),
    await t.member('MEMBER'),
    await t.member('VIEWER'),
    await t.member('ADMIN', 'revoked-admin'),
  ];
  // A person revokes their own key; this one belonged to an admin of `default`.
  const own = await t.gql('{ viewer { apiKeys { edges { node { id } } } } }', {}, revoked);
  const revokedKeyId: string = own.data.viewer.apiKeys.edges[0].node.id;
  const revocation = await mutate(
    t,
    'mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { __typename } }',
    { i: { id: revokedKeyId } },
    revoked,
  );
  expect(revocation.__typename).toBe('RevokeApiKeyPayload');

  await mutate(t, 'mutation { createEntity(input: { name: "pool" }) { __typename } }', {});
  for (const name of ['p', 'quiet', 'emits']) await createProject(t, name);
  await createRegistry(t, 'r');
  await createSecret(t, 'SLACK_URL', 'https://hooks.slack.com/services/T0/B0/x');
  await createSecret(t, 'KEEP_ME', 'value');
  const webhook = await createWebhookAction(t, { name: 'hook', url: URL });
  const slackActionId = await createSlackAction(t, {
    name: 'slack',
    channel: '#ml',
    webhookUrlSecret: 'SLACK_URL',
  });
  const noOpActionId = await createNoOpAction(t, { name: 'noop' });
  const automationId = await createAutomation(t, {
    name: 'notify',
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'p' },
    actionId: webhook.id,
  });
  const { runId, eventId } = await finishedRun();
  const trainingRun = await mutate(
    t,
    `mutation($v: ReportRunStateInput!) { reportRunState(input: $v) {
      ... on ReportRunStatePayload { run { id } } } }`,
    { v: { entity: 'default', project: 'p', run: 'fixture-run', state: 'RUNNING' } },
  );
  const service = await newUser('default', 'SERVICE_ACCOUNT');
  const shared = await newUser('default', 'SERVICE_ACCOUNT');
  const sharing = await mutate(
    t,
    `mutation($v: AddMemberInput!) { addMember(input: $v) { __typename ... on Error { message } } }`,
    { v: { entity: 'other', userId: shared.userId, role: 'ADMIN' } },
  );
  expect(sharing.__typename, sharing.message).toBe('AddMemberPayload');
  const ids = await read(`{ entity(name: "default") {
    id
    projects(first: 10) { edges { node { id name collections { edges { node { id } } } } } }
    registries { edges { node { id } } }
    secrets(first: 10) { edges { node { id name } } } } }`);
  const p = ids.entity.projects.edges.find((e: { node: { name: string } }) => e.node.name === 'p');
  const keep = ids.entity.secrets.edges.find(
    (e: { node: { name: string } }) => e.node.name === 'KEEP_ME',
  );
  fx = {
    keys: {
      ADMIN: admin,
      MEMBER: member,
      VIEWER: viewer,
      stranger: strangerKey,
      revoked,
      anonymous: null,
    },
    revokedKeyId,
    entityId: ids.entity.id,
    projectId: p.node.id,
    registryId: ids.entity.registries.edges[0].node.id,
    collectionId: p.node.collections.edges[0].node.id,
    secretId: keep.node.id,
    webhookActionId: webhook.id,
    slackActionId,
    noOpActionId,
    automationId,
    eventId,
    runId,
    trainingRunId: trainingRun.run.id,
    userId: (await newUser('default')).userId,
    serviceId: service.userId,
    serviceKeyId: service.keyId,
    sharedServiceId: shared.userId,
    sharedServiceKeyId: shared.keyId,
  };
});

afterAll(async () => {
  await t?.close();
});

describe('the access matrix', () => {
  it('has a row for every root field, list on Entity and type of Node', () => {
    const covered = new Set(ROWS.map((row) => row.field));
    const entity = schema.getType('Entity');
    const node = schema.getType('Node');
    if (!isObjectType(entity) || !isInterfaceType(node)) throw new Error('no Entity or Node');
    const lists = Object.values(entity.getFields())
      .filter((f) => f.args.length > 0)
      .map((f) => `entity.${f.name}`);
    const roots = [
      ...Object.keys(schema.getQueryType()?.getFields() ?? {}),
      ...Object.keys(schema.getMutationType()?.getFields() ?? {}),
    ];
    expect([...roots, ...lists].filter((f) => !covered.has(f))).toEqual([]);
    expect(Object.keys(schema.getSubscriptionType()?.getFields() ?? {})).toEqual(
      SUBSCRIPTION_FIELDS,
    );
    const nodeTypes = schema.getPossibleTypes(node).map((type) => type.name);
    const missing = nodeTypes.filter(
      (name) => !ROWS.some((row) => row.field === 'node' && row.variant?.startsWith(name)),
    );
    expect(missing).toEqual([]);
  });

  for (const row of ROWS) {
    describe(rowName(row), () => {
      for (const caller of CALLERS) {
        const outcome = row.outcomes?.[caller] ?? documentedOutcome(row.needs, caller);
        const bug = row.bug?.callers.includes(caller) ? row.bug.note : undefined;
        // A cell that fails today because of a known bug; once fixed, `it.fails` fails: drop `bug`.
        const test = bug ? it.fails : it;
        test(`${caller}: ${outcome}${bug ? ` — BUG: ${bug}` : ''}`, async () => {
          const key = fx.keys[caller];
          const variables = await row.variables(caller, key);
          const res = await t.gql(row.document, variables, key);
          expectOutcome(res, row, outcome, caller);
          if (outcome !== 'ok') await row.untouched?.(variables);
        });
      }
    });
  }
});

describe("the stranger's own operations", () => {
  it("filter their lists by default's IDs and find nothing", async () => {
    const res = await t.gql(
      `query($action: ID!, $automation: ID!) { entity(name: "other") {
        automations(actionId: $action) { totalCount }
        triggeredRuns(filter: { automationId: $automation }) { totalCount } } }`,
      { action: fx.webhookActionId, automation: fx.automationId },
      fx.keys.stranger,
    );
    expect(res.errors).toBeUndefined();
    expect(res.data.entity).toEqual({
      automations: { totalCount: 0 },
      triggeredRuns: { totalCount: 0 },
    });
  });

  it("cannot point their automations at default's action", async () => {
    const input = {
      entity: 'other',
      name: `theirs-${next()}`,
      eventType: 'CREATE_ARTIFACT',
      scope: { project: 'p' },
      action: { actionId: fx.webhookActionId },
    };
    const created = await t.gql(
      `mutation($v: CreateAutomationInput!) { createAutomation(input: $v) {
        __typename ... on NotFoundError { field } } }`,
      { v: input },
      fx.keys.stranger,
    );
    expect(created.data.createAutomation).toEqual({
      __typename: 'NotFoundError',
      field: 'input.action.actionId',
    });

    const own = await t.gql(
      `mutation($v: CreateAutomationInput!) { createAutomation(input: $v) {
        __typename ... on CreateAutomationPayload { automation { id } } } }`,
      { v: { ...input, action: { actionId: await strangerAction() } } },
      fx.keys.stranger,
    );
    const updated = await t.gql(
      `mutation($v: UpdateAutomationInput!) { updateAutomation(input: $v) {
        __typename ... on NotFoundError { field } } }`,
      {
        v: {
          id: own.data.createAutomation.automation.id,
          action: { actionId: fx.webhookActionId },
        },
      },
      fx.keys.stranger,
    );
    expect(updated.data.updateAutomation).toEqual({
      __typename: 'NotFoundError',
      field: 'input.action.actionId',
    });
  });

  it("cannot name default's secrets in their actions", async () => {
    const res = await t.gql(
      `mutation($v: CreateWebhookActionInput!) { createWebhookAction(input: $v) {
        __typename ... on NotFoundError { field } } }`,
      { v: { entity: 'other', name: `theirs-${next()}`, url: URL, accessTokenSecret: 'KEEP_ME' } },
      fx.keys.stranger,
    );
    expect(res.data.createWebhookAction).toEqual({
      __typename: 'NotFoundError',
      field: 'input.accessTokenSecret',
    });
  });

  it("fetch their own objects and null for default's in one nodes call", async () => {
    const own = await t.gql(
      '{ entity(name: "other") { id projects { edges { node { id } } } } }',
      {},
      fx.keys.stranger,
    );
    const mine = [own.data.entity.id, own.data.entity.projects.edges[0].node.id];
    const res = await t.gql(
      'query($ids: [ID!]!) { nodes(ids: $ids) { id } }',
      { ids: [mine[0], fx.automationId, mine[1], fx.runId] },
      fx.keys.stranger,
    );
    expect(res.errors).toBeUndefined();
    expect(res.data.nodes).toEqual([{ id: mine[0] }, null, { id: mine[1] }, null]);
  });
});

describe('triggeredRunUpdated', () => {
  let url: string;
  const clients: Client[] = [];
  const UPDATES = (args = '') => `subscription { triggeredRunUpdated${args} { id } }`;

  beforeAll(async () => {
    url = await t.listen();
  });

  afterAll(async () => {
    for (const client of clients.splice(0)) await client.dispose();
  });

  function client(key: string | null): Client {
    const c = wsClient(url, key);
    clients.push(c);
    return c;
  }

  it('reaches ADMIN, MEMBER and VIEWER, with every filter, and never the stranger', async () => {
    const { runId, eventId } = await finishedRun();
    // The stranger's own automation gives its unfiltered subscription something to receive.
    const actionId = await strangerAction();
    await mutate(
      t,
      `mutation($v: CreateAutomationInput!) { createAutomation(input: $v) { __typename } }`,
      {
        v: {
          entity: 'other',
          name: `theirs-${next()}`,
          eventType: 'CREATE_ARTIFACT',
          scope: { project: 'p' },
          action: { actionId },
        },
      },
      fx.keys.stranger as string,
    );

    const filters = [
      '',
      `(runId: "${runId}")`,
      `(automationId: "${fx.automationId}")`,
      `(eventId: "${eventId}")`,
      '(entity: "default")',
    ];
    const ownerClients = {
      ADMIN: client(fx.keys.ADMIN),
      MEMBER: client(fx.keys.MEMBER),
      VIEWER: client(fx.keys.VIEWER),
    };
    const owners = [
      collectRuns(ownerClients.ADMIN, UPDATES()),
      collectRuns(ownerClients.MEMBER, UPDATES()),
      ...filters.map((f) => collectRuns(ownerClients.VIEWER, UPDATES(f))),
    ];
    const strangerClient = client(fx.keys.stranger);
    const strangers = filters.map((f) => collectRuns(strangerClient, UPDATES(f)));
    await t.subscribers(owners.length + strangers.length);

    const retried = await mutate(
      t,
      `mutation($i: RetryTriggeredRunInput!) { retryTriggeredRun(input: $i) { __typename } }`,
      { i: { id: runId } },
    );
    expect(retried.__typename).toBe('RetryTriggeredRunPayload');
    for (const owner of owners) expect(await owner.first).toBe(runId);

    const theirs = await mutate(
      t,
      EMIT_IN_OTHER,
      {
        v: {
          entity: 'other',
          eventType: 'CREATE_ARTIFACT',
          owner: { project: 'p' },
          collection: 'their-model',
          artifactType: 'model',
          versionIndex: next(),
        },
      },
      fx.keys.stranger as string,
    );
    const theirRuns: string[] = theirs.triggeredRuns.map((run: { id: string }) => run.id).sort();
    expect(theirRuns).not.toEqual([]);
    expect(theirRuns).toContain(await strangers[0]?.first);
    await roundTrip(strangerClient);
    for (const c of Object.values(ownerClients)) await roundTrip(c);

    expect(strangers.map((s) => s.runIds.sort())).toEqual([theirRuns, [], [], [], []]);
    for (const owner of owners) expect(owner.runIds).toEqual([runId]);
  });

  it('closes a WebSocket with a revoked key or none with 4403', async () => {
    const codes = await Promise.all([fx.keys.revoked, null].map((key) => closeCode(client(key))));
    expect(codes).toEqual([4403, 4403]);
  });

  it('answers server-sent events with a revoked key or none with 401 UNAUTHENTICATED', async () => {
    for (const key of [fx.keys.revoked, null]) {
      const response = await fetch(`${url}?query=${encodeURIComponent(UPDATES())}`, {
        headers: {
          accept: 'text/event-stream',
          ...(key ? { authorization: `Bearer ${key}` } : {}),
        },
      });
      expect(response.status).toBe(401);
      expect(await response.text()).toContain('UNAUTHENTICATED');
    }
  });
});
