import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './support/app.js';
import { mutate } from './support/fixtures.js';

/*
 * A service account shared by two entities. `svc` is a VIEWER of `alpha` and an ADMIN of `beta`;
 * the fixture admin (the bootstrap account) administers both and set it up. `a-admin` administers
 * only `alpha`, `b-admin` only `beta`. A key acts as its account in every entity the account is
 * in, so whoever may mint one for `svc` gets `svc`'s role in both.
 */

let t: TestApp;
const keys: Record<'aAdmin' | 'bAdmin' | 'aViewer' | 'outsider', string> = {
  aAdmin: '',
  bAdmin: '',
  aViewer: '',
  outsider: '',
};
let svc: string;

const CREATE_USER = `mutation($v: CreateUserInput!) { createUser(input: $v) {
  __typename ... on CreateUserPayload { secret: plaintextKey user { id } } ... on Error { message } } }`;
const ADD_MEMBER = `mutation($v: AddMemberInput!) { addMember(input: $v) {
  __typename ... on Error { message ... on NotFoundError { field }
  ... on PermissionDeniedError { requiredRole } } } }`;
const CREATE_KEY = `mutation($userId: ID) { createApiKey(input: { name: "x", userId: $userId }) {
  __typename ... on CreateApiKeyPayload { secret: plaintextKey apiKey { id } } ... on Error { message
  ... on PermissionDeniedError { requiredRole } } } }`;
const REVOKE_KEY = `mutation($id: ID!) { revokeApiKey(input: { id: $id }) {
  __typename ... on RevokeApiKeyPayload { apiKey { revokedAt } } ... on Error { message } } }`;
const KEYS_OF =
  'query($id: ID!) { node(id: $id) { ... on User { apiKeys { edges { node { id } } } } } }';

/** Creates an account in `entity` as the fixture admin; returns its id and first key. */
async function createAccount(
  entity: string,
  name: string,
  kind: 'USER' | 'SERVICE_ACCOUNT',
  role: 'ADMIN' | 'MEMBER' | 'VIEWER',
): Promise<{ id: string; secret: string }> {
  const r = await mutate(t, CREATE_USER, { v: { entity, name, kind, role } });
  expect(r.__typename, r.message).toBe('CreateUserPayload');
  return { id: r.user.id, secret: r.secret };
}

async function keyIdsOf(userId: string, key?: string): Promise<string[] | null> {
  const res = await t.gql(KEYS_OF, { id: userId }, key);
  expect(res.errors).toBeUndefined();
  return res.data.node?.apiKeys?.edges.map((e: { node: { id: string } }) => e.node.id) ?? null;
}

/** A fresh key of `svc`, minted by the fixture admin, who administers both entities. */
async function svcKey(): Promise<{ id: string; secret: string }> {
  const r = await mutate(t, CREATE_KEY, { userId: svc });
  expect(r.__typename, r.message).toBe('CreateApiKeyPayload');
  return { id: r.apiKey.id, secret: r.secret };
}

async function betaSecretNames(): Promise<string[]> {
  const res = await t.gql('{ entity(name: "beta") { secrets { edges { node { name } } } } }');
  return res.data.entity.secrets.edges.map((e: { node: { name: string } }) => e.node.name);
}

beforeAll(async () => {
  t = await createTestApp();
  for (const name of ['alpha', 'beta']) {
    const r = await mutate(
      t,
      `mutation { createEntity(input: { name: "${name}" }) { __typename } }`,
      {},
    );
    expect(r.__typename).toBe('CreateEntityPayload');
  }
  keys.aAdmin = (await createAccount('alpha', 'a-admin', 'USER', 'ADMIN')).secret;
  keys.aViewer = (await createAccount('alpha', 'a-viewer', 'USER', 'VIEWER')).secret;
  keys.bAdmin = (await createAccount('beta', 'b-admin', 'USER', 'ADMIN')).secret;
  keys.outsider = (await createAccount('default', 'outsider', 'USER', 'ADMIN')).secret;
  svc = (await createAccount('alpha', 'svc', 'SERVICE_ACCOUNT', 'VIEWER')).id;
  const shared = await mutate(t, ADD_MEMBER, { v: { entity: 'beta', userId: svc, role: 'ADMIN' } });
  expect(shared.__typename, shared.message).toBe('AddMemberPayload');
});

