import { createHash, randomBytes } from 'node:crypto';
import { and, count, eq, isNull } from 'drizzle-orm';
import type { AppDeps } from '../../context.js';
import { NotFoundError, PermissionDeniedError } from '../../errors.js';
import { newId } from '../../ids.js';
import { apiKeys, memberships, users } from '../../storage/sqlite/schema.js';
import { recordAudit } from '../audit/service.js';
import { byCreation, type Page, type SortOrder } from '../connection.js';
import { checkName } from '../names.js';

export type Role = 'ADMIN' | 'MEMBER' | 'VIEWER';
export type User = typeof users.$inferSelect;
export type ApiKey = typeof apiKeys.$inferSelect;

/** The authenticated caller of one request. */
export interface Viewer {
  user: User;
  apiKeyId: string;
  /** The caller's role in each entity it belongs to, read once per request. */
  roles: Map<string, Role>;
}

const KEY_PREFIX = 'tl_';
const LAST_USED_RESOLUTION_MS = 60_000;

export const hashApiKey = (key: string): string => createHash('sha256').update(key).digest('hex');

/**
 * Looks up the user behind an API key. Returns null for an unknown or revoked key; never throws
 * for bad input. Records when the key was last used, to the minute.
 */
export async function authenticate(
  deps: Pick<AppDeps, 'db' | 'clock'>,
  key: string,
): Promise<Viewer | null> {
  const { db, clock } = deps;
  const row = db
    .select({ user: users, keyId: apiKeys.id, lastUsedAt: apiKeys.lastUsedAt })
    .from(apiKeys)
    .innerJoin(users, eq(users.id, apiKeys.userId))
    .where(and(eq(apiKeys.hash, hashApiKey(key)), isNull(apiKeys.revokedAt)))
    .get();
  if (!row) return null;
  const now = clock.now();
  // Every request authenticates; a write each time would serialise them all on the database
  // lock, so `lastUsedAt` is kept to the minute.
  if (!row.lastUsedAt || now.getTime() - row.lastUsedAt.getTime() >= LAST_USED_RESOLUTION_MS) {
    db.update(apiKeys).set({ lastUsedAt: now }).where(eq(apiKeys.id, row.keyId)).run();
  }
  const roles = new Map(
    db
      .select({ entityId: memberships.entityId, role: memberships.role })
      .from(memberships)
      .where(eq(memberships.userId, row.user.id))
      .all()
      .map((m) => [m.entityId, m.role] as const),
  );
  return { user: row.user, apiKeyId: row.keyId, roles };
}

/** Creates a key for `userId` and returns it with its plaintext, which is never stored. */
export function issueApiKey(
  deps: Pick<AppDeps, 'db'>,
  userId: string,
  name: string,
  plaintext: string = KEY_PREFIX + randomBytes(32).toString('base64url'),
): { apiKey: ApiKey; secret: string } {
  const apiKey = deps.db
    .insert(apiKeys)
    .values({
      id: newId(),
      userId,
      name,
      prefix: plaintext.slice(0, KEY_PREFIX.length + 6),
      hash: hashApiKey(plaintext),
    })
    .returning()
    .get();
  return { apiKey, secret: plaintext };
}

export function createUser(
  deps: Pick<AppDeps, 'db'>,
  input: { name: string; kind: User['kind'] },
): User {
  return deps.db
    .insert(users)
    .values({ id: newId(), name: checkName(input.name, 'input.name'), kind: input.kind })
    .returning()
    .get();
}

export function findUser(deps: Pick<AppDeps, 'db'>, id: string): User | undefined {
  return deps.db.select().from(users).where(eq(users.id, id)).get();
}

/*
 * Who may do what with keys. A key acts as its account in every entity the account belongs to,
 * so the rule that keeps every entity's roles its own is: no operation gives the caller a
 * permission in an entity that the caller does not already hold there.
 *
 * - People manage only their own keys.
 * - A service account's keys are issued only by a caller who is ADMIN of every entity the account
 *   belongs to (so the key can do nothing there the caller could not), and only such a caller may
 *   add the account to a further entity (else an admin of that entity could pull the account in
 *   and then issue keys for it).
 * - Any admin of any entity the account belongs to sees and revokes its keys: every one of them
 *   opens that admin's entity, and revoking grants nothing.
 */

