import type { Context } from '../../context.js';
import { NotFoundError, PermissionDeniedError } from '../../errors.js';
import type { Entity } from '../../storage/identity.js';
import type { Role, Viewer } from '../users/service.js';

export type { Entity } from '../../storage/identity.js';

const RANK: Record<Role, number> = { VIEWER: 1, MEMBER: 2, ADMIN: 3 };

const WHAT_ROLE_ALLOWS: Record<Role, string> = {
  VIEWER: 'read',
  MEMBER: 'manage automations, emit events and retry runs',
  ADMIN: 'manage members, keys, secrets and actions',
};

/**
 * Whether the viewer belongs to the entity with at least `role` (reading needs VIEWER). Answers
 * from the viewer's roles, which the access cache keeps current.
 */
export function hasRole(viewer: Viewer, entityId: string, role: Role = 'VIEWER'): boolean {
  const held = viewer.roles.get(entityId);
  return held !== undefined && RANK[held] >= RANK[role];
}

/**
 * Throws unless the viewer holds `role` in the entity: NotFoundError when it is not a member at
 * all (another entity's objects behave as if they did not exist), PermissionDeniedError when its
 * role is too low. `notFound` builds the error for the object being reached.
 */
export function requireRole(
  viewer: Viewer,
  entityId: string,
  role: Role,
  notFound: () => NotFoundError,
): void {
  if (!viewer.roles.has(entityId)) throw notFound();
  if (!hasRole(viewer, entityId, role)) {
    throw new PermissionDeniedError(
      role,
      `Your role in this entity is ${viewer.roles.get(entityId)}; only ${role === 'ADMIN' ? 'admins' : 'members and admins'} may ${WHAT_ROLE_ALLOWS[role]}.`,
    );
  }
}

/**
 * Finds the entity called `name` and checks the viewer's role in it. Throws NotFoundError on
 * `field` when it does not exist or the viewer is not a member; PermissionDeniedError when the
 * role is too low.
 */
export async function requireEntity(
  ctx: Context,
  name: string,
  role: Role,
  field = 'input.entity',
): Promise<Entity> {
  const entity = await ctx.deps.storage.entities.findEntityByName(name);
  const notFound = () => new NotFoundError(field, `No entity named "${name}" that you belong to.`);
  if (!entity) throw notFound();
  requireRole(ctx.viewer, entity.id, role, notFound);
  return entity;
}

/** The entity with this id when the viewer may read it, else undefined. */
export async function readableEntity(ctx: Context, id: string): Promise<Entity | undefined> {
  if (!hasRole(ctx.viewer, id)) return undefined;
  return (await ctx.deps.storage.entities.findEntity(id)) ?? undefined;
}
