import { hash, randomBytes } from 'node:crypto';
import type { Clock } from '../../clock.js';
import type { AppDeps, Context } from '../../context.js';
import { NotFoundError, PermissionDeniedError } from '../../errors.js';
import { newId } from '../../ids.js';
import type { ApiKey, KeyAudit, Role, User } from '../../storage/identity.js';
import type { Storage } from '../../storage/storage.js';
import type { StoredList } from '../connection.js';
import { checkName } from '../names.js';

export type { ApiKey, Role, User, UserKind } from '../../storage/identity.js';

/** The authenticated caller of one request or subscription. */
export interface Viewer {
  user: User;
  apiKeyId: string;
  /**
   * The caller's role in each entity it belongs to. The access cache's own map, updated in place
   * when a membership changes, so a long-lived subscription sees the change too.
   */
  roles: ReadonlyMap<string, Role>;
}

const KEY_PREFIX = 'tl_';

/** The stored form of an API key: its SHA-256 in hex (one-shot, as every request hashes its key). */
export const hashApiKey = (key: string): string => hash('sha256', key, 'hex');

/**
 * Looks up the user behind an API key, from the access cache. Returns null for an unknown or
 * revoked key; never throws for bad input. Records when the key was last used, to the minute.
 * Answers without a promise when it can (see `AccessCache.authenticate`).
 */
export function authenticate(
  deps: Pick<AppDeps, 'access'>,
  key: string,
): Viewer | Promise<Viewer | null> {
  return deps.access.authenticate(key);
}

/** A new key for `userId`: its stored form and its plaintext, which is never stored. */
export function newApiKey(userId: string, name: string, plaintext?: string) {
  const secret = plaintext ?? KEY_PREFIX + randomBytes(32).toString('base64url');
  return {
    key: {
      id: newId(),
      userId,
      name,
      prefix: secret.slice(0, KEY_PREFIX.length + 6),
      hash: hashApiKey(secret),
    },
    secret,
  };
}

/** The audit entry of a key's creation or revocation: by id and prefix only, never the key. */
export function keyAudit(
  action: KeyAudit['action'],
  actorId: string | null,
  key: { id: string; name: string; prefix: string },
  ownerName: string | undefined,
): KeyAudit {
  return {
    actorId,
    action,
    targetType: 'ApiKey',
    targetId: key.id,
    details: { prefix: key.prefix, name: key.name, user: ownerName },
  };
}

/**
 * Issues an API key for `userId` without any permission check (the first start and the
 * command line use it), recorded as made by `actorId` in the audit log of every entity the user
 * belongs to. `plaintext` is the key to store (`TRIPLINE_ADMIN_API_KEY`), else one is generated.
 * Returns the stored key and its plaintext, which is never stored. Throws NotFoundError on
 * `userId` for an unknown user.
 */
export async function issueApiKey(
  deps: { storage: Pick<Storage, 'users'>; clock: Clock },
  input: { userId: string; name: string; actorId: string | null; plaintext?: string },
): Promise<{ apiKey: ApiKey; secret: string }> {
  const owner = await deps.storage.users.findUser(input.userId);
  if (!owner) throw new NotFoundError('userId', `No user with id "${input.userId}".`);
  const { key, secret } = newApiKey(owner.id, input.name, input.plaintext);
  const apiKey = await deps.storage.users.issueApiKey(
    key,
    null,
    keyAudit('apiKey.created', input.actorId, key, owner.name),
    deps.clock.now(),
  );
  return { apiKey: apiKey!, secret };
}