/**
 * Whether `viewer` is ADMIN of every entity `userId` belongs to, and it belongs to at least one.
 * What it takes to issue keys for a service account, or to add it to another entity.
 */
export function administersEveryEntityOf(
  deps: Pick<AppDeps, 'db'>,
  viewer: Viewer,
  userId: string,
): boolean {
  const entityIds = entityIdsOf(deps, userId);
  return entityIds.length > 0 && entityIds.every((id) => viewer.roles.get(id) === 'ADMIN');
}

/**
 * Whether `viewer` may issue keys for `userId`: itself, or a service account all of whose
 * entities the viewer administers.
 */
export function mayIssueKeysFor(
  deps: Pick<AppDeps, 'db'>,
  viewer: Viewer,
  userId: string,
): boolean {
  if (userId === viewer.user.id) return true;
  if (findUser(deps, userId)?.kind !== 'SERVICE_ACCOUNT') return false;
  return administersEveryEntityOf(deps, viewer, userId);
}

/**
 * Whether `viewer` may see and revoke keys of `userId`: its own, or a service account's that
 * belongs to an entity the viewer administers (any one suffices).
 */
export function mayOverseeKeysOf(
  deps: Pick<AppDeps, 'db'>,
  viewer: Viewer,
  userId: string,
): boolean {
  if (userId === viewer.user.id) return true;
  if (findUser(deps, userId)?.kind !== 'SERVICE_ACCOUNT') return false;
  return entityIdsOf(deps, userId).some((id) => viewer.roles.get(id) === 'ADMIN');
}

/** Whether the viewer may see the user: itself, or a member of an entity the viewer belongs to. */
export function isVisibleTo(deps: Pick<AppDeps, 'db'>, viewer: Viewer, userId: string): boolean {
  return userId === viewer.user.id || entityIdsOf(deps, userId).some((id) => viewer.roles.has(id));
}

function entityIdsOf(deps: Pick<AppDeps, 'db'>, userId: string): string[] {
  return deps.db
    .select({ entityId: memberships.entityId })
    .from(memberships)
    .where(eq(memberships.userId, userId))
    .all()
    .map((m) => m.entityId);
}

export function getApiKey(deps: Pick<AppDeps, 'db'>, id: string): ApiKey | undefined {
  return deps.db.select().from(apiKeys).where(eq(apiKeys.id, id)).get();
}

/**
 * Throws unless `allowed`: PermissionDeniedError when `userId` is a service account the viewer can
 * see (a fellow member), saying `why`; `notFound()` otherwise, so accounts of other entities behave
 * as if they did not exist.
 */
function requireKeyPermission(
  deps: Pick<AppDeps, 'db'>,
  viewer: Viewer,
  userId: string,
  allowed: boolean,
  why: string,
  notFound: () => NotFoundError,
): void {
  if (allowed) return;
  if (findUser(deps, userId)?.kind === 'SERVICE_ACCOUNT' && isVisibleTo(deps, viewer, userId)) {
    throw new PermissionDeniedError('ADMIN', why);
  }
  throw notFound();
}

/**
 * Issues a new API key for the viewer, or for a service account when the viewer is ADMIN of every
 * entity it belongs to (see {@link mayIssueKeysFor}). Throws NotFoundError for a user the viewer
 * cannot see or a person other than the viewer, PermissionDeniedError for a service account the
 * viewer sees but does not administer everywhere.
 */
