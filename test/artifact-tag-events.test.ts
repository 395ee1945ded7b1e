// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the tests write template variables as literal text.

import { type Client, createClient } from 'graphql-ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { verifySignature } from '../src/delivery/signing.js';
import { buildSlackMessage } from '../src/delivery/slack.js';
import { renderText } from '../src/modules/automations/template.js';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import { sampleContext } from './support/delivery-fixtures.js';
import {
  createAutomation,
  createProject,
  createRegistry,
  createWebhookAction,
  mutate,
  scopeInput,
} from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp;
let url: string;
let receiver: Receiver;
let hook: { id: string; signingSecret: string };
const clock = fakeClock();
const clients: Client[] = [];

beforeEach(async () => {
  t = await createTestApp({ clock, env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
  url = await t.listen();
  receiver = await startReceiver();
  await createProject(t, 'p');
  await createRegistry(t, 'models');
  for (const owner of [{ project: 'p' }, { registry: 'models' }]) {
    await mutate(
      t,
      'mutation($i: CreateArtifactCollectionInput!) { createArtifactCollection(input: $i) { __typename } }',
      { i: { entity: 'default', owner, name: 'resnet', artifactType: 'model' } },
    );
  }
  hook = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.dispose();
  await receiver.close();
  await t.close();
});

const EMIT = `mutation($i: EmitArtifactEventInput!) { emitArtifactEvent(input: $i) {
  __typename
  ... on EmitArtifactEventPayload { replayed event { id eventType tag alias versionIndex versionString versionUri }
    triggeredRuns { id status } }
  ... on Error { message ... on ValidationError { field } } } }`;

/** Emits an event in entity `default` about collection `resnet`; `owner` defaults to project `p`. */
async function emit(input: Record<string, unknown>) {
  return mutate(t, EMIT, {
    i: {
      entity: 'default',
      owner: { project: 'p' },
      collection: 'resnet',
      artifactType: 'model',
      ...input,
    },
  });
}

/** Subscribes to `triggeredRunUpdated`; `finished` resolves with the statuses once one ends. */
async function watchRuns(): Promise<{ statuses: string[]; finished: Promise<string[]> }> {
  const client = createClient({
    url: url.replace('http', 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${t.adminKey}` },
    retryAttempts: 0,
  });
  clients.push(client);
  const statuses: string[] = [];
  const finished = new Promise<string[]>((resolve, reject) => {
    client.subscribe<{ triggeredRunUpdated: { status: string } }>(
      { query: 'subscription { triggeredRunUpdated { id status } }' },
      {
        next: (message) => {
          if (message.errors) reject(new Error(JSON.stringify(message.errors)));
          const status = message.data?.triggeredRunUpdated.status;
          if (status) statuses.push(status);
          if (status === 'SUCCEEDED' || status === 'FAILED') resolve(statuses);
        },
        error: reject,
        complete: () => {},
      },
    );
  });
  await t.subscribers(1);
  return { statuses, finished };
}

const HISTORY = `{ entity(name: "default") { triggeredRuns(first: 10) { totalCount edges { node {
  id status event { eventType tag versionIndex } } } } } }`;

interface Case {
  eventType: string;
  scope: Record<string, unknown>;
  emitted: Record<string, unknown>;
  /** Fields the default envelope must carry. */
  body: Record<string, unknown>;
}

const CASES: Case[] = [
  {
    eventType: 'UNLINK_ARTIFACT',
    scope: { type: 'REGISTRY_COLLECTION', registry: 'models', collection: 'resnet' },
    emitted: { owner: { registry: 'models' }, versionIndex: 3 },
    body: {
      tag: null,
      alias: null,
      project_name: 'models',
      artifact_version_index: 3,
      artifact_version_string: 'default/models/resnet:v3',
      artifact_version: 'tripline://default/models/resnet/v3',
    },
  },
  {
    eventType: 'ADD_ARTIFACT_TAG',
    scope: { type: 'PROJECT', project: 'p' },
    emitted: { versionIndex: 3, tag: 'candidate' },
    body: {
      tag: 'candidate',
      alias: null,
      project_name: 'p',
      artifact_version_index: 3,
      artifact_version_string: 'default/p/resnet:v3',
    },
  },
  {
    eventType: 'REMOVE_ARTIFACT_TAG',
    scope: { type: 'REGISTRY', registry: 'models' },
    emitted: { owner: { registry: 'models' }, versionIndex: 2, tag: 'stale' },
    body: {
      tag: 'stale',
      project_name: 'models',
      artifact_version_index: 2,
      artifact_version_string: 'default/models/resnet:v2',
    },
  },
  {
    eventType: 'ADD_COLLECTION_TAG',
    scope: { type: 'PROJECT_COLLECTION', project: 'p', collection: 'resnet' },
    emitted: { tag: 'vision' },
    body: {
      tag: 'vision',
      project_name: 'p',
      artifact_version_index: null,
      artifact_version_string: 'default/p/resnet',
      artifact_version: 'tripline://default/p/resnet',
    },
  },
  {
    eventType: 'REMOVE_COLLECTION_TAG',
    scope: { type: 'REGISTRY_COLLECTION', registry: 'models', collection: 'resnet' },
    emitted: { owner: { registry: 'models' }, tag: 'deprecated' },
    body: {
      tag: 'deprecated',
      project_name: 'models',
      artifact_version_index: null,
      artifact_version_string: 'default/models/resnet',
    },
  },
];

describe('new artifact events, end to end', () => {
  for (const c of CASES) {
    it(`${c.eventType}: delivers one signed envelope and records the run`, async () => {
      await createAutomation(t, {
        name: `on-${c.eventType.toLowerCase()}`,
        eventType: c.eventType,
        scope: c.scope,
        actionId: hook.id,
      });
      const watched = await watchRuns();

      const emitted = await emit({ eventType: c.eventType, ...c.emitted });
      expect(emitted.__typename, emitted.message).toBe('EmitArtifactEventPayload');
      expect(emitted.event).toMatchObject({
        eventType: c.eventType,
        tag: c.emitted.tag ?? null,
        alias: null,
        versionIndex: c.emitted.versionIndex ?? null,
        versionString: c.body.artifact_version_string,
      });
      expect(emitted.triggeredRuns).toHaveLength(1);
      const runId = emitted.triggeredRuns[0].id;

      await t.app.engine.drain();
      expect(await watched.finished).toEqual(['QUEUED', 'RUNNING', 'SUCCEEDED']);
      expect(receiver.requests).toHaveLength(1);
      const request = receiver.requests[0]!;
      expect(
        verifySignature({
          secret: hook.signingSecret,
          headers: request.headers,
          body: request.body,
          now: clock.now(),
        }),
      ).toBe(true);
      expect(request.json()).toMatchObject({
        event_type: c.eventType,
        event_id: emitted.event.id,
        entity_name: 'default',
        artifact_collection_name: 'resnet',
        artifact_type: 'model',
        ...c.body,
      });

      const history = (await t.gql(HISTORY)).data.entity.triggeredRuns;
      expect(history.totalCount).toBe(1);
      expect(history.edges[0].node).toEqual({
        id: runId,
        status: 'SUCCEEDED',
        event: {
          eventType: c.eventType,
          tag: c.emitted.tag ?? null,
          versionIndex: c.emitted.versionIndex ?? null,
        },
      });
    });
  }

  it('renders ${tag} in a payload template, and "" for an event without a tag', async () => {
    await createAutomation(t, {
      name: 'templated',
      eventType: 'ADD_ARTIFACT_TAG',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: hook.id,
      payloadTemplate: JSON.stringify({ text: 'tag=${tag} on ${artifact_version_string}' }),
    });
    await emit({ eventType: 'ADD_ARTIFACT_TAG', versionIndex: 1, tag: 'candidate' });
    await t.app.engine.drain();
    expect(receiver.requests.map((r) => r.json())).toEqual([
      { text: 'tag=candidate on default/p/resnet:v1' },
    ]);
    expect(renderText('[${tag}]', sampleContext({ tag: null }), new Map())).toBe('[]');
  });
});

describe('idempotency', () => {
  it('replays a tag event sent twice with one key: one event, one run, one delivery', async () => {
    await createAutomation(t, {
      name: 'tags',
      eventType: 'REMOVE_ARTIFACT_TAG',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: hook.id,
    });
    const input = {
      eventType: 'REMOVE_ARTIFACT_TAG',
      versionIndex: 4,
      tag: 'candidate',
      idempotencyKey: 'untag-4',
    };
    const first = await emit(input);
    const again = await emit({ ...input, tag: 'other' });
    expect(first.replayed).toBe(false);
    expect(again.replayed).toBe(true);
    expect(again.event).toEqual(first.event);
    expect(again.triggeredRuns).toEqual(first.triggeredRuns);
    await t.app.engine.drain();
    expect(receiver.requests).toHaveLength(1);
    const events = await t.gql('{ entity(name: "default") { events { totalCount } } }');
    expect(events.data.entity.events.totalCount).toBe(1);
  });
});

describe('tag filter', () => {
  it('queues a run only for tags the tagPattern matches', async () => {
    await createAutomation(t, {
      name: 'candidates',
      eventType: 'ADD_COLLECTION_TAG',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: hook.id,
      filter: { tagPattern: '^cand' },
    });
    const matched = await emit({ eventType: 'ADD_COLLECTION_TAG', tag: 'candidate-2' });
    const missed = await emit({ eventType: 'ADD_COLLECTION_TAG', tag: 'prod-candidate' });
    expect(matched.triggeredRuns).toHaveLength(1);
    expect(missed.triggeredRuns).toEqual([]);
    await t.app.engine.drain();
    expect(receiver.requests.map((r) => r.json<{ tag: string }>().tag)).toEqual(['candidate-2']);
    const read = await t.gql(
      '{ entity(name: "default") { automations(first: 1) { edges { node { filter { tagPattern aliasPattern } } } } } }',
    );
    expect(read.data.entity.automations.edges[0].node.filter).toEqual({
      tagPattern: '^cand',
      aliasPattern: null,
    });
  });
});

const CREATE = `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) {
  __typename ... on Error { message } ... on ValidationError { field } } }`;

async function createRefused(eventType: string, filter: Record<string, string>, scope?: object) {
  return mutate(t, CREATE, {
    i: {
      entity: 'default',
      name: 'refused',
      eventType,
      scope: scopeInput((scope as Record<string, unknown>) ?? { type: 'PROJECT', project: 'p' }),
      filter,
      action: { actionId: hook.id },
    },
  });
}

describe('validation', () => {
  it('requires a tag on tag events and refuses one elsewhere', async () => {
    for (const eventType of ['ADD_ARTIFACT_TAG', 'REMOVE_COLLECTION_TAG']) {
      const missing = await emit({
        eventType,
        versionIndex: eventType.endsWith('ARTIFACT_TAG') ? 1 : null,
      });
      expect(missing).toMatchObject({ __typename: 'ValidationError', field: 'input.tag' });
      expect(missing.message).toContain(`${eventType} needs the tag`);
    }
    const onCreate = await emit({ eventType: 'CREATE_ARTIFACT', versionIndex: 1, tag: 'x' });
    expect(onCreate).toMatchObject({ __typename: 'ValidationError', field: 'input.tag' });
    expect(onCreate.message).toContain('A tag belongs to');
    const onAlias = await emit({
      eventType: 'ADD_ARTIFACT_ALIAS',
      versionIndex: 1,
      alias: 'prod',
      tag: 'x',
    });
    expect(onAlias).toMatchObject({ __typename: 'ValidationError', field: 'input.tag' });
    const aliasOnTag = await emit({
      eventType: 'ADD_ARTIFACT_TAG',
      versionIndex: 1,
      tag: 'x',
      alias: 'prod',
    });
    expect(aliasOnTag).toMatchObject({ __typename: 'ValidationError', field: 'input.alias' });
  });

  it('checks a tag like an alias: length and characters', async () => {
    for (const tag of ['has space', '-leading', 'x'.repeat(129), 'tab\there']) {
      const refused = await emit({ eventType: 'ADD_ARTIFACT_TAG', versionIndex: 1, tag });
      expect(refused, tag).toMatchObject({ __typename: 'ValidationError', field: 'input.tag' });
    }
    const longest = await emit({
      eventType: 'ADD_ARTIFACT_TAG',
      versionIndex: 1,
      tag: 'x'.repeat(128),
    });
    expect(longest.__typename).toBe('EmitArtifactEventPayload');
  });

  it('needs a version index on version events and refuses one on collection-tag events', async () => {
    const without = await emit({ eventType: 'ADD_ARTIFACT_TAG', tag: 'x' });
    expect(without).toMatchObject({ __typename: 'ValidationError', field: 'input.versionIndex' });
    const withIndex = await emit({ eventType: 'ADD_COLLECTION_TAG', tag: 'x', versionIndex: 2 });
    expect(withIndex).toMatchObject({ __typename: 'ValidationError', field: 'input.versionIndex' });
  });

  it('takes UNLINK_ARTIFACT only in registries, and watches it only from registry scopes', async () => {
    const inProject = await emit({ eventType: 'UNLINK_ARTIFACT', versionIndex: 1 });
    expect(inProject).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.owner.project',
    });
    for (const scope of [
      { type: 'PROJECT', project: 'p' },
      { type: 'PROJECT_COLLECTION', project: 'p', collection: 'resnet' },
    ]) {
      const refused = await createRefused('UNLINK_ARTIFACT', {}, scope);
      expect(refused).toMatchObject({ __typename: 'ValidationError', field: 'input.scope' });
    }
  });

  it('allows tagPattern only on tag event types, and refuses a bad or empty pattern', async () => {
    for (const eventType of ['CREATE_ARTIFACT', 'ADD_ARTIFACT_ALIAS']) {
      const refused = await createRefused(eventType, { tagPattern: '^x' });
      expect(refused).toMatchObject({
        __typename: 'ValidationError',
        field: 'input.filter.tagPattern',
      });
    }
    const aliasOnTag = await createRefused('ADD_ARTIFACT_TAG', { aliasPattern: '^x' });
    expect(aliasOnTag).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.filter.aliasPattern',
    });
    const backreference = await createRefused('ADD_ARTIFACT_TAG', { tagPattern: '(a)\\1' });
    expect(backreference).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.filter.tagPattern',
    });
    expect(backreference.message).toContain('Invalid tag pattern');
    const empty = await createRefused('REMOVE_ARTIFACT_TAG', { tagPattern: '' });
    expect(empty).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.filter.tagPattern',
    });
    const long = await createRefused('REMOVE_ARTIFACT_TAG', { tagPattern: 'x'.repeat(257) });
    expect(long).toMatchObject({ __typename: 'ValidationError', field: 'input.filter.tagPattern' });
  });
});

describe('Slack titles of the new events', () => {
  it('describes each event in words', () => {
    const title = (overrides: Parameters<typeof sampleContext>[0]) =>
      buildSlackMessage({
        title: null,
        message: null,
        severity: 'INFO',
        context: sampleContext({ alias: null, ...overrides }),
        collectionOwner: 'PROJECT',
      }).blocks[0];
    expect(title({ eventType: 'ADD_ARTIFACT_TAG', tag: 'candidate' })).toMatchObject({
      text: { text: 'Tag `candidate` added to resnet:v3' },
    });
    expect(title({ eventType: 'REMOVE_ARTIFACT_TAG', tag: 'candidate' })).toMatchObject({
      text: { text: 'Tag `candidate` removed from resnet:v3' },
    });
    expect(
      title({ eventType: 'ADD_COLLECTION_TAG', tag: 'vision', artifactVersionIndex: null }),
    ).toMatchObject({ text: { text: 'Tag `vision` added to collection resnet' } });
    expect(
      title({ eventType: 'REMOVE_COLLECTION_TAG', tag: 'vision', artifactVersionIndex: null }),
    ).toMatchObject({ text: { text: 'Tag `vision` removed from collection resnet' } });
    expect(title({ eventType: 'UNLINK_ARTIFACT', projectName: 'models' })).toMatchObject({
      text: { text: 'v3 unlinked from registry models/resnet' },
    });
    const tagged = buildSlackMessage({
      title: null,
      message: null,
      severity: 'INFO',
      context: sampleContext({
        eventType: 'ADD_COLLECTION_TAG',
        alias: null,
        tag: 'vision',
        artifactVersionIndex: null,
      }),
      collectionOwner: 'PROJECT',
    });
    expect(JSON.stringify(tagged.blocks)).toContain('*Tag*\\nvision');
    expect(tagged.text).toContain('acme/vision/resnet');
  });
});
