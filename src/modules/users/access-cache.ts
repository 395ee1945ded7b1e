import type { Clock } from '../../clock.js';
import type { Logger } from '../../logger.js';
import type { Role, User } from '../../storage/identity.js';
import type { Storage } from '../../storage/storage.js';
import { hashApiKey, type Viewer } from './service.js';

/**
 * A change that makes cached access stale. Plain JSON, so a shared bus (src/bus) carries it
 * between instances unchanged.
 */
export type AccessChange =
  /** The key was revoked: it authenticates nothing from now on. */
  | { type: 'apiKeyRevoked'; apiKeyId: string }
  /**
   * The account or its memberships changed (added to or removed from an entity, a new role, an
   * entity created with it as admin): its roles are read again.
   */
  | { type: 'userChanged'; userId: string };

/**
 * Who may do what, held in memory: the keys that have authenticated and the roles of their
 * accounts. Every request authenticates, and every message of a subscription re-checks access,
 * so both answer without a database query once a key has been seen.
 *
 * Freshness: an unknown key is looked up in the database (so a key issued by another process,
 * such as `tripline admin-key`, works at once); a known one is answered from memory until a
 * change invalidates it. In this process the services report every change through
 * {@link AccessCache.changed} before their mutation answers, so the very next request and the
 * next message of an open subscription see it. Changes made by another instance reach this one
 * only through {@link AccessCache.apply}: the shared bus (`SharedBus.shareAccess`, src/bus)
 * connects {@link AccessCache.onChange} of each instance to {@link AccessCache.apply} of the
 * others, and calls {@link AccessCache.revalidate} when changes may have been missed.
 *
 * Memory: one entry per key that has authenticated since start and per account behind one, so
 * it is bounded by the keys in the database; revoked keys are dropped.
 */
export interface AccessCache {
  /**
   * The viewer behind an API key, or null for an unknown or revoked one; never throws for bad
   * input. Records when the key was last used, at most once a minute per key. Answers at once,
   * without a promise, for a key in memory whose last use needs no write: every request
   * authenticates, and a promise costs each one a turn of the microtask queue.
   */
  authenticate(key: string): Viewer | Promise<Viewer | null>;
  /**
   * Whether the viewer's key still works and its account still belongs to the entity: what a
   * long-lived subscription asks before each message. Answers from memory.
   */
  stillReadable(viewer: Viewer, entityId: string): Promise<boolean>;
  /**
   * Reports a change this process committed: applies it here, then calls every
   * {@link onChange} listener with it. Resolves once requests see the change.
   */
  changed(change: AccessChange): Promise<void>;
  /**
   * Applies a change committed by another instance (from a shared bus). Listeners are not
   * called, so a change is not sent back where it came from. Resolves once requests see it.
   */
  apply(change: AccessChange): Promise<void>;
  /**
   * Calls `listener` with every change reported through {@link changed}, after it is applied
   * here: the hook a shared bus publishes from. Returns a function that removes the listener.
   * A listener that throws is logged and does not stop the others.
   */
  onChange(listener: (change: AccessChange) => void): () => void;
  /**
   * Reads every key and account it holds again: revoked keys are dropped, roles and accounts
   * brought up to date, as a flush would, except that open subscriptions of keys that still
   * work keep going. For when changes may have been missed (a shared bus reconnected).
   * Requests are answered meanwhile; resolves once they see the database's state.
   */
  revalidate(): Promise<void>;
}

/** How often `lastUsedAt` may be written per key: every request would serialise on the write lock. */
export const LAST_USED_RESOLUTION_MS = 60_000;

interface CachedKey {
  id: string;
  userId: string;
  hash: string;
  lastUsedAt: Date | null;
}

interface CachedAccount {
  user: User;
  /** Updated in place, so every viewer of the account sees a change at once. */
  roles: Map<string, Role>;
  /** Counts reloads; a reload that finishes after a later one started is dropped. */
  generation: number;
}

