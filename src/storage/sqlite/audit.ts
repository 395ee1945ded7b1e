import { sql } from 'drizzle-orm';
import type { Clock } from '../../clock.js';
import { newId } from '../../ids.js';
import type { AuditRecord } from '../audit.js';
import type { Db } from './database.js';
import { auditLog } from './schema.js';
import type { SqliteHandle } from './support.js';

/**
 * Writes one audit entry dated `now`. Call it inside the transaction of the change it records,
 * so the entry exists exactly when the change commits: a refused or rolled-back change leaves
 * none.
 */
export function insertAudit(h: SqliteHandle, record: AuditRecord, now: Date): void {
  h.prepared('audit.insert', () =>
    h.db
      .insert(auditLog)
      .values({
        id: sql.placeholder('id'),
        entityId: sql.placeholder('entityId'),
        actorId: sql.placeholder('actorId'),
        action: sql.placeholder('action'),
        targetType: sql.placeholder('targetType'),
        targetId: sql.placeholder('targetId'),
        details: sql.placeholder('details'),
        createdAt: sql.placeholder('createdAt'),
      })
      .prepare(),
  ).run({
    id: newId(),
    entityId: record.entityId,
    actorId: record.actorId,
    action: record.action,
    targetType: record.targetType,
    targetId: record.targetId,
    details: record.details ?? {},
    createdAt: now,
  });
}

/**
 * Writes one audit entry through a drizzle handle or transaction, dated by `clock`.
 *
 * Transitional: for services that still write through drizzle until they move onto the storage
 * layer, where a write operation takes its `AuditRecord` and calls {@link insertAudit}. Call it
 * inside the transaction of the change it records.
 */
export function recordAudit(
  deps: { db: Pick<Db, 'insert'>; clock: Clock },
  record: AuditRecord,
): void {
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
