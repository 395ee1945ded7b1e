import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createRegistry,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';

let t: TestApp;
let actionId: string;
beforeEach(async () => {
  t = await createTestApp();
  await createProject(t, 'p');
  await createRegistry(t, 'r');
  actionId = (await createWebhookAction(t, { name: 'hook', url: 'https://example.com/hook' })).id;
});
afterEach(() => t.close());

const names = (result: { triggeredRuns: { automationName: string }[] }) =>
  result.triggeredRuns.map((r) => r.automationName).sort();

describe('emitArtifactEvent', () => {
  it('stores the event and returns it without runs when nothing watches', async () => {
    const r = await emit(t, { metadata: { accuracy: 0.9 } });
    expect(r.__typename).toBe('EmitArtifactEventPayload');
    expect(r.event).toMatchObject({
      eventType: 'CREATE_ARTIFACT',
      versionString: 'default/p/my-model:v0',
      author: 'admin',
      collectionName: 'my-model',
    });
    expect(r.event.versionUri).toBe('tripline://default/p/my-model/v0');
    expect(r.triggeredRuns).toEqual([]);
    const events = await t.gql(
      '{ entity(name: "default") { events { totalCount edges { node { metadata reportedBy { name } } } } } }',
    );
    expect(events.data.entity.events.totalCount).toBe(1);
    expect(events.data.entity.events.edges[0].node).toEqual({
      metadata: { accuracy: 0.9 },
      reportedBy: { name: 'admin' },
    });
  });

  it('queues one run per matching enabled automation, by scope, event type and filters', async () => {
    await createAutomation(t, {
      name: 'project-create',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    await createAutomation(t, {
      name: 'models-only',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
      filter: { artifactType: 'model' },
    });
    await createAutomation(t, {
      name: 'datasets-only',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
      filter: { artifactType: 'dataset' },
    });
    await createAutomation(t, {
      name: 'other-collection',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
      filter: { collectionName: 'other' },
    });
    await createAutomation(t, {
      name: 'alias-watch',
      eventType: 'ADD_ARTIFACT_ALIAS',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    const disabled = await createAutomation(t, {
      name: 'disabled',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    await mutate(
      t,
      'mutation($i: UpdateAutomationInput!) { updateAutomation(input: $i) { __typename } }',
      { i: { id: disabled, enabled: false } },
    );

    const r = await emit(t);
    expect(names(r)).toEqual(['models-only', 'project-create']);
    expect(r.triggeredRuns.every((run: { status: string }) => run.status === 'QUEUED')).toBe(true);
  });

  it('lets a project scope see collections created after the automation, and a collection scope only its own', async () => {
    await createAutomation(t, {
      name: 'whole-project',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    await mutate(
      t,
      'mutation($i: CreateArtifactCollectionInput!) { createArtifactCollection(input: $i) { __typename } }',
      {
        i: { entity: 'default', owner: { project: 'p' }, name: 'watched', artifactType: 'model' },
      },
    );
    await createAutomation(t, {
      name: 'one-collection',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT_COLLECTION', project: 'p', collection: 'watched' },
      actionId,
    });

    expect(names(await emit(t, { collection: 'brand-new' }))).toEqual(['whole-project']);
    expect(names(await emit(t, { collection: 'watched' }))).toEqual([
      'one-collection',
      'whole-project',
    ]);
  });

  it('matches link events in registries and alias events by pattern', async () => {
    await createAutomation(t, {
      name: 'link',
      eventType: 'LINK_ARTIFACT',
      scope: { type: 'REGISTRY', registry: 'r' },
      actionId,
    });
    await createAutomation(t, {
      name: 'prod-alias',
      eventType: 'ADD_ARTIFACT_ALIAS',
      scope: { type: 'REGISTRY', registry: 'r' },
      actionId,
      filter: { aliasPattern: '^prod' },
    });

    expect(
      names(await emit(t, { eventType: 'LINK_ARTIFACT', project: null, registry: 'r' })),
    ).toEqual(['link']);
    const prod = await emit(t, {
      eventType: 'ADD_ARTIFACT_ALIAS',
      project: null,
      registry: 'r',
      alias: 'production',
    });
    expect(names(prod)).toEqual(['prod-alias']);
    expect(prod.event.versionString).toBe('default/r/my-model:production');
    expect(
      names(
        await emit(t, {
          eventType: 'ADD_ARTIFACT_ALIAS',
          project: null,
          registry: 'r',
          alias: 'staging',
        }),
      ),
    ).toEqual([]);
  });

  it('returns the first result for a repeated idempotency key', async () => {
    await createAutomation(t, {
      name: 'a',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    const first = await emit(t, { idempotencyKey: 'build-42' });
    const second = await emit(t, { idempotencyKey: 'build-42', versionIndex: 7 });
    expect(first.replayed).toBe(false);
    expect(second.replayed).toBe(true);
    expect(second.event.id).toBe(first.event.id);
    expect(second.triggeredRuns.map((r: { id: string }) => r.id)).toEqual(
      first.triggeredRuns.map((r: { id: string }) => r.id),
    );
    const count = await t.gql(
      '{ entity(name: "default") { events { totalCount } triggeredRuns { totalCount } } }',
    );
    expect(count.data.entity).toEqual({
      events: { totalCount: 1 },
      triggeredRuns: { totalCount: 1 },
    });
  });

  it.each([
    [{ project: 'nope' }, 'NotFoundError', 'input.owner.project'],
    [{ project: null, registry: 'r' }, 'ValidationError', 'input.owner.registry'],
    [{ eventType: 'LINK_ARTIFACT' }, 'ValidationError', 'input.owner.project'],
    [{ eventType: 'ADD_ARTIFACT_ALIAS' }, 'ValidationError', 'input.alias'],
    [{ eventType: 'ADD_ARTIFACT_ALIAS', alias: 'bad alias' }, 'ValidationError', 'input.alias'],
    [{ alias: 'latest' }, 'ValidationError', 'input.alias'],
    [{ versionIndex: -1 }, 'ValidationError', 'input.versionIndex'],
    [{ collection: 'a/b' }, 'ValidationError', 'input.collection'],
    [{ metadata: { blob: 'x'.repeat(70_000) } }, 'ValidationError', 'input.metadata'],
    [{ idempotencyKey: '' }, 'ValidationError', 'input.idempotencyKey'],
    [{ author: ' ' }, 'ValidationError', 'input.author'],
    [{ entity: 'elsewhere' }, 'NotFoundError', 'input.entity'],
  ])('refuses bad input #%# with the field named, storing nothing', async (input, type, field) => {
    const r = await emit(t, input);
    expect(r).toMatchObject({ __typename: type, field });
    const count = await t.gql('{ entity(name: "default") { events { totalCount } } }');
    expect(count.data.entity.events.totalCount).toBe(0);
  });

  it('refuses an artifact type that differs from the collection’s', async () => {
    await emit(t);
    expect(await emit(t, { artifactType: 'dataset' })).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.artifactType',
    });
  });

  it('lets members emit and refuses viewers', async () => {
    expect((await emit(t, {}, await t.member('MEMBER'))).__typename).toBe(
      'EmitArtifactEventPayload',
    );
    expect(await emit(t, {}, await t.member('VIEWER'))).toMatchObject({
      __typename: 'PermissionDeniedError',
      requiredRole: 'MEMBER',
    });
  });

  it('never matches another entity’s automations', async () => {
    await createAutomation(t, {
      name: 'mine',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    const r = await emit(t, { entity: 'other' }, await t.stranger());
    expect(r.triggeredRuns).toEqual([]);
  });
});

describe('run history', () => {
  it('lists runs on the entity, project, automation and event, newest first, filtered', async () => {
    const automationId = await createAutomation(t, {
      name: 'a',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    const first = await emit(t, { versionIndex: 0 });
    const second = await emit(t, { versionIndex: 1 });
    const runId = second.triggeredRuns[0].id;
    const q = await t.gql(
      `query($a: ID!, $run: ID!) {
        entity(name: "default") {
          triggeredRuns { totalCount edges { node { id event { versionIndex } } } }
          queued: triggeredRuns(filter: { statuses: [QUEUED] }) { totalCount }
          failed: triggeredRuns(filter: { statuses: [FAILED] }) { totalCount }
          byAutomation: triggeredRuns(filter: { automationId: $a }) { totalCount }
          future: triggeredRuns(filter: { createdAfter: "2999-01-01T00:00:00Z" }) { totalCount }
          projects { edges { node { triggeredRuns { totalCount } } } }
          events { edges { node { triggeredRuns { totalCount } } } }
        }
        automation(id: $a) { triggeredRuns { totalCount } }
        triggeredRun(id: $run) { status automationName attempts { attemptNumber } event { versionIndex } }
      }`,
      { a: automationId, run: runId },
    );
    expect(q.errors).toBeUndefined();
    const e = q.data.entity;
    expect(e.triggeredRuns.totalCount).toBe(2);
    expect(
      e.triggeredRuns.edges.map(
        (x: { node: { event: { versionIndex: number } } }) => x.node.event.versionIndex,
      ),
    ).toEqual([1, 0]);
    expect([
      e.queued.totalCount,
      e.failed.totalCount,
      e.byAutomation.totalCount,
      e.future.totalCount,
    ]).toEqual([2, 0, 2, 0]);
    expect(e.projects.edges[0].node.triggeredRuns.totalCount).toBe(2);
    expect(
      e.events.edges.map(
        (x: { node: { triggeredRuns: { totalCount: number } } }) => x.node.triggeredRuns.totalCount,
      ),
    ).toEqual([1, 1]);
    expect(q.data.automation.triggeredRuns.totalCount).toBe(2);
    expect(q.data.triggeredRun).toEqual({
      status: 'QUEUED',
      automationName: 'a',
      attempts: [],
      event: { versionIndex: 1 },
    });
    expect(first.triggeredRuns).toHaveLength(1);
  });

  it('refuses to retry a run that has not finished', async () => {
    await createAutomation(t, {
      name: 'a',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    const r = await emit(t);
    const retry = await t.gql(
      'mutation($id: ID!) { retryTriggeredRun(input: { id: $id }) { __typename ... on ConflictError { field message } } }',
      { id: r.triggeredRuns[0].id },
    );
    expect(retry.data.retryTriggeredRun).toMatchObject({
      __typename: 'ConflictError',
      field: 'input.id',
    });
  });

  it('hides runs of other entities', async () => {
    await createAutomation(t, {
      name: 'a',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    const r = await emit(t);
    const outsider = await t.stranger();
    const runId = r.triggeredRuns[0].id;
    const seen = await t.gql(
      'query($id: ID!) { triggeredRun(id: $id) { id } node(id: $id) { id } }',
      { id: runId },
      outsider,
    );
    expect(seen.data).toEqual({ triggeredRun: null, node: null });
    const retry = await t.gql(
      'mutation($id: ID!) { retryTriggeredRun(input: { id: $id }) { __typename } }',
      { id: runId },
      outsider,
    );
    expect(retry.data.retryTriggeredRun.__typename).toBe('NotFoundError');
  });
});
