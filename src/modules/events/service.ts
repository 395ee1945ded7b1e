import type { AppDeps, Context } from '../../context.js';
import { ValidationError } from '../../errors.js';
import type {
  ArtifactEvent,
  EventFilter,
  EventType,
  MatchCandidate,
  TriggeredRun,
} from '../../storage/events.js';
import { patternMatches } from '../automations/pattern.js';
import type { StoredList } from '../connection.js';
import { requireEntity } from '../entities/access.js';
import { checkJsonDepth } from '../json-depth.js';
import { checkSlug } from '../names.js';
import { type OwnerInput, resolveOwner } from '../projects/service.js';
import { publishRuns, runUpdate } from '../runs/service.js';
import { EVENT_SHAPES, typesCarrying } from './event-types.js';

export type { ArtifactEvent, EventFilter };

export const MAX_METADATA_BYTES = 64 * 1024;
export const MAX_ALIAS_LENGTH = 128;
export const MAX_TAG_LENGTH = 128;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

export interface EmitArtifactEventInput {
  entity: string;
  eventType: EventType;
  /** The project or registry it happened in. */
  owner: OwnerInput;
  collection: string;
  artifactType: string;
  /** Required for version events; omitted for collection-tag events, which name no version. */
  versionIndex?: number | null;
  alias?: string | null;
  tag?: string | null;
  author?: string | null;
  metadata?: Record<string, unknown> | null;
  idempotencyKey?: string | null;
}

/**
 * Records an artifact event and queues one run per matching enabled automation, all in one
 * transaction, then publishes the runs' QUEUED state as one batch. Never waits for delivery.
 * Members and admins. With an `idempotencyKey` already used in the entity, returns the first event
 * and its runs unchanged (also when two calls with one key race). Throws ValidationError /
 * NotFoundError naming the field for bad input; nothing is stored then.
 */
export async function emitArtifactEvent(
  ctx: Context,
  input: EmitArtifactEventInput,
): Promise<{ event: ArtifactEvent; runs: TriggeredRun[]; replayed: boolean }> {
  const { deps, viewer } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'MEMBER');
  const idempotencyKey = checkIdempotencyKey(input.idempotencyKey);
  if (idempotencyKey) {
    // A retried call gets its first answer even if its input no longer passes the checks below.
    // Races between two first calls are settled by the store's unique index.
    const first = await deps.storage.events.findByIdempotencyKey(entity.id, idempotencyKey);
    if (first) return { ...first, replayed: true };
  }
  if (EVENT_SHAPES[input.eventType].subject === 'run') {
    throw new ValidationError(
      'input.eventType',
      `${input.eventType} is a run event: report runs with reportRunState and logRunMetrics, which fire run automations.`,
    );
  }
  const where = EVENT_SHAPES[input.eventType].owner;
  if (where === 'project' && input.owner.registry != null) {
    throw new ValidationError(
      'input.owner.registry',
      `${input.eventType} happens in a project: name \`owner: { project }\`, not \`registry\`.`,
    );
  }
  if (where === 'registry' && input.owner.project != null) {
    throw new ValidationError(
      'input.owner.project',
      `${input.eventType} happens in a registry: name \`owner: { registry }\`, not \`project\`.`,
    );
  }
  const owner = await resolveOwner(deps, entity.id, input.owner);
  checkSlug(input.collection, 'input.collection');
  checkSlug(input.artifactType, 'input.artifactType');
  const versionIndex = checkVersionIndex(input.eventType, input.versionIndex);
  const alias = checkName('alias', input.eventType, input.alias);
  const tag = checkName('tag', input.eventType, input.tag);
  const metadata = checkMetadata(input.metadata);
  const author = (input.author ?? viewer.user.name).trim();
  if (!author || author.length > 128) {
    throw new ValidationError(
      'input.author',
      'Give an author of 1 to 128 characters, or omit it to use your name.',
    );
  }

  const happened = {
    collectionName: input.collection,
    artifactType: input.artifactType,
    alias,
    tag,
  };
  const recorded = await deps.storage.events.recordEvent(
    {
      entityId: entity.id,
      eventType: input.eventType,
      owner: { kind: owner.kind, id: owner.row.id },
      collectionName: input.collection,
      artifactType: input.artifactType,
      versionIndex,
      alias,
      tag,
      author,
      metadata,
      idempotencyKey,
      createdById: viewer.user.id,
      createdAt: deps.clock.now(),
    },
    (automation) => passesFilter(automation, happened),
  );
  switch (recorded.outcome) {
    case 'artifactTypeMismatch':
      throw new ValidationError(
        'input.artifactType',
        `Collection "${input.collection}" holds artifacts of type "${recorded.storedArtifactType}", not "${input.artifactType}".`,
      );
    case 'replayed':
      return { event: recorded.event, runs: recorded.runs, replayed: true };
    case 'recorded':
      publishRuns(deps, recorded.runs.map(runUpdate));
      return { event: recorded.event, runs: recorded.runs, replayed: false };
    default:
      return recorded satisfies never;
  }
}

