/* Artifact events and the runs they trigger, as history. */

import { newId } from '../ids.js';
import type { EventType } from './config.js';
import type { PageRequest } from './paging.js';

export type { EventType };

/** Where a triggered run is in its life. */
export type RunStatus = 'QUEUED' | 'RUNNING' | 'RETRYING' | 'SUCCEEDED' | 'FAILED' | 'SKIPPED';

/** The states a run ends in; only a run in one of them can be queued again. */
export const FINISHED_STATUSES: readonly RunStatus[] = ['SUCCEEDED', 'FAILED', 'SKIPPED'];

/** One reported artifact event, as stored. */
export interface ArtifactEvent {
  id: string;
  entityId: string;
  eventType: EventType;
  /** The project it happened in; null for a registry event. */
  projectId: string | null;
  /** The registry it happened in; null for a project event. */
  registryId: string | null;
  collectionId: string | null;
  collectionName: string;
  artifactType: string;
  /** 0 for collection-tag events, which name no version. */
  versionIndex: number;
  alias: string | null;
  tag: string | null;
  author: string;
  metadata: Record<string, unknown> | null;
  idempotencyKey: string | null;
  /** The account whose API key reported it; null once that account is deleted. */
  createdById: string | null;
  createdAt: Date;
}

/** One execution of one automation for one event, as stored. */
export interface TriggeredRun {
  id: string;
  entityId: string;
  /** The artifact event that triggered the run; null for a run event's run. */
  eventId: string | null;
  /** The run event (a fired run condition) that triggered the run; null for an artifact event's. */
  runEventId: string | null;
  /** The training run of `runEventId`; null for an artifact event's run. */
  trainingRunId: string | null;
  /** Null once the automation is deleted; the run keeps its name. */
  automationId: string | null;
  automationName: string;
  /** Null once the action is deleted. */
  actionId: string | null;
  projectId: string | null;
  registryId: string | null;
  status: RunStatus;
  /** Tries started since the run was last queued. */
  attemptCount: number;
  /** When the run may next be claimed (QUEUED and RETRYING runs). */
  nextAttemptAt: Date | null;
  leaseOwner: string | null;
  leaseExpiresAt: Date | null;
  result: string | null;
  createdAt: Date;
  updatedAt: Date | null;
  finishedAt: Date | null;
}

/**
 * A new run of `automation`, queued at `at` for what triggered it: an artifact event (`eventId`)
 * or a run event (`runEventId` of training run `trainingRunId`), with the owner's ids.
 */
export function queuedRun(
  trigger: Pick<
    TriggeredRun,
    'entityId' | 'eventId' | 'runEventId' | 'trainingRunId' | 'projectId' | 'registryId'
  >,
  automation: { id: string; name: string; actionId: string | null },
  at: Date,
): TriggeredRun {
  return {
    id: newId(),
    ...trigger,
    automationId: automation.id,
    automationName: automation.name,
    actionId: automation.actionId,
    status: 'QUEUED',
    attemptCount: 0,
    nextAttemptAt: at,
    leaseOwner: null,
    leaseExpiresAt: null,
    result: null,
    createdAt: at,
    updatedAt: at,
    finishedAt: null,
  };
}

/** The event `input` records in its collection (found or just created), with a new id. */
export function newArtifactEvent(
  input: NewArtifactEvent,
  collection: { id: string; name: string; artifactType: string },
): ArtifactEvent {
  return {
    id: newId(),
    entityId: input.entityId,
    eventType: input.eventType,
    projectId: input.owner.kind === 'project' ? input.owner.id : null,
    registryId: input.owner.kind === 'registry' ? input.owner.id : null,
    collectionId: collection.id,
    collectionName: collection.name,
    artifactType: collection.artifactType,
    versionIndex: input.versionIndex,
    alias: input.alias,
    tag: input.tag,
    author: input.author,
    metadata: input.metadata,
    idempotencyKey: input.idempotencyKey,
    createdById: input.createdById,
    createdAt: input.createdAt,
  };
}

/**
 * The runs `event` queues: one per candidate of its own entity that `accepts` takes, in the
 * candidates' order. Candidates are read by scope id alone (see the engines' match queries), so
 * the entity is checked here.
 */
export function queuedRunsOf(
  event: ArtifactEvent,
  candidates: readonly (MatchCandidate & { entityId: string })[],
  accepts: (candidate: MatchCandidate) => boolean,
): TriggeredRun[] {
  return candidates
    .filter((candidate) => candidate.entityId === event.entityId && accepts(candidate))
    .map((automation) =>
      queuedRun(
        {
          entityId: event.entityId,
          eventId: event.id,
          runEventId: null,
          trainingRunId: null,
          projectId: event.projectId,
          registryId: event.registryId,
        },
        automation,
        event.createdAt,
      ),
    );
}

/** One try of a run, as stored. */
export interface DeliveryAttempt {
  id: string;
  runId: string;
  attemptNumber: number;
  startedAt: Date;
  /** Null while in flight, and for an interrupted attempt. */
  durationMs: number | null;
  statusCode: number | null;
  errorClass: string | null;
  errorMessage: string | null;
  responseBody: string | null;
}

