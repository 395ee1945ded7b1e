import { builder } from '../../builder.js';
import {
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from '../../errors.js';
import { connection } from '../connection.js';
import { hasRole } from '../entities/access.js';
import { EntityRef } from '../entities/schema.js';
import {
  type ArtifactCollection,
  collectionsOf,
  containersOf,
  createCollection,
  createContainer,
  getCollection,
  getContainer,
  type Kind,
  type OwnerInput,
  type Project,
  type Registry,
} from './service.js';

/** Where a collection lives: a project or a registry, by name; GraphQL checks that one is set. */
export const CollectionOwnerInput = builder.inputType('CollectionOwnerInput', {
  description: 'A project or a registry of the entity, by name: give exactly one.',
  isOneOf: true,
  fields: (f) => ({
    project: f.string({ required: false, description: 'Project name.' }),
    registry: f.string({ required: false, description: 'Registry name.' }),
  }),
});

/** The service's form of a `CollectionOwnerInput`, which GraphQL has checked names one. */
export function ownerOf(owner: { project?: string | null; registry?: string | null }): OwnerInput {
  if (owner.project != null) return { project: owner.project };
  if (owner.registry != null) return { registry: owner.registry };
  throw new Error('CollectionOwnerInput is @oneOf: GraphQL lets no empty one through');
}

export const ArtifactCollectionRef = builder.node(
  builder.objectRef<ArtifactCollection>('ArtifactCollection'),
  {
    description: 'A named series of artifact versions in a project, or linked into a registry.',
    id: { resolve: (c) => c.id },
    loadOne: async (id, ctx) => {
      const row = await getCollection(ctx.deps, id);
      return row && hasRole(ctx.viewer, row.entityId) ? row : null;
    },
    fields: (t) => ({
      name: t.exposeString('name', { description: 'Collection name, e.g. `my-model`.' }),
      artifactType: t.exposeString('artifactType', {
        description: 'Artifact type, e.g. `model` or `dataset`.',
      }),
      createdAt: t.expose('createdAt', {
        type: 'DateTime',
        description: 'When the collection was created.',
      }),
    }),
  },
);

const ArtifactCollectionConnectionRef = builder.connectionObject(
  { type: ArtifactCollectionRef, name: 'ArtifactCollectionConnection' },
  { name: 'ArtifactCollectionEdge' },
);

function containerNode(kind: Kind, name: string, description: string) {
  return builder.node(builder.objectRef<Project | Registry>(name), {
    description,
    id: { resolve: (row) => row.id },
    loadOne: async (id, ctx) => {
      const row = await getContainer(ctx.deps, kind, id);
      return row && hasRole(ctx.viewer, row.entityId) ? row : null;
    },
    fields: (t) => ({
      name: t.exposeString('name', { description: `${name} name, unique in its entity.` }),
      description: t.exposeString('description', {
        nullable: true,
        description: 'What it is for.',
      }),
      createdAt: t.expose('createdAt', {
        type: 'DateTime',
        description: `When the ${kind} was created.`,
      }),
      collections: t.connection(
        {
          type: ArtifactCollectionRef,
          description: 'Its artifact collections, by name.',
          resolve: (row, args, ctx) => connection(args, collectionsOf(ctx.deps, kind, row.id)),
        },
        ArtifactCollectionConnectionRef,
      ),
    }),
  });
}

export const ProjectRef = containerNode(
  'project',
  'Project',
  'Where artifacts are logged; holds artifact collections.',
);
export const RegistryRef = containerNode(
  'registry',
  'Registry',
  'An entity-wide curated catalogue; artifact versions are linked into its collections.',
);

const ProjectConnectionRef = builder.connectionObject(
  { type: ProjectRef, name: 'ProjectConnection' },
  { name: 'ProjectEdge' },
);
const RegistryConnectionRef = builder.connectionObject(
  { type: RegistryRef, name: 'RegistryConnection' },
  { name: 'RegistryEdge' },
);

builder.objectFields(EntityRef, (t) => ({
  projects: t.connection(
    {
      type: ProjectRef,
      description: "The entity's projects, by name.",
      resolve: (entity, args, ctx) =>
        connection(args, containersOf(ctx.deps, 'project', entity.id)),
    },
    ProjectConnectionRef,
  ),
  registries: t.connection(
    {
      type: RegistryRef,
      description: "The entity's registries, by name.",
      resolve: (entity, args, ctx) =>
        connection(args, containersOf(ctx.deps, 'registry', entity.id)),
    },
    RegistryConnectionRef,
  ),
}));

const ContainerInput = builder.inputType('CreateProjectInput', {
  description: 'A new project.',
  fields: (f) => ({
    entity: f.string({ description: 'Name of the entity it belongs to.' }),
    name: f.string({ description: 'Unique name in the entity: letters, digits, ".", "_" or "-".' }),
    description: f.string({ required: false, description: 'What it is for.' }),
  }),
});

const RegistryInput = builder.inputType('CreateRegistryInput', {
  description: 'A new registry.',
  fields: (f) => ({
    entity: f.string({ description: 'Name of the entity it belongs to.' }),
    name: f.string({ description: 'Unique name in the entity: letters, digits, ".", "_" or "-".' }),
    description: f.string({ required: false, description: 'What it is for.' }),
  }),
});

builder.mutationField('createProject', (t) =>
  t.field({
    type: builder.objectRef<{ project: Project }>('CreateProjectPayload').implement({
      description: 'A created project.',
      fields: (t) => ({
        project: t.field({
          type: ProjectRef,
          description: 'The new project.',
          resolve: (p) => p.project,
        }),
      }),
    }),
    description: 'Creates a project. Members and admins.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: { input: t.arg({ type: ContainerInput, description: 'What to do.' }) },
    resolve: async (_root, { input }, ctx) => ({
      project: await createContainer(ctx, 'project', input),
    }),
  }),
);

builder.mutationField('createRegistry', (t) =>
  t.field({
    type: builder.objectRef<{ registry: Registry }>('CreateRegistryPayload').implement({
      description: 'A created registry.',
      fields: (t) => ({
        registry: t.field({
          type: RegistryRef,
          description: 'The new registry.',
          resolve: (p) => p.registry,
        }),
      }),
    }),
    description: 'Creates a registry. Members and admins.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: { input: t.arg({ type: RegistryInput, description: 'What to do.' }) },
    resolve: async (_root, { input }, ctx) => ({
      registry: await createContainer(ctx, 'registry', input),
    }),
  }),
);

builder.mutationField('createArtifactCollection', (t) =>
  t.field({
    type: builder
      .objectRef<{ collection: ArtifactCollection }>('CreateArtifactCollectionPayload')
      .implement({
        description: 'A created artifact collection.',
        fields: (t) => ({
          collection: t.field({
            type: ArtifactCollectionRef,
            description: 'The new collection.',
            resolve: (p) => p.collection,
          }),
        }),
      }),
    description:
      'Creates an artifact collection in a project or registry, so automations can watch it before its first version. Logging a version with `emitArtifactEvent` creates collections too. Members and admins.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('CreateArtifactCollectionInput', {
          description: 'A new collection.',
          fields: (f) => ({
            entity: f.string({ description: 'Entity name.' }),
            owner: f.field({
              type: CollectionOwnerInput,
              description: 'The project or registry it belongs to.',
            }),
            name: f.string({ description: 'Collection name.' }),
            artifactType: f.string({ description: 'Artifact type, e.g. `model`.' }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      collection: await createCollection(ctx, { ...input, owner: ownerOf(input.owner) }),
    }),
  }),
);