export function createApiKey(
  deps: Pick<AppDeps, 'db' | 'clock'>,
  viewer: Viewer,
  input: { name: string; userId?: string | null },
): { apiKey: ApiKey; secret: string } {
  const userId = input.userId ?? viewer.user.id;
  requireKeyPermission(
    deps,
    viewer,
    userId,
    mayIssueKeysFor(deps, viewer, userId),
    'A key acts in every entity its service account belongs to, so only someone who is an admin of all of them may create one. Ask such an admin.',
    () =>
      new NotFoundError(
        'input.userId',
        `No service account with id "${userId}" in an entity you administer; people create their own keys.`,
      ),
  );
  const name = checkName(input.name, 'input.name');
  return deps.db.transaction(() => {
    const issued = issueApiKey(deps, userId, name);
    auditApiKey(deps, viewer.user.id, 'apiKey.created', issued.apiKey);
    return issued;
  });
}

/**
 * Revokes a key: the viewer's own, or a service account's in an entity the viewer administers
 * (see {@link mayOverseeKeysOf}). Revoking twice is harmless. Throws NotFoundError for a key the
 * viewer cannot see, PermissionDeniedError for a fellow member's service-account key.
 */
export function revokeApiKey(
  deps: Pick<AppDeps, 'db' | 'clock'>,
  viewer: Viewer,
  id: string,
): ApiKey {
  const key = getApiKey(deps, id);
  const notFound = () => new NotFoundError('id', `No API key with id "${id}".`);
  if (!key) throw notFound();
  requireKeyPermission(
    deps,
    viewer,
    key.userId,
    mayOverseeKeysOf(deps, viewer, key.userId),
    'Only admins of an entity the service account belongs to may revoke its keys.',
    notFound,
  );
  if (key.revokedAt) return key;
  return deps.db.transaction(() => {
    const revoked = deps.db
      .update(apiKeys)
      .set({ revokedAt: deps.clock.now() })
      .where(eq(apiKeys.id, id))
      .returning()
      .get();
    auditApiKey(deps, viewer.user.id, 'apiKey.revoked', revoked);
    return revoked;
  });
}

/**
 * Records the creation or revocation of a key, by id and prefix only, in the log of every entity
 * its owner belongs to: a key opens all of them, so each one's admins should see it. A key of a
 * user in no entity is recorded once, in no entity's log. Call it inside the change's transaction.
 */
export function auditApiKey(
  deps: Pick<AppDeps, 'db' | 'clock'>,
  actorId: string,
  action: 'apiKey.created' | 'apiKey.revoked',
  key: ApiKey,
): void {
  const entityIds = entityIdsOf(deps, key.userId);
  const details = { prefix: key.prefix, name: key.name, user: findUser(deps, key.userId)?.name };
  for (const entityId of entityIds.length > 0 ? entityIds : [null]) {
    recordAudit(deps, {
      entityId,
      actorId,
      action,
      targetType: 'ApiKey',
      targetId: key.id,
      details,
    });
  }
}

/** The order of key lists: newest first. */
export const API_KEY_ORDER: SortOrder<ApiKey> = byCreation('desc', apiKeys);

/** A page of the user's API keys, revoked ones included, in {@link API_KEY_ORDER}. */
export function listApiKeys(deps: Pick<AppDeps, 'db'>, userId: string, page: Page): ApiKey[] {
  return deps.db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.userId, userId), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

/** How many API keys the user has, revoked ones included. */
export function countApiKeys(deps: Pick<AppDeps, 'db'>, userId: string): number {
  return (
    deps.db.select({ n: count() }).from(apiKeys).where(eq(apiKeys.userId, userId)).get()?.n ?? 0
  );
}

/**
 * Whether the viewer's key still works and it still belongs to the entity. Long-lived
 * subscriptions check this on every message, so a revoked key or a removed member stops
 * receiving at once.
 */
export function stillReadable(
  deps: Pick<AppDeps, 'db'>,
  viewer: Viewer,
  entityId: string,
): boolean {
  return (
    deps.db
      .select({ id: apiKeys.id })
      .from(apiKeys)
      .innerJoin(
        memberships,
        and(eq(memberships.userId, apiKeys.userId), eq(memberships.entityId, entityId)),
      )
      .where(and(eq(apiKeys.id, viewer.apiKeyId), isNull(apiKeys.revokedAt)))
      .get() !== undefined
  );
}
