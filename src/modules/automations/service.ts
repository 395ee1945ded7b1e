import { and, asc, count, eq, inArray, type SQL } from 'drizzle-orm';
import type { AppDeps, Context } from '../../context.js';
import { NotFoundError, ValidationError } from '../../errors.js';
import { newId } from '../../ids.js';
import type { AuditAction } from '../../storage/audit.js';
import { recordAudit } from '../../storage/sqlite/audit.js';
import {
  automationSecretRefs,
  automations,
  type EventType,
  type ScopeType,
  type SlackSeverity,
} from '../../storage/sqlite/schema.js';
import { getAction } from '../actions/service.js';
import { byCreation, type Page, type SortOrder } from '../connection.js';
import { requireEntity, requireRole } from '../entities/access.js';
import { assertNameFree, checkDescription, checkName, checkSlug } from '../names.js';
import { findCollection, type Kind, requireContainer } from '../projects/service.js';
import { findSecretByName, secretNamesOf } from '../secrets/service.js';
import { checkAliasPattern } from './pattern.js';
import { checkPayloadTemplate, checkTextTemplate } from './template.js';

export type Automation = typeof automations.$inferSelect;

/** A scope as clients name it: the names of the project, registry and collection to watch. */
export interface AutomationScopeInput {
  type: ScopeType;
  project?: string | null;
  registry?: string | null;
  collection?: string | null;
}

export interface AutomationFilterInput {
  collectionName?: string | null;
  artifactType?: string | null;
  aliasPattern?: string | null;
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
}

/** Which scopes can watch each event type (DESIGN §1, "Events and scopes"). */
export const SCOPES_FOR_EVENT: Readonly<Record<EventType, readonly ScopeType[]>> = {
  CREATE_ARTIFACT: ['PROJECT', 'PROJECT_COLLECTION'],
  LINK_ARTIFACT: ['REGISTRY', 'REGISTRY_COLLECTION'],
  ADD_ARTIFACT_ALIAS: ['PROJECT', 'REGISTRY', 'PROJECT_COLLECTION', 'REGISTRY_COLLECTION'],
};

/** The container kind each scope type lives in, and whether it names one collection of it. */
const SCOPE_SHAPE: Readonly<Record<ScopeType, { kind: Kind; collection: boolean }>> = {
  PROJECT: { kind: 'project', collection: false },
  REGISTRY: { kind: 'registry', collection: false },
  PROJECT_COLLECTION: { kind: 'project', collection: true },
  REGISTRY_COLLECTION: { kind: 'registry', collection: true },
};

/** Every stored column an automation's rules look at, before it is written. */
type Draft = Omit<Automation, 'id' | 'entityId' | 'createdAt' | 'createdById' | 'updatedAt'>;

const SCOPE_FIELD = 'input.scope';
const FILTER_FIELD = 'input.filter';
const ACTION_FIELD = 'input.action';

/**
 * Creates an automation in the entity. Members and admins only (NotFoundError on `input.entity`
 * for strangers, PermissionDeniedError for viewers). Throws ValidationError naming the field when
 * the name, scope, filter or action configuration is refused (see {@link checkDraft}),
 * NotFoundError for an unknown project, registry, collection or action, and ConflictError when
 * the entity already has an automation of that name. The automation and the secrets its
 * templates name are written in one transaction.
 */
export async function createAutomation(
  ctx: Context,
  input: CreateAutomationInput,
): Promise<Automation> {
  const entity = await requireEntity(ctx, input.entity, 'MEMBER');
  const { db, clock } = ctx.deps;
  const scope = await resolveScope(ctx.deps, entity.id, input.scope);
  return db.transaction(() => {
    const draft: Draft = {
      name: checkName(input.name, 'input.name'),
      description: checkDescription(input.description, 'input.description'),
      enabled: input.enabled ?? true,
      eventType: input.eventType,
      ...scope,
      ...filterColumns(input.filter),
      ...actionColumns(input.action),
    };
    const secretIds = checkDraft(ctx.deps, entity.id, draft);
    assertNameFree(ctx.deps.db, automations, 'an automation', {
      entityId: entity.id,
      name: draft.name,
    });
    const now = clock.now();
    const row = db
      .insert(automations)
      .values({
        ...draft,
        id: newId(),
        entityId: entity.id,
        createdAt: now,
        updatedAt: now,
        createdById: ctx.viewer.user.id,
      })
      .returning()
      .get();
    writeSecretRefs(ctx.deps, row.id, secretIds);
    auditAutomation(ctx, 'automation.created', row, {
      name: row.name,
      eventType: row.eventType,
      scopeType: row.scopeType,
      enabled: row.enabled,
    });
    ctx.deps.logger.info(
      { entity: entity.name, automation: row.id, actor: ctx.viewer.user.id },
      'automation created',
    );
    return row;
  });
}