/**
 * Whether an automation's filters accept the event (its scope and type already matched). In code,
 * not SQL: alias and tag patterns are regular expressions with a linear-time engine of their own.
 */
function passesFilter(
  automation: MatchCandidate,
  event: Pick<ArtifactEvent, 'collectionName' | 'artifactType' | 'alias' | 'tag'>,
): boolean {
  if (automation.filterCollectionName && automation.filterCollectionName !== event.collectionName)
    return false;
  if (automation.filterArtifactType && automation.filterArtifactType !== event.artifactType)
    return false;
  if (
    automation.filterAliasPattern &&
    !patternMatches(automation.filterAliasPattern, event.alias ?? '')
  )
    return false;
  if (automation.filterTagPattern && !patternMatches(automation.filterTagPattern, event.tag ?? ''))
    return false;
  return true;
}

export function checkIdempotencyKey(key: string | null | undefined): string | null {
  if (key == null) return null;
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new ValidationError(
      'input.idempotencyKey',
      `Use an idempotency key of 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters.`,
    );
  }
  return key;
}

/**
 * The stored version index: the given one for a version event (required, a whole number, 0 or
 * more), 0 for a collection-tag event, which names no version and must not give one.
 */
function checkVersionIndex(eventType: EventType, versionIndex: number | null | undefined): number {
  if (EVENT_SHAPES[eventType].subject === 'collection') {
    if (versionIndex != null) {
      throw new ValidationError(
        'input.versionIndex',
        `${eventType} is about a whole collection, not a version; remove \`versionIndex\`.`,
      );
    }
    return 0;
  }
  if (versionIndex == null || !Number.isInteger(versionIndex) || versionIndex < 0) {
    throw new ValidationError(
      'input.versionIndex',
      'Give the version index as a whole number, 0 or more (v0 is the first version).',
    );
  }
  return versionIndex;
}

const NAME_EXAMPLE = { alias: 'production', tag: 'candidate' } as const;
const NAME_LIMIT = { alias: MAX_ALIAS_LENGTH, tag: MAX_TAG_LENGTH } as const;

/**
 * The alias or tag the event reports (`name` says which input): required for the event types
 * that carry it, refused for the others; 1 to 128 letters, digits, ".", "_" or "-", starting
 * with a letter or digit.
 */
function checkName(
  name: 'alias' | 'tag',
  eventType: EventType,
  value: string | null | undefined,
): string | null {
  const field = `input.${name}`;
  if (EVENT_SHAPES[eventType].carries !== name) {
    if (value != null) {
      throw new ValidationError(
        field,
        `${name === 'alias' ? 'An alias' : 'A tag'} belongs to ${typesCarrying(name)} events only; remove it from this ${eventType} event.`,
      );
    }
    return null;
  }
  if (value == null || value.length === 0) {
    throw new ValidationError(
      field,
      `${eventType} needs the ${name} it names, e.g. "${NAME_EXAMPLE[name]}".`,
    );
  }
  const limit = NAME_LIMIT[name];
  if (value.length > limit || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value)) {
    throw new ValidationError(
      field,
      `"${value.slice(0, limit)}" is not a valid ${name}: use 1 to ${limit} letters, digits, ".", "_" or "-".`,
    );
  }
  return value;
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

/** The event with this stored id, whoever may see it; null when there is none. */
export async function getEvent(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<ArtifactEvent | null> {
  return deps.storage.events.getEvent(id);
}

/** The events matching `filter` as a list for `connection()`: newest first. */
export function eventList(
  deps: Pick<AppDeps, 'storage'>,
  filter: EventFilter,
): StoredList<ArtifactEvent> {
  return {
    keyOf: (event) => [event.createdAt.getTime(), event.id],
    keyTypes: ['number', 'string'],
    fetch: (request) => deps.storage.events.pageEvents(filter, request),
    count: () => deps.storage.events.countEvents(filter),
  };
}
