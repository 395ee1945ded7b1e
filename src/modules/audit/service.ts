import { and, count, eq, getTableColumns, gte, type SQL, sql } from 'drizzle-orm';
import type { Clock } from '../../clock.js';
import type { AppDeps } from '../../context.js';
import { newId } from '../../ids.js';
import type { Db } from '../../storage/sqlite/database.js';
import { auditLog } from '../../storage/sqlite/schema.js';
import type { Page, SortOrder } from '../connection.js';

/** A stored entry, with its position in the order of writing. */
export type AuditEntry = typeof auditLog.$inferSelect & { sequence: number };

/**
 * The stable codes of recorded changes, `<noun>.<past tense>`. Clients filter on them, so a code
 * once shipped is never renamed.
 */
export const AUDIT_ACTIONS = [
  'entity.created',
  'user.created',
  'member.added',
  'member.roleChanged',
  'member.removed',
  'apiKey.created',
  'apiKey.revoked',
  'secret.created',
  'secret.rotated',
  'secret.deleted',
  'action.created',
  'action.updated',
  'action.enabled',
  'action.disabled',
  'action.deleted',
  'automation.created',
  'automation.updated',
  'automation.deleted',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** One security-relevant change, as a service describes it. */
export interface AuditRecord {
  /** The entity whose admins may read the entry; null for a change that belongs to none. */
  entityId: string | null;
  /** The user who made the change; null when the server made it on its own. */
  actorId: string | null;
  action: AuditAction;
  /** GraphQL type name of what changed (`Secret`, `WebhookAction`, `User`…), so `targetId` can become a global ID. */
  targetType: string;
  /** Stored id of what changed. */
  targetId: string | null;
  /**
   * Small facts about the change: names, roles, which fields changed. Never a secret value, an
   * API key, a header value or anything else that could grant access.
   */
  details?: Record<string, unknown>;
}

/**
 * Where an entry is written: the app's database or the transaction of the change (both have
 * `insert`), and the clock that dates it.
 */
export interface AuditWriter {
  db: Pick<Db, 'insert'>;
  clock: Clock;
}

/**
 * Writes one audit entry, dated by `deps.clock`. Call it inside the transaction that makes the
 * change, so the entry exists exactly when the change commits: a refused or rolled-back change
 * leaves none.
 */
export function recordAudit(deps: AuditWriter, record: AuditRecord): void {
  deps.db
    .insert(auditLog)
    .values({
      id: newId(),
      entityId: record.entityId,
      actorId: record.actorId,
      action: record.action,
      targetType: record.targetType,
      targetId: record.targetId,
      details: record.details ?? {},
      createdAt: deps.clock.now(),
    })
    .run();
}

/** Optional conditions on {@link listAuditEntries}; each absent one matches everything. */
export interface AuditFilter {
  action?: string | null;
  targetType?: string | null;
  /** Only entries made at or after this time. */
  since?: Date | null;
}

function filterWhere(entityId: string, filter: AuditFilter): SQL | undefined {
  return and(
    eq(auditLog.entityId, entityId),
    filter.action == null ? undefined : eq(auditLog.action, filter.action),
    filter.targetType == null ? undefined : eq(auditLog.targetType, filter.targetType),
    filter.since == null ? undefined : gte(auditLog.createdAt, filter.since),
  );
}

// Ids are random, so the rowid (insertion order) orders entries of one instant.
const rowid = sql<number>`${auditLog}.rowid`;

/** The order of the audit log: newest first, entries of one instant latest written first. */
export const AUDIT_ORDER: SortOrder<AuditEntry> = {
  direction: 'desc',
  columns: [
    { column: auditLog.createdAt, of: (entry) => entry.createdAt.getTime(), type: 'number' },
    { column: rowid, of: (entry) => entry.sequence, type: 'number' },
  ],
};

/**
 * A page of the entity's audit entries matching `filter`, in {@link AUDIT_ORDER}. No access
 * check: callers have done it.
 */
export function listAuditEntries(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  filter: AuditFilter,
  page: Page,
): AuditEntry[] {
  return deps.db
    .select({ ...getTableColumns(auditLog), sequence: rowid })
    .from(auditLog)
    .where(and(filterWhere(entityId, filter), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

/** How many of the entity's audit entries match `filter`. */
export function countAuditEntries(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  filter: AuditFilter,
): number {
  return (
    deps.db.select({ n: count() }).from(auditLog).where(filterWhere(entityId, filter)).get()?.n ?? 0
  );
}
