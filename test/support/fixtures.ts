import { expect } from 'vitest';
import type { GraphQLResponse, TestApp } from './app.js';

/** Runs a mutation and returns its result, failing the test on a GraphQL error. */
export async function mutate(
  t: TestApp,
  query: string,
  variables: Record<string, unknown>,
  key?: string,
): Promise<GraphQLResponse['data']> {
  const res = await t.gql(query, variables, key);
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  return Object.values(res.data as object)[0];
}

export async function createProject(t: TestApp, name: string, entity = 'default'): Promise<void> {
  const r = await mutate(
    t,
    'mutation($i: CreateProjectInput!) { createProject(input: $i) { __typename } }',
    {
      i: { entity, name },
    },
  );
  expect(r.__typename).toBe('CreateProjectPayload');
}

export async function createRegistry(t: TestApp, name: string, entity = 'default'): Promise<void> {
  const r = await mutate(
    t,
    'mutation($i: CreateRegistryInput!) { createRegistry(input: $i) { __typename } }',
    {
      i: { entity, name },
    },
  );
  expect(r.__typename).toBe('CreateRegistryPayload');
}

export async function createSecret(
  t: TestApp,
  name: string,
  value: string,
  entity = 'default',
): Promise<void> {
  const r = await mutate(
    t,
    'mutation($i: CreateSecretInput!) { createSecret(input: $i) { __typename } }',
    {
      i: { entity, name, value },
    },
  );
  expect(r.__typename).toBe('CreateSecretPayload');
}

/** Creates a webhook action; returns its global id and the generated signing secret. */
export async function createWebhookAction(
  t: TestApp,
  input: {
    name: string;
    url: string;
    entity?: string;
    accessTokenSecret?: string;
    headers?: { name: string; value: string }[];
  },
): Promise<{ id: string; signingSecret: string }> {
  const r = await mutate(
    t,
    `mutation($i: CreateWebhookActionInput!) { createWebhookAction(input: $i) {
      __typename ... on CreateWebhookActionPayload { signingSecret action { id } } ... on Error { message } } }`,
    { i: { entity: 'default', ...input } },
  );
  expect(r.__typename, r.message).toBe('CreateWebhookActionPayload');
  return { id: r.action.id, signingSecret: r.signingSecret };
}

export async function createSlackAction(
  t: TestApp,
  input: { name: string; channel: string; webhookUrlSecret: string },
): Promise<string> {
  const r = await mutate(
    t,
    `mutation($i: CreateSlackActionInput!) { createSlackAction(input: $i) { __typename ... on CreateSlackActionPayload { action { id } } ... on Error { message } } }`,
    { i: { entity: 'default', ...input } },
  );
  expect(r.__typename, r.message).toBe('CreateSlackActionPayload');
  return r.action.id;
}

/** Creates a no-op action; returns its global id. */
export async function createNoOpAction(
  t: TestApp,
  input: { name: string; entity?: string },
): Promise<string> {
  const r = await mutate(
    t,
    `mutation($i: CreateNoOpActionInput!) { createNoOpAction(input: $i) { __typename ... on CreateNoOpActionPayload { action { id } } ... on Error { message } } }`,
    { i: { entity: 'default', ...input } },
  );
  expect(r.__typename, r.message).toBe('CreateNoOpActionPayload');
  return r.action.id;
}

/**
 * The `AutomationScopeInput` (@oneOf) for a scope in the old flat shape tests name it in,
 * `{ type: 'PROJECT_COLLECTION', project: 'p', collection: 'c' }`; a scope without `type` is
 * already in the new shape and passes through as given.
 */
export function scopeInput(scope: Record<string, unknown>): Record<string, unknown> {
  const { type, project, registry, collection } = scope;
  switch (type) {
    case undefined:
      return scope;
    case 'PROJECT':
      return { project };
    case 'REGISTRY':
      return { registry };
    case 'PROJECT_COLLECTION':
      return { projectCollection: { project, collection } };
    case 'REGISTRY_COLLECTION':
      return { registryCollection: { registry, collection } };
    default:
      throw new Error(`unknown scope type ${String(type)}`);
  }
}

/** Creates an automation; returns its global id. The scope may be in the old flat shape. */
export async function createAutomation(
  t: TestApp,
  input: {
    name: string;
    eventType: string;
    scope: Record<string, unknown>;
    actionId: string;
    payloadTemplate?: string;
    slack?: { slackTitle: string; slackMessage: string; slackSeverity?: string };
    filter?: Record<string, string>;
    entity?: string;
  },
): Promise<string> {
  const r = await mutate(
    t,
    `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { __typename ... on CreateAutomationPayload { automation { id } } ... on Error { message } } }`,
    {
      i: {
        entity: input.entity ?? 'default',
        name: input.name,
        eventType: input.eventType,
        scope: scopeInput(input.scope),
        filter: input.filter,
        action: {
          actionId: input.actionId,
          payloadTemplate: input.payloadTemplate,
          ...input.slack,
        },
      },
    },
  );
  expect(r.__typename, r.message).toBe('CreateAutomationPayload');
  return r.automation.id;
}

export const EMIT = `mutation($i: EmitArtifactEventInput!) { emitArtifactEvent(input: $i) {
  __typename
  ... on EmitArtifactEventPayload { replayed event { id eventType versionString versionUri alias author collectionName }
    triggeredRuns { id status automationName automation { name } } }
  ... on Error { message ... on ValidationError { field } ... on NotFoundError { field }
  ... on PermissionDeniedError { requiredRole } } } }`;

/** Emits an event in entity `default`; fields default to a CREATE_ARTIFACT of my-model v0 in project `p`. */
export async function emit(
  t: TestApp,
  input: Record<string, unknown> = {},
  key?: string,
): Promise<GraphQLResponse['data']> {
  // `project` / `registry` given at the top level name the owner (`owner: { project: 'p' }` by
  // default); `owner` itself passes through as given.
  const { project, registry, ...rest } = input;
  const owner = registry != null ? { registry } : { project: project ?? 'p' };
  return mutate(
    t,
    EMIT,
    {
      i: {
        entity: 'default',
        eventType: 'CREATE_ARTIFACT',
        owner,
        collection: 'my-model',
        artifactType: 'model',
        versionIndex: 0,
        ...rest,
      },
    },
    key,
  );
}

/**
 * The answer with each `…Payload` that holds one object replaced by that object, for tests about
 * the object rather than the payload's shape (test/schema-conventions.test.ts checks that).
 */
export function payloadObjects<T extends GraphQLResponse>(res: T): T {
  const data = res.data as Record<string, unknown> | undefined;
  for (const [field, value] of Object.entries(data ?? {})) {
    const payload = value as { __typename?: string } | null;
    if (!payload?.__typename?.endsWith('Payload')) continue;
    const keys = Object.keys(payload).filter((key) => key !== '__typename');
    if (keys.length === 1 && data) data[field] = (payload as Record<string, unknown>)[keys[0]!];
  }
  return res;
}
