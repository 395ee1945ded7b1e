import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './support/app.js';
import {
  createAutomation,
  createNoOpAction,
  createProject,
  createRegistry,
  emit,
  mutate,
} from './support/fixtures.js';

let t: TestApp;
let actionId: string;

beforeEach(async () => {
  t = await createTestApp();
  actionId = await createNoOpAction(t, { name: 'dry-run' });
});

afterEach(async () => {
  await t.close();
});

const CREATE = `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) {
  __typename
  ... on CreateAutomationPayload { automation { id scope { type project { name } registry { name } collection { name } } } }
  ... on Error { message ... on ValidationError { field } } } }`;

const names = (emitted: { triggeredRuns: { automationName: string }[] }) =>
  emitted.triggeredRuns.map((run) => run.automationName).sort();

const runsOf = async (automationId: string) =>
  (
    await t.gql(
      'query($id: ID!) { automation(id: $id) { triggeredRuns(first: 50) { totalCount } } }',
      { id: automationId },
    )
  ).data.automation.triggeredRuns.totalCount;

describe('ENTITY scope', () => {
  it('is created with `entity: true` and shows type ENTITY with no project, registry or collection', async () => {
    const res = await t.gql(CREATE, {
      i: {
        entity: 'default',
        name: 'everything',
        eventType: 'CREATE_ARTIFACT',
        scope: { entity: true },
        action: { actionId },
      },
    });
    expect(res.data.createAutomation.automation.scope).toEqual({
      type: 'ENTITY',
      project: null,
      registry: null,
      collection: null,
    });
    const listed = await t.gql(
      '{ entity(name: "default") { automations(scopeType: ENTITY) { totalCount } } }',
    );
    expect(listed.data.entity.automations.totalCount).toBe(1);
  });

  it('refuses `entity: false`, naming the field', async () => {
    const res = await t.gql(CREATE, {
      i: {
        entity: 'default',
        name: 'nothing',
        eventType: 'CREATE_ARTIFACT',
        scope: { entity: false },
        action: { actionId },
      },
    });
    expect(res.data.createAutomation).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.scope.entity',
    });
  });

  it('fires for every event type in projects and registries created after it', async () => {
    const created = await createAutomation(t, {
      name: 'created',
      eventType: 'CREATE_ARTIFACT',
      scope: { entity: true },
      actionId,
    });
    await createAutomation(t, {
      name: 'linked',
      eventType: 'LINK_ARTIFACT',
      scope: { entity: true },
      actionId,
    });
    await createAutomation(t, {
      name: 'aliased',
      eventType: 'ADD_ARTIFACT_ALIAS',
      scope: { entity: true },
      actionId,
      filter: { collectionName: 'my-model' },
    });
    await createProject(t, 'later');
    await createRegistry(t, 'r');

    expect(names(await emit(t, { project: 'later' }))).toEqual(['created']);
    expect(names(await emit(t, { eventType: 'LINK_ARTIFACT', registry: 'r' }))).toEqual(['linked']);
    expect(
      names(await emit(t, { eventType: 'ADD_ARTIFACT_ALIAS', registry: 'r', alias: 'prod' })),
    ).toEqual(['aliased']);
    expect(
      names(await emit(t, { eventType: 'ADD_ARTIFACT_ALIAS', project: 'later', alias: 'staging' })),
    ).toEqual(['aliased']);
    // The collection filter still applies at entity scope.
    expect(
      names(
        await emit(t, {
          eventType: 'ADD_ARTIFACT_ALIAS',
          project: 'later',
          collection: 'other-model',
          alias: 'x',
        }),
      ),
    ).toEqual([]);
    expect(await runsOf(created)).toBe(1);
  });

  it("does not fire for another entity's events", async () => {
    const mine = await createAutomation(t, {
      name: 'mine',
      eventType: 'CREATE_ARTIFACT',
      scope: { entity: true },
      actionId,
    });
    const stranger = await t.stranger();
    const theirs = await emit(t, { entity: 'other', project: 'p' }, stranger);
    expect(theirs.__typename).toBe('EmitArtifactEventPayload');
    expect(theirs.triggeredRuns).toEqual([]);
    expect(await runsOf(mine)).toBe(0);
  });

  it('an automation can be moved to and from entity scope', async () => {
    await createProject(t, 'p');
    const id = await createAutomation(t, {
      name: 'moving',
      eventType: 'CREATE_ARTIFACT',
      scope: { project: 'p' },
      actionId,
    });
    const UPDATE = `mutation($i: UpdateAutomationInput!) { updateAutomation(input: $i) { __typename
      ... on UpdateAutomationPayload { automation { scope { type } } } } }`;
    const moved = await mutate(t, UPDATE, { i: { id, scope: { entity: true } } });
    expect(moved.automation.scope.type).toBe('ENTITY');
    await createProject(t, 'q');
    expect(names(await emit(t, { project: 'q' }))).toEqual(['moving']);
    const back = await mutate(t, UPDATE, { i: { id, scope: { project: 'p' } } });
    expect(back.automation.scope.type).toBe('PROJECT');
    expect(names(await emit(t, { project: 'q', versionIndex: 1 }))).toEqual([]);
  });
});
