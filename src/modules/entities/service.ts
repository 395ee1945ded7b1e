import { and, asc, count, eq } from 'drizzle-orm';
import type { AppDeps, Context } from '../../context.js';
import {
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from '../../errors.js';
import { newId } from '../../ids.js';
import { entities, memberships, users } from '../../storage/sqlite/schema.js';
import { recordAudit } from '../audit/service.js';
import type { Page, SortOrder } from '../connection.js';
import { checkSlug } from '../names.js';
import {
  type ApiKey,
  administersEveryEntityOf,
  auditApiKey,
  createUser,
  findUser,
  issueApiKey,
  isVisibleTo,
  type Role,
  type User,
} from '../users/service.js';
import { type Entity, requireEntity } from './access.js';

export type Membership = typeof memberships.$inferSelect;

export function findEntityByName(deps: Pick<AppDeps, 'db'>, name: string): Entity | undefined {
  return deps.db.select().from(entities).where(eq(entities.name, name)).get();
}

/**
 * Creates an entity with `adminUserId` as its first admin, recorded in the audit log as created
 * by that user. Throws ConflictError if the name is taken.
 */
export function insertEntity(
  deps: Pick<AppDeps, 'db' | 'clock'>,
  name: string,
  adminUserId: string,
): Entity {
  checkSlug(name, 'input.name');
  if (findEntityByName(deps, name)) {
    throw new ConflictError(
      'input.name',
      `An entity named "${name}" already exists; pick another name.`,
    );
  }
  return deps.db.transaction((tx) => {
    const entity = tx.insert(entities).values({ id: newId(), name }).returning().get();
    tx.insert(memberships)
      .values({ entityId: entity.id, userId: adminUserId, role: 'ADMIN' })
      .run();
    recordAudit(
      { db: tx, clock: deps.clock },
      {
        entityId: entity.id,
        actorId: adminUserId,
        action: 'entity.created',
        targetType: 'Entity',
        targetId: entity.id,
        details: { name: entity.name },
      },
    );
    return entity;
  });
}

/** Any person (not a service account) may create an entity and becomes its admin. */
export function createEntity(ctx: Context, name: string): Entity {
  if (ctx.viewer.user.kind !== 'USER') {
    throw new ValidationError(
      'input.name',
      'Service accounts cannot create entities; ask a person to.',
    );
  }
  const entity = insertEntity(ctx.deps, name, ctx.viewer.user.id);
  ctx.viewer.roles.set(entity.id, 'ADMIN');
  return entity;
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
  return ctx.deps.db.transaction(() => {
    const user = createUser(ctx.deps, input);
    ctx.deps.db
      .insert(memberships)
      .values({ entityId: entity.id, userId: user.id, role: input.role })
      .run();
    const { apiKey, secret } = issueApiKey(ctx.deps, user.id, 'first key');
    recordAudit(ctx.deps, {
      entityId: entity.id,
      actorId: ctx.viewer.user.id,
      action: 'user.created',
      targetType: 'User',
      targetId: user.id,
      details: { name: user.name, kind: user.kind, role: input.role },
    });
    auditApiKey(ctx.deps, ctx.viewer.user.id, 'apiKey.created', apiKey);
    return { user, apiKey, secret };
  });
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
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const user = ctx.deps.db.select().from(users).where(eq(users.id, input.userId)).get();
  const notFound = () => new NotFoundError('input.userId', `No user with id "${input.userId}".`);
  if (!user) throw notFound();
  if (findMembership(ctx.deps, entity.id, user.id)) {
    throw new ConflictError(
      'input.userId',
      `${user.name} is already a member; use updateMemberRole to change the role.`,
    );
  }
  if (user.kind === 'SERVICE_ACCOUNT' && !administersEveryEntityOf(ctx.deps, ctx.viewer, user.id)) {
    if (!isVisibleTo(ctx.deps, ctx.viewer, user.id)) throw notFound();
    throw new PermissionDeniedError(
      'ADMIN',
      `${user.name} is a service account of entities you do not all administer; only an admin of every entity it belongs to may add it to another.`,
    );
  }
  return ctx.deps.db.transaction(() => {
    const membership = ctx.deps.db
      .insert(memberships)
      .values({ entityId: entity.id, userId: user.id, role: input.role })
      .returning()
      .get();
    auditMember(ctx, 'member.added', membership, { role: input.role });
    return membership;
  });
}

/** Changes a member's role. Refuses to leave the entity without an admin. */
export async function updateMemberRole(
  ctx: Context,
  input: { entity: string; userId: string; role: Role },
): Promise<Membership> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const current = requireMembership(ctx.deps, entity.id, input.userId);
  if (current.role === input.role) return current;
  if (current.role === 'ADMIN') assertAnotherAdmin(ctx.deps, entity.id);
  return ctx.deps.db.transaction(() => {
    const membership = ctx.deps.db
      .update(memberships)
      .set({ role: input.role })
      .where(and(eq(memberships.entityId, entity.id), eq(memberships.userId, input.userId)))
      .returning()
      .get();
    auditMember(ctx, 'member.roleChanged', membership, { from: current.role, to: input.role });
    return membership;
  });
}

