import type { AppDeps, Context } from '../../context.js';
import { ConflictError, NotFoundError, ValidationError } from '../../errors.js';
import { newId } from '../../ids.js';
import type { AuditAction, AuditRecord } from '../../storage/audit.js';
import {
  type ActionKind,
  type AutomationFilter,
  type AutomationRecord,
  type AutomationSettings,
  type EventType,
  type ScopeType,
  type SlackSeverity,
  unreachable,
} from '../../storage/config.js';
import { DuplicateError } from '../../storage/errors.js';
import { getAction } from '../actions/service.js';
import type { StoredList } from '../connection.js';
import { requireEntity, requireRole } from '../entities/access.js';
import { EVENT_SHAPES, isRunEvent, typesCarrying } from '../events/event-types.js';
import { checkDescription, checkName, checkSlug } from '../names.js';
import { findCollection, type Kind, requireContainer } from '../projects/service.js';
import {
  checkCooldown,
  checkRunCondition,
  type RunConditionInput,
} from '../training-runs/conditions.js';
import { checkAliasPattern } from './pattern.js';
import { checkPayloadTemplate, checkTextTemplate } from './template.js';

export type Automation = AutomationRecord;
export type { AutomationFilter as AutomationListFilter };

/**
 * A scope as clients name it: the names of the project, registry and collection to watch, or the
 * whole entity the automation belongs to. The
 * schema's `@oneOf` input guarantees the names each type needs, and no others.
 */
export type AutomationScopeInput =
  | { type: 'PROJECT'; project: string }
  | { type: 'REGISTRY'; registry: string }
  | { type: 'PROJECT_COLLECTION'; project: string; collection: string }
  | { type: 'REGISTRY_COLLECTION'; registry: string; collection: string }
  | { type: 'ENTITY' };

export interface AutomationFilterInput {
  collectionName?: string | null;
  artifactType?: string | null;
  aliasPattern?: string | null;
  tagPattern?: string | null;
  /** Run events: an RE2 pattern the run's name must match. */
  runNamePattern?: string | null;
  /** Run events: only runs reported by this user (stored id). */
  reportedById?: string | null;
}

export interface AutomationActionInput {
  /** Stored id of the action (not its global ID). */
  actionId: string;
  payloadTemplate?: string | null;
  slackTitle?: string | null;
  slackMessage?: string | null;
  slackSeverity?: SlackSeverity | null;
}

export interface CreateAutomationInput {
  entity: string;
  name: string;
  description?: string | null;
  enabled?: boolean | null;
  eventType: EventType;
  scope: AutomationScopeInput;
  filter?: AutomationFilterInput | null;
  action: AutomationActionInput;
  /** Run events: the condition that fires the automation. */
  runCondition?: RunConditionInput | null;
  /** Run events: seconds before the automation fires again for the same run. */
  cooldownSeconds?: number | null;
}

/**
 * A change to an automation. An absent (or null) `name`, `enabled`, `eventType`, `scope` or
 * `action` keeps the stored value; a given `scope`, `filter` or `action` replaces that part
 * whole. A null `description` or `filter` clears it.
 */
export interface UpdateAutomationInput {
  /** Stored id of the automation (not its global ID). */
  id: string;
  name?: string | null;
  description?: string | null;
  enabled?: boolean | null;
  eventType?: EventType | null;
  scope?: AutomationScopeInput | null;
  filter?: AutomationFilterInput | null;
  action?: AutomationActionInput | null;
  /** Replaces the run condition when given; kept when absent (null clears it). */
  runCondition?: RunConditionInput | null;
  /** Replaces the cooldown when given; kept when absent (null restores the default). */
  cooldownSeconds?: number | null;
}

/**
 * The container kind each scope type lives in, and whether it names one collection of it. An
 * ENTITY scope lives in no container: it watches every project and registry of its entity.
 */
const SCOPE_SHAPE: Readonly<
  Record<Exclude<ScopeType, 'ENTITY'>, { kind: Kind; collection: boolean }>
