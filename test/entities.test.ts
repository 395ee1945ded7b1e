import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bootstrap } from '../src/bootstrap.js';
import { createTestApp, fakeClock, sqliteOnly, type TestApp } from './support/app.js';
import { payloadObjects } from './support/fixtures.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly('stores keys hashed: the key text is nowhere in the database');

let t: TestApp;
beforeEach(async () => {
  t = await createTestApp();
});
afterEach(() => t.close());

const VIEWER = `{ viewer { user { id name kind apiKeys { edges { node { name prefix revokedAt } } } }
  entities { role entity { name viewerRole } } apiKeys { totalCount edges { node { id name } } } } }`;

const CREATE_USER = `mutation($input: CreateUserInput!) { createUser(input: $input) {
  __typename ... on CreateUserPayload { secret: plaintextKey user { id name kind } apiKey { id prefix } }
  ... on Error { message ... on ValidationError { field } ... on PermissionDeniedError { requiredRole } } } }`;

const MEMBERSHIP = (payload: string) => `__typename
  ... on ${payload} { membership { __typename role entity { name } } } ... on Error { message
  ... on ConflictError { field } ... on NotFoundError { field } ... on PermissionDeniedError { requiredRole } }`;

const gqlObjects = async (...args: Parameters<TestApp['gql']>) =>
  payloadObjects(await t.gql(...args));

async function userId(key: string): Promise<string> {
  return (await t.gql(VIEWER, {}, key)).data.viewer.user.id;
}

describe('authentication', () => {
  it('refuses a request without a key with UNAUTHENTICATED and HTTP 401', async () => {
    const res = await t.gql('{ __typename }', {}, null);
    expect(res.status).toBe(401);
    expect(res.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(res.data).toBeUndefined();
  });

  it('refuses an unknown key and a malformed header', async () => {
    expect((await t.gql('{ __typename }', {}, 'tl_nope')).errors?.[0]?.extensions?.code).toBe(
      'UNAUTHENTICATED',
    );
    const res = await t.app.yoga.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Basic abc' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(res.status).toBe(401);
  });

  it('answers the bootstrap admin and shows who it is', async () => {
    const res = await t.gql(VIEWER);
    expect(res.status).toBe(200);
    expect(res.data.viewer.user.name).toBe('admin');
    expect(res.data.viewer.entities).toEqual([
      { role: 'ADMIN', entity: { name: 'default', viewerRole: 'ADMIN' } },
    ]);
    expect(res.data.viewer.apiKeys.totalCount).toBe(1);
    expect(res.data.viewer.apiKeys.edges).toHaveLength(1);
  });

  it('bootstraps once: later starts, and a first start that lost a race, write nothing', async () => {
    const keyFile = readFileSync(join(t.dataDir, 'admin-api-key'), 'utf8');
    expect(await bootstrap(t.deps, t.config)).toBeUndefined();
    const user = { id: 'late', name: 'late admin', kind: 'USER' as const };
    const entity = { id: 'late', name: 'late' };
    const key = { id: 'late', userId: 'late', name: 'late', prefix: 'tl_lat', hash: 'late' };
    expect(await t.storage.users.bootstrap({ user, entity, key }, [], new Date())).toBeNull();
    expect(await t.storage.users.findUser('late')).toBeNull();
    expect(await t.storage.entities.findEntityByName('late')).toBeNull();
    expect(readFileSync(join(t.dataDir, 'admin-api-key'), 'utf8')).toBe(keyFile);
    expect(readdirSync(t.dataDir).filter((f) => f.includes('admin-api-key'))).toEqual([
      'admin-api-key',
    ]);
  });

  it('stores keys hashed: the key text is nowhere in the database', async () => {
    const rows = t.storage.sqlite.prepare('select * from api_keys').all() as Record<
      string,
      unknown
    >[];
    expect(JSON.stringify(rows)).not.toContain(t.adminKey);
    expect(rows[0]?.hash).toHaveLength(64);
  });
});

describe('API keys', () => {
  it('records when a key was last used, to the minute', async () => {
    const clock = fakeClock();
    const app = await createTestApp({ clock });
    const lastUsed = async () =>
      (await app.gql('{ viewer { apiKeys { edges { node { lastUsedAt } } } } }')).data.viewer
        .apiKeys.edges[0].node.lastUsedAt;
    const first = await lastUsed();
    expect(first).toBe(clock.now().toISOString());
    clock.advance(30_000);
    expect(await lastUsed()).toBe(first);
    clock.advance(30_000);
    expect(await lastUsed()).toBe(clock.now().toISOString());
    await app.close();
  });

  it('creates a key shown once, which then works, and revokes it', async () => {
    const created = await t.gql(
      `mutation { createApiKey(input: { name: "ci" }) { __typename ... on CreateApiKeyPayload { secret: plaintextKey apiKey { id name prefix } } } }`,
    );
    const { secret, apiKey } = created.data.createApiKey;
    expect(secret).toMatch(/^tl_/);
    expect(secret.startsWith(apiKey.prefix)).toBe(true);
    expect((await t.gql('{ viewer { user { name } } }', {}, secret)).data.viewer.user.name).toBe(
      'admin',
    );

    const keys = (await t.gql(VIEWER)).data.viewer.user.apiKeys;
    expect(JSON.stringify(keys)).not.toContain(secret);

    const revoked = await t.gql(
      `mutation($id: ID!) { revokeApiKey(input: { id: $id }) { __typename ... on RevokeApiKeyPayload { apiKey { revokedAt } } } }`,
      { id: apiKey.id },
    );
    expect(revoked.data.revokeApiKey.apiKey.revokedAt).toBeTruthy();
    const after = await t.gql('{ __typename }', {}, secret);
    expect(after.status).toBe(401);
    expect(after.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('lets admins manage service-account keys but not keys of other people', async () => {
    const sa = await t.gql(CREATE_USER, {
      input: { entity: 'default', name: 'trainer', kind: 'SERVICE_ACCOUNT', role: 'MEMBER' },
    });
    const saId = sa.data.createUser.user.id;
    const forSa = await t.gql(
      `mutation($u: ID!) { createApiKey(input: { name: "second", userId: $u }) { __typename ... on CreateApiKeyPayload { secret: plaintextKey } } }`,
      { u: saId },
    );
    expect(forSa.data.createApiKey.__typename).toBe('CreateApiKeyPayload');

    const person = await t.member('MEMBER');
    const personId = await userId(person);
    const forPerson = await t.gql(
      `mutation($u: ID!) { createApiKey(input: { name: "x", userId: $u }) { __typename ... on NotFoundError { field message } } }`,
      { u: personId },
    );
    expect(forPerson.data.createApiKey).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.userId',
    });

    const viewerKey = await t.member('VIEWER');
    const byViewer = await t.gql(
      `mutation($u: ID!) { createApiKey(input: { name: "x", userId: $u }) { __typename } }`,
      { u: saId },
      viewerKey,
    );
    expect(byViewer.data.createApiKey.__typename).toBe('PermissionDeniedError');
  });

  it('refuses an empty key name', async () => {
    const res = await t.gql(
      `mutation { createApiKey(input: { name: "  " }) { __typename ... on ValidationError { field message } } }`,
    );
    expect(res.data.createApiKey).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.name',
    });
  });
});

