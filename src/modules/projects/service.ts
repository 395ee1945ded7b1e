import type { AppDeps, Context } from '../../context.js';
import { ConflictError, NotFoundError } from '../../errors.js';
import { newId } from '../../ids.js';
import { DuplicateError } from '../../storage/errors.js';
import type { ArtifactCollection, Container, ContainerKind } from '../../storage/identity.js';
import type { StoredList } from '../connection.js';
import { requireEntity } from '../entities/access.js';
import { checkDescription, checkSlug } from '../names.js';

export type { ArtifactCollection } from '../../storage/identity.js';
export type Project = Container;
/** A registry has exactly a project's shape. */
export type Registry = Container;
export type Kind = ContainerKind;

/** Runs a write whose only unique value is a name, turning a clash into a ConflictError. */
async function named<T>(write: () => Promise<T>, clash: string): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (error instanceof DuplicateError) throw new ConflictError('input.name', clash);
    throw error;
  }
}

/**
 * Creates a project or registry in an entity. Members and admins only. Throws ConflictError
 * when the entity already has one of that name.
 */
export async function createContainer(
  ctx: Context,
  kind: Kind,
  input: { entity: string; name: string; description?: string | null },
): Promise<Project> {
  const entity = await requireEntity(ctx, input.entity, 'MEMBER');
  const name = checkSlug(input.name, 'input.name');
  const description = checkDescription(input.description, 'input.description');
  return named(
    () =>
      ctx.deps.storage.containers.createContainer(kind, {
        id: newId(),
        entityId: entity.id,
        name,
        description,
      }),
    `This entity already has a ${kind} named "${name}".`,
  );
}

export async function findContainer(
  deps: Pick<AppDeps, 'storage'>,
  kind: Kind,
  entityId: string,
  name: string,
): Promise<Project | undefined> {
  return (await deps.storage.containers.findContainerByName(kind, entityId, name)) ?? undefined;
}

/** Finds a project or registry by name in the entity, or throws NotFoundError on `field`. */
export async function requireContainer(
  deps: Pick<AppDeps, 'storage'>,
  kind: Kind,
  entityId: string,
  name: string,
  field: string,
): Promise<Project> {
  const row = await findContainer(deps, kind, entityId, name);
  if (!row)
    throw new NotFoundError(field, `No ${kind} named "${name}" in this entity; create it first.`);
  return row;
}

export async function getContainer(
  deps: Pick<AppDeps, 'storage'>,
  kind: Kind,
  id: string,
): Promise<Project | undefined> {
  return (await deps.storage.containers.findContainer(kind, id)) ?? undefined;
}

/** The entity's projects or registries, by name. */
export function containersOf(
  deps: Pick<AppDeps, 'storage'>,
  kind: Kind,
  entityId: string,
): StoredList<Project> {
  return {
    keyOf: (row) => [row.name],
    keyTypes: ['string'],
    fetch: (request) => deps.storage.containers.pageContainers(kind, entityId, request),
    count: () => deps.storage.containers.countContainers(kind, entityId),
  };
}

export async function findCollection(
  deps: Pick<AppDeps, 'storage'>,
  kind: Kind,
  ownerId: string,
  name: string,
): Promise<ArtifactCollection | undefined> {
  return (await deps.storage.containers.findCollectionByName(kind, ownerId, name)) ?? undefined;
}

export async function getCollection(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<ArtifactCollection | undefined> {
  return (await deps.storage.containers.findCollection(id)) ?? undefined;
}

/**
 * Creates an artifact collection in a project or registry. Members and admins only. Throws
 * NotFoundError for an unknown project or registry, ConflictError for a taken name.
 */
export async function createCollection(
  ctx: Context,
  input: {
    entity: string;
    owner: OwnerInput;
    name: string;
    artifactType: string;
  },
): Promise<ArtifactCollection> {
  const entity = await requireEntity(ctx, input.entity, 'MEMBER');
  const owner = await resolveOwner(ctx.deps, entity.id, input.owner);
  const name = checkSlug(input.name, 'input.name');
  const artifactType = checkSlug(input.artifactType, 'input.artifactType');
  return named(
    () =>
      ctx.deps.storage.containers.createCollection({
        id: newId(),
        entityId: entity.id,
        kind: owner.kind,
        ownerId: owner.row.id,
        name,
        artifactType,
      }),
    `This ${owner.kind} already has a collection named "${name}".`,
  );
}

/** Where a collection lives, by name: one of the two (`@oneOf` in the schema). */
export type OwnerInput =
  | { project: string; registry?: null }
  | { registry: string; project?: null };

/**
 * Resolves the project or registry `owner` names. Throws NotFoundError naming the field
 * (`input.owner.project` / `input.owner.registry`) when it does not exist.
 */
export async function resolveOwner(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  owner: OwnerInput,
): Promise<{ kind: 'project'; row: Project } | { kind: 'registry'; row: Registry }> {
  if (owner.project != null) {
    return {
      kind: 'project',
      row: await requireContainer(deps, 'project', entityId, owner.project, 'input.owner.project'),
    };
  }
  return {
    kind: 'registry',
    row: await requireContainer(deps, 'registry', entityId, owner.registry, 'input.owner.registry'),
  };
}

/** A project's or registry's collections, by name. */
export function collectionsOf(
  deps: Pick<AppDeps, 'storage'>,
  kind: Kind,
  ownerId: string,
): StoredList<ArtifactCollection> {
  return {
    keyOf: (row) => [row.name],
    keyTypes: ['string'],
    fetch: (request) => deps.storage.containers.pageCollections(kind, ownerId, request),
    count: () => deps.storage.containers.countCollections(kind, ownerId),
  };
}
