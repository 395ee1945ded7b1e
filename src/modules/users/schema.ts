import { builder } from '../../builder.js';
import type { Context } from '../../context.js';
import { NotFoundError, PermissionDeniedError, ValidationError } from '../../errors.js';
import { type ConnectionArgs, connection } from '../connection.js';
import { decodeId } from '../global-id.js';
import {
  type ApiKey,
  apiKeysOf,
  createApiKey,
  findUser,
  getApiKey,
  isVisibleTo,
  mayOverseeKeysOf,
  revokeApiKey,
  type User,
} from './service.js';

export const RoleEnum = builder.enumType('Role', {
  description: "A member's role in an entity.",
  values: {
    ADMIN: { description: 'Manages members, keys, secrets, actions and everything else.' },
    MEMBER: {
      description: 'Manages automations, emits events and retries runs; reads everything.',
    },
    VIEWER: { description: 'Reads and subscribes only.' },
  } as const,
});

export const UserKindEnum = builder.enumType('UserKind', {
  description: 'Whether an account is a person or a service account used by automation.',
  values: {
    USER: { description: 'A person.' },
    SERVICE_ACCOUNT: {
      description: 'A non-human account for CI pipelines, training scripts and SDKs.',
    },
  } as const,
});

export const ApiKeyRef = builder.node(builder.objectRef<ApiKey>('ApiKey'), {
  description: 'An API key. Only its prefix is ever shown after creation.',
  id: { resolve: (key) => key.id },
  loadOne: async (id, ctx) => {
    const key = await getApiKey(ctx.deps, id);
    return key && (await mayOverseeKeysOf(ctx.deps, ctx.viewer, key.userId)) ? key : null;
  },
  fields: (t) => ({
    name: t.exposeString('name', { description: 'What the key is for.' }),
    prefix: t.exposeString('prefix', {
      description: 'The first characters of the key, to tell keys apart.',
    }),
    createdAt: t.expose('createdAt', {
      type: 'DateTime',
      description: 'When the key was created.',
    }),
    lastUsedAt: t.expose('lastUsedAt', {
      type: 'DateTime',
      nullable: true,
      description: 'When the key last authenticated a request, to the minute.',
    }),
    revokedAt: t.expose('revokedAt', {
      type: 'DateTime',
      nullable: true,
      description: 'When the key was revoked; a revoked key authenticates nothing.',
    }),
  }),
});

/** A page of the user's API keys; callers check access first. */
export function apiKeyConnection(ctx: Context, userId: string, args: ConnectionArgs) {
  return connection(args, apiKeysOf(ctx.deps, userId));
}

export const ApiKeyConnectionRef = builder.connectionObject(
  { type: ApiKeyRef, name: 'ApiKeyConnection' },
  { name: 'ApiKeyEdge' },
);

export const UserRef = builder.node(builder.objectRef<User>('User'), {
  description: 'A person or service account.',
  id: { resolve: (user) => user.id },
  loadOne: async (id, ctx) => {
    if (!(await isVisibleTo(ctx.deps, ctx.viewer, id))) return null;
    return (await findUser(ctx.deps, id)) ?? null;
  },
  fields: (t) => ({
    name: t.exposeString('name', { description: 'Display name.' }),
    kind: t.field({
      type: UserKindEnum,
      description: 'Person or service account.',
      resolve: (u) => u.kind,
    }),
    createdAt: t.expose('createdAt', {
      type: 'DateTime',
      description: 'When the account was created.',
    }),
    apiKeys: t.connection(
      {
        type: ApiKeyRef,
        nullable: true,
        description:
          "The account's API keys, revoked ones included, newest first: yours, or a service account's in any entity you administer; null otherwise.",
        resolve: async (user, args, ctx) =>
          (await mayOverseeKeysOf(ctx.deps, ctx.viewer, user.id))
            ? apiKeyConnection(ctx, user.id, args)
            : null,
      },
      ApiKeyConnectionRef,
    ),
  }),
});

const CreateApiKeyPayload = builder
  .objectRef<{ apiKey: ApiKey; plaintextKey: string }>('CreateApiKeyPayload')
  .implement({
    description: 'A new API key, with its value. The value is shown only here, once: store it now.',
    fields: (t) => ({
      apiKey: t.field({
        type: ApiKeyRef,
        description: 'The stored key.',
        resolve: (r) => r.apiKey,
      }),
      plaintextKey: t.exposeString('plaintextKey', {
        description:
          'The key itself (`tl_…`), for `Authorization: Bearer <key>`. Only its hash is stored: never shown again.',
      }),
    }),
  });

builder.mutationField('createApiKey', (t) =>
  t.field({
    type: CreateApiKeyPayload,
    description:
      'Creates an API key for yourself, or for a service account when you are an admin of every entity it belongs to (a key acts in all of them).',
    errors: { types: [ValidationError, NotFoundError, PermissionDeniedError] },
    args: {
      input: t.arg({
        required: true,
        description: 'What to do.',
        type: builder.inputType('CreateApiKeyInput', {
          description: 'A new API key.',
          fields: (f) => ({
            name: f.string({ description: 'What the key is for.' }),
            userId: f.id({
              required: false,
              description: 'Global ID of the service account; omit for your own key.',
            }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => {
      const { apiKey, secret } = await createApiKey(ctx, {
        name: input.name,
        userId: input.userId && decodeId(input.userId, 'User', 'input.userId'),
      });
      return { apiKey, plaintextKey: secret };
    },
  }),
);

builder.mutationField('revokeApiKey', (t) =>
  t.field({
    type: builder.objectRef<{ apiKey: ApiKey }>('RevokeApiKeyPayload').implement({
      description: 'A revoked API key.',
      fields: (t) => ({
        apiKey: t.field({
          type: ApiKeyRef,
          description: 'The key, with its revocation time.',
          resolve: (p) => p.apiKey,
        }),
      }),
    }),
    description:
      "Revokes an API key at once: yours, or a service account's in any entity you administer. Revoking a revoked key changes nothing.",
    errors: { types: [NotFoundError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('RevokeApiKeyInput', {
          description: 'The key to revoke.',
          fields: (f) => ({ id: f.id({ description: 'Global ID of the key.' }) }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      apiKey: await revokeApiKey(ctx, decodeId(input.id, 'ApiKey', 'input.id')),
    }),
  }),
);