export async function findUser(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<User | undefined> {
  return (await deps.storage.users.findUser(id)) ?? undefined;
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
 *   and then issue keys for it). The store checks this again in the write's transaction.
 * - Any admin of any entity the account belongs to sees and revokes its keys: every one of them
 *   opens that admin's entity, and revoking grants nothing.
 */

async function entityIdsOf(deps: Pick<AppDeps, 'storage'>, userId: string): Promise<string[]> {
  return (await deps.storage.entities.membershipsOf(userId)).map((m) => m.entityId);
}

/**
 * Whether `viewer` is ADMIN of every entity `userId` belongs to, and it belongs to at least one.
 * What it takes to issue keys for a service account, or to add it to another entity.
 */
export async function administersEveryEntityOf(
  deps: Pick<AppDeps, 'storage'>,
  viewer: Viewer,
  userId: string,
): Promise<boolean> {
  const entityIds = await entityIdsOf(deps, userId);
  return entityIds.length > 0 && entityIds.every((id) => viewer.roles.get(id) === 'ADMIN');
}

/**
 * Whether `viewer` may issue keys for `userId`: itself, or a service account all of whose
 * entities the viewer administers.
 */
export async function mayIssueKeysFor(
  deps: Pick<AppDeps, 'storage'>,
  viewer: Viewer,
  userId: string,
): Promise<boolean> {
  if (userId === viewer.user.id) return true;
  if ((await findUser(deps, userId))?.kind !== 'SERVICE_ACCOUNT') return false;
  return administersEveryEntityOf(deps, viewer, userId);
}

/**
 * Whether `viewer` may see and revoke keys of `userId`: its own, or a service account's that
 * belongs to an entity the viewer administers (any one suffices).
 */
export async function mayOverseeKeysOf(
  deps: Pick<AppDeps, 'storage'>,
  viewer: Viewer,
  userId: string,
): Promise<boolean> {
  if (userId === viewer.user.id) return true;
  if ((await findUser(deps, userId))?.kind !== 'SERVICE_ACCOUNT') return false;
  return (await entityIdsOf(deps, userId)).some((id) => viewer.roles.get(id) === 'ADMIN');
}

/** Whether the viewer may see the user: itself, or a member of an entity the viewer belongs to. */
export async function isVisibleTo(
  deps: Pick<AppDeps, 'storage'>,
  viewer: Viewer,
  userId: string,
): Promise<boolean> {
  return (
    userId === viewer.user.id ||
    (await entityIdsOf(deps, userId)).some((id) => viewer.roles.has(id))
  );
}

export async function getApiKey(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<ApiKey | undefined> {
  return (await deps.storage.users.findApiKey(id)) ?? undefined;
}

/**
 * Throws unless `allowed`: PermissionDeniedError when `userId` is a service account the viewer can
 * see (a fellow member), saying `why`; `notFound()` otherwise, so accounts of other entities behave
 * as if they did not exist.
 */
async function requireKeyPermission(
  deps: Pick<AppDeps, 'storage'>,
  viewer: Viewer,
  userId: string,
  allowed: boolean,
  why: string,
  notFound: () => NotFoundError,
): Promise<void> {
  if (allowed) return;
  if (
    (await findUser(deps, userId))?.kind === 'SERVICE_ACCOUNT' &&
    (await isVisibleTo(deps, viewer, userId))
  ) {
    throw new PermissionDeniedError('ADMIN', why);
  }
  throw notFound();
}

const ISSUE_FOR_SERVICE_ACCOUNT =
  'A key acts in every entity its service account belongs to, so only someone who is an admin of all of them may create one. Ask such an admin.';

/**
 * Issues a new API key for the viewer, or for a service account when the viewer is ADMIN of every
 * entity it belongs to (see {@link mayIssueKeysFor}). Throws NotFoundError for a user the viewer
 * cannot see or a person other than the viewer, PermissionDeniedError for a service account the
 * viewer sees but does not administer everywhere.
 */
export async function createApiKey(
  ctx: Context,
  input: { name: string; userId?: string | null },
): Promise<{ apiKey: ApiKey; secret: string }> {
  const { deps, viewer } = ctx;
  const userId = input.userId ?? viewer.user.id;
  await requireKeyPermission(
    deps,
    viewer,
    userId,
    await mayIssueKeysFor(deps, viewer, userId),
    ISSUE_FOR_SERVICE_ACCOUNT,
    () =>
      new NotFoundError(
        'input.userId',
        `No service account with id "${userId}" in an entity you administer; people create their own keys.`,
      ),
  );
  const name = checkName(input.name, 'input.name');
  const owner = await findUser(deps, userId);
  const { key, secret } = newApiKey(userId, name);
  const apiKey = await deps.storage.users.issueApiKey(
    key,
    // The account may have joined another entity since the check above: the store checks again.
    userId === viewer.user.id ? null : { administeredBy: viewer.user.id },
    keyAudit('apiKey.created', viewer.user.id, key, owner?.name),
    deps.clock.now(),
  );
  if (!apiKey) throw new PermissionDeniedError('ADMIN', ISSUE_FOR_SERVICE_ACCOUNT);
  return { apiKey, secret };
}

/**
 * Revokes a key: the viewer's own, or a service account's in an entity the viewer administers
 * (see {@link mayOverseeKeysOf}). It stops authenticating before this resolves, on every request
 * and open subscription of this process. Revoking twice is harmless. Throws NotFoundError for a
 * key the viewer cannot see, PermissionDeniedError for a fellow member's service-account key.
 */
export async function revokeApiKey(ctx: Context, id: string): Promise<ApiKey> {
  const { deps, viewer } = ctx;
  const key = await getApiKey(deps, id);
  const notFound = () => new NotFoundError('input.id', `No API key with id "${id}".`);
  if (!key) throw notFound();
  await requireKeyPermission(
    deps,
    viewer,
    key.userId,
    await mayOverseeKeysOf(deps, viewer, key.userId),
    'Only admins of an entity the service account belongs to may revoke its keys.',
    notFound,
  );
  if (key.revokedAt) return key;
  const owner = await findUser(deps, key.userId);
  const result = await deps.storage.users.revokeApiKey(
    id,
    keyAudit('apiKey.revoked', viewer.user.id, key, owner?.name),
    deps.clock.now(),
  );
  if (!result) throw notFound();
  await deps.access.changed({ type: 'apiKeyRevoked', apiKeyId: id });
  return result.key;
}

/** The user's API keys, revoked ones included, newest first. */
export function apiKeysOf(deps: Pick<AppDeps, 'storage'>, userId: string): StoredList<ApiKey> {
  return {
    keyOf: (key) => [key.createdAt.getTime(), key.id],
    keyTypes: ['number', 'string'],
    fetch: (request) => deps.storage.users.pageApiKeys(userId, request),
    count: () => deps.storage.users.countApiKeys(userId),
  };
}

/**
 * Whether the viewer's key still works and it still belongs to the entity. Long-lived
 * subscriptions check this on every message, so a revoked key or a removed member stops
 * receiving at once. Answers from the access cache, without a database query.
 */
export function stillReadable(ctx: Context, entityId: string): Promise<boolean> {
  return ctx.deps.access.stillReadable(ctx.viewer, entityId);
}
