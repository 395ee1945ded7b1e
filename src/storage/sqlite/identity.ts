import { and, asc, eq, gte, isNull, type SQL, sql } from 'drizzle-orm';
import type { AuditAction, AuditEntry } from '../audit.js';
import { DuplicateError } from '../errors.js';
import type {
  ArtifactCollection,
  AuditFilter,
  AuditStore,
  Container,
  ContainerKind,
  ContainerStore,
  EntityStore,
  KeyAudit,
  Membership,
  MembershipChange,
  NewApiKey,
  NewEntity,
  NewUser,
  Role,
  UserStore,
} from '../identity.js';
import type { PageRequest } from '../paging.js';
import { insertAudit } from './audit.js';
import {
  apiKeys,
  artifactCollections,
  auditLog,
  entities,
  memberships,
  projects,
  registries,
  users,
} from './schema.js';
import { countRows, keyset, type SqliteHandle, uniqueViolation } from './support.js';

const p = sql.placeholder;
// drizzle types a placeholder in `.set()` as no column value; wrapped in `sql` it passes through
// as it is, so those statements take times as epoch milliseconds.

/** Runs `write`; a violated unique constraint becomes a DuplicateError naming `what`. */
function unique<T>(what: string, write: () => T): T {
  try {
    return write();
  } catch (error) {
    if (uniqueViolation(error) !== null) throw new DuplicateError(what);
    throw error;
  }
}

/** Statements several stores of this file share; each prepared once per database. */
function shared(h: SqliteHandle) {
  const statements = {
    insertUser: (user: NewUser) =>
      h
        .prepared('users.insert', () =>
          h.db
            .insert(users)
            .values({ id: p('id'), name: p('name'), kind: p('kind') })
            .returning()
            .prepare(),
        )
        .get({ ...user })!,
    insertEntity: (entity: NewEntity) =>
      unique('name', () =>
        h
          .prepared('entities.insert', () =>
            h.db
              .insert(entities)
              .values({ id: p('id'), name: p('name') })
              .returning()
              .prepare(),
          )
          .get({ ...entity }),
      )!,
    insertMembership: (membership: { entityId: string; userId: string; role: Role }) =>
      unique('member', () =>
        h
          .prepared('memberships.insert', () =>
            h.db
              .insert(memberships)
              .values({ entityId: p('entityId'), userId: p('userId'), role: p('role') })
              .returning()
              .prepare(),
          )
          .get(membership),
      )!,
    insertApiKey: (key: NewApiKey) =>
      unique('hash', () =>
        h
          .prepared('apiKeys.insert', () =>
            h.db
              .insert(apiKeys)
              .values({
                id: p('id'),
                userId: p('userId'),
                name: p('name'),
                prefix: p('prefix'),
                hash: p('hash'),
              })
              .returning()
              .prepare(),
          )
          .get({ ...key }),
      )!,
    membershipsOf: (userId: string): Membership[] =>
      h
        .prepared('memberships.ofUser', () =>
          h.db
            .select()
            .from(memberships)
            .where(eq(memberships.userId, p('userId')))
            .orderBy(asc(memberships.createdAt), asc(memberships.entityId))
            .prepare(),
        )
        .all({ userId }),
    /** Whether `admin` is ADMIN of every entity `userId` belongs to, which are at least one. */
    administersEveryEntity: (userId: string, admin: string): boolean =>
      h
        .prepared('memberships.administersEveryEntity', () =>
          h.sqlite
            .prepare(
              `SELECT EXISTS (SELECT 1 FROM memberships WHERE user_id = @userId)
                 AND NOT EXISTS (
                   SELECT 1 FROM memberships m WHERE m.user_id = @userId AND NOT EXISTS (
                     SELECT 1 FROM memberships a
                     WHERE a.entity_id = m.entity_id AND a.user_id = @admin AND a.role = 'ADMIN'))`,
            )
            .pluck(),
        )
        .get({ userId, admin }) === 1,
    /** Writes a key's audit entry in the log of every entity its owner belongs to, or in none. */
    auditKey: (userId: string, audit: KeyAudit, now: Date) => {
      const entityIds = statements.membershipsOf(userId).map((m) => m.entityId);
      for (const entityId of entityIds.length > 0 ? entityIds : [null]) {
        insertAudit(h, { ...audit, entityId }, now);
      }
    },
    hasUsers: (): boolean =>
      h
        .prepared('users.any', () =>
          h.sqlite.prepare('SELECT EXISTS (SELECT 1 FROM users)').pluck(),
        )
        .get() === 1,
  };
  return statements;
}

