import { and, count, eq, type SQL } from 'drizzle-orm';
import type { AppDeps, Context } from '../../context.js';
import { ValidationError } from '../../errors.js';
import { newId } from '../../ids.js';
import {
  artifactCollections,
  artifactEvents,
  type EventType,
  triggeredRuns,
} from '../../storage/sqlite/schema.js';
import { aliasMatches } from '../automations/pattern.js';
import { type Automation, candidateAutomations } from '../automations/service.js';
import { byCreation, type Page, type SortOrder } from '../connection.js';
import { requireEntity } from '../entities/access.js';
import { checkJsonDepth } from '../json-depth.js';
import { checkSlug } from '../names.js';
import { type ArtifactCollection, findCollection, resolveOwner } from '../projects/service.js';
import type { TriggeredRun } from '../runs/service.js';

export type ArtifactEvent = typeof artifactEvents.$inferSelect;

export const MAX_METADATA_BYTES = 64 * 1024;
export const MAX_ALIAS_LENGTH = 128;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

export interface EmitArtifactEventInput {
  entity: string;
  eventType: EventType;
  project?: string | null;
  registry?: string | null;
  collection: string;
  artifactType: string;
  versionIndex: number;
  alias?: string | null;
  author?: string | null;
  metadata?: Record<string, unknown> | null;
  idempotencyKey?: string | null;
}

/** Where each event type can happen: CREATE in a project, LINK in a registry, aliases in either. */
const OWNER_FOR_EVENT: Record<EventType, 'project' | 'registry' | 'either'> = {
  CREATE_ARTIFACT: 'project',
  LINK_ARTIFACT: 'registry',
  ADD_ARTIFACT_ALIAS: 'either',
};

/**
 * Records an artifact event and queues one run per matching enabled automation, all in one
 * transaction, then publishes each run's QUEUED state. Never waits for delivery. Members and
 * admins. With an `idempotencyKey` already used in the entity, returns the first event and its
 * runs unchanged. Throws ValidationError / NotFoundError naming the field for bad input; nothing
 * is stored then.
 */
export async function emitArtifactEvent(
  ctx: Context,
  input: EmitArtifactEventInput,
): Promise<{ event: ArtifactEvent; runs: TriggeredRun[]; replayed: boolean }> {
  const { deps, viewer } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'MEMBER');
  const idempotencyKey = checkIdempotencyKey(input.idempotencyKey);
  if (idempotencyKey) {
    const first = findByIdempotencyKey(deps, entity.id, idempotencyKey);
    if (first) return { ...first, replayed: true };
  }
  const where = OWNER_FOR_EVENT[input.eventType];
  if (where === 'project' && input.registry != null) {
    throw new ValidationError(
      'input.registry',
      `${input.eventType} happens in a project: name \`project\`, not \`registry\`.`,
    );
  }
  if (where === 'registry' && input.project != null) {
    throw new ValidationError(
      'input.project',
      `${input.eventType} happens in a registry: name \`registry\`, not \`project\`.`,
    );
  }
  const owner = await resolveOwner(deps, entity.id, input);
  checkSlug(input.collection, 'input.collection');
  checkSlug(input.artifactType, 'input.artifactType');
  if (!Number.isInteger(input.versionIndex) || input.versionIndex < 0) {
    throw new ValidationError(
      'input.versionIndex',
      'Give the version index as a whole number, 0 or more (v0 is the first version).',
    );
  }
  const alias = checkAlias(input.eventType, input.alias);
  const metadata = checkMetadata(input.metadata);
  const author = (input.author ?? viewer.user.name).trim();
  if (!author || author.length > 128) {
    throw new ValidationError(
      'input.author',
      'Give an author of 1 to 128 characters, or omit it to use your name.',
    );
  }
  const existing = await findCollection(deps, owner.kind, owner.row.id, input.collection);
  if (existing && existing.artifactType !== input.artifactType) {
    throw new ValidationError(
      'input.artifactType',
      `Collection "${input.collection}" holds artifacts of type "${existing.artifactType}", not "${input.artifactType}".`,
    );
  }

  const now = deps.clock.now();
  const result = deps.db.transaction(() => {
    const collection: ArtifactCollection =
      existing ??
      deps.db
        .insert(artifactCollections)
        .values({
          id: newId(),
          entityId: entity.id,
          projectId: owner.kind === 'project' ? owner.row.id : null,
          registryId: owner.kind === 'registry' ? owner.row.id : null,
          name: input.collection,
          artifactType: input.artifactType,
        })
        .returning()
        .get();
    const event = deps.db
      .insert(artifactEvents)
      .values({
        id: newId(),
        entityId: entity.id,
        eventType: input.eventType,
        projectId: owner.kind === 'project' ? owner.row.id : null,
        registryId: owner.kind === 'registry' ? owner.row.id : null,
        collectionId: collection.id,
        collectionName: collection.name,
        artifactType: collection.artifactType,
        versionIndex: input.versionIndex,
        alias,
        author,
        metadata,
        idempotencyKey,
        createdById: viewer.user.id,
        createdAt: now,
      })
      .returning()
      .get();
    const matched = candidateAutomations(deps, {
      entityId: entity.id,
      eventType: input.eventType,
      scopeIds: [owner.row.id, collection.id],
    }).filter((automation) => passesFilter(automation, event));
    const runs = matched.map((automation) =>
      deps.db
        .insert(triggeredRuns)
        .values({
          id: newId(),
          entityId: entity.id,
          eventId: event.id,
          automationId: automation.id,
          automationName: automation.name,
          actionId: automation.actionId,
          projectId: event.projectId,
          registryId: event.registryId,
          status: 'QUEUED',
          nextAttemptAt: now,
          createdAt: now,
          updatedAt: now,
        })
        .returning()
        .get(),
    );
    return { event, runs };
  });
  for (const run of result.runs) deps.pubsub.publish('triggeredRunUpdated', run);
  return { ...result, replayed: false };
}

