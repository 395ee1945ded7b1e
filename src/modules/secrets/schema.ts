import { builder } from '../../builder.js';
import {
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from '../../errors.js';
import { connection } from '../connection.js';
import { hasRole } from '../entities/access.js';
import { EntityRef } from '../entities/schema.js';
import { UserRef } from '../users/schema.js';
import { findUser } from '../users/service.js';
import {
  createSecret,
  deleteSecret,
  getSecret,
  rotateSecret,
  type Secret,
  type SecretUsers,
  secretList,
  secretUsers,
} from './service.js';

const SecretUsersRef = builder.objectRef<SecretUsers>('SecretUsers').implement({
  description: 'What references a secret by name. A secret with any user cannot be deleted.',
  fields: (t) => ({
    actions: t.exposeStringList('actions', {
      description:
        'Names of the actions that use it as access token, signing secret or Slack URL, sorted.',
    }),
    automations: t.exposeStringList('automations', {
      description: 'Names of the automations whose templates reference it, sorted.',
    }),
  }),
});

export const SecretRef = builder.node(builder.objectRef<Secret>('Secret'), {
  description:
    'A named, write-only value, encrypted at rest. Its value is never readable through the API; actions and templates reference it by name.',
  id: { resolve: (row) => row.id },
  loadOne: async (id, ctx) => {
    const row = await getSecret(ctx.deps, id);
    return row && hasRole(ctx.viewer, row.entityId) ? row : null;
  },
  fields: (t) => ({
    name: t.exposeString('name', {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: `${NAME}` is template syntax, shown literally
      description: 'UPPER_SNAKE_CASE name, unique in its entity; templates use it as `${NAME}`.',
    }),
    createdAt: t.expose('createdAt', {
      type: 'DateTime',
      description: 'When the secret was created.',
    }),
    createdBy: t.field({
      type: UserRef,
      nullable: true,
      description: 'Who created it; null when that account no longer exists.',
      resolve: (row, _args, ctx) => (row.createdById ? findUser(ctx.deps, row.createdById) : null),
    }),
    rotatedAt: t.expose('rotatedAt', {
      type: 'DateTime',
      nullable: true,
      description: 'When its value was last replaced; null if never.',
    }),
    rotatedBy: t.field({
      type: UserRef,
      nullable: true,
      description: 'Who last replaced its value; null if never, or when that account is gone.',
      resolve: (row, _args, ctx) => (row.rotatedById ? findUser(ctx.deps, row.rotatedById) : null),
    }),
    usedBy: t.field({
      type: SecretUsersRef,
      description: 'The actions and automations that reference it.',
      resolve: (row, _args, ctx) => secretUsers(ctx.deps, row.id),
    }),
  }),
});

export const SecretConnectionRef = builder.connectionObject(
  { type: SecretRef, name: 'SecretConnection' },
  { name: 'SecretEdge' },
);

builder.objectField(EntityRef, 'secrets', (t) =>
  t.connection(
    {
      type: SecretRef,
      description: "The entity's secrets, by name. Names and history only, never values.",
      resolve: (entity, args, ctx) => connection(args, secretList(ctx.deps, entity.id)),
    },
    SecretConnectionRef,
  ),
);

/** The result of a mutation that changes one secret. */
function secretPayload(name: string, description: string, field: string) {
  return builder.objectRef<{ secret: Secret }>(name).implement({
    description,
    fields: (t) => ({
      secret: t.field({ type: SecretRef, description: field, resolve: (p) => p.secret }),
    }),
  });
}

const nameDescription =
  'UPPER_SNAKE_CASE name: capital letters, digits and underscores, starting with a letter; at most 64 characters.';

builder.mutationField('createSecret', (t) =>
  t.field({
    type: secretPayload('CreateSecretPayload', 'A stored secret.', 'The new secret.'),
    description:
      'Stores a new secret, encrypted. Its value is never returned, logged or shown again. Admins only.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('CreateSecretInput', {
          description: 'A new secret.',
          fields: (f) => ({
            entity: f.string({ description: 'Name of the entity it belongs to.' }),
            name: f.string({ description: nameDescription }),
            value: f.string({ description: 'The value: not empty, at most 16 KiB of UTF-8.' }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({ secret: await createSecret(ctx, input) }),
  }),
);

builder.mutationField('rotateSecret', (t) =>
  t.field({
    type: secretPayload(
      'RotateSecretPayload',
      'A secret with a new value.',
      'The secret, with its rotation time.',
    ),
    description:
      'Replaces the value of a secret; actions and automations that reference it use the new value from their next delivery. Admins only.',
    errors: { types: [ValidationError, NotFoundError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('RotateSecretInput', {
          description: 'A secret and its new value.',
          fields: (f) => ({
            entity: f.string({ description: 'Name of the entity it belongs to.' }),
            name: f.string({ description: 'Name of the secret.' }),
            value: f.string({ description: 'The new value: not empty, at most 16 KiB of UTF-8.' }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({ secret: await rotateSecret(ctx, input) }),
  }),
);

builder.mutationField('deleteSecret', (t) =>
  t.field({
    type: secretPayload(
      'DeleteSecretPayload',
      'A deleted secret.',
      'The secret as it was; its ID names nothing any more.',
    ),
    description:
      'Deletes a secret and returns it as it was. Refused with a ConflictError naming them while actions or automations use it. Admins only.',
    errors: { types: [NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('DeleteSecretInput', {
          description: 'The secret to delete.',
          fields: (f) => ({
            entity: f.string({ description: 'Name of the entity it belongs to.' }),
            name: f.string({ description: 'Name of the secret.' }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({ secret: await deleteSecret(ctx, input) }),
  }),
);
