import { builder } from '../../builder.js';
import {
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from '../../errors.js';
import { connection } from '../connection.js';
import { decodeId } from '../global-id.js';
import {
  ApiKeyConnectionRef,
  ApiKeyRef,
  apiKeyConnection,
  RoleEnum,
  UserKindEnum,
  UserRef,
} from '../users/schema.js';
import type { ApiKey, User } from '../users/service.js';
import { type Entity, hasRole, readableEntity } from './access.js';
import {
  addMember,
  createEntity,
  createMemberUser,
  findEntity,
  findEntityByName,
  type Membership,
  membershipsOf,
  membersOf,
  removeMember,
  updateMemberRole,
} from './service.js';

export const EntityRef = builder.node(builder.objectRef<Entity>('Entity'), {
  description: 'A team. Everything else belongs to exactly one entity; nothing crosses entities.',
  id: { resolve: (entity) => entity.id },
  loadOne: async (id, ctx) => (await readableEntity(ctx, id)) ?? null,
  fields: (t) => ({
    name: t.exposeString('name', {
      description: 'Unique name, used in paths and version strings.',
    }),
    createdAt: t.expose('createdAt', {
      type: 'DateTime',
      description: 'When the entity was created.',
    }),
    viewerRole: t.field({
      type: RoleEnum,
      description: 'Your role in this entity.',
      resolve: (entity, _args, ctx) => ctx.viewer.roles.get(entity.id) ?? 'VIEWER',
    }),
  }),
});

const MemberRef = builder.objectRef<{ user: User; membership: Membership }>('Member').implement({
  description: "A user's membership in an entity.",
  fields: (t) => ({
    user: t.field({ type: UserRef, description: 'The member.', resolve: (m) => m.user }),
    role: t.field({
      type: RoleEnum,
      description: 'Their role.',
      resolve: (m) => m.membership.role,
    }),
    since: t.field({
      type: 'DateTime',
      description: 'When they joined.',
      resolve: (m) => m.membership.createdAt,
    }),
  }),
});

const MemberConnectionRef = builder.connectionObject(
  { type: MemberRef, name: 'MemberConnection' },
  { name: 'MemberEdge' },
);

builder.objectField(EntityRef, 'members', (t) =>
  t.connection(
    {
      type: MemberRef,
      description: 'Members and their roles, oldest first.',
      resolve: (entity, args, ctx) => connection(args, membersOf(ctx.deps, entity.id)),
    },
    MemberConnectionRef,
  ),
);

const MembershipRef = builder.objectRef<Membership>('Membership').implement({
  description: "The caller's role in one entity.",
  fields: (t) => ({
    entity: t.field({
      type: EntityRef,
      description: 'The entity.',
      resolve: async (m, _args, ctx) => (await findEntity(ctx.deps, m.entityId))!,
    }),
    role: t.field({ type: RoleEnum, description: 'The role held there.', resolve: (m) => m.role }),
  }),
});

const ViewerRef = builder.objectRef<User>('Viewer').implement({
  description: 'The caller: the account behind the API key of this request.',
  fields: (t) => ({
    user: t.field({ type: UserRef, description: 'The account.', resolve: (u) => u }),
    entities: t.field({
      type: [MembershipRef],
      description: 'The entities the caller belongs to, with its role in each.',
      resolve: (u, _args, ctx) => membershipsOf(ctx.deps, u.id),
    }),
    apiKeys: t.connection(
      {
        type: ApiKeyRef,
        description: "The caller's own API keys, revoked ones included, newest first.",
        resolve: (u, args, ctx) => apiKeyConnection(ctx, u.id, args),
      },
      ApiKeyConnectionRef,
    ),
  }),
});

builder.queryField('viewer', (t) =>
  t.field({
    type: ViewerRef,
    description: 'The caller.',
    resolve: (_root, _args, ctx) => ctx.viewer.user,
  }),
);

builder.queryField('entity', (t) =>
  t.field({
    type: EntityRef,
    nullable: true,
    description: 'An entity you belong to, by name; null when there is none you can see.',
    args: { name: t.arg.string({ description: 'The entity name.' }) },
    resolve: async (_root, { name }, ctx) => {
      const entity = await findEntityByName(ctx.deps, name);
      return entity && hasRole(ctx.viewer, entity.id) ? entity : null;
    },
  }),
);

builder.mutationField('createEntity', (t) =>
  t.field({
    type: builder.objectRef<{ entity: Entity }>('CreateEntityPayload').implement({
      description: 'A created entity.',
      fields: (t) => ({
        entity: t.field({
          type: EntityRef,
          description: 'The new entity.',
          resolve: (p) => p.entity,
        }),
      }),
    }),
    description: 'Creates an entity (a team) with you as its admin.',
    errors: { types: [ValidationError, ConflictError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('CreateEntityInput', {
          description: 'A new entity.',
          fields: (f) => ({
            name: f.string({ description: 'Unique name: letters, digits, ".", "_" or "-".' }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({ entity: await createEntity(ctx, input.name) }),
  }),
);

const CreateUserPayload = builder
  .objectRef<{ user: User; apiKey: ApiKey; plaintextKey: string }>('CreateUserPayload')
  .implement({
    description: 'A new account and its first API key. The key is shown only here, once.',
    fields: (t) => ({
      user: t.field({ type: UserRef, description: 'The account.', resolve: (r) => r.user }),
      apiKey: t.field({ type: ApiKeyRef, description: 'Its first key.', resolve: (r) => r.apiKey }),
      plaintextKey: t.exposeString('plaintextKey', {
        description:
          'The first key itself (`tl_…`), for `Authorization: Bearer <key>`. Only its hash is stored: never shown again.',
      }),
    }),
  });

builder.mutationField('createUser', (t) =>
  t.field({
    type: CreateUserPayload,
    description:
      'Creates a person or service account as a member of an entity, with a first API key. Admins only.',
    errors: { types: [ValidationError, NotFoundError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('CreateUserInput', {
          description: 'A new account.',
          fields: (f) => ({
            entity: f.string({ description: 'Name of the entity it joins.' }),
            name: f.string({ description: 'Display name.' }),
            kind: f.field({ type: UserKindEnum, description: 'Person or service account.' }),
            role: f.field({ type: RoleEnum, description: 'Its role in the entity.' }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => {
      const { user, apiKey, secret } = await createMemberUser(ctx, input);
      return { user, apiKey, plaintextKey: secret };
    },
  }),
);

/** A user and a role in an entity: the input of addMember and updateMemberRole. */
function memberInput(name: string, description: string) {
  return builder.inputType(name, {
    description,
    fields: (f) => ({
      entity: f.string({ description: 'Entity name.' }),
      userId: f.id({ description: 'Global ID of the user.' }),
      role: f.field({ type: RoleEnum, description: 'The role.' }),
    }),
  });
}

/** The result of a mutation that changes one membership. */
function membershipPayload(name: string, description: string, field: string) {
  return builder.objectRef<{ membership: Membership }>(name).implement({
    description,
    fields: (t) => ({
      membership: t.field({
        type: MembershipRef,
        description: field,
        resolve: (p) => p.membership,
      }),
    }),
  });
}

const MEMBER_ERRORS = [NotFoundError, ConflictError, PermissionDeniedError];

builder.mutationField('addMember', (t) =>
  t.field({
    type: membershipPayload('AddMemberPayload', 'An added member.', 'The new membership.'),
    description:
      'Adds an existing user to an entity. Admins only; a service account only by someone who is also an admin of every entity it already belongs to.',
    errors: { types: MEMBER_ERRORS },
    args: {
      input: t.arg({
        type: memberInput('AddMemberInput', 'A user to add, and the role to give.'),
        description: 'What to do.',
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      membership: await addMember(ctx, {
        ...input,
        userId: decodeId(input.userId, 'User', 'input.userId'),
      }),
    }),
  }),
);

builder.mutationField('updateMemberRole', (t) =>
  t.field({
    type: membershipPayload(
      'UpdateMemberRolePayload',
      'A changed membership.',
      'The membership with its new role.',
    ),
    description: "Changes a member's role. An entity always keeps at least one admin. Admins only.",
    errors: { types: MEMBER_ERRORS },
    args: {
      input: t.arg({
        type: memberInput('UpdateMemberRoleInput', 'A member and the new role.'),
        description: 'What to do.',
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      membership: await updateMemberRole(ctx, {
        ...input,
        userId: decodeId(input.userId, 'User', 'input.userId'),
      }),
    }),
  }),
);

builder.mutationField('removeMember', (t) =>
  t.field({
    type: membershipPayload(
      'RemoveMemberPayload',
      'A removed member.',
      'The membership as it was.',
    ),
    description: 'Removes a member from an entity; returns the removed membership. Admins only.',
    errors: { types: MEMBER_ERRORS },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('RemoveMemberInput', {
          description: 'The member to remove.',
          fields: (f) => ({
            entity: f.string({ description: 'Entity name.' }),
            userId: f.id({ description: 'Global ID of the user.' }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      membership: await removeMember(ctx, {
        ...input,
        userId: decodeId(input.userId, 'User', 'input.userId'),
      }),
    }),
  }),
);