afterAll(async () => {
  await t?.close();
});

describe('a service account in two entities', () => {
  it('cannot be taken over by an admin of one side minting a key for it', async () => {
    const before = await keyIdsOf(svc);
    const byAlpha = await t.gql(CREATE_KEY, { userId: svc }, keys.aAdmin);
    // The takeover, if a key was issued: a-admin, no member of beta, acting as beta's admin.
    const stolen: string | undefined = byAlpha.data.createApiKey.secret;
    if (stolen) {
      await t.gql(
        'mutation { createSecret(input: { entity: "beta", name: "PLANTED", value: "x" }) { __typename } }',
        {},
        stolen,
      );
    }
    expect(await betaSecretNames()).toEqual([]);
    // From the other side it would be a VIEWER seat in alpha for b-admin.
    const byBeta = await t.gql(CREATE_KEY, { userId: svc }, keys.bAdmin);
    for (const res of [byAlpha, byBeta]) {
      expect(res.data.createApiKey).toMatchObject({
        __typename: 'PermissionDeniedError',
        requiredRole: 'ADMIN',
      });
    }
    expect(await keyIdsOf(svc)).toEqual(before);
  });

  it('gets keys from an admin of every entity it is in, which act in each', async () => {
    const { secret } = await svcKey();
    const res = await t.gql('{ viewer { entities { role entity { name } } } }', {}, secret);
    const roles = res.data.viewer.entities.map(
      (m: { role: string; entity: { name: string } }) => `${m.entity.name}:${m.role}`,
    );
    expect(roles.sort()).toEqual(['alpha:VIEWER', 'beta:ADMIN']);
  });

  it("lists its keys to either side's admins, and to no one else", async () => {
    const { id } = await svcKey();
    for (const key of [keys.aAdmin, keys.bAdmin]) expect(await keyIdsOf(svc, key)).toContain(id);
    // A viewer of alpha sees the account, not its keys; an admin of another entity sees neither.
    const asViewer = await t.gql(KEYS_OF, { id: svc }, keys.aViewer);
    expect(asViewer.data.node).toEqual({ apiKeys: null });
    const asOutsider = await t.gql(KEYS_OF, { id: svc }, keys.outsider);
    expect(asOutsider.data.node).toBeNull();
    for (const [key, visible] of [
      [keys.aAdmin, true],
      [keys.bAdmin, true],
      [keys.aViewer, false],
      [keys.outsider, false],
    ] as const) {
      const node = await t.gql('query($id: ID!) { node(id: $id) { id } }', { id }, key);
      expect(node.data.node, String(visible)).toEqual(visible ? { id } : null);
    }
  });

  it("lets either side's admins revoke its keys, since revoking grants nothing", async () => {
    for (const key of [keys.aAdmin, keys.bAdmin]) {
      const svcKeyNow = await svcKey();
      const res = await t.gql(REVOKE_KEY, { id: svcKeyNow.id }, key);
      expect(res.data.revokeApiKey.__typename, res.data.revokeApiKey.message).toBe(
        'RevokeApiKeyPayload',
      );
      expect((await t.gql('{ __typename }', {}, svcKeyNow.secret)).status).toBe(401);
    }
    const kept = await svcKey();
    const byViewer = await t.gql(REVOKE_KEY, { id: kept.id }, keys.aViewer);
    expect(byViewer.data.revokeApiKey.__typename).toBe('PermissionDeniedError');
    const byOutsider = await t.gql(REVOKE_KEY, { id: kept.id }, keys.outsider);
    expect(byOutsider.data.revokeApiKey.__typename).toBe('NotFoundError');
    expect((await t.gql('{ __typename }', {}, kept.secret)).status).toBe(200);
  });

  it('is minted for again by the admin of the side it is left in, once it leaves the other', async () => {
    const lone = await createAccount('alpha', 'lone', 'SERVICE_ACCOUNT', 'VIEWER');
    await mutate(t, ADD_MEMBER, { v: { entity: 'beta', userId: lone.id, role: 'ADMIN' } });
    const denied = await t.gql(CREATE_KEY, { userId: lone.id }, keys.aAdmin);
    expect(denied.data.createApiKey.__typename).toBe('PermissionDeniedError');
    const removed = await t.gql(
      `mutation($v: RemoveMemberInput!) { removeMember(input: $v) { __typename } }`,
      { v: { entity: 'beta', userId: lone.id } },
      keys.bAdmin,
    );
    expect(removed.data.removeMember.__typename).toBe('RemoveMemberPayload');
    const allowed = await t.gql(CREATE_KEY, { userId: lone.id }, keys.aAdmin);
    expect(allowed.data.createApiKey.__typename).toBe('CreateApiKeyPayload');
  });
});