export function createUserStore(h: SqliteHandle): UserStore {
  const s = shared(h);
  return {
    async authenticateKey(hash) {
      const row = h
        .prepared('users.authenticateKey', () =>
          h.db
            .select({ key: apiKeys, user: users })
            .from(apiKeys)
            .innerJoin(users, eq(users.id, apiKeys.userId))
            .where(and(eq(apiKeys.hash, p('hash')), isNull(apiKeys.revokedAt)))
            .prepare(),
        )
        .get({ hash });
      return row ?? null;
    },
    async recordKeyUse(keyId, at) {
      h.prepared('users.recordKeyUse', () =>
        h.db
          .update(apiKeys)
          .set({ lastUsedAt: sql`${p('at')}` })
          .where(eq(apiKeys.id, p('id')))
          .prepare(),
      ).run({ id: keyId, at: at.getTime() });
    },
    async hasUsers() {
      return s.hasUsers();
    },
    async findUser(id) {
      return (
        h
          .prepared('users.find', () =>
            h.db
              .select()
              .from(users)
              .where(eq(users.id, p('id')))
              .prepare(),
          )
          .get({ id }) ?? null
      );
    },
    async findApiKey(id) {
      return (
        h
          .prepared('apiKeys.find', () =>
            h.db
              .select()
              .from(apiKeys)
              .where(eq(apiKeys.id, p('id')))
              .prepare(),
          )
          .get({ id }) ?? null
      );
    },
    async createUser(input, audit, now) {
      return h.transaction(() => {
        const user = s.insertUser(input.user);
        const membership = s.insertMembership({ ...input.membership, userId: user.id });
        const key = s.insertApiKey(input.key);
        for (const entry of audit) insertAudit(h, entry, now);
        return { user, membership, key };
      });
    },
    async bootstrap(input, audit, now) {
      return h.transaction(() => {
        if (s.hasUsers()) return null;
        const user = s.insertUser(input.user);
        const entity = s.insertEntity(input.entity);
        s.insertMembership({ entityId: entity.id, userId: user.id, role: 'ADMIN' });
        const key = s.insertApiKey(input.key);
        for (const entry of audit) insertAudit(h, entry, now);
        return { user, entity, key };
      });
    },
    async issueApiKey(key, condition, audit, now) {
      return h.transaction(() => {
        if (condition && !s.administersEveryEntity(key.userId, condition.administeredBy)) {
          return null;
        }
        const stored = s.insertApiKey(key);
        s.auditKey(key.userId, audit, now);
        return stored;
      });
    },
    async revokeApiKey(id, audit, now) {
      return h.transaction(() => {
        const revoked = h
          .prepared('apiKeys.revoke', () =>
            h.db
              .update(apiKeys)
              .set({ revokedAt: sql`${p('at')}` })
              .where(and(eq(apiKeys.id, p('id')), isNull(apiKeys.revokedAt)))
              .returning()
              .prepare(),
          )
          .get({ id, at: now.getTime() });
        if (revoked) {
          s.auditKey(revoked.userId, audit, now);
          return { key: revoked, revoked: true };
        }
        const key = h
          .prepared('apiKeys.find', () =>
            h.db
              .select()
              .from(apiKeys)
              .where(eq(apiKeys.id, p('id')))
              .prepare(),
          )
          .get({ id });
        return key ? { key, revoked: false } : null;
      });
    },
    async pageApiKeys(userId, request) {
      const q = keyset({ direction: 'desc', columns: [apiKeys.createdAt, apiKeys.id] }, request);
      return h
        .prepared(`apiKeys.page:${q.shape}`, () =>
          h.db
            .select()
            .from(apiKeys)
            .where(and(eq(apiKeys.userId, p('userId')), q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit'))
            .prepare(),
        )
        .all({ ...q.params, userId });
    },
    async countApiKeys(userId) {
      return countRows(h, 'apiKeys.count', apiKeys, () => eq(apiKeys.userId, p('userId')), {
        userId,
      });
    },
  };
}

/** Counts the entity's admins, for the conditional writes that must keep one. */
const OTHER_ADMIN = sql`(SELECT count(*) FROM ${memberships} AS admins
  WHERE admins.entity_id = ${p('entityId')} AND admins.role = 'ADMIN') > 1`;

export function createEntityStore(h: SqliteHandle): EntityStore {
  const s = shared(h);
  const findMembership = (entityId: string, userId: string) =>
    h
      .prepared('memberships.find', () =>
        h.db
          .select()
          .from(memberships)
          .where(and(eq(memberships.entityId, p('entityId')), eq(memberships.userId, p('userId'))))
          .prepare(),
      )
      .get({ entityId, userId }) ?? null;
  /** Why a conditional write changed nothing: no such member, another role, or the last admin. */
  const diagnose = (entityId: string, userId: string, expected: Role): MembershipChange => {
    const current = findMembership(entityId, userId);
    if (!current) return { outcome: 'notMember' };
    if (current.role !== expected) return { outcome: 'stale', membership: current };
    return { outcome: 'lastAdmin' };
  };
  const memberOf = and(
    eq(memberships.entityId, p('entityId')),
    eq(memberships.userId, p('userId')),
    eq(memberships.role, p('from')),
  );
  return {
    async findEntity(id) {
      return (
        h
          .prepared('entities.find', () =>
            h.db
              .select()
              .from(entities)
              .where(eq(entities.id, p('id')))
              .prepare(),
          )
          .get({ id }) ?? null
      );
    },
    async findEntityByName(name) {
      return (
        h
          .prepared('entities.findByName', () =>
            h.db
              .select()
              .from(entities)
              .where(eq(entities.name, p('name')))
              .prepare(),
          )
          .get({ name }) ?? null
      );
    },
    async createEntity(entity, adminUserId, audit, now) {
      return h.transaction(() => {
        const stored = s.insertEntity(entity);
        s.insertMembership({ entityId: stored.id, userId: adminUserId, role: 'ADMIN' });
        for (const entry of audit) insertAudit(h, entry, now);
        return stored;
      });
    },
    async findMembership(entityId, userId) {
      return findMembership(entityId, userId);
    },
    async membershipsOf(userId) {
      return s.membershipsOf(userId);
    },
    async addMember(membership, condition, audit, now) {
      return h.transaction(() => {
        if (condition && !s.administersEveryEntity(membership.userId, condition.administeredBy)) {
          return null;
        }
        const stored = s.insertMembership(membership);
        insertAudit(h, audit, now);
        return stored;
      });
    },
    async changeRole(entityId, userId, roles, audit, now) {
      return h.transaction(() => {
        const demotesAdmin = roles.from === 'ADMIN' && roles.to !== 'ADMIN';
        const changed = h
          .prepared(`memberships.changeRole:${demotesAdmin ? 'demote' : 'plain'}`, () =>
            h.db
              .update(memberships)
              .set({ role: sql`${p('to')}` })
              .where(demotesAdmin ? and(memberOf, OTHER_ADMIN) : memberOf)
              .returning()
              .prepare(),
          )
          .get({ entityId, userId, ...roles });
        if (!changed) return diagnose(entityId, userId, roles.from);
        insertAudit(h, audit, now);
        return { outcome: 'done', membership: changed };
      });
    },
    async removeMember(entityId, userId, role, audit, now) {
      return h.transaction(() => {
        const admin = role === 'ADMIN';
        const removed = h
          .prepared(`memberships.remove:${admin ? 'admin' : 'plain'}`, () =>
            h.db
              .delete(memberships)
              .where(admin ? and(memberOf, OTHER_ADMIN) : memberOf)
              .returning()
              .prepare(),
          )
          .get({ entityId, userId, from: role });
        if (!removed) return diagnose(entityId, userId, role);
        insertAudit(h, audit, now);
        return { outcome: 'done', membership: removed };
      });
    },
    async pageMembers(entityId, request) {
      const q = keyset(
        { direction: 'asc', columns: [memberships.createdAt, memberships.userId] },
        request,
      );
      return h
        .prepared(`memberships.page:${q.shape}`, () =>
          h.db
            .select({ user: users, membership: memberships })
            .from(memberships)
            .innerJoin(users, eq(users.id, memberships.userId))
            .where(and(eq(memberships.entityId, p('entityId')), q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit'))
            .prepare(),
        )
        .all({ ...q.params, entityId });
    },
    async countMembers(entityId) {
      return countRows(
        h,
        'memberships.count',
        memberships,
        () => eq(memberships.entityId, p('entityId')),
        { entityId },
      );
    },
  };
}

/**
 * Projects and registries share their columns; `kind` says which table a statement is about.
 * The cast only forgets the table's name, which no statement here depends on.
 */
const tableOf = (kind: ContainerKind): typeof projects =>
  kind === 'project' ? projects : (registries as unknown as typeof projects);

const ownerColumn = (kind: ContainerKind) =>
  kind === 'project' ? artifactCollections.projectId : artifactCollections.registryId;

export function createContainerStore(h: SqliteHandle): ContainerStore {
  return {
    async createContainer(kind, input) {
      const table = tableOf(kind);
      return unique('name', () =>
        h
          .prepared(`containers.insert:${kind}`, () =>
            h.db
              .insert(table)
              .values({
                id: p('id'),
                entityId: p('entityId'),
                name: p('name'),
                description: p('description'),
              })
              .returning()
              .prepare(),
          )
          .get(input),
      ) as Container;
    },
    async findContainer(kind, id) {
      const table = tableOf(kind);
      return (
        h
          .prepared(`containers.find:${kind}`, () =>
            h.db
              .select()
              .from(table)
              .where(eq(table.id, p('id')))
              .prepare(),
          )
          .get({ id }) ?? null
      );
    },
    async findContainerByName(kind, entityId, name) {
      const table = tableOf(kind);
      return (
        h
          .prepared(`containers.findByName:${kind}`, () =>
            h.db
              .select()
              .from(table)
              .where(and(eq(table.entityId, p('entityId')), eq(table.name, p('name'))))
              .prepare(),
          )
          .get({ entityId, name }) ?? null
      );
    },
    async pageContainers(kind, entityId, request) {
      const table = tableOf(kind);
      const q = keyset({ direction: 'asc', columns: [table.name] }, request);
      return h
        .prepared(`containers.page:${kind}:${q.shape}`, () =>
          h.db
            .select()
            .from(table)
            .where(and(eq(table.entityId, p('entityId')), q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit'))
            .prepare(),
        )
        .all({ ...q.params, entityId });
    },
    async countContainers(kind, entityId) {
      const table = tableOf(kind);
      return countRows(
        h,
        `containers.count:${kind}`,
        table,
        () => eq(table.entityId, p('entityId')),
        {
          entityId,
        },
      );
    },
    async createCollection(input) {
      return unique('name', () =>
        h
          .prepared(`collections.insert:${input.kind}`, () =>
            h.db
              .insert(artifactCollections)
              .values({
                id: p('id'),
                entityId: p('entityId'),
                projectId: input.kind === 'project' ? p('ownerId') : sql`NULL`,
                registryId: input.kind === 'registry' ? p('ownerId') : sql`NULL`,
                name: p('name'),
                artifactType: p('artifactType'),
              })
              .returning()
              .prepare(),
          )
          .get({
            id: input.id,
            entityId: input.entityId,
            ownerId: input.ownerId,
            name: input.name,
            artifactType: input.artifactType,
          }),
      ) as ArtifactCollection;
    },
    async findCollection(id) {
      return (
        h
          .prepared('collections.find', () =>
            h.db
              .select()
              .from(artifactCollections)
              .where(eq(artifactCollections.id, p('id')))
              .prepare(),
          )
          .get({ id }) ?? null
      );
    },
    async findCollectionByName(kind, ownerId, name) {
      return (
        h
          .prepared(`collections.findByName:${kind}`, () =>
            h.db
              .select()
              .from(artifactCollections)
              .where(
                and(eq(ownerColumn(kind), p('ownerId')), eq(artifactCollections.name, p('name'))),
              )
              .prepare(),
          )
          .get({ ownerId, name }) ?? null
      );
    },
    async pageCollections(kind, ownerId, request) {
      const q = keyset({ direction: 'asc', columns: [artifactCollections.name] }, request);
      return h
        .prepared(`collections.page:${kind}:${q.shape}`, () =>
          h.db
            .select()
            .from(artifactCollections)
            .where(and(eq(ownerColumn(kind), p('ownerId')), q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit'))
            .prepare(),
        )
        .all({ ...q.params, ownerId });
    },
    async countCollections(kind, ownerId) {
      return countRows(
        h,
        `collections.count:${kind}`,
        artifactCollections,
        () => eq(ownerColumn(kind), p('ownerId')),
        { ownerId },
      );
    },
  };
}

// Ids are random, so the rowid (insertion order) orders entries of one instant.
const sequence = sql<number>`${auditLog}.rowid`;

/** The filter's conditions, with placeholders for the values it has, and a name for its shape. */
function auditConditions(filter: AuditFilter): { where: SQL | undefined; shape: string } {
  return {
    where: and(
      eq(auditLog.entityId, p('entityId')),
      filter.action == null ? undefined : eq(auditLog.action, p('action')),
      filter.targetType == null ? undefined : eq(auditLog.targetType, p('targetType')),
      filter.since == null ? undefined : gte(auditLog.createdAt, p('since')),
    ),
    shape: [filter.action, filter.targetType, filter.since]
      .map((v) => (v == null ? '-' : 'y'))
      .join(''),
  };
}

function auditParams(entityId: string, filter: AuditFilter): Record<string, string | number> {
  return {
    entityId,
    ...(filter.action == null ? {} : { action: filter.action }),
    ...(filter.targetType == null ? {} : { targetType: filter.targetType }),
    ...(filter.since == null ? {} : { since: filter.since.getTime() }),
  };
}

export function createAuditStore(h: SqliteHandle): AuditStore {
  return {
    async pageAuditEntries(entityId, filter, request: PageRequest) {
      const conditions = auditConditions(filter);
      const q = keyset({ direction: 'desc', columns: [auditLog.createdAt, sequence] }, request);
      const rows = h
        .prepared(`audit.page:${conditions.shape}:${q.shape}`, () =>
          h.db
            .select({
              id: auditLog.id,
              entityId: auditLog.entityId,
              actorId: auditLog.actorId,
              action: auditLog.action,
              targetType: auditLog.targetType,
              targetId: auditLog.targetId,
              details: auditLog.details,
              createdAt: auditLog.createdAt,
              sequence,
            })
            .from(auditLog)
            .where(and(conditions.where, q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit'))
            .prepare(),
        )
        .all({ ...q.params, ...auditParams(entityId, filter) });
      return rows.map(
        (row): AuditEntry => ({
          ...row,
          action: row.action as AuditAction,
          details: row.details ?? {},
        }),
      );
    },
    async countAuditEntries(entityId, filter) {
      const conditions = auditConditions(filter);
      return countRows(
        h,
        `audit.count:${conditions.shape}`,
        auditLog,
        () => conditions.where,
        auditParams(entityId, filter),
      );
    },
  };
}