> = {
  PROJECT: { kind: 'project', collection: false },
  REGISTRY: { kind: 'registry', collection: false },
  PROJECT_COLLECTION: { kind: 'project', collection: true },
  REGISTRY_COLLECTION: { kind: 'registry', collection: true },
};

/** Every stored column an automation's rules look at, before it is written. */
type Draft = AutomationSettings;

const SCOPE_FIELD = 'input.scope';
const FILTER_FIELD = 'input.filter';
const ACTION_FIELD = 'input.action';

const nameTaken = (name: string) =>
  new ConflictError(
    'input.name',
    `This entity already has an automation named "${name}"; pick another name.`,
  );

/**
 * Creates an automation in the entity. Members and admins only (NotFoundError on `input.entity`
 * for strangers, PermissionDeniedError for viewers). Throws ValidationError naming the field when
 * the name, scope, filter or action configuration is refused (see {@link checkDraft}),
 * NotFoundError for an unknown project, registry, collection or action, and ConflictError when
 * the entity already has an automation of that name. The automation, the secrets its templates
 * name and its audit entry are written in one transaction.
 */
export async function createAutomation(
  ctx: Context,
  input: CreateAutomationInput,
): Promise<Automation> {
  const { deps } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'MEMBER');
  const scope = await resolveScope(deps, entity.id, input.scope);
  const draft: Draft = {
    name: checkName(input.name, 'input.name'),
    description: checkDescription(input.description, 'input.description'),
    enabled: input.enabled ?? true,
    eventType: input.eventType,
    ...scope,
    ...filterColumns(input.filter),
    ...actionColumns(input.action),
    ...runColumns(input.eventType, input.runCondition ?? null, input.cooldownSeconds),
  };
  const secretIds = await checkDraft(deps, entity.id, draft);
  const now = deps.clock.now();
  const automation: Automation = {
    ...draft,
    id: newId(),
    entityId: entity.id,
    createdAt: now,
    updatedAt: now,
    createdById: ctx.viewer.user.id,
  };
  let row: Automation;
  try {
    row = await deps.storage.automations.create(
      automation,
      secretIds,
      automationAudit(ctx, 'automation.created', automation, {
        name: automation.name,
        eventType: automation.eventType,
        scopeType: automation.scopeType,
        enabled: automation.enabled,
      }),
    );
  } catch (error) {
    if (error instanceof DuplicateError) throw nameTaken(draft.name);
    throw error;
  }
  deps.logger.info(
    { entity: entity.name, automation: row.id, actor: ctx.viewer.user.id },
    'automation created',
  );
  return row;
}

/** Times an update is checked again after the automation changed under it. */
const UPDATE_ATTEMPTS = 3;

/**
 * Changes an automation; see {@link UpdateAutomationInput} for what an absent field means. The
 * merged result is checked exactly as on creation, and written, with its secret references, only
 * if the automation is still as it was read (else it is read, merged and checked again). Members
 * and admins only; NotFoundError on `input.id` when the automation does not exist or belongs to
 * an entity the caller is not in.
 */