/**
 * Changes an automation; see {@link UpdateAutomationInput} for what an absent field means. The
 * merged result is checked exactly as on creation, and the secret references are replaced in the
 * same transaction. Members and admins only; NotFoundError on `input.id` when the automation does
 * not exist or belongs to an entity the caller is not in.
 */
export async function updateAutomation(
  ctx: Context,
  input: UpdateAutomationInput,
): Promise<Automation> {
  const { db, clock } = ctx.deps;
  // An automation never changes entity, so its scope can be resolved before the transaction.
  const scope =
    input.scope == null
      ? null
      : await resolveScope(ctx.deps, requireAutomation(ctx, input.id).entityId, input.scope);
  return db.transaction(() => {
    const current = requireAutomation(ctx, input.id);
    const draft: Draft = {
      name: input.name == null ? current.name : checkName(input.name, 'input.name'),
      description:
        input.description === undefined
          ? current.description
          : checkDescription(input.description, 'input.description'),
      enabled: input.enabled ?? current.enabled,
      eventType: input.eventType ?? current.eventType,
      ...(scope ?? { scopeType: current.scopeType, scopeId: current.scopeId }),
      ...(input.filter === undefined
        ? {
            filterCollectionName: current.filterCollectionName,
            filterArtifactType: current.filterArtifactType,
            filterAliasPattern: current.filterAliasPattern,
          }
        : filterColumns(input.filter)),
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
    const secretIds = checkDraft(ctx.deps, current.entityId, draft);
    if (draft.name !== current.name)
      assertNameFree(ctx.deps.db, automations, 'an automation', {
        entityId: current.entityId,
        name: draft.name,
        exceptId: current.id,
      });
    const row = db
      .update(automations)
      .set({ ...draft, updatedAt: clock.now() })
      .where(eq(automations.id, current.id))
      .returning()
      .get();
    db.delete(automationSecretRefs).where(eq(automationSecretRefs.automationId, row.id)).run();
    writeSecretRefs(ctx.deps, row.id, secretIds);
    const changed = changedFields(current, row);
    if (changed.length > 0) {
      auditAutomation(ctx, 'automation.updated', row, { name: row.name, changed });
    }
    ctx.deps.logger.info(
      { automation: row.id, enabled: row.enabled, actor: ctx.viewer.user.id },
      'automation updated',
    );
    return row;
  });
}

/**
 * Deletes an automation and its secret references, and returns it as it was. Runs it already
 * triggered keep their history. Members and admins only; NotFoundError on `input.id` as for
 * {@link updateAutomation}.
 */
export function deleteAutomation(ctx: Context, input: { id: string }): Automation {
  const { db } = ctx.deps;
  return db.transaction(() => {
    const current = requireAutomation(ctx, input.id);
    db.delete(automations).where(eq(automations.id, current.id)).run();
    auditAutomation(ctx, 'automation.deleted', current, { name: current.name });
    ctx.deps.logger.info(
      { automation: current.id, name: current.name, actor: ctx.viewer.user.id },
      'automation deleted',
    );
    return current;
  });
}

function auditAutomation(
  ctx: Context,
  code: Extract<AuditAction, `automation.${string}`>,
  row: Automation,
  details: Record<string, unknown>,
): void {
  recordAudit(ctx.deps, {
    entityId: row.entityId,
    actorId: ctx.viewer.user.id,
    action: code,
    targetType: 'Automation',
    targetId: row.id,
    details,
  });
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
  actionId: 'action',
  payloadTemplate: 'config.payloadTemplate',
  slackTitle: 'config.slackTitle',
  slackMessage: 'config.slackMessage',
  slackSeverity: 'config.slackSeverity',
};

/** The public names of the fields that differ, for the audit log: names only, never contents. */
function changedFields(before: Automation, after: Automation): string[] {
  const changed = new Set<string>();
  for (const [column, field] of Object.entries(PUBLIC_FIELD)) {
    if (before[column as keyof Draft] !== after[column as keyof Draft]) changed.add(field);
  }
  return [...changed];
}

/** The automation with this stored id, whoever may see it; undefined when there is none. */
export function getAutomation(deps: Pick<AppDeps, 'db'>, id: string): Automation | undefined {
  return deps.db.select().from(automations).where(eq(automations.id, id)).get();
}

/**
 * The enabled automations of the entity that watch `eventType` on any of `scopeIds` (for an event
 * in a collection: the id of its project or registry and the collection's own id), oldest first.
 * One query through `automations_match_idx`, whatever the number of automations; filters are
 * left to the caller.
 */
export function candidateAutomations(
  deps: Pick<AppDeps, 'db'>,
  query: { entityId: string; eventType: EventType; scopeIds: readonly string[] },
): Automation[] {
  if (query.scopeIds.length === 0) return [];
  return (
    deps.db
      .select()
      .from(automations)
      .where(
        and(
          inArray(automations.scopeId, [...query.scopeIds]),
          eq(automations.eventType, query.eventType),
          eq(automations.enabled, true),
        ),
      )
      .orderBy(asc(automations.createdAt), asc(automations.id))
      .all()
      // The entity is checked here, not in SQL: an `entity_id = ?` term tempts SQLite into the
      // name index, which scans every automation of the entity. Scope ids are unique anyway.
      .filter((row) => row.entityId === query.entityId)
  );
}

/** Optional conditions on {@link listAutomations}; each absent one matches everything. */
export interface AutomationListFilter {
  scopeType?: ScopeType | null;
  eventType?: EventType | null;
  /** Stored id of an action. */
  actionId?: string | null;
  enabled?: boolean | null;
}

function listCondition(entityId: string, filter: AutomationListFilter): SQL | undefined {
  return and(
    eq(automations.entityId, entityId),
    filter.scopeType == null ? undefined : eq(automations.scopeType, filter.scopeType),
    filter.eventType == null ? undefined : eq(automations.eventType, filter.eventType),
    filter.actionId == null ? undefined : eq(automations.actionId, filter.actionId),
    filter.enabled == null ? undefined : eq(automations.enabled, filter.enabled),
  );
}

/** The order of automation lists: newest first. */
export const AUTOMATION_ORDER: SortOrder<Automation> = byCreation('desc', automations);

/** A page of the entity's automations matching `filter`, in {@link AUTOMATION_ORDER}. */
export function listAutomations(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  filter: AutomationListFilter,
  page: Page,
): Automation[] {
  return deps.db
    .select()
    .from(automations)
    .where(and(listCondition(entityId, filter), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

/** How many of the entity's automations match `filter`. */
export function countAutomations(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  filter: AutomationListFilter,
): number {
  return (
    deps.db.select({ n: count() }).from(automations).where(listCondition(entityId, filter)).get()
      ?.n ?? 0
  );
}

/** Loads an automation for a change, which needs MEMBER in its entity. */
function requireAutomation(ctx: Context, id: string): Automation {
  const row = getAutomation(ctx.deps, id);
  const notFound = () => new NotFoundError('input.id', `No automation with id "${id}".`);
  if (!row) throw notFound();
  requireRole(ctx.viewer, row.entityId, 'MEMBER', notFound);
  return row;
}

/**
 * Resolves a scope's names to the id it watches. Throws ValidationError on the field that is
 * missing or does not belong to the scope type, NotFoundError on the field naming something that
 * does not exist.
 */
async function resolveScope(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  scope: AutomationScopeInput,
): Promise<{ scopeType: ScopeType; scopeId: string }> {
  const shape = SCOPE_SHAPE[scope.type];
  const ownerField = shape.kind === 'project' ? 'project' : 'registry';
  const otherField = shape.kind === 'project' ? 'registry' : 'project';
  const needed = shape.collection ? [ownerField, 'collection'] : [ownerField];
  for (const field of needed) {
    if (scope[field as keyof AutomationScopeInput] == null) {
      throw new ValidationError(
        `${SCOPE_FIELD}.${field}`,
        `A ${scope.type} scope needs \`${field}\`: ${describeScopeFields(scope.type)}.`,
      );
    }
  }
  for (const field of shape.collection ? [otherField] : [otherField, 'collection']) {
    if (scope[field as keyof AutomationScopeInput] != null) {
      throw new ValidationError(
        `${SCOPE_FIELD}.${field}`,
        `A ${scope.type} scope does not take \`${field}\`; remove it (${describeScopeFields(scope.type)}).`,
      );
    }
  }
  const ownerName = scope[ownerField] as string;
  const owner = await requireContainer(
    deps,
    shape.kind,
    entityId,
    ownerName,
    `${SCOPE_FIELD}.${ownerField}`,
  );
  if (!shape.collection) return { scopeType: scope.type, scopeId: owner.id };
  const collection = await findCollection(deps, shape.kind, owner.id, scope.collection as string);
  if (!collection) {
    throw new NotFoundError(
      `${SCOPE_FIELD}.collection`,
      `No collection named "${scope.collection}" in ${shape.kind} "${ownerName}"; create it with createArtifactCollection first.`,
    );
  }
  return { scopeType: scope.type, scopeId: collection.id };
}

function describeScopeFields(type: ScopeType): string {
  const shape = SCOPE_SHAPE[type];
  return shape.collection
    ? `it names the ${shape.kind} and the collection in it to watch`
    : `it names only the ${shape.kind} to watch`;
}

/** Filter columns from input; an absent filter matches everything. */
function filterColumns(
  filter: AutomationFilterInput | null | undefined,
): Pick<Draft, 'filterCollectionName' | 'filterArtifactType' | 'filterAliasPattern'> {
  return {
    filterCollectionName: filter?.collectionName ?? null,
    filterArtifactType: filter?.artifactType ?? null,
    filterAliasPattern: filter?.aliasPattern ?? null,
  };
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
function checkDraft(deps: Pick<AppDeps, 'db'>, entityId: string, draft: Draft): string[] {
  const scopes = SCOPES_FOR_EVENT[draft.eventType];
  if (!scopes.includes(draft.scopeType)) {
    throw new ValidationError(
      `${SCOPE_FIELD}.type`,
      `${draft.eventType} events can only be watched from a ${scopes.join(', ').replace(/, (?=[^,]*$)/, ' or ')} scope, not ${draft.scopeType}; change the scope or the event type.`,
    );
  }
  checkFilter(draft);
  return checkActionConfig(deps, entityId, draft);
}

function checkFilter(draft: Draft): void {
  const field = (name: string) => `${FILTER_FIELD}.${name}`;
  if (draft.filterCollectionName !== null) {
    if (SCOPE_SHAPE[draft.scopeType].collection) {
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
}

const WEBHOOK_ONLY = ['payloadTemplate'] as const;
const SLACK_ONLY = ['slackTitle', 'slackMessage', 'slackSeverity'] as const;

function checkActionConfig(deps: Pick<AppDeps, 'db'>, entityId: string, draft: Draft): string[] {
  const field = (name: string) => `${ACTION_FIELD}.${name}`;
  const action = getAction(deps, draft.actionId);
  if (!action || action.entityId !== entityId) {
    throw new NotFoundError(
      field('actionId'),
      'No such action in this entity; pick one from `entity.actions`, or create one with createWebhookAction or createSlackAction.',
    );
  }
  const secretNames = secretNamesOf(deps, entityId);
  const used = new Set<string>();
  const stray = (names: readonly (typeof WEBHOOK_ONLY | typeof SLACK_ONLY)[number][]) => {
    for (const name of names) {
      if (draft[name] !== null) {
        throw new ValidationError(
          field(name),
          `\`${name}\` does not apply to ${action.kind === 'WEBHOOK' ? 'a webhook' : 'a Slack'} action ("${action.name}"); remove it.`,
        );
      }
    }
  };
  if (action.kind === 'WEBHOOK') {
    stray(SLACK_ONLY);
    if (draft.payloadTemplate !== null) {
      for (const name of checkPayloadTemplate(
        draft.payloadTemplate,
        secretNames,
        field('payloadTemplate'),
      )) {
        used.add(name);
      }
    }
  } else {
    stray(WEBHOOK_ONLY);
    for (const name of ['slackTitle', 'slackMessage'] as const) {
      const text = draft[name];
      if (text === null || text.trim() === '') {
        throw new ValidationError(
          field(name),
          `A Slack action needs \`${name}\`: the ${name === 'slackTitle' ? 'title' : 'message text'} to post, which may use template variables.`,
        );
      }
      for (const secret of checkTextTemplate(text, secretNames, field(name))) used.add(secret);
    }
    draft.slackSeverity ??= 'INFO';
  }
  return [...used].map((name) => {
    const secret = findSecretByName(deps, entityId, name);
    // The template check just found this name among the entity's secrets, in this transaction.
    if (!secret) throw new Error(`secret ${name} vanished during the automation check`);
    return secret.id;
  });
}

function writeSecretRefs(
  deps: Pick<AppDeps, 'db'>,
  automationId: string,
  secretIds: readonly string[],
): void {
  if (secretIds.length === 0) return;
  deps.db
    .insert(automationSecretRefs)
    .values(secretIds.map((secretId) => ({ automationId, secretId })))
    .run();
}
