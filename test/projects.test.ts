import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './support/app.js';
import { payloadObjects } from './support/fixtures.js';

let t: TestApp;
beforeEach(async () => {
  t = await createTestApp();
});
const gqlObjects = async (...args: Parameters<TestApp['gql']>) =>
  payloadObjects(await t.gql(...args));
afterEach(() => t.close());

const RESULT = `__typename ... on Error { message ... on ValidationError { field }
  ... on NotFoundError { field } ... on ConflictError { field } ... on PermissionDeniedError { requiredRole } }`;
const CREATE_PROJECT = `mutation($i: CreateProjectInput!) { createProject(input: $i) { ${RESULT} ... on CreateProjectPayload { project { __typename id name description } } } }`;
const CREATE_REGISTRY = `mutation($i: CreateRegistryInput!) { createRegistry(input: $i) { ${RESULT} ... on CreateRegistryPayload { registry { __typename id name } } } }`;
const CREATE_COLLECTION = `mutation($i: CreateArtifactCollectionInput!) { createArtifactCollection(input: $i) { ${RESULT} ... on CreateArtifactCollectionPayload { collection { __typename id name artifactType } } } }`;

describe('projects and registries', () => {
  it('creates projects and registries and lists them with totalCount', async () => {
    for (const name of ['b-proj', 'a-proj']) {
      const res = await gqlObjects(CREATE_PROJECT, {
        i: { entity: 'default', name, description: 'runs' },
      });
      expect(res.data.createProject).toMatchObject({
        __typename: 'Project',
        name,
        description: 'runs',
      });
    }
    expect(
      (await gqlObjects(CREATE_REGISTRY, { i: { entity: 'default', name: 'models' } })).data
        .createRegistry.__typename,
    ).toBe('Registry');
    const list = await t.gql(`{ entity(name: "default") {
      projects(first: 1) { totalCount edges { node { name } } pageInfo { hasNextPage endCursor } }
      registries { totalCount edges { node { name } } } } }`);
    expect(list.data.entity.projects).toMatchObject({
      totalCount: 2,
      edges: [{ node: { name: 'a-proj' } }],
      pageInfo: { hasNextPage: true },
    });
    const next = await t.gql(
      `query($c: String) { entity(name: "default") { projects(first: 1, after: $c) { edges { node { name } } pageInfo { hasNextPage } } } }`,
      {
        c: list.data.entity.projects.pageInfo.endCursor,
      },
    );
    expect(next.data.entity.projects).toEqual({
      edges: [{ node: { name: 'b-proj' } }],
      pageInfo: { hasNextPage: false },
    });
    expect(list.data.entity.registries.totalCount).toBe(1);
  });

  it('refuses a taken name, a bad name, a long description and an unknown entity', async () => {
    await gqlObjects(CREATE_PROJECT, { i: { entity: 'default', name: 'p' } });
    expect(
      (await gqlObjects(CREATE_PROJECT, { i: { entity: 'default', name: 'p' } })).data
        .createProject,
    ).toMatchObject({ __typename: 'ConflictError', field: 'input.name' });
    expect(
      (await gqlObjects(CREATE_PROJECT, { i: { entity: 'default', name: '-p' } })).data
        .createProject,
    ).toMatchObject({ __typename: 'ValidationError', field: 'input.name' });
    expect(
      (
        await gqlObjects(CREATE_PROJECT, {
          i: { entity: 'default', name: 'q', description: 'x'.repeat(2000) },
        })
      ).data.createProject,
    ).toMatchObject({ __typename: 'ValidationError', field: 'input.description' });
    expect(
      (await gqlObjects(CREATE_PROJECT, { i: { entity: 'nope', name: 'q' } })).data.createProject,
    ).toMatchObject({ __typename: 'NotFoundError', field: 'input.entity' });
    expect(
      (await gqlObjects(CREATE_REGISTRY, { i: { entity: 'default', name: 'x'.repeat(65) } })).data
        .createRegistry.__typename,
    ).toBe('ValidationError');
  });

  it('lets members create, not viewers', async () => {
    const member = await t.member('MEMBER');
    const viewer = await t.member('VIEWER');
    expect(
      (await gqlObjects(CREATE_PROJECT, { i: { entity: 'default', name: 'm' } }, member)).data
        .createProject.__typename,
    ).toBe('Project');
    expect(
      (await gqlObjects(CREATE_PROJECT, { i: { entity: 'default', name: 'v' } }, viewer)).data
        .createProject,
    ).toMatchObject({ __typename: 'PermissionDeniedError', requiredRole: 'MEMBER' });
    expect(
      (await t.gql(`{ entity(name: "default") { projects { totalCount } } }`, {}, viewer)).data
        .entity.projects.totalCount,
    ).toBe(1);
  });
});

