import { and, count, eq, type SQL } from 'drizzle-orm';
import type { AppDeps, Context } from '../../context.js';
import { ConflictError, NotFoundError, ValidationError } from '../../errors.js';
import { newId } from '../../ids.js';
import { artifactCollections, projects, registries } from '../../storage/sqlite/schema.js';
import { byName, type Page, type SortOrder } from '../connection.js';
import { requireEntity } from '../entities/access.js';
import { checkDescription, checkSlug } from '../names.js';

export type Project = typeof projects.$inferSelect;
/** A registry has exactly a project's shape. */
export type Registry = Project;
export type ArtifactCollection = typeof artifactCollections.$inferSelect;

export type Kind = 'project' | 'registry';

/**
 * Projects and registries share their columns and rules; `kind` says which table a call is
 * about. The cast only forgets the table's name, which no query here depends on.
 */
const tableOf = (kind: Kind): typeof projects =>
  kind === 'project' ? projects : (registries as unknown as typeof projects);

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
  const table = tableOf(kind);
  checkSlug(input.name, 'input.name');
  if (findContainer(ctx.deps, kind, entity.id, input.name)) {
    throw new ConflictError(
      'input.name',
      `This entity already has a ${kind} named "${input.name}".`,
    );
  }
  return ctx.deps.db
    .insert(table)
    .values({
      id: newId(),
      entityId: entity.id,
      name: input.name,
      description: checkDescription(input.description, 'input.description'),
    })
    .returning()
    .get();
}

export function findContainer(
  deps: Pick<AppDeps, 'db'>,
  kind: Kind,
  entityId: string,
  name: string,
): Project | undefined {
  const table = tableOf(kind);
  return deps.db
    .select()
    .from(table)
    .where(and(eq(table.entityId, entityId), eq(table.name, name)))
    .get();
}

/** Finds a project or registry by name in the entity, or throws NotFoundError on `field`. */
export function requireContainer(
  deps: Pick<AppDeps, 'db'>,
  kind: Kind,
  entityId: string,
  name: string,
  field: string,
): Project {
  const row = findContainer(deps, kind, entityId, name);
  if (!row)
    throw new NotFoundError(field, `No ${kind} named "${name}" in this entity; create it first.`);
  return row;
}

export function getContainer(
  deps: Pick<AppDeps, 'db'>,
  kind: Kind,
  id: string,
): Project | undefined {
  const table = tableOf(kind);
  return deps.db.select().from(table).where(eq(table.id, id)).get();
}

/** The order of project and registry lists: by name, unique in the entity. */
export const CONTAINER_ORDER: Readonly<Record<Kind, SortOrder<Project>>> = {
  project: byName(projects.name),
  registry: byName(registries.name),
};

/** A page of the entity's projects or registries, in {@link CONTAINER_ORDER}. */
export function listContainers(
  deps: Pick<AppDeps, 'db'>,
  kind: Kind,
  entityId: string,
  page: Page,
): Project[] {
  const table = tableOf(kind);
  return deps.db
    .select()
    .from(table)
    .where(and(eq(table.entityId, entityId), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

export function countContainers(deps: Pick<AppDeps, 'db'>, kind: Kind, entityId: string): number {
  const table = tableOf(kind);
  return (
    deps.db.select({ n: count() }).from(table).where(eq(table.entityId, entityId)).get()?.n ?? 0
  );
}

const collectionOwner = (kind: Kind, id: string): SQL =>
  kind === 'project'
    ? eq(artifactCollections.projectId, id)
    : eq(artifactCollections.registryId, id);

export function findCollection(
  deps: Pick<AppDeps, 'db'>,
  kind: Kind,
  ownerId: string,
  name: string,
): ArtifactCollection | undefined {
  return deps.db
    .select()
    .from(artifactCollections)
    .where(and(collectionOwner(kind, ownerId), eq(artifactCollections.name, name)))
    .get();
}

export function getCollection(
  deps: Pick<AppDeps, 'db'>,
  id: string,
): ArtifactCollection | undefined {
  return deps.db.select().from(artifactCollections).where(eq(artifactCollections.id, id)).get();
}

/**
 * Creates an artifact collection in a project or registry. Members and admins only. Throws
 * NotFoundError for an unknown project or registry, ConflictError for a taken name.
 */
export async function createCollection(
  ctx: Context,
  input: {
    entity: string;
    project?: string | null;
    registry?: string | null;
    name: string;
    artifactType: string;
  },
): Promise<ArtifactCollection> {
  const entity = await requireEntity(ctx, input.entity, 'MEMBER');
  const owner = resolveOwner(ctx.deps, entity.id, input);
  checkSlug(input.name, 'input.name');
  checkSlug(input.artifactType, 'input.artifactType');
  if (findCollection(ctx.deps, owner.kind, owner.row.id, input.name)) {
    throw new ConflictError(
      'input.name',
      `This ${owner.kind} already has a collection named "${input.name}".`,
    );
  }
  return insertCollection(ctx.deps, entity.id, owner, input.name, input.artifactType);
}

export function insertCollection(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  owner: { kind: Kind; row: { id: string } },
  name: string,
  artifactType: string,
): ArtifactCollection {
  return deps.db
    .insert(artifactCollections)
    .values({
      id: newId(),
      entityId,
      projectId: owner.kind === 'project' ? owner.row.id : null,
      registryId: owner.kind === 'registry' ? owner.row.id : null,
      name,
      artifactType,
    })
    .returning()
    .get();
}

/**
 * Resolves exactly one of `project` / `registry` by name. Throws ValidationError unless exactly
 * one is given, NotFoundError naming the field when it does not exist.
 */
export function resolveOwner(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  input: { project?: string | null; registry?: string | null },
): { kind: 'project'; row: Project } | { kind: 'registry'; row: Registry } {
  if (input.project != null && input.registry == null) {
    return {
      kind: 'project',
      row: requireContainer(deps, 'project', entityId, input.project, 'input.project'),
    };
  }
  if (input.registry != null && input.project == null) {
    return {
      kind: 'registry',
      row: requireContainer(deps, 'registry', entityId, input.registry, 'input.registry'),
    };
  }
  throw new ValidationError('input.project', 'Name exactly one of `project` or `registry`.');
}

/** The order of collection lists: by name, unique in the project or registry. */
export const COLLECTION_ORDER: SortOrder<ArtifactCollection> = byName(artifactCollections.name);

/** A page of a project's or registry's collections, in {@link COLLECTION_ORDER}. */
export function listCollections(
  deps: Pick<AppDeps, 'db'>,
  kind: Kind,
  ownerId: string,
  page: Page,
): ArtifactCollection[] {
  return deps.db
    .select()
    .from(artifactCollections)
    .where(and(collectionOwner(kind, ownerId), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

export function countCollections(deps: Pick<AppDeps, 'db'>, kind: Kind, ownerId: string): number {
  return (
    deps.db
      .select({ n: count() })
      .from(artifactCollections)
      .where(collectionOwner(kind, ownerId))
      .get()?.n ?? 0
  );
}
