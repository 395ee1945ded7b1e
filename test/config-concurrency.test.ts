// biome-ignore-all lint/suspicious/noTemplateCurlyInString: payload templates use ${…} literally
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, fakeClock, sqliteOnly, type TestApp } from './support/app.js';
import { createProject, createSecret, createWebhookAction, mutate } from './support/fixtures.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly(
  'gives actions whose names collide in secret form distinct generated signing secrets',
  'keeps both of two automation updates that read the same version',
  'stores one action of a name; the others are ConflictErrors and leave no generated secret',
  'stores one automation of a name',
  'stores one secret of a name',
);

/**
 * Requests racing each other: every one is held at the same point (after its checks, before its
 * write) until all have reached it, so all write on the same reading of the data, as requests on
 * separate connections or processes can.
 */
function barrier(count: number): () => Promise<void> {
  let arrived = 0;
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return async () => {
    arrived += 1;
    if (arrived >= count) open();
    await opened;
  };
}

const restores: (() => void)[] = [];

/** Holds every call of `store[operation]` at a barrier of `count` calls (later calls pass). */
function holdAt<Operation extends string, Store extends Record<Operation, Hookable>>(
  store: Store,
  operation: Operation,
  count: number,
): void {
  const original = store[operation];
  const wait = barrier(count);
  store[operation] = (async (...args: never[]) => {
    await wait();
    return original.apply(store, args);
  }) as Store[Operation];
  restores.push(() => {
    store[operation] = original;
  });
}
type Hookable = (...args: never[]) => Promise<unknown>;

const CREATE_WEBHOOK = `mutation($i: CreateWebhookActionInput!) { createWebhookAction(input: $i) {
  __typename ... on CreateWebhookActionPayload { action { name signingSecret } }
  ... on ConflictError { field message } ... on Error { message } } }`;
const CREATE_AUTOMATION = `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) {
  __typename ... on CreateAutomationPayload { automation { id } } ... on Error { message ... on ConflictError { field } } } }`;