/** An event as a service has checked it, to be recorded. */
export interface NewArtifactEvent {
  entityId: string;
  eventType: EventType;
  /** The project or registry it happened in. */
  owner: { kind: 'project' | 'registry'; id: string };
  /** The collection, created with `artifactType` on first use. */
  collectionName: string;
  artifactType: string;
  versionIndex: number;
  alias: string | null;
  tag: string | null;
  author: string;
  metadata: Record<string, unknown> | null;
  idempotencyKey: string | null;
  createdById: string;
  createdAt: Date;
}

/**
 * An enabled automation of the event's entity that watches its type on its project, registry or
 * collection: what matching reads of it, for the filters applied in code.
 */
export interface MatchCandidate {
  id: string;
  name: string;
  actionId: string;
  filterCollectionName: string | null;
  filterArtifactType: string | null;
  filterAliasPattern: string | null;
  filterTagPattern: string | null;
}

/** An event and the runs it queued, oldest automation first. */
export interface RecordedEvent {
  event: ArtifactEvent;
  runs: TriggeredRun[];
}

/** What {@link EventStore.recordEvent} did. */
export type RecordEventResult =
  /** Stored, with one QUEUED run per accepted candidate. */
  | ({ outcome: 'recorded' } & RecordedEvent)
  /** The idempotency key was used before in the entity: the first event and its runs. */
  | ({ outcome: 'replayed' } & RecordedEvent)
  /** The collection exists with another artifact type; nothing was stored. */
  | { outcome: 'artifactTypeMismatch'; storedArtifactType: string };

/** Which events a list shows; each absent condition matches everything. */
export interface EventFilter {
  entityId: string;
  eventType?: EventType | null;
}

/** Operations on artifact events: recording one with its runs, reading them back. */
export interface EventStore {
  /**
   * In one transaction: finds or creates the event's collection, stores the event, reads the
   * enabled automations of its entity watching its type on its project, registry or collection
   * (through the match index), and queues one run for each candidate `accepts`, all dated
   * `event.createdAt`. A repeated idempotency key in the entity is settled by the unique index,
   * also when two calls race: the loser stores nothing and gets the winner's event and runs.
   */
  recordEvent(
    event: NewArtifactEvent,
    accepts: (candidate: MatchCandidate) => boolean,
  ): Promise<RecordEventResult>;
  /** The event the entity recorded with `idempotencyKey`, and its runs; null if none. */
  findByIdempotencyKey(entityId: string, idempotencyKey: string): Promise<RecordedEvent | null>;
  getEvent(id: string): Promise<ArtifactEvent | null>;
  /** A range of the events matching `filter`, newest first: key `[createdAt ms, id]`. */
  pageEvents(filter: EventFilter, request: PageRequest): Promise<ArtifactEvent[]>;
  countEvents(filter: EventFilter): Promise<number>;
}

/** The object whose runs a history list shows, by its stored id. */
export interface RunOwner {
  kind: 'entity' | 'project' | 'registry' | 'automation' | 'event' | 'trainingRun';
  id: string;
}

/** Which of the owner's runs a history list shows; each absent condition matches everything. */
export interface RunFilter {
  statuses?: readonly RunStatus[] | null;
  /** Only runs created at or after this time. */
  createdAfter?: Date | null;
  /** Only runs created at or before this time. */
  createdBefore?: Date | null;
  /** Only runs of this automation. */
  automationId?: string | null;
}

/** One delivery attempt as delivery statistics count it. */
export interface AttemptSample {
  startedAt: Date;
  /** Null while in flight, and for an interrupted attempt. */
  durationMs: number | null;
  statusCode: number | null;
  errorClass: string | null;
}

/** An entity's recent delivery attempts and its backlog, for statistics. */
export interface DeliveryActivity {
  /** Attempts started at or after the window's start, newest first, at most the limit asked. */
  attempts: AttemptSample[];
  /** Whether more attempts started in the window than the limit let through. */
  truncated: boolean;
  /** The entity's runs not yet finished, by status. */
  backlog: { QUEUED: number; RUNNING: number; RETRYING: number };
}

/** Operations on triggered runs and their attempts as history: paging, reading, re-queueing. */
export interface RunStore {
  getRun(id: string): Promise<TriggeredRun | null>;
  /**
   * A range of the owner's runs matching `filter`, newest first: key `[createdAt ms, id]`. Each
   * owner and status condition is answered from an index in list order, never by sorting.
   */
  pageRuns(owner: RunOwner, filter: RunFilter, request: PageRequest): Promise<TriggeredRun[]>;
  countRuns(owner: RunOwner, filter: RunFilter): Promise<number>;
  /** The attempts of a run, in the order they were made. */
  listAttempts(runId: string): Promise<DeliveryAttempt[]>;
  /**
   * Queues a finished run again at `now`, with a fresh retry budget and no lease (so a late
   * result of an earlier claim is dropped), if it is still finished: a conditional update.
   * Returns the queued run, or null when the run does not exist or is not finished.
   */
  requeueRun(id: string, now: Date, result: string): Promise<TriggeredRun | null>;
  /**
   * The entity's delivery attempts started at or after `since` (newest first, at most `limit`)
   * and its unfinished runs by status. Read-only. Attempts are found through the start-time index,
   * runs through the entity's status index.
   */
  deliveryActivity(entityId: string, since: Date, limit: number): Promise<DeliveryActivity>;
}
