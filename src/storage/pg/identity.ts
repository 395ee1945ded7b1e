import { and, asc, eq, gte, isNull, type SQL, sql } from 'drizzle-orm';
import type { AuditAction, AuditEntry } from '../audit.js';
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
import { countRows, keyset, type PgHandle, single, type Tx, unique } from './support.js';

const p = sql.placeholder;

/** Statements several stores of this file share, each run in the caller's transaction. */
function shared(h: PgHandle) {
  const statements = {
    insertUser: async (tx: Tx, user: NewUser) =>
      single(
        await h
          .prepared(
            'users.insert',
            (x) =>
              x
                .insert(users)
                .values({ id: p('id'), name: p('name'), kind: p('kind') })
                .returning(),
            tx,
          )
          .execute({ ...user }),
        'INSERT INTO users',
      ),
    insertEntity: (tx: Tx, entity: NewEntity) =>
      unique('name', async () =>
        single(
          await h
            .prepared(
              'entities.insert',
              (x) =>
                x
                  .insert(entities)
                  .values({ id: p('id'), name: p('name') })
                  .returning(),
              tx,
            )
            .execute({ ...entity }),
          'INSERT INTO entities',
        ),
      ),
    insertMembership: (tx: Tx, membership: { entityId: string; userId: string; role: Role }) =>
      unique('member', async () =>
        single(
          await h
            .prepared(
              'memberships.insert',
              (x) =>
                x
                  .insert(memberships)
                  .values({ entityId: p('entityId'), userId: p('userId'), role: p('role') })
                  .returning(),
              tx,
            )
            .execute(membership),
          'INSERT INTO memberships',
        ),
      ),
    insertApiKey: (tx: Tx, key: NewApiKey) =>
      unique('hash', async () =>
        single(
          await h
            .prepared(
              'apiKeys.insert',
              (x) =>
                x
                  .insert(apiKeys)
                  .values({
                    id: p('id'),
                    userId: p('userId'),
                    name: p('name'),
                    prefix: p('prefix'),
                    hash: p('hash'),
                  })
                  .returning(),
              tx,
            )
            .execute({ ...key }),
          'INSERT INTO api_keys',
        ),
      ),
    membershipsOf: (userId: string, tx?: Tx): Promise<Membership[]> =>
      h
        .prepared(
          'memberships.ofUser',
          (x) =>
            x
              .select()
              .from(memberships)
              .where(eq(memberships.userId, p('userId')))
              .orderBy(asc(memberships.createdAt), asc(memberships.entityId)),
          tx,
        )
        .execute({ userId }),
    /**
     * Locks the rows of the entities `userId` belongs to, in one order (no deadlock between two
     * such calls), so their memberships cannot change until the transaction ends: every write
     * of an entity's memberships locks its entity row first.
     */
    lockEntitiesOf: async (tx: Tx, userId: string): Promise<void> => {
      await tx.execute(
        sql`SELECT id FROM entities WHERE id IN (SELECT entity_id FROM memberships WHERE user_id = ${userId}) ORDER BY id FOR UPDATE`,
      );
    },
    /** Locks an entity's row: the writers of its memberships take turns (see EntityStore). */
    lockEntity: async (tx: Tx, entityId: string): Promise<void> => {
      await tx.execute(sql`SELECT id FROM entities WHERE id = ${entityId} FOR UPDATE`);
    },
    /**
     * Whether `admin` is ADMIN of every entity `userId` belongs to, which are at least one; locks
     * those entities first, so the answer holds until the transaction ends.
     */
    administersEveryEntity: async (tx: Tx, userId: string, admin: string): Promise<boolean> => {
      await statements.lockEntitiesOf(tx, userId);
      const result = await tx.execute<{ ok: boolean }>(
        sql`SELECT EXISTS (SELECT 1 FROM memberships WHERE user_id = ${userId})
              AND NOT EXISTS (
                SELECT 1 FROM memberships m WHERE m.user_id = ${userId} AND NOT EXISTS (
                  SELECT 1 FROM memberships a
                  WHERE a.entity_id = m.entity_id AND a.user_id = ${admin} AND a.role = 'ADMIN')) AS ok`,
      );
      return result.rows[0]?.ok === true;
    },
    /** Writes a key's audit entry in the log of every entity its owner belongs to, or in none. */
    auditKey: async (tx: Tx, userId: string, audit: KeyAudit, now: Date) => {
      const entityIds = (await statements.membershipsOf(userId, tx)).map((m) => m.entityId);
      for (const entityId of entityIds.length > 0 ? entityIds : [null]) {
        await insertAudit(h, tx, { ...audit, entityId }, now);
      }
    },
    hasUsers: async (tx?: Tx): Promise<boolean> => {
      const result = await (tx ?? h.db).execute<{ any: boolean }>(
        sql`SELECT EXISTS (SELECT 1 FROM users) AS any`,
      );
      return result.rows[0]?.any === true;
    },
  };
  return statements;
}

