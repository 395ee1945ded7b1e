import { builder } from '../../builder.js';
import { connection } from '../connection.js';
import { hasRole } from '../entities/access.js';
import { EntityRef } from '../entities/schema.js';
import { encodeGlobalId } from '../global-id.js';
import { UserRef } from '../users/schema.js';
import { findUser } from '../users/service.js';
import type { AuditEntry } from './service.js';

const AuditEntryRef = builder.objectRef<AuditEntry>('AuditEntry').implement({
  description:
    'One security-relevant change in an entity: who made it, what it was, what it touched and when. Never holds a secret value, an API key or a header value.',
  fields: (t) => ({
    action: t.exposeString('action', {
      description:
        'Stable code of the change: `entity.created`, `user.created`, `member.added`, `member.roleChanged`, `member.removed`, `apiKey.created`, `apiKey.revoked`, `secret.created`, `secret.rotated`, `secret.deleted`, `action.created`, `action.updated`, `action.enabled`, `action.disabled`, `action.deleted`, `automation.created`, `automation.updated` or `automation.deleted`.',
    }),
    targetType: t.exposeString('targetType', {
      description:
        'GraphQL type of what changed: `Entity`, `User`, `ApiKey`, `Secret`, `WebhookAction`, `SlackAction` or `Automation`.',
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

builder.objectField(EntityRef, 'auditLog', (t) =>
  t.connection({
    type: AuditEntryRef,
    nullable: true,
    description:
      "The entity's security-relevant changes (members, keys, secrets, actions, automations), newest first. Admins only: null for members and viewers.",
    args: {
      action: t.arg.string({
        required: false,
        description: 'Only entries with this action code, e.g. `secret.rotated`.',
      }),
      targetType: t.arg.string({
        required: false,
        description: 'Only entries about objects of this GraphQL type, e.g. `Secret`.',
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
  }),
);