export async function updateAutomation(
  ctx: Context,
  input: UpdateAutomationInput,
): Promise<Automation> {
  const { deps } = ctx;
  for (let attempt = 1; ; attempt++) {
    const current = await requireAutomation(ctx, input.id);
    const draft: Draft = {
      name: input.name == null ? current.name : checkName(input.name, 'input.name'),
      description:
        input.description === undefined
          ? current.description
          : checkDescription(input.description, 'input.description'),
      enabled: input.enabled ?? current.enabled,
      eventType: input.eventType ?? current.eventType,
      ...(input.scope == null
        ? { scopeType: current.scopeType, scopeId: current.scopeId }
        : await resolveScope(deps, current.entityId, input.scope)),
      ...(input.filter === undefined
        ? {
            filterCollectionName: current.filterCollectionName,
            filterArtifactType: current.filterArtifactType,
            filterAliasPattern: current.filterAliasPattern,
            filterTagPattern: current.filterTagPattern,
            filterRunNamePattern: current.filterRunNamePattern,
            filterRunReportedById: current.filterRunReportedById,
          }
        : filterColumns(input.filter)),
      ...runColumns(
        input.eventType ?? current.eventType,
        input.runCondition === undefined ? storedConditionInput(current) : input.runCondition,
        input.cooldownSeconds === undefined ? current.cooldownSeconds : input.cooldownSeconds,
      ),
      ...(input.action == null
        ? {
            actionId: current.actionId,
            payloadTemplate: current.payloadTemplate,
            slackTitle: current.slackTitle,
            slackMessage: current.slackMessage,
            slackSeverity: current.slackSeverity,
          }
        : actionColumns(input.action)),
    };
    const secretIds = await checkDraft(deps, current.entityId, draft);
    const changed = changedFields(current, draft);
    let row: Automation | undefined;
    try {
      row = await deps.storage.automations.update(
        current.id,
        current.updatedAt ?? current.createdAt,
        { ...draft, updatedAt: deps.clock.now() },
        secretIds,
        changed.length > 0
          ? automationAudit(ctx, 'automation.updated', current, { name: draft.name, changed })
          : null,
      );
    } catch (error) {
      if (error instanceof DuplicateError) throw nameTaken(draft.name);
      throw error;
    }
    if (row) {
      deps.logger.info(
        { automation: row.id, enabled: row.enabled, actor: ctx.viewer.user.id },
        'automation updated',
      );
      return row;
    }
    if (attempt === UPDATE_ATTEMPTS) {
      throw new ConflictError(
        'input.id',
        'The automation kept changing while this update was checked; read it again and retry.',
      );
    }
  }
}

/**
 * Deletes an automation and its secret references, and returns it as it was. Runs it already
 * triggered keep their history. Members and admins only; NotFoundError on `input.id` as for
 * {@link updateAutomation}.
 */
export async function deleteAutomation(ctx: Context, input: { id: string }): Promise<Automation> {
  const { deps } = ctx;
  const current = await requireAutomation(ctx, input.id);
  const deleted = await deps.storage.automations.delete(
    current.id,
    automationAudit(ctx, 'automation.deleted', current, { name: current.name }),
    deps.clock.now(),
  );
  if (!deleted) throw notFound(input.id);
  deps.logger.info(
    { automation: current.id, name: current.name, actor: ctx.viewer.user.id },
    'automation deleted',
  );
  return current;
}

function automationAudit(
  ctx: Context,
  code: Extract<AuditAction, `automation.${string}`>,
  row: Pick<Automation, 'id' | 'entityId'>,
  details: Record<string, unknown>,
): AuditRecord {
  return {
    entityId: row.entityId,
    actorId: ctx.viewer.user.id,
    action: code,
    targetType: 'Automation',
    targetId: row.id,
    details,
  };
}

/** Each stored column of an automation, as the field of the `Automation` type that shows it. */
const PUBLIC_FIELD: Readonly<Record<keyof Draft, string>> = {
  name: 'name',
  description: 'description',
  enabled: 'enabled',
  eventType: 'eventType',
  scopeType: 'scope',
  scopeId: 'scope',
  filterCollectionName: 'filter.collectionName',
  filterArtifactType: 'filter.artifactType',
  filterAliasPattern: 'filter.aliasPattern',
  filterTagPattern: 'filter.tagPattern',
  filterRunNamePattern: 'filter.runNamePattern',
  filterRunReportedById: 'filter.reportedBy',
  runCondition: 'runCondition',
  cooldownSeconds: 'cooldownSeconds',
  actionId: 'action',
  payloadTemplate: 'config.payloadTemplate',
  slackTitle: 'config.slackTitle',
  slackMessage: 'config.slackMessage',
  slackSeverity: 'config.slackSeverity',
};

/** The public names of the fields that differ, for the audit log: names only, never contents. */
function changedFields(before: Draft, after: Draft): string[] {
  const changed = new Set<string>();
  for (const [column, field] of Object.entries(PUBLIC_FIELD)) {
    const [a, b] = [before[column as keyof Draft], after[column as keyof Draft]];
    // The run condition is an object: compared by value.
    if (a !== b && JSON.stringify(a) !== JSON.stringify(b)) changed.add(field);
  }
  return [...changed];
}

