import { sql } from 'drizzle-orm';
import { newId } from '../../ids.js';
import type { AuditRecord } from '../audit.js';
import { auditLog } from './schema.js';
import type { PgHandle, Tx } from './support.js';

/**
 * Writes one audit entry dated `now`, in `tx`: the transaction of the change it records, so the
 * entry exists exactly when the change commits.
 */
export async function insertAudit(
  h: PgHandle,
  tx: Tx,
  record: AuditRecord,
  now: Date,
): Promise<void> {
  await h
    .prepared(
      'audit.insert',
      (x) =>
        x.insert(auditLog).values({
          id: sql.placeholder('id'),
          entityId: sql.placeholder('entityId'),
          actorId: sql.placeholder('actorId'),
          action: sql.placeholder('action'),
          targetType: sql.placeholder('targetType'),
          targetId: sql.placeholder('targetId'),
          details: sql.placeholder('details'),
          createdAt: sql.placeholder('createdAt'),
        }),
      tx,
    )
    .execute({
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
