import { builder } from '../../builder.js';
import type { Context } from '../../context.js';
import {
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from '../../errors.js';
import {
  ACTION_KINDS,
  type NoOpActionRecord,
  type SlackActionRecord,
  type WebhookActionRecord,
} from '../../storage/config.js';
import { connection } from '../connection.js';
import { hasRole } from '../entities/access.js';
import { EntityRef } from '../entities/schema.js';
import { decodeGlobalId } from '../global-id.js';
import {
  ACTION_NOUNS,
  type Action,
  type ActionKind,
  type ActionReference,
  actionList,
  automationsUsing,
  createNoOpAction,
  createSlackAction,
  createWebhookAction,
  deleteAction,
  getAction,
  secretNameOf,
  updateAction,
} from './service.js';

/**
 * The action an ID names, as a `WebhookAction`, `SlackAction` or `NoOpAction`: its stored id and the kind its
 * type says; null when the ID is malformed or names something else.
 */
export function actionReferenceOf(globalId: string): ActionReference | null {
  const decoded = decodeGlobalId(globalId);
  if (decoded === null) return null;
  const kind = ACTION_KINDS.find((k) => ACTION_NOUNS[k] === decoded.typename);
  return kind === undefined ? null : { id: decoded.id, kind };
}

/** As {@link actionReferenceOf}, throwing NotFoundError on `field` for an ID that names no action. */
export function decodeActionId(globalId: string, field: string): ActionReference {
  const ref = actionReferenceOf(globalId);
  if (ref === null) throw new NotFoundError(field, `No action with id "${globalId}".`);
  return ref;
}

export const ActionKindEnum = builder.enumType('ActionKind', {
  description: 'What an action delivers to.',
  values: {
    WEBHOOK: { description: 'An HTTP endpoint that receives signed JSON (WebhookAction).' },
    SLACK: { description: 'A Slack channel, through an incoming webhook (SlackAction).' },
    NO_OP: {
      description: 'Nothing: each run succeeds at once without a request (NoOpAction).',
    },
  } as const,
});

/**
 * The `Action` interface: what every kind of action has. Automations point at one through it
 * (`t.field({ type: ActionRef })`, resolving an `Action` row from `getAction`).
 */
export const ActionRef = builder.interfaceRef<Action>('Action').implement({
  description:
    'A reusable destination in an entity. One action serves many automations; each automation adds its own payload or message.',
  interfaces: [builder.nodeInterfaceRef()],
  resolveType: (action) => ACTION_NOUNS[action.kind],
  fields: (t) => ({
    name: t.exposeString('name', { description: "Name, unique among the entity's actions." }),
    kind: t.field({
      type: ActionKindEnum,
      description: 'What the action delivers to.',
      resolve: (action) => action.kind,
    }),
    enabled: t.exposeBoolean('enabled', {
      description: 'Whether it delivers. Runs of a disabled action are skipped.',
    }),
    disabledReason: t.exposeString('disabledReason', {
      nullable: true,
      description:
        "Why it was disabled: by whom, or the delivery engine's reason (such as a 410 Gone from the receiver). Null while enabled.",
    }),
    createdAt: t.expose('createdAt', {
      type: 'DateTime',
      description: 'When the action was created.',
    }),
    updatedAt: t.field({
      type: 'DateTime',
      description: 'When the action last changed; its creation time until then.',
      resolve: (action) => action.updatedAt ?? action.createdAt,
    }),
    usedBy: t.stringList({
      description:
        'Names of the automations that use it, sorted. An action in use cannot be deleted.',
      resolve: (action, _args, ctx) => automationsUsing(ctx.deps, action.id),
    }),
  }),
});

const HeaderRef = builder.objectRef<{ name: string; value: string }>('Header').implement({
  description: 'An extra HTTP header sent with every delivery of a webhook action.',
  fields: (t) => ({
    name: t.exposeString('name', { description: 'Header name, as given.' }),
    value: t.exposeString('value', {
      description:
        'Header value. Readable by every member: put credentials in a secret named by `accessTokenSecret` instead.',
    }),
  }),
});

/** Node loading: the action, when it is of this kind and in one of the viewer's entities. */
async function loadAction<Kind extends ActionKind>(
  ctx: Context,
  kind: Kind,
  id: string,
): Promise<Extract<Action, { kind: Kind }> | null> {
  const row = await getAction(ctx.deps, id);
  return row && row.kind === kind && hasRole(ctx.viewer, row.entityId)
    ? (row as Extract<Action, { kind: Kind }>)
    : null;
}

/**
 * The name of a secret an action must reference. A secret cannot be deleted while an action uses
 * it (deleteSecret answers a ConflictError), so a missing one is a bug, not a value to show.
 */
async function referencedSecretName(ctx: Context, secretId: string): Promise<string> {
  const name = await secretNameOf(ctx.deps, secretId);
  if (name === null) throw new Error(`Secret ${secretId} referenced by an action does not exist.`);
  return name;
}

export const WebhookActionRef = builder.node(
  builder.objectRef<WebhookActionRecord>('WebhookAction'),
  {
    description:
      'Sends each run as a signed JSON POST (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`) to a URL.',
    interfaces: [ActionRef],
    isTypeOf: (value) => (value as Action).kind === 'WEBHOOK',
    id: { resolve: (action) => action.id },
    loadOne: (id, ctx) => loadAction(ctx, 'WEBHOOK', id),
    fields: (t) => ({
      url: t.exposeString('url', { description: 'Where deliveries are POSTed.' }),
      accessTokenSecret: t.string({
        nullable: true,
        description:
          'Name of the secret sent as `Authorization: Bearer <value>`; null when none is sent.',
        resolve: (action, _args, ctx) => secretNameOf(ctx.deps, action.accessTokenSecretId),
      }),
      signingSecret: t.string({
        description:
          'Name of the secret holding the `whsec_…` key that signs every delivery (`webhook-signature`).',
        resolve: (action, _args, ctx) => referencedSecretName(ctx, action.signingSecretId),
      }),
      headers: t.field({
        type: [HeaderRef],
        description: 'Extra headers sent with every delivery, in the order given.',
        resolve: (action) =>
          Object.entries(action.headers).map(([name, value]) => ({ name, value })),
      }),
    }),
  },
);

export const SlackActionRef = builder.node(builder.objectRef<SlackActionRecord>('SlackAction'), {
  description: 'Posts each run as a message to a Slack channel through an incoming webhook.',
  interfaces: [ActionRef],
  isTypeOf: (value) => (value as Action).kind === 'SLACK',
  id: { resolve: (action) => action.id },
  loadOne: (id, ctx) => loadAction(ctx, 'SLACK', id),
  fields: (t) => ({
    channel: t.exposeString('channel', {
      description: 'The channel label shown to people, e.g. `#ml-alerts`.',
    }),
    webhookUrlSecret: t.string({
      description: 'Name of the secret holding the Slack incoming-webhook URL.',
      resolve: (action, _args, ctx) => referencedSecretName(ctx, action.slackUrlSecretId),
    }),
  }),
});

export const NoOpActionRef = builder.node(builder.objectRef<NoOpActionRecord>('NoOpAction'), {
  description:
    "Sends nothing: each run succeeds on its first attempt without any request, and is recorded like any other. For trying an automation's trigger, or keeping a history of what matched.",
  interfaces: [ActionRef],
  isTypeOf: (value) => (value as Action).kind === 'NO_OP',
  id: { resolve: (action) => action.id },
  loadOne: (id, ctx) => loadAction(ctx, 'NO_OP', id),
  fields: () => ({}),
});

export const ActionConnectionRef = builder.connectionObject(
  { type: ActionRef, name: 'ActionConnection' },
  { name: 'ActionEdge' },
);

builder.objectField(EntityRef, 'actions', (t) =>
  t.connection(
    {
      type: ActionRef,
      description: "The entity's actions, by name.",
      args: {
        kind: t.arg({
          type: ActionKindEnum,
          required: false,
          description: 'Only actions of this kind.',
        }),
        enabled: t.arg.boolean({
          required: false,
          description: 'Only enabled (true) or only disabled (false) actions.',
        }),
      },
      resolve: (entity, args, ctx) => connection(args, actionList(ctx.deps, entity.id, args)),
    },
    ActionConnectionRef,
  ),
);

const HeaderInputRef = builder.inputType('HeaderInput', {
  description: 'An extra HTTP header for a webhook action.',
  fields: (f) => ({
    name: f.string({
      description:
        'Header name (an RFC 7230 token). Content-Type, Content-Length, Host, Authorization, User-Agent and webhook-* are set by Tripline and refused.',
    }),
    value: f.string({ description: 'One line of text, at most 1024 characters.' }),
  }),
});

const CreateWebhookActionPayload = builder
  .objectRef<{ action: WebhookActionRecord; signingSecret: string | null }>(
    'CreateWebhookActionPayload',
  )
  .implement({
    description:
      'A new webhook action, with its generated signing secret when one was generated. That value is shown only here, once.',
    fields: (t) => ({
      action: t.field({
        type: WebhookActionRef,
        description: 'The stored action.',
        resolve: (r) => r.action,
      }),
      signingSecret: t.exposeString('signingSecret', {
        nullable: true,
        description:
          'The generated `whsec_…` signing secret, for the receiver to verify signatures. Never shown again: store it now. Null when a named secret was used.',
      }),
    }),
  });

builder.mutationField('createWebhookAction', (t) =>
  t.field({
    type: CreateWebhookActionPayload,
    description:
      'Creates a webhook action. Without `signingSecret`, a signing secret is generated, stored as the secret `<NAME>_SIGNING_SECRET` and returned once. Admins only.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('CreateWebhookActionInput', {
          description: 'A new webhook action.',
          fields: (f) => ({
            entity: f.string({ description: 'Name of the entity it belongs to.' }),
            name: f.string({ description: 'Unique name in the entity, 1 to 64 characters.' }),
            url: f.string({
              description:
                'Destination: an http or https URL of at most 2048 characters, without user name or password.',
            }),
            accessTokenSecret: f.string({
              required: false,
              description: 'Name of an existing secret to send as `Authorization: Bearer <value>`.',
            }),
            signingSecret: f.string({
              required: false,
              description:
                'Name of an existing secret holding a `whsec_…` signing key; omit to have one generated.',
            }),
            headers: f.field({
              type: [HeaderInputRef],
              required: false,
              description: 'Extra headers for every delivery, at most 20.',
            }),
          }),
        }),
      }),
    },
    resolve: (_root, { input }, ctx) => createWebhookAction(ctx, input),
  }),
);