/** Whether an automation's filters accept the event (its scope and type already matched). */
function passesFilter(automation: Automation, event: ArtifactEvent): boolean {
  if (automation.filterCollectionName && automation.filterCollectionName !== event.collectionName)
    return false;
  if (automation.filterArtifactType && automation.filterArtifactType !== event.artifactType)
    return false;
  if (
    automation.filterAliasPattern &&
    !aliasMatches(automation.filterAliasPattern, event.alias ?? '')
  )
    return false;
  return true;
}

function checkIdempotencyKey(key: string | null | undefined): string | null {
  if (key == null) return null;
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new ValidationError(
      'input.idempotencyKey',
      `Use an idempotency key of 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters.`,
    );
  }
  return key;
}

function checkAlias(eventType: EventType, alias: string | null | undefined): string | null {
  if (eventType !== 'ADD_ARTIFACT_ALIAS') {
    if (alias != null) {
      throw new ValidationError(
        'input.alias',
        `An alias belongs to ADD_ARTIFACT_ALIAS events only; remove it from this ${eventType} event.`,
      );
    }
    return null;
  }
  if (alias == null || alias.length === 0) {
    throw new ValidationError(
      'input.alias',
      'ADD_ARTIFACT_ALIAS needs the alias that was added, e.g. "production".',
    );
  }
  if (alias.length > MAX_ALIAS_LENGTH || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(alias)) {
    throw new ValidationError(
      'input.alias',
      `"${alias.slice(0, MAX_ALIAS_LENGTH)}" is not a valid alias: use 1 to ${MAX_ALIAS_LENGTH} letters, digits, ".", "_" or "-".`,
    );
  }
  return alias;
}

function checkMetadata(
  metadata: Record<string, unknown> | null | undefined,
): Record<string, unknown> | null {
  if (metadata == null) return null;
  // First: JSON.stringify recurses, and deep enough metadata overflows the call stack.
  checkJsonDepth(metadata, 'input.metadata');
  const size = Buffer.byteLength(JSON.stringify(metadata));
  if (size > MAX_METADATA_BYTES) {
    throw new ValidationError(
      'input.metadata',
      `Metadata is ${size} bytes; keep it to ${MAX_METADATA_BYTES} bytes of JSON.`,
    );
  }
  return metadata;
}

function findByIdempotencyKey(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  key: string,
): { event: ArtifactEvent; runs: TriggeredRun[] } | undefined {
  const event = deps.db
    .select()
    .from(artifactEvents)
    .where(and(eq(artifactEvents.entityId, entityId), eq(artifactEvents.idempotencyKey, key)))
    .get();
  if (!event) return undefined;
  const runs = deps.db
    .select()
    .from(triggeredRuns)
    .where(eq(triggeredRuns.eventId, event.id))
    .orderBy(triggeredRuns.createdAt, triggeredRuns.id)
    .all();
  return { event, runs };
}

export function getEvent(deps: Pick<AppDeps, 'db'>, id: string): ArtifactEvent | undefined {
  return deps.db.select().from(artifactEvents).where(eq(artifactEvents.id, id)).get();
}

/** Which events a list shows; each absent condition matches everything. */
export interface EventFilter {
  entityId: string;
  eventType?: EventType | null;
  projectId?: string | null;
  registryId?: string | null;
}

function eventConditions(filter: EventFilter): SQL | undefined {
  return and(
    eq(artifactEvents.entityId, filter.entityId),
    filter.eventType ? eq(artifactEvents.eventType, filter.eventType) : undefined,
    filter.projectId ? eq(artifactEvents.projectId, filter.projectId) : undefined,
    filter.registryId ? eq(artifactEvents.registryId, filter.registryId) : undefined,
  );
}

/** The order of event lists: newest first. */
export const EVENT_ORDER: SortOrder<ArtifactEvent> = byCreation('desc', artifactEvents);

/** A page of the events matching `filter`, in {@link EVENT_ORDER}. */
export function listEvents(
  deps: Pick<AppDeps, 'db'>,
  filter: EventFilter,
  page: Page,
): ArtifactEvent[] {
  return deps.db
    .select()
    .from(artifactEvents)
    .where(and(eventConditions(filter), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

export function countEvents(deps: Pick<AppDeps, 'db'>, filter: EventFilter): number {
  return (
    deps.db.select({ n: count() }).from(artifactEvents).where(eventConditions(filter)).get()?.n ?? 0
  );
}
