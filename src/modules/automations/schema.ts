import { builder } from '../../builder.js';
import {
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from '../../errors.js';
import { ActionRef, actionReferenceOf } from '../actions/schema.js';
import { getAction } from '../actions/service.js';
import { connection } from '../connection.js';
import { hasRole, readableEntity } from '../entities/access.js';
import { EntityRef } from '../entities/schema.js';
import { decodeId, storedIdOf } from '../global-id.js';
import { MAX_JSON_DEPTH } from '../json-depth.js';
import { ArtifactCollectionRef, ProjectRef, RegistryRef } from '../projects/schema.js';
import { getCollection, getContainer } from '../projects/service.js';
import { DEFAULT_COOLDOWN_SECONDS, MAX_COOLDOWN_SECONDS } from '../training-runs/conditions.js';
import { UserRef } from '../users/schema.js';
import { findUser, isVisibleTo } from '../users/service.js';
import { RunConditionInputRef, RunConditionRef, runConditionOf } from './run-condition-schema.js';
import {
  type Automation,
  type AutomationActionInput,
  type AutomationFilterInput,
  type AutomationScopeInput,
  automationList,
  createAutomation,
  deleteAutomation,
  getAutomation,
  updateAutomation,
} from './service.js';

export const EventTypeEnum = builder.enumType('EventType', {
  description:
    'What happened: to an artifact version or collection (reported with emitArtifactEvent), or to a training run (reported with reportRunState and logRunMetrics).',
  values: {
    CREATE_ARTIFACT: {
      description:
        'A new version was logged to a collection in a project. Watched from a project or project collection.',
    },
    LINK_ARTIFACT: {
      description:
        'A version was linked to a registry collection. Watched from a registry or registry collection.',
    },
    UNLINK_ARTIFACT: {
      description:
        'A version was unlinked (removed) from a registry collection. Watched from a registry or registry collection.',
    },
    ADD_ARTIFACT_ALIAS: {
      description: 'An alias such as `production` was added to a version. Watched from any scope.',
    },
    ADD_ARTIFACT_TAG: {
      description: 'A tag such as `candidate` was added to a version. Watched from any scope.',
    },
    REMOVE_ARTIFACT_TAG: {
      description: 'A tag was removed from a version. Watched from any scope.',
    },
    ADD_COLLECTION_TAG: {
      description: 'A tag was added to a collection (no version involved). Watched from any scope.',
    },
    REMOVE_COLLECTION_TAG: {
      description:
        'A tag was removed from a collection (no version involved). Watched from any scope.',
    },
    RUN_STATE: {
      description:
        'A training run entered one of the chosen states (reportRunState). Watched from a project or the entity.',
    },
    RUN_METRIC: {
      description:
        "A run's metric (latest, or MAX/MIN/AVERAGE over its last N values) met a threshold (logRunMetrics). Watched from a project or the entity.",
    },
    RUN_METRIC_CHANGE: {
      description:
        "A run's metric changed between its prior and current window of N values by more than an amount. Watched from a project or the entity.",
    },
    RUN_METRIC_ZSCORE: {
      description:
        "A run's latest metric value lies more than a threshold of standard deviations from the same metric across the project's recent runs. Watched from a project or the entity.",
    },
  } as const,
});

export const ScopeTypeEnum = builder.enumType('ScopeType', {
  description: 'Where an automation watches for events.',
  values: {
    PROJECT: {
      description: 'Every collection of a project, including collections created later.',
    },
    REGISTRY: {
      description: 'Every collection of a registry, including collections created later.',
    },
    PROJECT_COLLECTION: { description: 'One artifact collection in a project.' },
    REGISTRY_COLLECTION: { description: 'One collection in a registry.' },
    ENTITY: {
      description:
        "Every project and registry of the automation's entity, including ones created later.",
    },
  } as const,
});

export const SlackSeverityEnum = builder.enumType('SlackSeverity', {
  description: 'How a Slack notification is marked.',
  values: {
    INFO: { description: 'For information (the default).' },
    WARN: { description: 'Needs attention.' },
    ERROR: { description: 'Something failed.' },
  } as const,
});

const AutomationScopeRef = builder.objectRef<Automation>('AutomationScope').implement({
  description:
    "Where an automation watches: a project or registry, one collection in either, or (ENTITY) every project and registry of the automation's entity. Only the fields its type names are set; all three are null for ENTITY.",
  fields: (t) => ({
    type: t.field({
      type: ScopeTypeEnum,
      description: 'The kind of scope.',
      resolve: (a) => a.scopeType,
    }),
    project: t.field({
      type: ProjectRef,
      nullable: true,
      description:
        'The project watched, or holding the collection watched; null for registry scopes.',
      resolve: async (a, _args, ctx) => {
        if (a.scopeType === 'PROJECT')
          return (await getContainer(ctx.deps, 'project', a.scopeId)) ?? null;
        if (a.scopeType !== 'PROJECT_COLLECTION') return null;
        const projectId = (await getCollection(ctx.deps, a.scopeId))?.projectId;
        return projectId ? ((await getContainer(ctx.deps, 'project', projectId)) ?? null) : null;
      },
    }),
    registry: t.field({
      type: RegistryRef,
      nullable: true,
      description:
        'The registry watched, or holding the collection watched; null for project scopes.',
      resolve: async (a, _args, ctx) => {
        if (a.scopeType === 'REGISTRY')
          return (await getContainer(ctx.deps, 'registry', a.scopeId)) ?? null;
        if (a.scopeType !== 'REGISTRY_COLLECTION') return null;
        const registryId = (await getCollection(ctx.deps, a.scopeId))?.registryId;
        return registryId ? ((await getContainer(ctx.deps, 'registry', registryId)) ?? null) : null;
      },
    }),
    collection: t.field({
      type: ArtifactCollectionRef,
      nullable: true,
      description: 'The collection watched; null for project and registry scopes.',
      resolve: async (a, _args, ctx) =>
        a.scopeType === 'PROJECT_COLLECTION' || a.scopeType === 'REGISTRY_COLLECTION'
          ? ((await getCollection(ctx.deps, a.scopeId)) ?? null)
          : null,
    }),
  }),
});

const AutomationFilterRef = builder.objectRef<Automation>('AutomationFilter').implement({
  description: 'Conditions an event must also meet. A null condition matches everything.',
  fields: (t) => ({
    collectionName: t.exposeString('filterCollectionName', {
      nullable: true,
      description: 'Only events in the collection of this name.',
    }),
    artifactType: t.exposeString('filterArtifactType', {
      nullable: true,
      description: 'Only events on artifacts of this type, e.g. `model`.',
    }),
    aliasPattern: t.exposeString('filterAliasPattern', {
      nullable: true,
      description:
        'Only aliases this RE2 regular expression matches anywhere (anchor with `^…$` for whole aliases). Alias events only.',
    }),
    tagPattern: t.exposeString('filterTagPattern', {
      nullable: true,
      description:
        'Only tags this RE2 regular expression matches anywhere (anchor with `^…$` for whole tags). Tag events only.',
    }),
    runNamePattern: t.exposeString('filterRunNamePattern', {
      nullable: true,
      description:
        'Only runs whose name this RE2 regular expression matches anywhere. Run events only.',
    }),
    reportedBy: t.field({
      type: UserRef,
      nullable: true,
      description:
        'Only runs first reported by this user. Run events only. Null when unset, or when the user is gone or not visible to you.',
      resolve: async (a, _args, ctx) =>
        a.filterRunReportedById &&
        (await isVisibleTo(ctx.deps, ctx.viewer, a.filterRunReportedById))
          ? ((await findUser(ctx.deps, a.filterRunReportedById)) ?? null)
          : null,
    }),
  }),
});

const AutomationConfigRef = builder.objectRef<Automation>('AutomationActionConfig').implement({
  description:
    "This automation's settings for its action: a payload template for a webhook, or a title, message and severity for Slack.",
  fields: (t) => ({
    payloadTemplate: t.exposeString('payloadTemplate', {
      nullable: true,
      description:
        'Webhook: the JSON payload template; null sends the default envelope. Null for Slack actions.',
    }),
    slackTitle: t.exposeString('slackTitle', {
      nullable: true,
      description: 'Slack: the title template. Null for webhooks.',
    }),
    slackMessage: t.exposeString('slackMessage', {
      nullable: true,
      description: 'Slack: the message template. Null for webhooks.',
    }),
    slackSeverity: t.field({
      type: SlackSeverityEnum,
      nullable: true,
      description: 'Slack: how the notification is marked. Null for webhooks.',
      resolve: (a) => a.slackSeverity,
    }),
  }),
});

export const AutomationRef = builder.node(builder.objectRef<Automation>('Automation'), {
  description:
    'When an event of `eventType` happens in `scope` and passes `filter`, run `action` with `config`.',
  id: { resolve: (a) => a.id },
  loadOne: async (id, ctx) => {
    const row = await getAutomation(ctx.deps, id);
    return row && hasRole(ctx.viewer, row.entityId) ? row : null;
  },
  fields: (t) => ({
    entity: t.field({
      type: EntityRef,
      description: 'The entity it belongs to.',
      resolve: async (a, _args, ctx) => (await readableEntity(ctx, a.entityId))!,
    }),
    name: t.exposeString('name', { description: 'Name, unique in its entity.' }),
    description: t.exposeString('description', {
      nullable: true,
      description: 'What it is for.',
    }),
    enabled: t.exposeBoolean('enabled', {
      description: 'Whether events trigger it; a disabled automation is kept but never matched.',
    }),
    eventType: t.field({
      type: EventTypeEnum,
      description: 'The event it reacts to.',
      resolve: (a) => a.eventType,
    }),
    scope: t.field({
      type: AutomationScopeRef,
      description: 'Where it watches.',
      resolve: (a) => a,
    }),
    filter: t.field({
      type: AutomationFilterRef,
      description: 'Further conditions on the event.',
      resolve: (a) => a,
    }),
    action: t.field({
      type: ActionRef,
      description:
        'The action it runs. An action cannot be deleted while an automation uses it (deleteAction answers a ConflictError), so this is always set.',
      resolve: async (a, _args, ctx) => {
        const action = await getAction(ctx.deps, a.actionId);
        // Only a deleted automation's action can be gone (deleted after it, by another request).
        if (!action) throw new Error(`The action of automation ${a.id} no longer exists.`);
        return action;
      },
    }),
    config: t.field({
      type: AutomationConfigRef,
      description: 'Its settings for the action.',
      resolve: (a) => a,
    }),
    runCondition: t.field({
      type: RunConditionRef,
      nullable: true,
      description: 'Run events: what fires it. Null for artifact events.',
      resolve: (a) => a.runCondition,
    }),
    cooldownSeconds: t.exposeInt('cooldownSeconds', {
      nullable: true,
      description:
        'Run events: after firing for a run, it does not fire for that run again for this many seconds. Null for artifact events.',
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When it was created.' }),
    updatedAt: t.field({
      type: 'DateTime',
      description: 'When it was last changed (its creation time until then).',
      resolve: (a) => a.updatedAt ?? a.createdAt,
    }),
    createdBy: t.field({
      type: UserRef,
      nullable: true,
      description: 'Who created it; null when that account is gone or no longer visible to you.',
      resolve: async (a, _args, ctx) =>
        a.createdById && (await isVisibleTo(ctx.deps, ctx.viewer, a.createdById))
          ? ((await findUser(ctx.deps, a.createdById)) ?? null)
          : null,
    }),
  }),
});

/** The stored id behind an action's ID, or undefined when it names no action. */
function actionIdOf(globalId: string): string | undefined {
  return actionReferenceOf(globalId)?.id;
}

/** The action part of an input with its global ID decoded; NotFoundError when it names no action. */
function decodeActionInput(input: AutomationActionInput): AutomationActionInput {
  const actionId = actionIdOf(input.actionId);
  if (actionId === undefined) {
    throw new NotFoundError(
      'input.action.actionId',
      `No action with id "${input.actionId}"; pass the \`id\` of a WebhookAction, SlackAction or NoOpAction.`,
    );
  }
  return { ...input, actionId };
}

/** The filter part of an input with the user's global ID decoded. */
function decodeFilterInput(
  filter: AutomationFilterInput & { reportedBy?: string | null },
): AutomationFilterInput {
  const { reportedBy, ...rest } = filter;
  if (reportedBy == null) return rest;
  const reportedById = storedIdOf(reportedBy, 'User');
  if (reportedById === null) {
    throw new NotFoundError('input.filter.reportedBy', `No user with id "${reportedBy}".`);
  }
  return { ...rest, reportedById };
}

export const AutomationConnectionRef = builder.connectionObject(
  { type: AutomationRef, name: 'AutomationConnection' },
  { name: 'AutomationEdge' },
);

builder.objectField(EntityRef, 'automations', (t) =>
  t.connection(
    {
      type: AutomationRef,
      description: "The entity's automations, newest first. Each argument narrows the list.",
      args: {
        scopeType: t.arg({
          type: ScopeTypeEnum,
          required: false,
          description: 'Only this kind of scope.',
        }),
        eventType: t.arg({
          type: EventTypeEnum,
          required: false,
          description: 'Only this event type.',
        }),
        actionId: t.arg.id({
          required: false,
          description: 'Only automations running this action (its global ID).',
        }),
        enabled: t.arg.boolean({
          required: false,
          description: 'Only enabled (true) or disabled (false) automations.',
        }),
      },
      resolve: (entity, args, ctx) => {
        const actionId = args.actionId == null ? null : actionIdOf(args.actionId);
        const list = automationList(ctx.deps, entity.id, { ...args, actionId });
        // An ID that names no action matches no automation.
        return connection(
          args,
          actionId === undefined ? { ...list, fetch: async () => [], count: async () => 0 } : list,
        );
      },
    },
    AutomationConnectionRef,
  ),
);

builder.queryField('automation', (t) =>
  t.field({
    type: AutomationRef,
    nullable: true,
    description:
      'An automation by ID. Null when the ID is malformed, names something other than an automation, or names one that does not exist or is not yours.',
    args: { id: t.arg.id({ description: 'ID of the automation, `auto_…`.' }) },
    resolve: async (_root, { id }, ctx) => {
      const rowId = storedIdOf(id, 'Automation');
      const row = rowId === null ? undefined : await getAutomation(ctx.deps, rowId);
      return row && hasRole(ctx.viewer, row.entityId) ? row : null;
    },
  }),
);

const ProjectCollectionInput = builder.inputType('ProjectCollectionInput', {
  description: 'A collection in a project, by name.',
  fields: (f) => ({
    project: f.string({ description: 'Project name.' }),
    collection: f.string({ description: 'Collection name in that project.' }),
  }),
});

const RegistryCollectionInput = builder.inputType('RegistryCollectionInput', {
  description: 'A collection in a registry, by name.',
  fields: (f) => ({
    registry: f.string({ description: 'Registry name.' }),
    collection: f.string({ description: 'Collection name in that registry.' }),
  }),
});

/** Where an automation watches; GraphQL checks that exactly one field is set. */
const ScopeInput = builder.inputType('AutomationScopeInput', {
  description:
    "Where to watch, by name: give exactly one of a whole `project`, a whole `registry`, a `projectCollection`, a `registryCollection`, or `entity: true` for every project and registry of the automation's entity.",
  isOneOf: true,
  fields: (f) => ({
    project: f.string({ required: false, description: 'A whole project (PROJECT scope).' }),
    registry: f.string({ required: false, description: 'A whole registry (REGISTRY scope).' }),
    projectCollection: f.field({
      type: ProjectCollectionInput,
      required: false,
      description: 'One collection of a project (PROJECT_COLLECTION scope).',
    }),
    registryCollection: f.field({
      type: RegistryCollectionInput,
      required: false,
      description: 'One collection of a registry (REGISTRY_COLLECTION scope).',
    }),
    entity: f.boolean({
      required: false,
      description:
        "`true`: every project and registry of the automation's entity, including ones created later (ENTITY scope). `false` is refused.",
    }),
  }),
});

/** The service's form of an `AutomationScopeInput`, which GraphQL has checked names one. */
function scopeOf(scope: {
  project?: string | null;
  registry?: string | null;
  projectCollection?: { project: string; collection: string } | null;
  registryCollection?: { registry: string; collection: string } | null;
  entity?: boolean | null;
}): AutomationScopeInput {
  if (scope.project != null) return { type: 'PROJECT', project: scope.project };
  if (scope.registry != null) return { type: 'REGISTRY', registry: scope.registry };
  if (scope.projectCollection != null)
    return { type: 'PROJECT_COLLECTION', ...scope.projectCollection };
  if (scope.registryCollection != null)
    return { type: 'REGISTRY_COLLECTION', ...scope.registryCollection };
  if (scope.entity != null) {
    if (scope.entity) return { type: 'ENTITY' };
    throw new ValidationError(
      'input.scope.entity',
      '`entity: false` names no scope; give `entity: true` to watch the whole entity, or another scope field.',
    );
  }
  throw new Error('AutomationScopeInput is @oneOf: GraphQL lets no empty one through');
}

const FilterInput = builder.inputType('AutomationFilterInput', {
  description: 'Further conditions on events; leave a field out to match everything.',
  fields: (f) => ({
    collectionName: f.string({
      required: false,
      description:
        'Only this collection, by name (up to 64 characters). Not for collection scopes, which already name one.',
    }),
    artifactType: f.string({
      required: false,
      description: 'Only artifacts of this type, e.g. `model` (up to 64 characters).',
    }),
    aliasPattern: f.string({
      required: false,
      description:
        'ADD_ARTIFACT_ALIAS only: an RE2 regular expression (linear-time; no backreferences or lookaround; up to 256 characters) the alias must match somewhere, e.g. `^prod`.',
    }),
    runNamePattern: f.string({
      required: false,
      description:
        'Run events only: an RE2 regular expression (checked like `aliasPattern`) the run name must match somewhere, e.g. `^sweep-`.',
    }),
    reportedBy: f.id({
      required: false,
      description:
        'Run events only: the global ID of a member of the entity; only runs that user first reported.',
    }),
    tagPattern: f.string({
      required: false,
      description:
        'Tag events only (ADD_/REMOVE_ARTIFACT_TAG, ADD_/REMOVE_COLLECTION_TAG): an RE2 regular expression, checked like `aliasPattern`, the tag must match somewhere, e.g. `^candidate$`.',
    }),
  }),
});

const ActionInput = builder.inputType('AutomationActionInput', {
  description:
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the text shows template variables as written
    'Which action to run and how. A webhook takes only `payloadTemplate`; a Slack action needs `slackTitle` and `slackMessage` and may set `slackSeverity`. Templates use the variables `${event_type}`, `${artifact_version_string}` … and `${SECRET_NAME}`, and are checked when saved.',
  fields: (f) => ({
    actionId: f.id({ description: 'Global ID of an action of the same entity.' }),
    payloadTemplate: f.string({
      required: false,
      description: `Webhook: a JSON payload template (up to 64 KiB, nesting objects and arrays at most ${MAX_JSON_DEPTH} levels deep); variables are substituted inside string values. Leave out to send the default envelope.`,
    }),
    slackTitle: f.string({
      required: false,
      description: 'Slack: the title template (up to 64 KiB).',
    }),
    slackMessage: f.string({
      required: false,
      description: 'Slack: the message template (up to 64 KiB).',
    }),
    slackSeverity: f.field({
      type: SlackSeverityEnum,
      required: false,
      description: 'Slack: how the notification is marked; INFO when left out.',
    }),
  }),
});

/** The result of a mutation that changes one automation. */
function automationPayload(name: string, description: string) {
  return builder.objectRef<{ automation: Automation }>(name).implement({
    description,
    fields: (t) => ({
      automation: t.field({
        type: AutomationRef,
        description: 'The automation.',
        resolve: (p) => p.automation,
      }),
    }),
  });
}

builder.mutationField('createAutomation', (t) =>
  t.field({
    type: automationPayload('CreateAutomationPayload', 'The created automation.'),
    description:
      'Creates an automation. Its scope, event type, filter and action configuration are checked together now, not at delivery. Members and admins.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('CreateAutomationInput', {
          description: 'A new automation.',
          fields: (f) => ({
            entity: f.string({ description: 'Name of the entity it belongs to.' }),
            name: f.string({ description: 'Unique name in the entity (1 to 64 characters).' }),
            description: f.string({ required: false, description: 'What it is for.' }),
            enabled: f.boolean({
              required: false,
              description: 'Whether events trigger it; true when left out.',
            }),
            eventType: f.field({ type: EventTypeEnum, description: 'The event to react to.' }),
            scope: f.field({ type: ScopeInput, description: 'Where to watch.' }),
            filter: f.field({
              type: FilterInput,
              required: false,
              description: 'Further conditions.',
            }),
            action: f.field({ type: ActionInput, description: 'What to run.' }),
            runCondition: f.field({
              type: RunConditionInputRef,
              required: false,
              description: 'Run events: what fires it; required for them, refused for others.',
            }),
            cooldownSeconds: f.int({
              required: false,
              description: `Run events: seconds (0 to ${MAX_COOLDOWN_SECONDS}) before it fires again for the same run; ${DEFAULT_COOLDOWN_SECONDS} (24 hours, as W&B) when left out.`,
            }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      automation: await createAutomation(ctx, {
        ...input,
        scope: scopeOf(input.scope),
        filter: input.filter && decodeFilterInput(input.filter),
        action: decodeActionInput(input.action),
        runCondition: input.runCondition && runConditionOf(input.runCondition),
      }),
    }),
  }),
);

builder.mutationField('updateAutomation', (t) =>
  t.field({
    type: automationPayload('UpdateAutomationPayload', 'The changed automation.'),
    description:
      'Changes an automation, e.g. `enabled: false` to pause it. Fields left out keep their value; `scope`, `filter` and `action` are replaced whole when given. The result is checked as on creation. Members and admins.',
    errors: { types: [ValidationError, NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('UpdateAutomationInput', {
          description: 'The automation and the fields to change.',
          fields: (f) => ({
            id: f.id({ description: 'Global ID of the automation.' }),
            name: f.string({ required: false, description: 'New name, unique in the entity.' }),
            description: f.string({
              required: false,
              description: 'New description; null clears it.',
            }),
            enabled: f.boolean({
              required: false,
              description: 'Enable (true) or disable (false).',
            }),
            eventType: f.field({
              type: EventTypeEnum,
              required: false,
              description: 'New event type.',
            }),
            scope: f.field({ type: ScopeInput, required: false, description: 'New scope.' }),
            filter: f.field({
              type: FilterInput,
              required: false,
              description: 'New filter, replacing the old one whole; null removes every condition.',
            }),
            action: f.field({
              type: ActionInput,
              required: false,
              description: 'New action configuration, replacing the old one whole.',
            }),
            runCondition: f.field({
              type: RunConditionInputRef,
              required: false,
              description:
                'New run condition; null removes it (needed to change to an artifact event).',
            }),
            cooldownSeconds: f.int({
              required: false,
              description: 'New cooldown in seconds; null restores the default for run events.',
            }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      automation: await updateAutomation(ctx, {
        ...input,
        id: decodeId(input.id, 'Automation', 'input.id'),
        scope: input.scope && scopeOf(input.scope),
        filter: input.filter && decodeFilterInput(input.filter),
        action: input.action && decodeActionInput(input.action),
        runCondition:
          input.runCondition === undefined
            ? undefined
            : input.runCondition && runConditionOf(input.runCondition),
      }),
    }),
  }),
);

builder.mutationField('deleteAutomation', (t) =>
  t.field({
    type: automationPayload('DeleteAutomationPayload', 'The deleted automation, as it was.'),
    description:
      'Deletes an automation and returns it as it was. Runs it already triggered keep their history. Members and admins.',
    errors: { types: [NotFoundError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('DeleteAutomationInput', {
          description: 'The automation to delete.',
          fields: (f) => ({ id: f.id({ description: 'Global ID of the automation.' }) }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      automation: await deleteAutomation(ctx, { id: decodeId(input.id, 'Automation', 'input.id') }),
    }),
  }),
);