/**
 * Bootstraps take this transaction-scoped advisory lock first, so two first starts cannot both
 * find no account and both create one.
 */
const BOOTSTRAP_LOCK = sql`SELECT pg_advisory_xact_lock(8386110372146474240)`;

export function createUserStore(h: PgHandle): UserStore {
  const s = shared(h);
  const findApiKey = async (id: string, tx?: Tx) =>
    (
      await h
        .prepared(
          'apiKeys.find',
          (x) =>
            x
              .select()
              .from(apiKeys)
              .where(eq(apiKeys.id, p('id'))),
          tx,
        )
        .execute({ id })
    )[0] ?? null;
  return {
    async authenticateKey(hash) {
      const rows = await h
        .prepared('users.authenticateKey', (x) =>
          x
            .select({ key: apiKeys, user: users })
            .from(apiKeys)
            .innerJoin(users, eq(users.id, apiKeys.userId))
            .where(and(eq(apiKeys.hash, p('hash')), isNull(apiKeys.revokedAt))),
        )
        .execute({ hash });
      return rows[0] ?? null;
    },
    async recordKeyUse(keyId, at) {
      await h
        .prepared('users.recordKeyUse', (x) =>
          x
            .update(apiKeys)
            .set({ lastUsedAt: sql`${p('at')}` })
            .where(eq(apiKeys.id, p('id'))),
        )
        .execute({ id: keyId, at: at.getTime() });
    },
    async hasUsers() {
      return s.hasUsers();
    },
    async findUser(id) {
      const rows = await h
        .prepared('users.find', (x) =>
          x
            .select()
            .from(users)
            .where(eq(users.id, p('id'))),
        )
        .execute({ id });
      return rows[0] ?? null;
    },
    async findApiKey(id) {
      return findApiKey(id);
    },
    async createUser(input, audit, now) {
      return h.transaction(async (tx) => {
        const user = await s.insertUser(tx, input.user);
        const membership = await s.insertMembership(tx, {
          ...input.membership,
          userId: user.id,
        });
        const key = await s.insertApiKey(tx, input.key);
        for (const entry of audit) await insertAudit(h, tx, entry, now);
        return { user, membership, key };
      });
    },
    async bootstrap(input, audit, now) {
      return h.transaction(async (tx) => {
        await tx.execute(BOOTSTRAP_LOCK);
        if (await s.hasUsers(tx)) return null;
        const user = await s.insertUser(tx, input.user);
        const entity = await s.insertEntity(tx, input.entity);
        await s.insertMembership(tx, { entityId: entity.id, userId: user.id, role: 'ADMIN' });
        const key = await s.insertApiKey(tx, input.key);
        for (const entry of audit) await insertAudit(h, tx, entry, now);
        return { user, entity, key };
      });
    },
    async issueApiKey(key, condition, audit, now) {
      return h.transaction(async (tx) => {
        if (
          condition &&
          !(await s.administersEveryEntity(tx, key.userId, condition.administeredBy))
        ) {
          return null;
        }
        const stored = await s.insertApiKey(tx, key);
        await s.auditKey(tx, key.userId, audit, now);
        return stored;
      });
    },
    async revokeApiKey(id, audit, now) {
      return h.transaction(async (tx) => {
        const [revoked] = await h
          .prepared(
            'apiKeys.revoke',
            (x) =>
              x
                .update(apiKeys)
                .set({ revokedAt: sql`${p('at')}` })
                .where(and(eq(apiKeys.id, p('id')), isNull(apiKeys.revokedAt)))
                .returning(),
            tx,
          )
          .execute({ id, at: now.getTime() });
        if (revoked) {
          await s.auditKey(tx, revoked.userId, audit, now);
          return { key: revoked, revoked: true };
        }
        const key = await findApiKey(id, tx);
        return key ? { key, revoked: false } : null;
      });
    },
    async pageApiKeys(userId, request) {
      const q = keyset({ direction: 'desc', columns: [apiKeys.createdAt, apiKeys.id] }, request);
      return h
        .prepared(`apiKeys.page:${q.shape}`, (x) =>
          x
            .select()
            .from(apiKeys)
            .where(and(eq(apiKeys.userId, p('userId')), q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit')),
        )
        .execute({ ...q.params, userId });
    },
    async countApiKeys(userId) {
      return countRows(h, 'apiKeys.count', apiKeys, () => eq(apiKeys.userId, p('userId')), {
        userId,
      });
    },
  };
}

/** Whether the entity has another admin, for the conditional writes that must keep one. */
const OTHER_ADMIN = sql`(SELECT count(*) FROM ${memberships} AS admins
  WHERE admins.entity_id = ${p('entityId')} AND admins.role = 'ADMIN') > 1`;

export function createEntityStore(h: PgHandle): EntityStore {
  const s = shared(h);
  const findMembership = async (entityId: string, userId: string, tx?: Tx) =>
    (
      await h
        .prepared(
          'memberships.find',
          (x) =>
            x
              .select()
              .from(memberships)
              .where(
                and(eq(memberships.entityId, p('entityId')), eq(memberships.userId, p('userId'))),
              ),
          tx,
        )
        .execute({ entityId, userId })
    )[0] ?? null;
  /** Why a conditional write changed nothing: no such member, another role, or the last admin. */
  const diagnose = async (
    tx: Tx,
    entityId: string,
    userId: string,
    expected: Role,
  ): Promise<MembershipChange> => {
    const current = await findMembership(entityId, userId, tx);
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
      const rows = await h
        .prepared('entities.find', (x) =>
          x
            .select()
            .from(entities)
            .where(eq(entities.id, p('id'))),
        )
        .execute({ id });
      return rows[0] ?? null;
    },
    async findEntityByName(name) {
      const rows = await h
        .prepared('entities.findByName', (x) =>
          x
            .select()
            .from(entities)
            .where(eq(entities.name, p('name'))),
        )
        .execute({ name });
      return rows[0] ?? null;
    },
    async createEntity(entity, adminUserId, audit, now) {
      return h.transaction(async (tx) => {
        const stored = await s.insertEntity(tx, entity);
        await s.insertMembership(tx, { entityId: stored.id, userId: adminUserId, role: 'ADMIN' });
        for (const entry of audit) await insertAudit(h, tx, entry, now);
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
      return h.transaction(async (tx) => {
        await s.lockEntity(tx, membership.entityId);
        if (
          condition &&
          !(await s.administersEveryEntity(tx, membership.userId, condition.administeredBy))
        ) {
          return null;
        }
        const stored = await s.insertMembership(tx, membership);
        await insertAudit(h, tx, audit, now);
        return stored;
      });
    },
    async changeRole(entityId, userId, roles, audit, now) {
      return h.transaction(async (tx) => {
        // The admin count below must not change before this commits: writers of the entity's
        // memberships take turns on its row (READ COMMITTED alone would let two demotions of
        // the two last admins each see the other one).
        await s.lockEntity(tx, entityId);
        const demotesAdmin = roles.from === 'ADMIN' && roles.to !== 'ADMIN';
        const [changed] = await h
          .prepared(
            `memberships.changeRole:${demotesAdmin ? 'demote' : 'plain'}`,
            (x) =>
              x
                .update(memberships)
                .set({ role: sql`${p('to')}` })
                .where(demotesAdmin ? and(memberOf, OTHER_ADMIN) : memberOf)
                .returning(),
            tx,
          )
          .execute({ entityId, userId, ...roles });
        if (!changed) return diagnose(tx, entityId, userId, roles.from);
        await insertAudit(h, tx, audit, now);
        return { outcome: 'done', membership: changed };
      });
    },
    async removeMember(entityId, userId, role, audit, now) {
      return h.transaction(async (tx) => {
        await s.lockEntity(tx, entityId);
        const admin = role === 'ADMIN';
        const [removed] = await h
          .prepared(
            `memberships.remove:${admin ? 'admin' : 'plain'}`,
            (x) =>
              x
                .delete(memberships)
                .where(admin ? and(memberOf, OTHER_ADMIN) : memberOf)
                .returning(),
            tx,
          )
          .execute({ entityId, userId, from: role });
        if (!removed) return diagnose(tx, entityId, userId, role);
        await insertAudit(h, tx, audit, now);
        return { outcome: 'done', membership: removed };
      });
    },
    async pageMembers(entityId, request) {
      const q = keyset(
        { direction: 'asc', columns: [memberships.createdAt, memberships.userId] },
        request,
      );
      return h
        .prepared(`memberships.page:${q.shape}`, (x) =>
          x
            .select({ user: users, membership: memberships })
            .from(memberships)
            .innerJoin(users, eq(users.id, memberships.userId))
            .where(and(eq(memberships.entityId, p('entityId')), q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit')),
        )
        .execute({ ...q.params, entityId });
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

export function createContainerStore(h: PgHandle): ContainerStore {
  return {
    async createContainer(kind, input) {
      const table = tableOf(kind);
      return unique('name', async () =>
        single(
          await h
            .prepared(`containers.insert:${kind}`, (x) =>
              x
                .insert(table)
                .values({
                  id: p('id'),
                  entityId: p('entityId'),
                  name: p('name'),
                  description: p('description'),
                })
                .returning(),
            )
            .execute(input),
          `INSERT INTO ${kind}`,
        ),
      ) as Promise<Container>;
    },
    async findContainer(kind, id) {
      const table = tableOf(kind);
      const rows = await h
        .prepared(`containers.find:${kind}`, (x) =>
          x
            .select()
            .from(table)
            .where(eq(table.id, p('id'))),
        )
        .execute({ id });
      return rows[0] ?? null;
    },
    async findContainerByName(kind, entityId, name) {
      const table = tableOf(kind);
      const rows = await h
        .prepared(`containers.findByName:${kind}`, (x) =>
          x
            .select()
            .from(table)
            .where(and(eq(table.entityId, p('entityId')), eq(table.name, p('name')))),
        )
        .execute({ entityId, name });
      return rows[0] ?? null;
    },
    async pageContainers(kind, entityId, request) {
      const table = tableOf(kind);
      const q = keyset({ direction: 'asc', columns: [table.name] }, request);
      return h
        .prepared(`containers.page:${kind}:${q.shape}`, (x) =>
          x
            .select()
            .from(table)
            .where(and(eq(table.entityId, p('entityId')), q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit')),
        )
        .execute({ ...q.params, entityId });
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
      return unique('name', async () =>
        single(
          await h
            .prepared(`collections.insert:${input.kind}`, (x) =>
              x
                .insert(artifactCollections)
                .values({
                  id: p('id'),
                  entityId: p('entityId'),
                  projectId: input.kind === 'project' ? p('ownerId') : sql`NULL`,
                  registryId: input.kind === 'registry' ? p('ownerId') : sql`NULL`,
                  name: p('name'),
                  artifactType: p('artifactType'),
                })
                .returning(),
            )
            .execute({
              id: input.id,
              entityId: input.entityId,
              ownerId: input.ownerId,
              name: input.name,
              artifactType: input.artifactType,
            }),
          'INSERT INTO artifact_collections',
        ),
      ) as Promise<ArtifactCollection>;
    },
    async findCollection(id) {
      const rows = await h
        .prepared('collections.find', (x) =>
          x
            .select()
            .from(artifactCollections)
            .where(eq(artifactCollections.id, p('id'))),
        )
        .execute({ id });
      return rows[0] ?? null;
    },
    async findCollectionByName(kind, ownerId, name) {
      const rows = await h
        .prepared(`collections.findByName:${kind}`, (x) =>
          x
            .select()
            .from(artifactCollections)
            .where(
              and(eq(ownerColumn(kind), p('ownerId')), eq(artifactCollections.name, p('name'))),
            ),
        )
        .execute({ ownerId, name });
      return rows[0] ?? null;
    },
    async pageCollections(kind, ownerId, request) {
      const q = keyset({ direction: 'asc', columns: [artifactCollections.name] }, request);
      return h
        .prepared(`collections.page:${kind}:${q.shape}`, (x) =>
          x
            .select()
            .from(artifactCollections)
            .where(and(eq(ownerColumn(kind), p('ownerId')), q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit')),
        )
        .execute({ ...q.params, ownerId });
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

export function createAuditStore(h: PgHandle): AuditStore {
  return {
    async pageAuditEntries(entityId, filter, request: PageRequest) {
      const conditions = auditConditions(filter);
      const q = keyset({ direction: 'desc', columns: [auditLog.createdAt, auditLog.seq] }, request);
      const rows = await h
        .prepared(`audit.page:${conditions.shape}:${q.shape}`, (x) =>
          x
            .select()
            .from(auditLog)
            .where(and(conditions.where, q.where))
            .orderBy(...q.orderBy)
            .limit(p('limit')),
        )
        .execute({ ...q.params, ...auditParams(entityId, filter) });
      return rows.map(
        ({ seq, ...row }): AuditEntry => ({
          ...row,
          sequence: Number(seq),
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