/** Removes a member. Refuses to remove the last admin. */
export async function removeMember(
  ctx: Context,
  input: { entity: string; userId: string },
): Promise<Membership> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const current = requireMembership(ctx.deps, entity.id, input.userId);
  if (current.role === 'ADMIN') assertAnotherAdmin(ctx.deps, entity.id);
  ctx.deps.db.transaction(() => {
    ctx.deps.db
      .delete(memberships)
      .where(and(eq(memberships.entityId, entity.id), eq(memberships.userId, input.userId)))
      .run();
    auditMember(ctx, 'member.removed', current, { role: current.role });
  });
  return current;
}

/** Records a membership change with the member's name, which outlives their visibility. */
function auditMember(
  ctx: Context,
  action: 'member.added' | 'member.roleChanged' | 'member.removed',
  membership: Membership,
  details: Record<string, unknown>,
): void {
  const user = findUser(ctx.deps, membership.userId);
  recordAudit(ctx.deps, {
    entityId: membership.entityId,
    actorId: ctx.viewer.user.id,
    action,
    targetType: 'User',
    targetId: membership.userId,
    details: { user: user?.name, ...details },
  });
}

export function findMembership(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  userId: string,
): Membership | undefined {
  return deps.db
    .select()
    .from(memberships)
    .where(and(eq(memberships.entityId, entityId), eq(memberships.userId, userId)))
    .get();
}

function requireMembership(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  userId: string,
): Membership {
  const membership = findMembership(deps, entityId, userId);
  if (!membership)
    throw new NotFoundError('input.userId', `No member with user id "${userId}" in this entity.`);
  return membership;
}

function assertAnotherAdmin(deps: Pick<AppDeps, 'db'>, entityId: string): void {
  const admins = deps.db
    .select({ n: count() })
    .from(memberships)
    .where(and(eq(memberships.entityId, entityId), eq(memberships.role, 'ADMIN')))
    .get();
  if ((admins?.n ?? 0) <= 1) {
    throw new ConflictError(
      'input.userId',
      'An entity needs at least one admin: make someone else an admin first.',
    );
  }
}

export interface Member {
  user: User;
  membership: Membership;
}

/** The order of member lists: who joined first comes first. */
export const MEMBER_ORDER: SortOrder<Member> = {
  direction: 'asc',
  columns: [
    { column: memberships.createdAt, of: (m) => m.membership.createdAt.getTime(), type: 'number' },
    { column: memberships.userId, of: (m) => m.user.id, type: 'string' },
  ],
};

/** A page of the entity's members, in {@link MEMBER_ORDER}. */
export function listMembers(deps: Pick<AppDeps, 'db'>, entityId: string, page: Page): Member[] {
  return deps.db
    .select({ user: users, membership: memberships })
    .from(memberships)
    .innerJoin(users, eq(users.id, memberships.userId))
    .where(and(eq(memberships.entityId, entityId), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

export function countMembers(deps: Pick<AppDeps, 'db'>, entityId: string): number {
  return (
    deps.db.select({ n: count() }).from(memberships).where(eq(memberships.entityId, entityId)).get()
      ?.n ?? 0
  );
}

/** A user's memberships, oldest first. */
export function membershipsOf(deps: Pick<AppDeps, 'db'>, userId: string): Membership[] {
  return deps.db
    .select()
    .from(memberships)
    .where(eq(memberships.userId, userId))
    .orderBy(asc(memberships.createdAt))
    .all();
}
