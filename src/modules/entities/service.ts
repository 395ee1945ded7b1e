import type { AppDeps, Context } from '../../context.js';
import {
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from '../../errors.js';
import { newId } from '../../ids.js';
import type { AuditAction, AuditRecord } from '../../storage/audit.js';
import { DuplicateError } from '../../storage/errors.js';
import type { Member, Membership, MembershipChange } from '../../storage/identity.js';
import type { StoredList } from '../connection.js';
import { checkName, checkSlug } from '../names.js';
import {
  type ApiKey,
  administersEveryEntityOf,
  findUser,
  isVisibleTo,
  keyAudit,
  newApiKey,
  type Role,
  type User,
} from '../users/service.js';
import { type Entity, requireEntity } from './access.js';

export type { Member, Membership } from '../../storage/identity.js';

export async function findEntityByName(
  deps: Pick<AppDeps, 'storage'>,
  name: string,
): Promise<Entity | undefined> {
  return (await deps.storage.entities.findEntityByName(name)) ?? undefined;
}

export async function findEntity(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<Entity | undefined> {
  return (await deps.storage.entities.findEntity(id)) ?? undefined;
}

const nameTaken = (name: string) =>
  new ConflictError('input.name', `An entity named "${name}" already exists; pick another name.`);

/**
 * Creates an entity with `adminUserId` as its first admin, recorded in the audit log as created
 * by that user. Throws ConflictError if the name is taken.
 */
export async function insertEntity(
  deps: Pick<AppDeps, 'storage' | 'clock' | 'access'>,
  name: string,
  adminUserId: string,
): Promise<Entity> {
  checkSlug(name, 'input.name');
  const id = newId();
  let entity: Entity;
  try {
    entity = await deps.storage.entities.createEntity(
      { id, name },
      adminUserId,
      [
        {
          entityId: id,
          actorId: adminUserId,
          action: 'entity.created',
          targetType: 'Entity',
          targetId: id,
          details: { name },
        },
      ],
      deps.clock.now(),
    );
  } catch (error) {
    if (error instanceof DuplicateError) throw nameTaken(name);
    throw error;
  }
  await deps.access.changed({ type: 'userChanged', userId: adminUserId });
  return entity;
}

/** Any person (not a service account) may create an entity and becomes its admin. */
export async function createEntity(ctx: Context, name: string): Promise<Entity> {
  if (ctx.viewer.user.kind !== 'USER') {
    throw new ValidationError(
      'input.name',
      'Service accounts cannot create entities; ask a person to.',
    );
  }
  return insertEntity(ctx.deps, name, ctx.viewer.user.id);
}

/**
 * Creates a person or service account as a member of the entity, with its first API key (shown
 * once). Admins only.
 */
export async function createMemberUser(
  ctx: Context,
  input: { entity: string; name: string; kind: User['kind']; role: Role },
): Promise<{ user: User; apiKey: ApiKey; secret: string }> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const name = checkName(input.name, 'input.name');
  const userId = newId();
  const { key, secret } = newApiKey(userId, 'first key');
  const actorId = ctx.viewer.user.id;
  const created = await ctx.deps.storage.users.createUser(
    {
      user: { id: userId, name, kind: input.kind },
      membership: { entityId: entity.id, role: input.role },
      key,
    },
    [
      {
        entityId: entity.id,
        actorId,
        action: 'user.created',
        targetType: 'User',
        targetId: userId,
        details: { name, kind: input.kind, role: input.role },
      },
      // The new account belongs to this entity only.
      { ...keyAudit('apiKey.created', actorId, key, name), entityId: entity.id },
    ],
    ctx.deps.clock.now(),
  );
  return { user: created.user, apiKey: created.key, secret };
}

/**
 * Adds an existing user to the entity. Admins only; ConflictError when already a member.
 *
 * A service account can be added only by someone who is also ADMIN of every entity it already
 * belongs to: an admin of this entity alone could otherwise pull in another entity's account and
 * then issue keys for it, which act in that entity too. NotFoundError for an account the caller
 * cannot see, PermissionDeniedError for one it sees but does not administer everywhere.
 */
export async function addMember(
  ctx: Context,
  input: { entity: string; userId: string; role: Role },
): Promise<Membership> {
  const { deps, viewer } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const user = await findUser(deps, input.userId);
  const notFound = () => new NotFoundError('input.userId', `No user with id "${input.userId}".`);
  if (!user) throw notFound();
  const alreadyMember = () =>
    new ConflictError(
      'input.userId',
      `${user.name} is already a member; use updateMemberRole to change the role.`,
    );
  if (await deps.storage.entities.findMembership(entity.id, user.id)) throw alreadyMember();
  const notAdministered = () =>
    new PermissionDeniedError(
      'ADMIN',
      `${user.name} is a service account of entities you do not all administer; only an admin of every entity it belongs to may add it to another.`,
    );
  const serviceAccount = user.kind === 'SERVICE_ACCOUNT';
  if (serviceAccount && !(await administersEveryEntityOf(deps, viewer, user.id))) {
    if (!(await isVisibleTo(deps, viewer, user.id))) throw notFound();
    throw notAdministered();
  }
  let membership: Membership | null;
  try {
    membership = await deps.storage.entities.addMember(
      { entityId: entity.id, userId: user.id, role: input.role },
      // The account may have joined another entity since the check above: the store checks again.
      serviceAccount ? { administeredBy: viewer.user.id } : null,
      memberAudit(ctx, 'member.added', entity.id, user.id, user, { role: input.role }),
      deps.clock.now(),
    );
  } catch (error) {
    if (error instanceof DuplicateError) throw alreadyMember();
    throw error;
  }
  if (!membership) throw notAdministered();
  await deps.access.changed({ type: 'userChanged', userId: user.id });
  return membership;
}

const lastAdmin = () =>
  new ConflictError(
    'input.userId',
    'An entity needs at least one admin: make someone else an admin first.',
  );

const notMember = (userId: string) =>
  new NotFoundError('input.userId', `No member with user id "${userId}" in this entity.`);

/**
 * Applies a change to a membership that holds only while the member's role is what was read:
 * `attempt` gets the current membership and returns the store's answer, or null for nothing to
 * do. A concurrent change to the same membership makes the store answer `stale`; the change is
 * then tried again against the new role.
 */
async function changeMembership(
  ctx: Context,
  entityId: string,
  userId: string,
  attempt: (current: Membership) => Promise<MembershipChange | null>,
): Promise<Membership> {
  let current = await ctx.deps.storage.entities.findMembership(entityId, userId);
  for (let tries = 0; tries < 5; tries++) {
    if (!current) throw notMember(userId);
    const result = await attempt(current);
    if (result === null) return current;
    switch (result.outcome) {
      case 'done':
        await ctx.deps.access.changed({ type: 'userChanged', userId });
        return result.membership;
      case 'notMember':
        throw notMember(userId);
      case 'lastAdmin':
        throw lastAdmin();
      case 'stale':
        current = result.membership;
        break;
      default: {
        const unknown: never = result;
        throw new Error(`Unknown membership change ${JSON.stringify(unknown)}`);
      }
    }
  }
  throw new ConflictError(
    'input.userId',
    'The membership kept changing while this change was made; try again.',
  );
}

/** Changes a member's role. Refuses to leave the entity without an admin. */
export async function updateMemberRole(
  ctx: Context,
  input: { entity: string; userId: string; role: Role },
): Promise<Membership> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const user = await findUser(ctx.deps, input.userId);
  return changeMembership(ctx, entity.id, input.userId, async (current) =>
    current.role === input.role
      ? null
      : ctx.deps.storage.entities.changeRole(
          entity.id,
          input.userId,
          { from: current.role, to: input.role },
          memberAudit(ctx, 'member.roleChanged', entity.id, input.userId, user, {
            from: current.role,
            to: input.role,
          }),
          ctx.deps.clock.now(),
        ),
  );
}