describe('entities and members', () => {
  it('creates an entity with the caller as admin, and refuses a taken or invalid name', async () => {
    const ok = await gqlObjects(
      `mutation { createEntity(input: { name: "vision" }) { __typename ... on CreateEntityPayload { entity { __typename name viewerRole } } } }`,
    );
    expect(ok.data.createEntity).toEqual({
      __typename: 'Entity',
      name: 'vision',
      viewerRole: 'ADMIN',
    });
    const taken = await t.gql(
      `mutation { createEntity(input: { name: "vision" }) { __typename ... on ConflictError { field } } }`,
    );
    expect(taken.data.createEntity).toEqual({ __typename: 'ConflictError', field: 'input.name' });
    const bad = await t.gql(
      `mutation { createEntity(input: { name: "no spaces" }) { __typename ... on ValidationError { field } } }`,
    );
    expect(bad.data.createEntity).toEqual({ __typename: 'ValidationError', field: 'input.name' });
  });

  it('creates members with roles, changes roles, and removes them', async () => {
    const created = await t.gql(CREATE_USER, {
      input: { entity: 'default', name: 'Ada', kind: 'USER', role: 'VIEWER' },
    });
    const ada = created.data.createUser;
    expect(ada.secret).toMatch(/^tl_/);
    const members = await t.gql(
      `{ entity(name: "default") { members { totalCount edges { node { role user { name } } } } } }`,
    );
    expect(members.data.entity.members.totalCount).toBe(2);

    const promoted = await gqlObjects(
      `mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { ${MEMBERSHIP('UpdateMemberRolePayload')} } }`,
      {
        i: { entity: 'default', userId: ada.user.id, role: 'ADMIN' },
      },
    );
    expect(promoted.data.updateMemberRole).toMatchObject({
      __typename: 'Membership',
      role: 'ADMIN',
    });

    const removed = await gqlObjects(
      `mutation($i: RemoveMemberInput!) { removeMember(input: $i) { ${MEMBERSHIP('RemoveMemberPayload')} } }`,
      { i: { entity: 'default', userId: ada.user.id } },
    );
    expect(removed.data.removeMember.__typename).toBe('Membership');
    const gone = await t.gql(`{ entity(name: "default") { name } }`, {}, ada.secret);
    expect(gone.data.entity).toBeNull();
  });

  it('keeps at least one admin', async () => {
    const me = await userId(t.adminKey);
    const demote = await gqlObjects(
      `mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { ${MEMBERSHIP('UpdateMemberRolePayload')} } }`,
      {
        i: { entity: 'default', userId: me, role: 'MEMBER' },
      },
    );
    expect(demote.data.updateMemberRole).toMatchObject({
      __typename: 'ConflictError',
      field: 'input.userId',
    });
    const remove = await gqlObjects(
      `mutation($i: RemoveMemberInput!) { removeMember(input: $i) { ${MEMBERSHIP('RemoveMemberPayload')} } }`,
      {
        i: { entity: 'default', userId: me },
      },
    );
    expect(remove.data.removeMember.__typename).toBe('ConflictError');
  });

  it('adds an existing user to a second entity, once', async () => {
    await t.gql(`mutation { createEntity(input: { name: "nlp" }) { __typename } }`);
    const memberKey = await t.member('MEMBER');
    const memberId = await userId(memberKey);
    const add = `mutation($i: AddMemberInput!) { addMember(input: $i) { ${MEMBERSHIP('AddMemberPayload')} } }`;
    const first = await gqlObjects(add, { i: { entity: 'nlp', userId: memberId, role: 'VIEWER' } });
    expect(first.data.addMember).toMatchObject({
      __typename: 'Membership',
      role: 'VIEWER',
      entity: { name: 'nlp' },
    });
    const again = await t.gql(add, { i: { entity: 'nlp', userId: memberId, role: 'VIEWER' } });
    expect(again.data.addMember.__typename).toBe('ConflictError');
    const unknown = await t.gql(add, {
      i: { entity: 'nlp', userId: 'VXNlcjpub3BlCg==', role: 'VIEWER' },
    });
    expect(unknown.data.addMember).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.userId',
    });
    const entities = (await t.gql(VIEWER, {}, memberKey)).data.viewer.entities.map(
      (e: { entity: { name: string } }) => e.entity.name,
    );
    expect(entities.sort()).toEqual(['default', 'nlp']);
  });

  it('lets only admins manage members', async () => {
    for (const role of ['MEMBER', 'VIEWER'] as const) {
      const key = await t.member(role);
      const res = await t.gql(
        CREATE_USER,
        { input: { entity: 'default', name: 'x', kind: 'USER', role: 'VIEWER' } },
        key,
      );
      expect(res.data.createUser).toMatchObject({
        __typename: 'PermissionDeniedError',
        requiredRole: 'ADMIN',
      });
    }
  });

  it('hides other entities entirely', async () => {
    const outsider = await t.member('ADMIN', 'outsider');
    await t.gql(
      `mutation { createEntity(input: { name: "secretive" }) { __typename } }`,
      {},
      outsider,
    );
    const asAdmin = await t.gql(`{ entity(name: "secretive") { name } }`);
    expect(asAdmin.data.entity).toBeNull();
    const viaNode = await t.gql(`{ entity(name: "default") { id } }`);
    const theirs = await t.gql(`{ entity(name: "secretive") { id } }`, {}, outsider);
    const probe = await t.gql(`query($id: ID!) { node(id: $id) { id } }`, {
      id: theirs.data.entity.id,
    });
    expect(probe.data.node).toBeNull();
    expect(viaNode.data.entity.id).toBeTruthy();
    const create = await t.gql(CREATE_USER, {
      input: { entity: 'secretive', name: 'x', kind: 'USER', role: 'VIEWER' },
    });
    expect(create.data.createUser).toMatchObject({ __typename: 'NotFoundError' });
  });

  it('does not let service accounts create entities', async () => {
    const sa = await t.gql(CREATE_USER, {
      input: { entity: 'default', name: 'bot', kind: 'SERVICE_ACCOUNT', role: 'ADMIN' },
    });
    const res = await t.gql(
      `mutation { createEntity(input: { name: "botland" }) { __typename ... on ValidationError { message } } }`,
      {},
      sa.data.createUser.secret,
    );
    expect(res.data.createEntity.__typename).toBe('ValidationError');
  });
});