describe('a service account in no entity', () => {
  it('gets keys from no one, so none can wait for it to be added somewhere', async () => {
    const orphan = await createAccount('alpha', 'orphan', 'SERVICE_ACCOUNT', 'VIEWER');
    const removed = await t.gql(
      `mutation($v: RemoveMemberInput!) { removeMember(input: $v) { __typename } }`,
      { v: { entity: 'alpha', userId: orphan.id } },
    );
    expect(removed.data.removeMember.__typename).toBe('RemoveMemberPayload');
    for (const key of [t.adminKey, keys.aAdmin, keys.outsider]) {
      const res = await t.gql(CREATE_KEY, { userId: orphan.id }, key);
      expect(res.data.createApiKey.__typename).toBe('NotFoundError');
    }
  });
});

describe('sharing a service account with another entity', () => {
  it("is refused to an admin of the target who does not administer the account's entities", async () => {
    // Otherwise beta's admin could pull alpha's account into beta and then mint keys for it.
    const alphaOnly = await createAccount('alpha', 'alpha-bot', 'SERVICE_ACCOUNT', 'MEMBER');
    const pulled = await t.gql(
      ADD_MEMBER,
      { v: { entity: 'beta', userId: alphaOnly.id, role: 'VIEWER' } },
      keys.bAdmin,
    );
    expect(pulled.data.addMember).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.userId',
    });
    const minted = await t.gql(CREATE_KEY, { userId: alphaOnly.id }, keys.bAdmin);
    expect(minted.data.createApiKey.__typename).toBe('NotFoundError');
    const members = await t.gql(
      '{ entity(name: "beta") { members(first: 100) { edges { node { user { id } } } } } }',
    );
    const ids = members.data.entity.members.edges.map(
      (e: { node: { user: { id: string } } }) => e.node.user.id,
    );
    expect(ids).not.toContain(alphaOnly.id);
  });

  it('is refused with PermissionDenied when the caller sees the account but is not admin of all its entities', async () => {
    // a-admin sees svc through alpha and administers a third entity, but not beta.
    const created = await t.gql(
      'mutation { createEntity(input: { name: "gamma" }) { __typename } }',
      {},
      keys.aAdmin,
    );
    expect(created.data.createEntity.__typename).toBe('CreateEntityPayload');
    const res = await t.gql(
      ADD_MEMBER,
      { v: { entity: 'gamma', userId: svc, role: 'VIEWER' } },
      keys.aAdmin,
    );
    expect(res.data.addMember).toMatchObject({
      __typename: 'PermissionDeniedError',
      requiredRole: 'ADMIN',
    });
  });

  it('is allowed to an admin of the target and of every entity the account is in', async () => {
    const bot = await createAccount('alpha', 'shared-bot', 'SERVICE_ACCOUNT', 'VIEWER');
    const res = await t.gql(ADD_MEMBER, { v: { entity: 'beta', userId: bot.id, role: 'MEMBER' } });
    expect(res.data.addMember.__typename).toBe('AddMemberPayload');
  });

  it('leaves adding people unchanged: a person manages only their own keys', async () => {
    const person = await createAccount('alpha', 'ada', 'USER', 'VIEWER');
    const added = await t.gql(
      ADD_MEMBER,
      { v: { entity: 'beta', userId: person.id, role: 'VIEWER' } },
      keys.bAdmin,
    );
    expect(added.data.addMember.__typename).toBe('AddMemberPayload');
    for (const key of [keys.aAdmin, keys.bAdmin]) {
      const res = await t.gql(CREATE_KEY, { userId: person.id }, key);
      expect(res.data.createApiKey.__typename).toBe('NotFoundError');
      expect(await keyIdsOf(person.id, key)).toBeNull();
    }
  });
});
