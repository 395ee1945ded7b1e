/* The audit log's records, shared by every store that writes an entry with its change. */

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
  /** The kind of what changed, in the domain's words (`Secret`, `WebhookAction`, `User`…). */
  targetType: string;
  /** Stored id of what changed. */
  targetId: string | null;
  /**
   * Small facts about the change: names, roles, which fields changed. Never a secret value, an
   * API key, a header value or anything else that could grant access.
   */
  details?: Record<string, unknown>;
}

/** A stored entry, with its position in the order of writing. */
export interface AuditEntry extends Required<AuditRecord> {
  id: string;
  createdAt: Date;
  /** Orders entries written in the same millisecond. */
  sequence: number;
}
