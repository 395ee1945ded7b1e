import type { EventType, ScopeType } from '../../storage/config.js';

/** What an event type is about, where it happens, which name it carries, and who may watch it. */
export interface EventShape {
  /** Where it can happen: a project, a registry, or either. */
  owner: 'project' | 'registry' | 'either';
  /**
   * A version (`collection:v3`), the whole collection (no version index), or a training run
   * (reported with reportRunState / logRunMetrics, not emitArtifactEvent).
   */
  subject: 'version' | 'collection' | 'run';
  /** The name the event reports, in the input field and column of the same name. */
  carries: 'alias' | 'tag' | null;
  /** The scopes an automation watching it may have (DESIGN §1, "Events and scopes"). */
  scopes: readonly ScopeType[];
}

const ANY_ARTIFACT_SCOPE: readonly ScopeType[] = [
  'PROJECT',
  'REGISTRY',
  'PROJECT_COLLECTION',
  'REGISTRY_COLLECTION',
  'ENTITY',
];
const PROJECT_ARTIFACT_SCOPE: readonly ScopeType[] = ['PROJECT', 'PROJECT_COLLECTION', 'ENTITY'];
const REGISTRY_ARTIFACT_SCOPE: readonly ScopeType[] = ['REGISTRY', 'REGISTRY_COLLECTION', 'ENTITY'];
/** Runs live in projects and have no collection. */
const RUN_SCOPE: readonly ScopeType[] = ['PROJECT', 'ENTITY'];

/** The shape of every event type: the compiler asks for a row for each new type. */
export const EVENT_SHAPES: Readonly<Record<EventType, EventShape>> = {
  CREATE_ARTIFACT: {
    owner: 'project',
    subject: 'version',
    carries: null,
    scopes: PROJECT_ARTIFACT_SCOPE,
  },
  LINK_ARTIFACT: {
    owner: 'registry',
    subject: 'version',
    carries: null,
    scopes: REGISTRY_ARTIFACT_SCOPE,
  },
  UNLINK_ARTIFACT: {
    owner: 'registry',
    subject: 'version',
    carries: null,
    scopes: REGISTRY_ARTIFACT_SCOPE,
  },
  ADD_ARTIFACT_ALIAS: {
    owner: 'either',
    subject: 'version',
    carries: 'alias',
    scopes: ANY_ARTIFACT_SCOPE,
  },
  ADD_ARTIFACT_TAG: {
    owner: 'either',
    subject: 'version',
    carries: 'tag',
    scopes: ANY_ARTIFACT_SCOPE,
  },
  REMOVE_ARTIFACT_TAG: {
    owner: 'either',
    subject: 'version',
    carries: 'tag',
    scopes: ANY_ARTIFACT_SCOPE,
  },
  ADD_COLLECTION_TAG: {
    owner: 'either',
    subject: 'collection',
    carries: 'tag',
    scopes: ANY_ARTIFACT_SCOPE,
  },
  REMOVE_COLLECTION_TAG: {
    owner: 'either',
    subject: 'collection',
    carries: 'tag',
    scopes: ANY_ARTIFACT_SCOPE,
  },
  RUN_STATE: { owner: 'project', subject: 'run', carries: null, scopes: RUN_SCOPE },
  RUN_METRIC: { owner: 'project', subject: 'run', carries: null, scopes: RUN_SCOPE },
  RUN_METRIC_CHANGE: { owner: 'project', subject: 'run', carries: null, scopes: RUN_SCOPE },
  RUN_METRIC_ZSCORE: { owner: 'project', subject: 'run', carries: null, scopes: RUN_SCOPE },
};

/** Whether the event type is about a training run. */
export const isRunEvent = (eventType: EventType): boolean =>
  EVENT_SHAPES[eventType].subject === 'run';

/** The event types that carry `name`, for messages: `ADD_ARTIFACT_TAG, … or …`. */
export function typesCarrying(name: 'alias' | 'tag'): string {
  const types = Object.entries(EVENT_SHAPES)
    .filter(([, shape]) => shape.carries === name)
    .map(([type]) => type);
  return types.join(', ').replace(/, (?=[^,]*$)/, ' or ');
}

/**
 * The version index an event names, or null for an event about a whole collection (which stores
 * 0 in its version column).
 */
export function eventVersionIndex(event: { eventType: EventType; versionIndex: number }) {
  return EVENT_SHAPES[event.eventType].subject === 'collection' ? null : event.versionIndex;
}