let t: TestApp;
const clock = fakeClock();
beforeEach(async () => {
  t = await createTestApp({ clock, env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
});
afterEach(async () => {
  for (const restore of restores.splice(0)) restore();
  await t.close();
});

const count = (table: string) =>
  t.storage.sqlite.prepare(`select count(*) from ${table}`).pluck().get() as number;
const auditCodes = () =>
  t.storage.sqlite.prepare('select action from audit_log order by action').pluck().all();

describe('names written concurrently', () => {
  it('stores one action of a name; the others are ConflictErrors and leave no generated secret', async () => {
    const auditBefore = count('audit_log');
    holdAt(t.storage.secrets, 'namesIn', 3);
    const results = await Promise.all(
      [1, 2, 3].map(() =>
        t.gql(CREATE_WEBHOOK, {
          i: { entity: 'default', name: 'deploy', url: 'https://example.com/hook' },
        }),
      ),
    );
    const outcomes = results.map((r) => r.data.createWebhookAction);
    expect(outcomes.filter((o) => o.__typename === 'CreateWebhookActionPayload')).toHaveLength(1);
    for (const refused of outcomes.filter((o) => o.__typename !== 'CreateWebhookActionPayload')) {
      expect(refused).toEqual({
        __typename: 'ConflictError',
        field: 'input.name',
        message: 'This entity already has an action named "deploy"; pick another name.',
      });
    }
    expect(count('actions')).toBe(1);
    expect(t.storage.sqlite.prepare('select name from secrets').pluck().all()).toEqual([
      'DEPLOY_SIGNING_SECRET',
    ]);
    expect(count('audit_log') - auditBefore).toBe(2);
  });

  it('gives actions whose names collide in secret form distinct generated signing secrets', async () => {
    holdAt(t.storage.secrets, 'namesIn', 3);
    const results = await Promise.all(
      ['deploy hook', 'deploy-hook', 'Deploy Hook'].map((name) =>
        t.gql(
          `mutation($i: CreateWebhookActionInput!) { createWebhookAction(input: $i) {
            __typename ... on CreateWebhookActionPayload { action { ... on WebhookAction { signingSecret } } }
            ... on Error { message } } }`,
          { i: { entity: 'default', name, url: 'https://example.com/hook' } },
        ),
      ),
    );
    const names = results.map((r) => r.data.createWebhookAction.action?.signingSecret);
    expect(names.sort()).toEqual([
      'DEPLOY_HOOK_SIGNING_SECRET',
      'DEPLOY_HOOK_SIGNING_SECRET_2',
      'DEPLOY_HOOK_SIGNING_SECRET_3',
    ]);
    expect(auditCodes().filter((code) => code === 'secret.created')).toHaveLength(3);
  });

  it('stores one automation of a name', async () => {
    await createProject(t, 'p');
    const action = await createWebhookAction(t, { name: 'hook', url: 'https://example.com/h' });
    holdAt(t.storage.secrets, 'namesIn', 4);
    const results = await Promise.all(
      [1, 2, 3, 4].map(() =>
        t.gql(CREATE_AUTOMATION, {
          i: {
            entity: 'default',
            name: 'on new model',
            eventType: 'CREATE_ARTIFACT',
            scope: { project: 'p' },
            action: { actionId: action.id },
          },
        }),
      ),
    );
    const types = results.map((r) => r.data.createAutomation.__typename).sort();
    expect(types).toEqual([
      'ConflictError',
      'ConflictError',
      'ConflictError',
      'CreateAutomationPayload',
    ]);
    expect(count('automations')).toBe(1);
  });

  it('stores one secret of a name', async () => {
    holdAt(t.storage.secrets, 'create', 3);
    const results = await Promise.all(
      ['a', 'b', 'c'].map((value) =>
        t.gql(
          `mutation($i: CreateSecretInput!) { createSecret(input: $i) {
            __typename ... on ConflictError { field } } }`,
          { i: { entity: 'default', name: 'TOKEN', value } },
        ),
      ),
    );
    const types = results.map((r) => r.data.createSecret.__typename).sort();
    expect(types).toEqual(['ConflictError', 'ConflictError', 'CreateSecretPayload']);
    expect(count('secrets')).toBe(1);
  });
});

describe('changes made concurrently', () => {
  it('keeps both of two automation updates that read the same version', async () => {
    await createProject(t, 'p');
    await createSecret(t, 'TOKEN', 'tok');
    const action = await createWebhookAction(t, { name: 'hook', url: 'https://example.com/h' });
    const id = await mutate(t, CREATE_AUTOMATION, {
      i: {
        entity: 'default',
        name: 'first',
        eventType: 'CREATE_ARTIFACT',
        scope: { project: 'p' },
        action: { actionId: action.id },
      },
    }).then((r) => r.automation.id as string);
    clock.advance(1000);
    holdAt(t.storage.secrets, 'namesIn', 2);
    const UPDATE = `mutation($i: UpdateAutomationInput!) { updateAutomation(input: $i) {
      __typename ... on Error { message } } }`;
    const [renamed, disabled] = await Promise.all([
      t.gql(UPDATE, { i: { id, name: 'renamed' } }),
      t.gql(UPDATE, {
        i: {
          id,
          enabled: false,
          action: { actionId: action.id, payloadTemplate: '{"t":"${TOKEN}"}' },
        },
      }),
    ]);
    expect(renamed.data.updateAutomation.__typename).toBe('UpdateAutomationPayload');
    expect(disabled.data.updateAutomation.__typename).toBe('UpdateAutomationPayload');
    const row = t.storage.sqlite
      .prepare('select name, enabled, payload_template from automations')
      .get();
    expect(row).toEqual({ name: 'renamed', enabled: 0, payload_template: '{"t":"${TOKEN}"}' });
    expect(count('automation_secret_refs')).toBe(1);
  });
});
