// Authentication and access checks answer from the access cache (issue 8, item 2): no database
// query for a known key, every change visible on the very next request and on an open
// subscription's next message, and a hook that carries changes to other instances.
import { type Client, createClient } from 'graphql-ws';
import { afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import WebSocket from 'ws';
import { type AccessCache, createAccessCache } from '../src/modules/users/access-cache.js';
import { issueApiKey } from '../src/modules/users/service.js';
import { openSqliteStorage } from '../src/storage/sqlite/storage.js';
import type { Storage } from '../src/storage/storage.js';
import { createTestApp, fakeClock, sqliteOnly, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly(
  'accepts at once a key issued by another process on the same database',
  'carries a change to another instance through onChange → apply',
);

let t: TestApp;
const clock = fakeClock();
const cleanups: (() => Promise<void> | void)[] = [];

beforeEach(async () => {
  t = await createTestApp({ clock });
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await t.close();
});

/** Spies on every operation of every store, to see which ones a request reaches. */
function spyOnStorage(storage: Storage) {
  const spies = Object.entries(storage).flatMap(([store, operations]) =>
    typeof operations === 'object' && operations !== null && store !== 'handle'
      ? Object.keys(operations)
          .filter((op) => typeof (operations as Record<string, unknown>)[op] === 'function')
          .map((op) => ({
            name: `${store}.${op}`,
            spy: vi.spyOn(operations as Record<string, () => unknown>, op),
          }))
      : [],
  );
  return {
    called: () => spies.filter((s) => s.spy.mock.calls.length > 0).map((s) => s.name),
    reset: () => {
      for (const s of spies) s.spy.mockClear();
    },
  };
}

/** Creates a person in `default` with `role`; returns its global id and key. */
async function createPerson(role: string, name: string): Promise<{ id: string; key: string }> {
  const r = await mutate(
    t,
    `mutation($i: CreateUserInput!) { createUser(input: $i) {
      ... on CreateUserPayload { secret: plaintextKey user { id } } } }`,
    { i: { entity: 'default', name, kind: 'USER', role } },
  );
  return { id: r.user.id, key: r.secret };
}

const TYPENAME = '{ __typename }';
const REVOKE = 'mutation($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }';
const CREATE_PROJECT = `mutation($i: CreateProjectInput!) { createProject(input: $i) {
  __typename ... on PermissionDeniedError { requiredRole } } }`;
const setRole = (userId: string, role: string) =>
  mutate(
    t,
    `mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { __typename ... on UpdateMemberRolePayload { membership { role } } } }`,
    { i: { entity: 'default', userId, role } },
  );
const removeMember = (userId: string) =>
  mutate(t, `mutation($i: RemoveMemberInput!) { removeMember(input: $i) { __typename } }`, {
    i: { entity: 'default', userId },
  });
const addMember = (userId: string, role: string) =>
  mutate(t, `mutation($i: AddMemberInput!) { addMember(input: $i) { __typename } }`, {
    i: { entity: 'default', userId, role },
  });

/** The key's own id, as `viewer.apiKeys` shows it (its newest key). */
async function ownKeyId(key: string): Promise<string> {
  const r = await t.gql('{ viewer { apiKeys(first: 1) { edges { node { id } } } } }', {}, key);
  return r.data.viewer.apiKeys.edges[0].node.id;
}

describe('authentication from the access cache', () => {
  it('answers { __typename } for a known key without reaching the storage layer', async () => {
    const storage = spyOnStorage(t.storage);
    expect((await t.gql(TYPENAME)).data).toEqual({ __typename: 'Query' });
    storage.reset();
    for (let i = 0; i < 3; i++) {
      expect((await t.gql(TYPENAME)).data).toEqual({ __typename: 'Query' });
    }
    expect(storage.called()).toEqual([]);
  });

  it('checks roles from memory: a query and a refused mutation read no membership', async () => {
    const viewer = await createPerson('VIEWER', 'vera');
    await t.gql(TYPENAME, {}, viewer.key);
    const storage = spyOnStorage(t.storage);
    const refused = await t.gql(
      CREATE_PROJECT,
      { i: { entity: 'default', name: 'x' } },
      viewer.key,
    );
    expect(refused.data.createProject).toEqual({
      __typename: 'PermissionDeniedError',
      requiredRole: 'MEMBER',
    });
    expect(storage.called()).toEqual(['entities.findEntityByName']);
  });

  it('writes lastUsedAt at most once a minute per key', async () => {
    const storage = spyOnStorage(t.storage);
    const keyUses = () => storage.called().filter((name) => name === 'users.recordKeyUse').length;
    await t.gql(TYPENAME);
    expect(keyUses()).toBe(1);
    storage.reset();
    clock.advance(30_000);
    await t.gql(TYPENAME);
    clock.advance(29_999);
    await t.gql(TYPENAME);
    expect(keyUses()).toBe(0);
    clock.advance(1);
    await t.gql(TYPENAME);
    expect(keyUses()).toBe(1);
  });

  it('answers a known key without a promise, and a key whose use is due to be recorded with one', async () => {
    const access = t.deps.access;
    const first = access.authenticate(t.adminKey);
    expect(first).toBeInstanceOf(Promise);
    const viewer = await first;
    const again = access.authenticate(t.adminKey);
    expect(again).not.toBeInstanceOf(Promise);
    expect(again).toEqual(viewer);
    clock.advance(60_000);
    const due = access.authenticate(t.adminKey);
    expect(due).toBeInstanceOf(Promise);
    expect(await due).toEqual(viewer);
    expect(access.authenticate('tl_unknown')).toBeInstanceOf(Promise);
    expect(await access.authenticate('tl_unknown')).toBeNull();
  });

  it('refuses a revoked key on the very next request', async () => {
    const person = await createPerson('MEMBER', 'rita');
    expect((await t.gql(TYPENAME, {}, person.key)).status).toBe(200);
    const keyId = await ownKeyId(person.key);
    await mutate(t, REVOKE, { id: keyId }, person.key);
    const next = await t.gql(TYPENAME, {}, person.key);
    expect(next.status).toBe(401);
    expect(next.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('applies a role change and a removal on the very next request', async () => {
    const person = await createPerson('MEMBER', 'mo');
    const created = await t.gql(
      CREATE_PROJECT,
      { i: { entity: 'default', name: 'a' } },
      person.key,
    );
    expect(created.data.createProject.__typename).toBe('CreateProjectPayload');

    await setRole(person.id, 'VIEWER');
    const refused = await t.gql(
      CREATE_PROJECT,
      { i: { entity: 'default', name: 'b' } },
      person.key,
    );
    expect(refused.data.createProject.__typename).toBe('PermissionDeniedError');

    await setRole(person.id, 'ADMIN');
    const role = await t.gql('{ entity(name: "default") { viewerRole } }', {}, person.key);
    expect(role.data.entity.viewerRole).toBe('ADMIN');

    await removeMember(person.id);
    const gone = await t.gql('{ entity(name: "default") { name } }', {}, person.key);
    expect(gone.data.entity).toBeNull();
  });

  it('accepts at once a key issued by another process on the same database', async () => {
    const person = await createPerson('MEMBER', 'cli');
    await t.gql(TYPENAME, {}, person.key);
    // What `tripline admin-key` does: its own connection, no access cache, no bus.
    const other = openSqliteStorage(t.config.databaseFile);
    cleanups.push(() => other.close());
    const issued = await issueApiKey(
      { storage: other, clock },
      { userId: person.id.replace(/^usr_/, ''), name: 'from the command line', actorId: null },
    );
    const answer = await t.gql('{ viewer { user { name } } }', {}, issued.secret);
    expect(answer.data.viewer.user.name).toBe('cli');
    const log = await t.gql(
      '{ entity(name: "default") { auditLog(first: 1) { edges { node { action details } } } } }',
    );
    expect(log.data.entity.auditLog.edges[0].node).toEqual({
      action: 'API_KEY_CREATED',
      details: { prefix: issued.apiKey.prefix, name: 'from the command line', user: 'cli' },
    });
  });

  it('gives a new entity to its creator on the very next request', async () => {
    const person = await createPerson('VIEWER', 'nell');
    await mutate(
      t,
      'mutation { createEntity(input: { name: "nells" }) { __typename } }',
      {},
      person.key,
    );
    const own = await t.gql('{ entity(name: "nells") { viewerRole } }', {}, person.key);
    expect(own.data.entity.viewerRole).toBe('ADMIN');
  });
});

describe('the change hook', () => {
  it('tells listeners of revocations and membership changes, after applying them', async () => {
    const changes: unknown[] = [];
    const stop = t.deps.access.onChange((change) => changes.push(change));
    const person = await createPerson('MEMBER', 'hal');
    await t.gql(TYPENAME, {}, person.key);
    const keyId = await ownKeyId(person.key);
    await setRole(person.id, 'VIEWER');
    await removeMember(person.id);
    await addMember(person.id, 'MEMBER');
    await mutate(t, REVOKE, { id: keyId }, person.key);
    stop();
    await mutate(t, 'mutation { createEntity(input: { name: "later" }) { __typename } }', {});

    const userId = person.id.replace(/^usr_/, '');
    const storedKeyId = keyId.replace(/^key_/, '');
    expect(changes).toEqual([
      { type: 'userChanged', userId },
      { type: 'userChanged', userId },
      { type: 'userChanged', userId },
      { type: 'apiKeyRevoked', apiKeyId: storedKeyId },
    ]);
    // Plain JSON, as a shared bus carries it.
    expect(JSON.parse(JSON.stringify(changes))).toEqual(changes);
  });

  it('carries a change to another instance through onChange → apply', async () => {
    // A second instance on the same database, with its own cache: what a bus would connect.
    const other = openSqliteStorage(t.config.databaseFile);
    cleanups.push(() => other.close());
    const remote = createAccessCache({ storage: other, clock });
    const person = await createPerson('MEMBER', 'ivy');
    const entityId = (await other.entities.findEntityByName('default'))!.id;

    const viewer = await remote.authenticate(person.key);
    expect(viewer?.roles.get(entityId)).toBe('MEMBER');
    // Without the bus, the other instance keeps what it cached.
    await setRole(person.id, 'VIEWER');
    expect((await remote.authenticate(person.key))?.roles.get(entityId)).toBe('MEMBER');

    const bus = t.deps.access.onChange(
      (change) => void remote.apply(JSON.parse(JSON.stringify(change))),
    );
    cleanups.push(bus);
    const applied = vi.spyOn(remote, 'apply');
    await setRole(person.id, 'ADMIN');
    await applied.mock.results[0]?.value;
    expect(viewer?.roles.get(entityId)).toBe('ADMIN');

    await removeMember(person.id);
    await applied.mock.results[1]?.value;
    expect(await remote.stillReadable(viewer!, entityId)).toBe(false);

    await addMember(person.id, 'MEMBER');
    await applied.mock.results[2]?.value;
    expect(await remote.stillReadable(viewer!, entityId)).toBe(true);
    const keyId = await ownKeyId(person.key);
    await mutate(t, REVOKE, { id: keyId }, person.key);
    await applied.mock.results[3]?.value;
    expect(await remote.authenticate(person.key)).toBeNull();
    expect(await remote.stillReadable(viewer!, entityId)).toBe(false);
  });

  it('does not cache a key whose revocation lands while it is being looked up', async () => {
    const person = await createPerson('MEMBER', 'lou');
    const keyId = await ownKeyId(person.key);
    // Holds the lookup's answer (the key, still valid) until the revocation has been applied.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const slow: Storage = {
      ...t.storage,
      users: {
        ...t.storage.users,
        authenticateKey: async (hash) => {
          const found = await t.storage.users.authenticateKey(hash);
          if (calls++ === 0) await held;
          return found;
        },
      },
    };
    const cache = createAccessCache({ storage: slow, clock });
    const pending = cache.authenticate(person.key);
    await mutate(t, REVOKE, { id: keyId }, person.key);
    await cache.apply({ type: 'apiKeyRevoked', apiKeyId: keyId.replace(/^key_/, '') });
    release();
    expect(await pending).toBeNull();
    expect(await cache.authenticate(person.key)).toBeNull();
  });
});

describe('last admin', () => {
  it('refuses, in the store, the second of two demotions read against the same two admins', async () => {
    const second = await createPerson('ADMIN', 'second-admin');
    const entity = (await t.storage.entities.findEntityByName('default'))!;
    const [first] = await t.storage.entities.pageMembers(entity.id, {
      after: null,
      before: null,
      backward: false,
      limit: 1,
    });
    if (!first) throw new Error('no member');
    const audit = (userId: string) => ({
      entityId: entity.id,
      actorId: userId,
      action: 'member.roleChanged' as const,
      targetType: 'User',
      targetId: userId,
    });
    const demote = (userId: string) =>
      t.storage.entities.changeRole(
        entity.id,
        userId,
        { from: 'ADMIN', to: 'MEMBER' },
        audit(userId),
        clock.now(),
      );
    const secondId = second.id.replace(/^usr_/, '');
    const outcomes = await Promise.all([demote(first.user.id), demote(secondId)]);
    expect(outcomes.map((o) => o.outcome)).toEqual(['done', 'lastAdmin']);
    const removal = await t.storage.entities.removeMember(
      entity.id,
      secondId,
      'ADMIN',
      audit(secondId),
      clock.now(),
    );
    expect(removal.outcome).toBe('lastAdmin');
  });

  it('keeps one admin when two admins demote themselves at once', async () => {
    const second = await createPerson('ADMIN', 'second-admin');
    const admin = await t.gql('{ viewer { user { id } } }');
    const demote = (userId: string, key?: string) =>
      t.gql(
        `mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { __typename } }`,
        { i: { entity: 'default', userId, role: 'MEMBER' } },
        key,
      );
    const results = await Promise.all([
      demote(admin.data.viewer.user.id),
      demote(second.id, second.key),
    ]);
    const outcomes = results.map((r) => r.data.updateMemberRole.__typename).sort();
    expect(outcomes).toEqual(['ConflictError', 'UpdateMemberRolePayload']);
    const members = await t.gql(
      '{ entity(name: "default") { members { edges { node { role } } } } }',
    );
    const roles = members.data.entity.members.edges.map(
      (m: { node: { role: string } }) => m.node.role,
    );
    expect(roles.filter((r: string) => r === 'ADMIN')).toHaveLength(1);
  });
});

describe('open subscriptions', () => {
  let url: string;
  const clients: Client[] = [];
  let checks: MockInstance<AccessCache['stillReadable']>;

  beforeEach(async () => {
    checks = vi.spyOn(t.deps.access, 'stillReadable');
    url = await t.listen();
    await createProject(t, 'p');
    const action = await createWebhookAction(t, { name: 'hook', url: 'http://127.0.0.1:9/hook' });
    await createAutomation(t, {
      name: 'notify',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: action.id,
    });
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.dispose();
  });

  interface Message {
    id: string;
    automation: { entity: { viewerRole: string } } | null;
  }

  /** Subscribes as `key`; `next(n)` resolves with the first `n` messages. */
  function subscribe(key: string) {
    const client = createClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${key}` },
      retryAttempts: 0,
    });
    clients.push(client);
    const messages: Message[] = [];
    const waiters: { n: number; resolve: () => void }[] = [];
    client.subscribe<{ triggeredRunUpdated: Message }>(
      {
        query: 'subscription { triggeredRunUpdated { id automation { entity { viewerRole } } } }',
      },
      {
        next: (message) => {
          if (message.data) messages.push(message.data.triggeredRunUpdated);
          for (const w of waiters.filter((w) => messages.length >= w.n)) w.resolve();
        },
        error: () => {},
        complete: () => {},
      },
    );
    return {
      messages,
      next: (n: number) =>
        new Promise<Message[]>((resolve) => {
          if (messages.length >= n) resolve(messages.slice(0, n));
          else waiters.push({ n, resolve: () => resolve(messages.slice(0, n)) });
        }),
    };
  }

  const runOf = async (versionIndex: number) =>
    (await emit(t, { versionIndex })).triggeredRuns[0].id as string;

  /**
   * The answer of the access check an open subscription of `key` made for its `n`th message:
   * once it is known, that message is sent or dropped for good.
   */
  async function checked(keyId: string, n: number): Promise<boolean> {
    const calls = () =>
      checks.mock.calls.flatMap(([viewer], i) => (viewer.apiKeyId === keyId ? [i] : []));
    await vi.waitFor(() => {
      if (calls().length < n) throw new Error(`${n} checks not made yet`);
    });
    return checks.mock.results[calls()[n - 1]!]!.value as Promise<boolean>;
  }

  it('sees a role change and a removal on the next message', async () => {
    const person = await createPerson('MEMBER', 'sub');
    const keyId = (await ownKeyId(person.key)).replace(/^key_/, '');
    const stream = subscribe(person.key);
    await t.subscribers(1);

    const first = await runOf(1);
    await stream.next(1);
    await setRole(person.id, 'VIEWER');
    const second = await runOf(2);
    await stream.next(2);
    await removeMember(person.id);
    await runOf(3);
    expect(await checked(keyId, 3)).toBe(false);
    await addMember(person.id, 'MEMBER');
    const fourth = await runOf(4);

    const messages = await stream.next(3);
    expect(messages.map((m) => m.id)).toEqual([first, second, fourth]);
    expect(messages.map((m) => m.automation?.entity.viewerRole)).toEqual([
      'MEMBER',
      'VIEWER',
      'MEMBER',
    ]);
  });

  it('stops at the next message once the key is revoked', async () => {
    const person = await createPerson('MEMBER', 'gone');
    const keyId = (await ownKeyId(person.key)).replace(/^key_/, '');
    const stream = subscribe(person.key);
    await t.subscribers(1);

    const first = await runOf(1);
    expect(await checked(keyId, 1)).toBe(true);
    expect((await stream.next(1)).map((m) => m.id)).toEqual([first]);

    await mutate(t, REVOKE, { id: `key_${keyId}` }, person.key);
    await runOf(2);
    expect(await checked(keyId, 2)).toBe(false);
    expect(stream.messages.map((m) => m.id)).toEqual([first]);
  });
});
