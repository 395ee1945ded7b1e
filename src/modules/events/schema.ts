import { builder } from '../../builder.js';
import type { Context } from '../../context.js';
import { NotFoundError, PermissionDeniedError, ValidationError } from '../../errors.js';
import { EventTypeEnum } from '../automations/schema.js';
import { artifactVersionString, artifactVersionUri } from '../automations/template.js';
import { connection } from '../connection.js';
import { hasRole, readableEntity } from '../entities/access.js';
import { EntityRef } from '../entities/schema.js';
import { MAX_JSON_DEPTH } from '../json-depth.js';
import { CollectionOwnerInput, ownerOf, ProjectRef, RegistryRef } from '../projects/schema.js';
import { getContainer } from '../projects/service.js';
import { TriggeredRunRef, triggeredRunsField } from '../runs/schema.js';
import type { TriggeredRun } from '../runs/service.js';
import { UserRef } from '../users/schema.js';
import { findUser } from '../users/service.js';
import { eventVersionIndex } from './event-types.js';
import { type ArtifactEvent, emitArtifactEvent, eventList, getEvent } from './service.js';

/** Names the version strings and URIs are built from. */
async function versionParts(event: ArtifactEvent, ctx: Context) {
  const owner = await (event.projectId
    ? getContainer(ctx.deps, 'project', event.projectId)
    : getContainer(ctx.deps, 'registry', event.registryId!));
  // The event was readable, so its entity is; projects and registries are never deleted.
  const entity = await readableEntity(ctx, event.entityId);
  if (!entity || !owner) throw new Error(`Event ${event.id} names a missing entity or owner.`);
  return { entity: entity.name, owner: owner.name };
}