/** The automation with this stored id, whoever may see it; undefined when there is none. */
export async function getAutomation(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<Automation | undefined> {
  return deps.storage.automations.find(id);
}

/** The entity's automations matching `filter`, newest first. */
export function automationList(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  filter: AutomationFilter,
): StoredList<Automation> {
  return {
    keyOf: (automation) => [automation.createdAt.getTime(), automation.id],
    keyTypes: ['number', 'string'],
    fetch: (request) => deps.storage.automations.pageAutomations(entityId, filter, request),
    count: () => deps.storage.automations.countAutomations(entityId, filter),
  };
}

const notFound = (id: string) => new NotFoundError('input.id', `No automation with id "${id}".`);

/** Loads an automation for a change, which needs MEMBER in its entity. */
async function requireAutomation(ctx: Context, id: string): Promise<Automation> {
  const row = await getAutomation(ctx.deps, id);
  if (!row) throw notFound(id);
  requireRole(ctx.viewer, row.entityId, 'MEMBER', () => notFound(id));
  return row;
}

/** Where each scope type's names sit in the input, for errors: `input.scope.project`, … */
const SCOPE_INPUT_FIELD: Readonly<Record<ScopeType, string>> = {
  PROJECT: SCOPE_FIELD,
  REGISTRY: SCOPE_FIELD,
  PROJECT_COLLECTION: `${SCOPE_FIELD}.projectCollection`,
  REGISTRY_COLLECTION: `${SCOPE_FIELD}.registryCollection`,
  ENTITY: `${SCOPE_FIELD}.entity`,
};

/**
 * Resolves a scope's names to the id it watches. Throws NotFoundError on the field naming
 * something that does not exist (e.g. `input.scope.projectCollection.collection`).
 */
async function resolveScope(
  deps: AppDeps,
  entityId: string,
  scope: AutomationScopeInput,
): Promise<{ scopeType: ScopeType; scopeId: string }> {
  // The entity's own id: the events of every project and registry in it look it up too.
  if (scope.type === 'ENTITY') return { scopeType: 'ENTITY', scopeId: entityId };
  const shape = SCOPE_SHAPE[scope.type];
  const field = SCOPE_INPUT_FIELD[scope.type];
  const [ownerField, ownerName] =
    'project' in scope ? ['project', scope.project] : ['registry', scope.registry];
  const owner = await requireContainer(
    deps,
    shape.kind,
    entityId,
    ownerName,
    `${field}.${ownerField}`,
  );
  if (!('collection' in scope)) return { scopeType: scope.type, scopeId: owner.id };
  const collection = await findCollection(deps, shape.kind, owner.id, scope.collection);
  if (!collection) {
    throw new NotFoundError(
      `${field}.collection`,
      `No collection named "${scope.collection}" in ${shape.kind} "${ownerName}"; create it with createArtifactCollection first.`,
    );
  }
  return { scopeType: scope.type, scopeId: collection.id };
}

/** Filter columns from input; an absent filter matches everything. */
function filterColumns(
  filter: AutomationFilterInput | null | undefined,
): Pick<
  Draft,
  | 'filterCollectionName'
  | 'filterArtifactType'
  | 'filterAliasPattern'
  | 'filterTagPattern'
  | 'filterRunNamePattern'
  | 'filterRunReportedById'
> {
  return {
    filterCollectionName: filter?.collectionName ?? null,
    filterArtifactType: filter?.artifactType ?? null,
    filterAliasPattern: filter?.aliasPattern ?? null,
    filterTagPattern: filter?.tagPattern ?? null,
    filterRunNamePattern: filter?.runNamePattern ?? null,
    filterRunReportedById: filter?.reportedById ?? null,
  };
}

/** The run condition and cooldown, checked for the event type (see conditions.ts). */
function runColumns(
  eventType: EventType,
  condition: RunConditionInput | null,
  cooldownSeconds: number | null | undefined,
): Pick<Draft, 'runCondition' | 'cooldownSeconds'> {
  return {
    runCondition: checkRunCondition(eventType, condition, 'input.runCondition'),
    cooldownSeconds: checkCooldown(eventType, cooldownSeconds, 'input.cooldownSeconds'),
  };
}

/** A stored condition as input, so an update that keeps it checks it against a new event type. */
function storedConditionInput(current: Automation): RunConditionInput | null {
  return current.runCondition;
}

function actionColumns(
  action: AutomationActionInput,
): Pick<Draft, 'actionId' | 'payloadTemplate' | 'slackTitle' | 'slackMessage' | 'slackSeverity'> {
  return {
    actionId: action.actionId,
    payloadTemplate: action.payloadTemplate ?? null,
    slackTitle: action.slackTitle ?? null,
    slackMessage: action.slackMessage ?? null,
    slackSeverity: action.slackSeverity ?? null,
  };
}

/**
 * The rules an automation must satisfy whenever it is saved; on success, fills in defaults in
 * `draft` (Slack severity) and returns the ids of the secrets its templates name. Throws
 * ValidationError when the scope cannot see the event type, when a filter does not fit the scope
 * or event or is too long, or when the action configuration does not fit the action's kind;
 * NotFoundError on `input.action.actionId` when the action is not in the entity.
 */
async function checkDraft(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  draft: Draft,
): Promise<string[]> {
  const scopes = EVENT_SHAPES[draft.eventType].scopes;
  if (!scopes.includes(draft.scopeType)) {
    throw new ValidationError(
      SCOPE_FIELD,
      `${draft.eventType} events can only be watched from a ${scopes.join(', ').replace(/, (?=[^,]*$)/, ' or ')} scope, not ${draft.scopeType}; change the scope or the event type.`,
    );
  }
  await checkFilter(deps, entityId, draft);
  return checkActionConfig(deps, entityId, draft);
}

async function checkFilter(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  draft: Draft,
): Promise<void> {
  const field = (name: string) => `${FILTER_FIELD}.${name}`;
  if (isRunEvent(draft.eventType)) {
    for (const [name, value] of [
      ['collectionName', draft.filterCollectionName],
      ['artifactType', draft.filterArtifactType],
    ] as const) {
      if (value !== null) {
        throw new ValidationError(
          field(name),
          `${draft.eventType} is about a training run, which has no artifact; remove \`${name}\`, or filter runs with \`runNamePattern\` and \`reportedBy\`.`,
        );
      }
    }
  } else {
    for (const [name, value] of [
      ['runNamePattern', draft.filterRunNamePattern],
      ['reportedBy', draft.filterRunReportedById],
    ] as const) {
      if (value !== null) {
        throw new ValidationError(
          field(name),
          `Only run events (RUN_STATE, RUN_METRIC, RUN_METRIC_CHANGE, RUN_METRIC_ZSCORE) have a run; remove \`${name}\` for ${draft.eventType} automations.`,
        );
      }
    }
  }
  if (draft.filterRunNamePattern !== null) {
    if (draft.filterRunNamePattern === '') {
      throw new ValidationError(
        field('runNamePattern'),
        'The run name pattern is empty; leave `runNamePattern` out to match every run.',
      );
    }
    checkAliasPattern(draft.filterRunNamePattern, field('runNamePattern'), 'run name');
  }
  if (draft.filterRunReportedById !== null) {
    const member = await deps.storage.entities.findMembership(
      entityId,
      draft.filterRunReportedById,
    );
    if (!member) {
      throw new NotFoundError(
        field('reportedBy'),
        'No member of this entity has that id; pick a user from `entity.members`.',
      );
    }
  }
  if (draft.filterCollectionName !== null) {
    if (draft.scopeType !== 'ENTITY' && SCOPE_SHAPE[draft.scopeType].collection) {
      throw new ValidationError(
        field('collectionName'),
        `A ${draft.scopeType} scope already names its collection; remove the \`collectionName\` filter, or widen the scope to the whole ${SCOPE_SHAPE[draft.scopeType].kind}.`,
      );
    }
    checkSlug(draft.filterCollectionName, field('collectionName'));
  }
  if (draft.filterArtifactType !== null) {
    checkSlug(draft.filterArtifactType, field('artifactType'));
  }
  if (draft.filterAliasPattern !== null) {
    if (draft.eventType !== 'ADD_ARTIFACT_ALIAS') {
      throw new ValidationError(
        field('aliasPattern'),
        `Only ADD_ARTIFACT_ALIAS events carry an alias; remove \`aliasPattern\` for ${draft.eventType} automations.`,
      );
    }
    if (draft.filterAliasPattern === '') {
      throw new ValidationError(
        field('aliasPattern'),
        'The alias pattern is empty; leave `aliasPattern` out to match every alias.',
      );
    }
    checkAliasPattern(draft.filterAliasPattern, field('aliasPattern'));
  }
  if (draft.filterTagPattern !== null) {
    if (EVENT_SHAPES[draft.eventType].carries !== 'tag') {
      throw new ValidationError(
        field('tagPattern'),
        `Only ${typesCarrying('tag')} events carry a tag; remove \`tagPattern\` for ${draft.eventType} automations.`,
      );
    }
    if (draft.filterTagPattern === '') {
      throw new ValidationError(
        field('tagPattern'),
        'The tag pattern is empty; leave `tagPattern` out to match every tag.',
      );
    }
    checkAliasPattern(draft.filterTagPattern, field('tagPattern'), 'tag');
  }
}

/** The settings an automation gives each kind of action; the others' must stay null. */
const CONFIG_FIELDS = {
  WEBHOOK: ['payloadTemplate'],
  SLACK: ['slackTitle', 'slackMessage', 'slackSeverity'],
  NO_OP: [],
} as const satisfies Readonly<Record<ActionKind, readonly (keyof Draft)[]>>;
type ConfigField = (typeof CONFIG_FIELDS)[ActionKind][number];

const A_KIND: Readonly<Record<ActionKind, string>> = {
  WEBHOOK: 'a webhook',
  SLACK: 'a Slack',
  NO_OP: 'a no-op',
};

async function checkActionConfig(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  draft: Draft,
): Promise<string[]> {
  const field = (name: string) => `${ACTION_FIELD}.${name}`;
  const action = await getAction(deps, draft.actionId);
  if (!action || action.entityId !== entityId) {
    throw new NotFoundError(
      field('actionId'),
      'No such action in this entity; pick one from `entity.actions`, or create one with createWebhookAction, createSlackAction or createNoOpAction.',
    );
  }
  const own: readonly ConfigField[] = CONFIG_FIELDS[action.kind];
  for (const name of Object.values(CONFIG_FIELDS).flat()) {
    if (!own.includes(name) && draft[name] !== null) {
      throw new ValidationError(
        field(name),
        `\`${name}\` does not apply to ${A_KIND[action.kind]} action ("${action.name}"); remove it.`,
      );
    }
  }
  const secrets = await deps.storage.secrets.namesIn(entityId);
  const secretNames = new Set(secrets.keys());
  const used = new Set<string>();
  switch (action.kind) {
    case 'WEBHOOK':
      if (draft.payloadTemplate !== null) {
        for (const name of checkPayloadTemplate(
          draft.payloadTemplate,
          secretNames,
          field('payloadTemplate'),
          draft.eventType,
        )) {
          used.add(name);
        }
      }
      break;
    case 'SLACK':
      for (const name of ['slackTitle', 'slackMessage'] as const) {
        const text = draft[name];
        if (text === null || text.trim() === '') {
          throw new ValidationError(
            field(name),
            `A Slack action needs \`${name}\`: the ${name === 'slackTitle' ? 'title' : 'message text'} to post, which may use template variables.`,
          );
        }
        for (const secret of checkTextTemplate(text, secretNames, field(name), draft.eventType))
          used.add(secret);
      }
      draft.slackSeverity ??= 'INFO';
      break;
    case 'NO_OP':
      // Sends nothing, so it has nothing to configure (the loop above refused every field).
      break;
    default:
      unreachable(action);
  }
  // The template checks accepted only names in `secrets`.
  return [...used].map((name) => secrets.get(name) as string);
}