/** Removes a member; returns the removed membership. Refuses to remove the last admin. */
export async function removeMember(
  ctx: Context,
  input: { entity: string; userId: string },
): Promise<Membership> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const user = await findUser(ctx.deps, input.userId);
  return changeMembership(ctx, entity.id, input.userId, (current) =>
    ctx.deps.storage.entities.removeMember(
      entity.id,
      input.userId,
      current.role,
      memberAudit(ctx, 'member.removed', entity.id, input.userId, user, { role: current.role }),
      ctx.deps.clock.now(),
    ),
  );
}

/** The audit entry of a membership change, with the member's name, which outlives their visibility. */
function memberAudit(
  ctx: Context,
  action: Extract<AuditAction, 'member.added' | 'member.roleChanged' | 'member.removed'>,
  entityId: string,
  userId: string,
  user: User | undefined,
  details: Record<string, unknown>,
): AuditRecord {
  return {
    entityId,
    actorId: ctx.viewer.user.id,
    action,
    targetType: 'User',
    targetId: userId,
    details: { user: user?.name, ...details },
  };
}

export async function findMembership(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  userId: string,
): Promise<Membership | undefined> {
  return (await deps.storage.entities.findMembership(entityId, userId)) ?? undefined;
}

/** The entity's members, who joined first comes first. */
export function membersOf(deps: Pick<AppDeps, 'storage'>, entityId: string): StoredList<Member> {
  return {
    keyOf: (m) => [m.membership.createdAt.getTime(), m.user.id],
    keyTypes: ['number', 'string'],
    fetch: (request) => deps.storage.entities.pageMembers(entityId, request),
    count: () => deps.storage.entities.countMembers(entityId),
  };
}

/** A user's memberships, oldest first. */
export function membershipsOf(
  deps: Pick<AppDeps, 'storage'>,
  userId: string,
): Promise<Membership[]> {
  return deps.storage.entities.membershipsOf(userId);
}