export function createAccessCache(deps: {
  storage: Storage;
  clock: Clock;
  logger?: Logger;
}): AccessCache {
  const { storage, clock, logger } = deps;
  const keysByHash = new Map<string, CachedKey>();
  const keysById = new Map<string, CachedKey>();
  const accounts = new Map<string, CachedAccount>();
  const listeners = new Set<(change: AccessChange) => void>();
  // Counts applied changes. A load that saw the database before a change must not be cached
  // after it: it would bring back a revoked key or an old role.
  let epoch = 0;

  const rolesOf = async (userId: string) =>
    new Map((await storage.entities.membershipsOf(userId)).map((m) => [m.entityId, m.role]));

  /** Reads the key behind `hash` and its account's roles, and caches them; null if unknown. */
  async function load(hash: string): Promise<CachedKey | null> {
    for (;;) {
      const started = epoch;
      const found = await storage.users.authenticateKey(hash);
      if (!found) return null;
      const roles = accounts.has(found.user.id) ? null : await rolesOf(found.user.id);
      if (epoch !== started) continue;
      // Another request may have cached the same key meanwhile; keep the first entries, which
      // viewers may already hold.
      const cached = keysByHash.get(hash);
      if (cached) return cached;
      const key: CachedKey = {
        id: found.key.id,
        userId: found.user.id,
        hash,
        lastUsedAt: found.key.lastUsedAt,
      };
      keysByHash.set(hash, key);
      keysById.set(key.id, key);
      if (roles && !accounts.has(key.userId)) {
        accounts.set(key.userId, { user: found.user, roles, generation: 0 });
      }
      return key;
    }
  }

  /** Whether a use of the key at `now` is to be recorded: the last one was a minute ago or more. */
  const useToRecord = (key: CachedKey, now: Date): boolean =>
    !key.lastUsedAt || now.getTime() - key.lastUsedAt.getTime() >= LAST_USED_RESOLUTION_MS;

  const viewerOf = (key: CachedKey, account: CachedAccount): Viewer => ({
    user: account.user,
    apiKeyId: key.id,
    roles: account.roles,
  });

  function dropKey(id: string): void {
    const key = keysById.get(id);
    if (!key) return;
    keysById.delete(id);
    keysByHash.delete(key.hash);
  }

  async function reloadAccount(userId: string): Promise<void> {
    const account = accounts.get(userId);
    if (!account) return;
    const generation = ++account.generation;
    const [user, roles] = await Promise.all([storage.users.findUser(userId), rolesOf(userId)]);
    if (account.generation !== generation) return;
    if (!user) {
      accounts.delete(userId);
      for (const key of [...keysById.values()]) if (key.userId === userId) dropKey(key.id);
      account.roles.clear();
      return;
    }
    account.user = user;
    account.roles.clear();
    for (const [entityId, role] of roles) account.roles.set(entityId, role);
  }

  async function apply(change: AccessChange): Promise<void> {
    epoch += 1;
    switch (change.type) {
      case 'apiKeyRevoked':
        dropKey(change.apiKeyId);
        return;
      case 'userChanged':
        await reloadAccount(change.userId);
        return;
      default: {
        const unknown: never = change;
        throw new Error(`Unknown access change ${JSON.stringify(unknown)}`);
      }
    }
  }

  return {
    authenticate(secret) {
      const hash = hashApiKey(secret);
      const known = keysByHash.get(hash);
      const account = known && accounts.get(known.userId);
      const now = clock.now();
      if (known && account && !useToRecord(known, now)) return viewerOf(known, account);
      return (async () => {
        const key = known ?? (await load(hash));
        const owner = key && accounts.get(key.userId);
        if (!key || !owner) return null;
        if (useToRecord(key, now)) {
          // Set first, so concurrent requests with this key do not write it again.
          key.lastUsedAt = now;
          await storage.users.recordKeyUse(key.id, now);
        }
        return viewerOf(key, owner);
      })();
    },
    async stillReadable(viewer, entityId) {
      const key = keysById.get(viewer.apiKeyId);
      return key !== undefined && accounts.get(key.userId)?.roles.has(entityId) === true;
    },
    async changed(change) {
      await apply(change);
      for (const listener of listeners) {
        try {
          listener(change);
        } catch (error) {
          logger?.error({ err: error, change }, 'an access change listener failed');
        }
      }
    },
    apply,
    async revalidate() {
      epoch += 1;
      await Promise.all([
        ...[...keysById.values()].map(async (key) => {
          const stored = await storage.users.findApiKey(key.id);
          // Revocation is final, so a key dropped here is never cached again meanwhile.
          if (!stored || stored.revokedAt) dropKey(key.id);
        }),
        ...[...accounts.keys()].map(reloadAccount),
      ]);
    },
    onChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}