export const ArtifactEventRef = builder.node(builder.objectRef<ArtifactEvent>('ArtifactEvent'), {
  description: 'One reported artifact event, stored as received.',
  id: { resolve: (e) => e.id },
  loadOne: async (id, ctx) => {
    const event = await getEvent(ctx.deps, id);
    return event && hasRole(ctx.viewer, event.entityId) ? event : null;
  },
  fields: (t) => ({
    eventType: t.field({
      type: EventTypeEnum,
      description: 'What happened.',
      resolve: (e) => e.eventType,
    }),
    project: t.field({
      type: ProjectRef,
      nullable: true,
      description: 'The project it happened in, for project events.',
      resolve: async (e, _args, ctx) =>
        e.projectId ? ((await getContainer(ctx.deps, 'project', e.projectId)) ?? null) : null,
    }),
    registry: t.field({
      type: RegistryRef,
      nullable: true,
      description: 'The registry it happened in, for registry events.',
      resolve: async (e, _args, ctx) =>
        e.registryId ? ((await getContainer(ctx.deps, 'registry', e.registryId)) ?? null) : null,
    }),
    collectionName: t.exposeString('collectionName', { description: 'The artifact collection.' }),
    artifactType: t.exposeString('artifactType', { description: 'The artifact type.' }),
    versionIndex: t.int({
      nullable: true,
      description:
        'The version index (3 for v3); null for collection-tag events, which name no version.',
      resolve: (e) => eventVersionIndex(e),
    }),
    alias: t.exposeString('alias', {
      nullable: true,
      description: 'The alias added, for ADD_ARTIFACT_ALIAS.',
    }),
    tag: t.exposeString('tag', {
      nullable: true,
      description:
        'The tag added or removed, for ADD_/REMOVE_ARTIFACT_TAG and ADD_/REMOVE_COLLECTION_TAG.',
    }),
    versionString: t.string({
      description:
        '`entity/project/collection:v3`, or `…:alias` for alias events; `entity/project/collection` (no version) for collection-tag events.',
      resolve: async (e, _args, ctx) => {
        const p = await versionParts(e, ctx);
        return artifactVersionString(
          p.entity,
          p.owner,
          e.collectionName,
          eventVersionIndex(e),
          e.alias,
        );
      },
    }),
    versionUri: t.string({
      description:
        'A stable URI of the version (of the collection, without `/vN`, for collection-tag events): what templates see as artifact_version.',
      resolve: async (e, _args, ctx) => {
        const p = await versionParts(e, ctx);
        return artifactVersionUri(p.entity, p.owner, e.collectionName, eventVersionIndex(e));
      },
    }),
    author: t.exposeString('author', { description: 'Who the reporter says caused the event.' }),
    metadata: t.field({
      type: 'JSONObject',
      nullable: true,
      description: 'Metadata reported with the event.',
      resolve: (e) => e.metadata ?? null,
    }),
    idempotencyKey: t.exposeString('idempotencyKey', {
      nullable: true,
      description: 'The idempotency key it was sent with.',
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When it was received.' }),
    reportedBy: t.field({
      type: UserRef,
      nullable: true,
      description: 'The account whose API key reported it.',
      resolve: async (e, _args, ctx) =>
        e.createdById ? ((await findUser(ctx.deps, e.createdById)) ?? null) : null,
    }),
  }),
});

builder.objectField(
  ArtifactEventRef,
  'triggeredRuns',
  triggeredRunsField('Runs this event triggered, newest first.', (e) => ({
    kind: 'event',
    id: e.id,
  })),
);

const ArtifactEventConnectionRef = builder.connectionObject(
  { type: ArtifactEventRef, name: 'ArtifactEventConnection' },
  { name: 'ArtifactEventEdge' },
);

builder.objectField(EntityRef, 'events', (t) =>
  t.connection(
    {
      type: ArtifactEventRef,
      description: 'Artifact events reported to the entity, newest first.',
      args: {
        eventType: t.arg({
          type: EventTypeEnum,
          required: false,
          description: 'Only events of this type.',
        }),
      },
      resolve: (entity, args, ctx) =>
        connection(
          args,
          eventList(ctx.deps, { entityId: entity.id, eventType: args.eventType ?? null }),
        ),
    },
    ArtifactEventConnectionRef,
  ),
);

const EmitArtifactEventPayload = builder
  .objectRef<{ event: ArtifactEvent; runs: TriggeredRun[]; replayed: boolean }>(
    'EmitArtifactEventPayload',
  )
  .implement({
    description: 'The stored event and the runs it queued.',
    fields: (t) => ({
      event: t.field({
        type: ArtifactEventRef,
        description: 'The event.',
        resolve: (r) => r.event,
      }),
      triggeredRuns: t.field({
        type: [TriggeredRunRef],
        description: 'One QUEUED run per matching enabled automation.',
        resolve: (r) => r.runs,
      }),
      replayed: t.exposeBoolean('replayed', {
        description:
          'True when the idempotency key was seen before and this is the first result again.',
      }),
    }),
  });

builder.mutationField('emitArtifactEvent', (t) =>
  t.field({
    type: EmitArtifactEventPayload,
    description:
      'Reports an artifact event. Stores it, matches it against the enabled automations and queues one run each, in one transaction; never waits for delivery. Members and admins.',
    errors: { types: [ValidationError, NotFoundError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'The event.',
        type: builder.inputType('EmitArtifactEventInput', {
          description:
            'An artifact event. CREATE_ARTIFACT happens in a project, LINK_ARTIFACT and UNLINK_ARTIFACT in a registry, alias and tag events in either.',
          fields: (f) => ({
            entity: f.string({ description: 'Entity name.' }),
            eventType: f.field({ type: EventTypeEnum, description: 'What happened.' }),
            owner: f.field({
              type: CollectionOwnerInput,
              description: 'The project or registry it happened in.',
            }),
            collection: f.string({
              description: 'Artifact collection name; created on first use.',
            }),
            artifactType: f.string({ description: 'Artifact type, e.g. `model`.' }),
            versionIndex: f.int({
              required: false,
              description:
                'Version index (3 for v3); required, except for ADD_COLLECTION_TAG and REMOVE_COLLECTION_TAG, which name no version and refuse it.',
            }),
            alias: f.string({
              required: false,
              description: 'The alias added; required for ADD_ARTIFACT_ALIAS, refused otherwise.',
            }),
            tag: f.string({
              required: false,
              description:
                'The tag added or removed (1 to 128 letters, digits, ".", "_" or "-"); required for the four tag events, refused otherwise.',
            }),
            author: f.string({
              required: false,
              description: 'Who caused it; defaults to your account name.',
            }),
            metadata: f.field({
              type: 'JSONObject',
              required: false,
              description: `Metadata, at most 64 KiB of JSON, nesting objects and arrays at most ${MAX_JSON_DEPTH} levels deep.`,
            }),
            idempotencyKey: f.string({
              required: false,
              description:
                'Retrying with the same key returns the first result instead of a second event.',
            }),
          }),
        }),
      }),
    },
    resolve: (_root, { input: given }, ctx) => {
      const input = { ...given, owner: ownerOf(given.owner) };
      const { telemetry } = ctx.deps;
      return telemetry
        ? telemetry.emit(() => emitArtifactEvent(ctx, input))
        : emitArtifactEvent(ctx, input);
    },
  }),
);
