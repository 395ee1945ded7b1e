import type { EventType } from '../../storage/config.js';

/** What an event type is about, where it happens, and which name it carries. */
export interface EventShape {
  /** Where it can happen: a project, a registry, or either. */
  owner: 'project' | 'registry' | 'either';
  /** A version (`collection:v3`), or the whole collection (no version index). */
  subject: 'version' | 'collection';
  /** The name the event reports, in the input field and column of the same name. */
  carries: 'alias' | 'tag' | null;
}

/** The shape of every event type: the compiler asks for a row for each new type. */
export const EVENT_SHAPES: Readonly<Record<EventType, EventShape>> = {
  CREATE_ARTIFACT: { owner: 'project', subject: 'version', carries: null },
  LINK_ARTIFACT: { owner: 'registry', subject: 'version', carries: null },
  UNLINK_ARTIFACT: { owner: 'registry', subject: 'version', carries: null },
  ADD_ARTIFACT_ALIAS: { owner: 'either', subject: 'version', carries: 'alias' },
  ADD_ARTIFACT_TAG: { owner: 'either', subject: 'version', carries: 'tag' },
  REMOVE_ARTIFACT_TAG: { owner: 'either', subject: 'version', carries: 'tag' },
  ADD_COLLECTION_TAG: { owner: 'either', subject: 'collection', carries: 'tag' },
  REMOVE_COLLECTION_TAG: { owner: 'either', subject: 'collection', carries: 'tag' },
};

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
