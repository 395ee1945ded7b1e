import { builder } from '../../builder.js';
import { connection } from '../connection.js';
import { hasRole } from '../entities/access.js';
import { EntityRef } from '../entities/schema.js';
import { encodeGlobalId } from '../global-id.js';
import { UserRef } from '../users/schema.js';
import { findUser } from '../users/service.js';
import { AUDIT_ACTIONS, type AuditAction, type AuditEntry } from './service.js';

/** `member.roleChanged` → `MEMBER_ROLE_CHANGED`. */
function enumName(code: string): string {
  return code
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .replace('.', '_')
    .toUpperCase();
}

const AuditActionEnum = builder.enumType('AuditAction', {
  description:
    'What kind of change an audit entry records. Each value stands for a stable code, `<noun>.<past tense>`, such as `secret.rotated` for SECRET_ROTATED; a value once shipped is never renamed.',
  values: Object.fromEntries(
    AUDIT_ACTIONS.map((code) => [enumName(code), { value: code, description: `\`${code}\`.` }]),
  ) as Record<string, { value: AuditAction; description: string }>,
});

/** The GraphQL types of what audit entries record changes to. */
export const AUDIT_TARGET_TYPES = [
  'Entity',
  'User',
  'ApiKey',
  'Secret',
  'WebhookAction',
  'SlackAction',
  'NoOpAction',
  'Automation',
] as const;
export type AuditTargetType = (typeof AUDIT_TARGET_TYPES)[number];

const AuditTargetTypeEnum = builder.enumType('AuditTargetType', {
  description: 'The GraphQL type of what an audit entry records a change to.',
  values: Object.fromEntries(
    AUDIT_TARGET_TYPES.map((type) => [enumName(type), { value: type, description: `A ${type}.` }]),
  ) as Record<string, { value: AuditTargetType; description: string }>,
});

const AuditEntryRef = builder.objectRef<AuditEntry>('AuditEntry').implement({
  description:
    'One security-relevant change in an entity: who made it, what it was, what it touched and when. Never holds a secret value, an API key or a header value.',
  fields: (t) => ({
    action: t.field({
      type: AuditActionEnum,
      description: 'What kind of change it was.',
      resolve: (entry) => entry.action,
    }),
    targetType: t.field({
      type: AuditTargetTypeEnum,
      description: 'The GraphQL type of what changed.',
      // Written by the services only with these names (see AuditRecord.targetType).
      resolve: (entry) => entry.targetType as AuditTargetType,
    }),
    targetId: t.id({
      nullable: true,
      description:
        'Global ID of what changed, usable with `node(id:)` while it exists and you may see it; null when the change had no single target.',
      resolve: (entry) =>
        entry.targetId === null ? null : encodeGlobalId(entry.targetType, entry.targetId),
    }),
    actor: t.field({
      type: UserRef,
      nullable: true,
      description: 'Who made the change; null when the server made it or the account is gone.',
      resolve: async (entry, _args, ctx) =>
        entry.actorId ? ((await findUser(ctx.deps, entry.actorId)) ?? null) : null,
    }),
    details: t.field({
      type: 'JSONObject',
      description:
        'Facts about the change, by action: names, roles, key prefixes, and for updates `changed` (the field names that changed) with the old and new URL and header names of a webhook. Never values of secrets or headers.',
      resolve: (entry) => entry.details,
    }),
    createdAt: t.expose('createdAt', {
      type: 'DateTime',
      description: 'When the change was made.',
    }),
  }),
});

const AuditEntryConnectionRef = builder.connectionObject(
  { type: AuditEntryRef, name: 'AuditEntryConnection' },
  { name: 'AuditEntryEdge' },
);

builder.objectField(EntityRef, 'auditLog', (t) =>
  t.connection(
    {
      type: AuditEntryRef,
      nullable: true,
      description:
        "The entity's security-relevant changes (members, keys, secrets, actions, automations), newest first. Admins only: null for members and viewers.",
      args: {
        action: t.arg({
          type: AuditActionEnum,
          required: false,
          description: 'Only entries of this kind, e.g. SECRET_ROTATED.',
        }),
        targetType: t.arg({
          type: AuditTargetTypeEnum,
          required: false,
          description: 'Only entries about objects of this type, e.g. SECRET.',
        }),
        since: t.arg({
          type: 'DateTime',
          required: false,
          description: 'Only entries made at or after this time.',
        }),
      },
      resolve: (entity, args, ctx) => {
        if (!hasRole(ctx.viewer, entity.id, 'ADMIN')) return null;
        const { audit } = ctx.deps.storage;
        return connection<AuditEntry>(args, {
          keyOf: (entry) => [entry.createdAt.getTime(), entry.sequence],
          keyTypes: ['number', 'number'],
          fetch: (request) => audit.pageAuditEntries(entity.id, args, request),
          count: () => audit.countAuditEntries(entity.id, args),
        });
      },
    },
    AuditEntryConnectionRef,
  ),
);