describe('artifact collections', () => {
  it('creates collections in a project or a registry and reaches them by node id', async () => {
    await gqlObjects(CREATE_PROJECT, { i: { entity: 'default', name: 'p' } });
    await gqlObjects(CREATE_REGISTRY, { i: { entity: 'default', name: 'r' } });
    const inProject = await gqlObjects(CREATE_COLLECTION, {
      i: { entity: 'default', owner: { project: 'p' }, name: 'my-model', artifactType: 'model' },
    });
    expect(inProject.data.createArtifactCollection).toMatchObject({
      __typename: 'ArtifactCollection',
      name: 'my-model',
      artifactType: 'model',
    });
    const inRegistry = await gqlObjects(CREATE_COLLECTION, {
      i: { entity: 'default', owner: { registry: 'r' }, name: 'my-model', artifactType: 'model' },
    });
    expect(inRegistry.data.createArtifactCollection.__typename).toBe('ArtifactCollection');
    const node = await t.gql(
      `query($id: ID!) { node(id: $id) { ... on ArtifactCollection { name } } }`,
      { id: inProject.data.createArtifactCollection.id },
    );
    expect(node.data.node).toEqual({ name: 'my-model' });
    const listed = await t.gql(
      `{ entity(name: "default") { projects { edges { node { collections { totalCount edges { node { name } } } } } } } }`,
    );
    expect(listed.data.entity.projects.edges[0].node.collections.totalCount).toBe(1);
  });

  it('refuses ambiguous owners, unknown owners and duplicates', async () => {
    await gqlObjects(CREATE_PROJECT, { i: { entity: 'default', name: 'p' } });
    // `owner` is @oneOf: GraphQL itself refuses both, neither and a null, before the resolver.
    for (const owner of [{ project: 'p', registry: 'r' }, {}, { project: null }]) {
      const refused = await t.gql(CREATE_COLLECTION, {
        i: { entity: 'default', owner, name: 'c', artifactType: 'model' },
      });
      expect(refused.data).toBeUndefined();
      expect(refused.errors?.[0]?.message).toMatch(
        /at "i\.owner.*(OneOf type "CollectionOwnerInput"|must be non-null)/,
      );
    }
    const missing = await t.gql(CREATE_COLLECTION, {
      i: { entity: 'default', name: 'c', artifactType: 'model' },
    });
    expect(missing.errors?.[0]?.message).toMatch(/owner/);
    const unknown = await gqlObjects(CREATE_COLLECTION, {
      i: { entity: 'default', owner: { registry: 'r' }, name: 'c', artifactType: 'model' },
    });
    expect(unknown.data.createArtifactCollection).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.owner.registry',
    });
    await gqlObjects(CREATE_COLLECTION, {
      i: { entity: 'default', owner: { project: 'p' }, name: 'c', artifactType: 'model' },
    });
    const dup = await gqlObjects(CREATE_COLLECTION, {
      i: { entity: 'default', owner: { project: 'p' }, name: 'c', artifactType: 'model' },
    });
    expect(dup.data.createArtifactCollection).toMatchObject({
      __typename: 'ConflictError',
      field: 'input.name',
    });
    const badType = await gqlObjects(CREATE_COLLECTION, {
      i: { entity: 'default', owner: { project: 'p' }, name: 'd', artifactType: 'a b' },
    });
    expect(badType.data.createArtifactCollection).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.artifactType',
    });
  });

  it('keeps another entity’s projects out of reach', async () => {
    const outsider = await t.member('ADMIN', 'outsider');
    await t.gql(`mutation { createEntity(input: { name: "other" }) { __typename } }`, {}, outsider);
    const theirs = await gqlObjects(
      CREATE_PROJECT,
      { i: { entity: 'other', name: 'hidden' } },
      outsider,
    );
    expect(
      (
        await t.gql(`query($id: ID!) { node(id: $id) { id } }`, {
          id: theirs.data.createProject.id,
        })
      ).data.node,
    ).toBeNull();
    expect(
      (await gqlObjects(CREATE_PROJECT, { i: { entity: 'other', name: 'x' } })).data.createProject,
    ).toMatchObject({ __typename: 'NotFoundError' });
  });
});