builder.mutationField('createSlackAction', (t) =>
  t.field({
    type: builder.objectRef<{ action: SlackActionRecord }>('CreateSlackActionPayload').implement({
      description: 'The created Slack action.',
      fields: (t) => ({
        action: t.field({
          type: SlackActionRef,
          description: 'The new action.',
          resolve: (p) => p.action,
        }),
      }),
    }),
    description: 'Creates a Slack action. Admins only.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('CreateSlackActionInput', {
          description: 'A new Slack action.',
          fields: (f) => ({
            entity: f.string({ description: 'Name of the entity it belongs to.' }),
            name: f.string({ description: 'Unique name in the entity, 1 to 64 characters.' }),
            channel: f.string({
              description: 'Channel label shown to people, e.g. `#ml-alerts`; 1 to 64 characters.',
            }),
            webhookUrlSecret: f.string({
              description:
                'Name of an existing secret holding the Slack incoming-webhook URL (https://hooks.slack.com/services/…).',
            }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({ action: await createSlackAction(ctx, input) }),
  }),
);

builder.mutationField('createNoOpAction', (t) =>
  t.field({
    type: builder.objectRef<{ action: NoOpActionRecord }>('CreateNoOpActionPayload').implement({
      description: 'The created no-op action.',
      fields: (t) => ({
        action: t.field({
          type: NoOpActionRef,
          description: 'The new action.',
          resolve: (p) => p.action,
        }),
      }),
    }),
    description:
      'Creates a no-op action, whose runs succeed at once without sending anything. Admins only.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('CreateNoOpActionInput', {
          description: 'A new no-op action.',
          fields: (f) => ({
            entity: f.string({ description: 'Name of the entity it belongs to.' }),
            name: f.string({ description: 'Unique name in the entity, 1 to 64 characters.' }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({ action: await createNoOpAction(ctx, input) }),
  }),
);

const UpdateActionPayload = builder.objectRef<{ action: Action }>('UpdateActionPayload').implement({
  description: 'An action after a change.',
  fields: (t) => ({
    action: t.field({
      type: ActionRef,
      description: 'The action as it is now.',
      resolve: (p) => p.action,
    }),
  }),
});

builder.mutationField('updateAction', (t) =>
  t.field({
    type: UpdateActionPayload,
    description:
      'Changes an action; omitted fields keep their value, and fields must fit its kind. `enabled: false` stops its deliveries; `enabled: true` resumes them and clears `disabledReason`. Admins only.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('UpdateActionInput', {
          description: 'An action and the fields to change.',
          fields: (f) => ({
            id: f.id({ description: 'Global ID of the action.' }),
            name: f.string({ required: false, description: 'New name, unique in the entity.' }),
            url: f.string({ required: false, description: 'Webhook: new destination URL.' }),
            accessTokenSecret: f.string({
              required: false,
              description: 'Webhook: name of the access-token secret; null removes it.',
            }),
            signingSecret: f.string({
              required: false,
              description:
                'Webhook: name of another secret holding a `whsec_…` key. To change the key itself, use rotateSecret.',
            }),
            headers: f.field({
              type: [HeaderInputRef],
              required: false,
              description:
                'Webhook: the new extra headers, replacing all of them; null removes them.',
            }),
            channel: f.string({ required: false, description: 'Slack: new channel label.' }),
            webhookUrlSecret: f.string({
              required: false,
              description: 'Slack: name of the secret holding the incoming-webhook URL.',
            }),
            enabled: f.boolean({ required: false, description: 'Enable or disable the action.' }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      action: await updateAction(ctx, { ...input, id: decodeActionId(input.id, 'input.id') }),
    }),
  }),
);

const DeleteActionPayload = builder.objectRef<{ action: Action }>('DeleteActionPayload').implement({
  description: 'An action that was deleted.',
  fields: (t) => ({
    action: t.field({
      type: ActionRef,
      description: 'The action as it was; its ID names nothing any more.',
      resolve: (p) => p.action,
    }),
  }),
});

builder.mutationField('deleteAction', (t) =>
  t.field({
    type: DeleteActionPayload,
    description:
      'Deletes an action. Refused with a ConflictError naming them while automations use it. Its secrets are kept. Admins only.',
    errors: { types: [NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('DeleteActionInput', {
          description: 'The action to delete.',
          fields: (f) => ({ id: f.id({ description: 'Global ID of the action.' }) }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      action: await deleteAction(ctx, { id: decodeActionId(input.id, 'input.id') }),
    }),
  }),
);
