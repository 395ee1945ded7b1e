/*
 * Secrets, actions and automations: what teams configure. A write that is audited takes its
 * `AuditRecord` and writes it in its own transaction, dated with the write's time (`createdAt`,
 * `rotatedAt`, `updatedAt`, or `now` for a deletion).
 */

import type { AuditRecord } from './audit.js';
import type { PageRequest } from './paging.js';

// ---------------------------------------------------------------------------------------------
// Secrets

/** A stored secret. Its value exists here only sealed. */
export interface SecretRecord {
  id: string;
  entityId: string;
  /** UPPER_SNAKE_CASE, unique in the entity. */
  name: string;
  /**
   * The value sealed by the secret box with the secret's id as associated data, so an envelope
   * copied onto another secret does not open. Every sealing makes a new envelope (a fresh IV), so
   * the envelope also identifies the version of the value: master-key rotation and `rotateSecret`
   * both give a secret a new one.
   */
  ciphertext: string;
  createdAt: Date;
  createdById: string | null;
  /** When the value was last replaced; null if never. */
  rotatedAt: Date | null;
  rotatedById: string | null;
}

/** A new secret, sealed by the caller under `id`. */
export type NewSecret = Pick<
  SecretRecord,
  'id' | 'entityId' | 'name' | 'ciphertext' | 'createdAt' | 'createdById'
>;

/** What opening a secret needs, and its name for messages. */
export type SealedSecret = Pick<SecretRecord, 'id' | 'name' | 'ciphertext'>;

/** A sealed secret with the name of its entity, for messages naming it as `<entity>/<name>`. */
export interface LabelledSecret extends SealedSecret {
  entityName: string;
}

/** Who references a secret, each list by name, sorted; a secret with any user cannot be deleted. */
export interface SecretUsers {
  /** Actions using it as access token, signing secret or Slack URL. */
  actions: string[];
  /** Automations whose templates name it. */
  automations: string[];
}

/** What a deletion did: nothing when the secret is gone or still in use. */
export type SecretDeletion =
  | { outcome: 'deleted'; secret: SecretRecord }
  | { outcome: 'inUse'; users: SecretUsers }
  | { outcome: 'missing' };

/** Operations on secrets. */
export interface SecretStore {
  find(id: string): Promise<SecretRecord | undefined>;
  findByName(entityId: string, name: string): Promise<SecretRecord | undefined>;
  /** Every secret of the entity: name → id. */
  namesIn(entityId: string): Promise<Map<string, string>>;
  /** Stores a new secret with its audit entry. Throws DuplicateError('name') for a taken name. */
  create(secret: NewSecret, audit: AuditRecord): Promise<SecretRecord>;
  /**
   * Replaces the sealed value of secret `id` with its audit entry; undefined when the secret is
   * gone (nothing written).
   */
  replaceValue(
    id: string,
    value: { ciphertext: string; rotatedAt: Date; rotatedById: string | null },
    audit: AuditRecord,
  ): Promise<SecretRecord | undefined>;
  /**
   * Deletes secret `id` with its audit entry (dated `now`) unless an action or automation references it; the
   * check and the deletion are one transaction, so no reference can appear in between.
   */
  delete(id: string, audit: AuditRecord, now: Date): Promise<SecretDeletion>;
  usersOf(id: string): Promise<SecretUsers>;
  /** A range of the entity's secrets, by name (the key: `[name]`). */
  pageSecrets(entityId: string, request: PageRequest): Promise<SecretRecord[]>;
  countSecrets(entityId: string): Promise<number>;
  /** Every secret of every entity, by entity name then name. */
  everySecret(): Promise<LabelledSecret[]>;
  /**
   * Replaces the envelope of every secret in one transaction, committed durably before the
   * promise resolves (so a caller may act on it, e.g. swap key files). `reseal` receives every
   * secret as {@link everySecret} lists it and returns the new envelope of each, by id; whatever
   * it throws rolls everything back and is rethrown. Resolves to how many secrets there were.
   * `createdAt` and `rotatedAt` are untouched: the values are.
   */
  resealAll(
    reseal: (secrets: readonly LabelledSecret[]) => ReadonlyMap<string, string>,
  ): Promise<number>;
}

// ---------------------------------------------------------------------------------------------
// Actions

/**
 * The kinds of action: a closed union. Code that branches on a kind switches over it with a
 * `never` default, so a new kind does not compile until every branch handles it.
 */
export const ACTION_KINDS = ['WEBHOOK', 'SLACK', 'NO_OP'] as const;
export type ActionKind = (typeof ACTION_KINDS)[number];

/** Fails to compile when a switch over a closed union misses a member; throws if reached anyway. */
export function unreachable(value: never): never {
  throw new Error(`Unhandled case ${JSON.stringify(value)}`);
}

interface ActionCommon {
  id: string;
  entityId: string;
  /** Unique in the entity. */
  name: string;
  enabled: boolean;
  /** Why it was disabled (by whom, or the engine's reason); null while enabled. */
  disabledReason: string | null;
  createdAt: Date;
  createdById: string | null;
  /** When it last changed; null until then. */
  updatedAt: Date | null;
}

/** Sends each run as a signed JSON POST. The Slack fields are null. */
export interface WebhookActionRecord extends ActionCommon {
  kind: 'WEBHOOK';
  url: string;
  /** Secret sent as `Authorization: Bearer …`, if any. */
  accessTokenSecretId: string | null;
  /** Secret holding the `whsec_…` key that signs every delivery. */
  signingSecretId: string;
  /** Extra headers, in the order given. */
  headers: Record<string, string>;
  channel: null;
  slackUrlSecretId: null;
}

/** Posts each run to Slack through an incoming webhook. The webhook fields are null. */
export interface SlackActionRecord extends ActionCommon {
  kind: 'SLACK';
  /** The channel label shown to people. */
  channel: string;
  /** Secret holding the incoming-webhook URL. */
  slackUrlSecretId: string;
  url: null;
  accessTokenSecretId: null;
  signingSecretId: null;
  headers: null;
}

/**
 * Sends nothing: each run succeeds on its first attempt without a request. For trying an
 * automation's trigger, or keeping a history of matches. Every kind-specific field is null.
 */
export interface NoOpActionRecord extends ActionCommon {
  kind: 'NO_OP';
  url: null;
  accessTokenSecretId: null;
  signingSecretId: null;
  headers: null;
  channel: null;
  slackUrlSecretId: null;
}

export type ActionRecord = WebhookActionRecord | SlackActionRecord | NoOpActionRecord;

/** An action as either engine stores it: one row with every kind's columns, null where unused. */
export interface StoredAction extends ActionCommon {
  kind: ActionRecord['kind'];
  url: string | null;
  accessTokenSecretId: string | null;
  signingSecretId: string | null;
  headers: Record<string, string> | null;
  channel: string | null;
  slackUrlSecretId: string | null;
}

/** A stored row as the record of its kind. A row missing what its kind needs is a bug. */
export function actionRecord(row: StoredAction): ActionRecord {
  const common = {
    id: row.id,
    entityId: row.entityId,
    name: row.name,
    enabled: row.enabled,
    disabledReason: row.disabledReason,
    createdAt: row.createdAt,
    createdById: row.createdById,
    updatedAt: row.updatedAt,
  };
  const broken = (what: string) => new Error(`${row.kind} action ${row.id} has no ${what}`);
  switch (row.kind) {
    case 'WEBHOOK':
      if (row.url === null) throw broken('url');
      if (row.signingSecretId === null) throw broken('signing secret');
      return {
        ...common,
        kind: 'WEBHOOK',
        url: row.url,
        accessTokenSecretId: row.accessTokenSecretId,
        signingSecretId: row.signingSecretId,
        headers: row.headers ?? {},
        channel: null,
        slackUrlSecretId: null,
      };
    case 'SLACK':
      if (row.channel === null) throw broken('channel');
      if (row.slackUrlSecretId === null) throw broken('Slack URL secret');
      return {
        ...common,
        kind: 'SLACK',
        channel: row.channel,
        slackUrlSecretId: row.slackUrlSecretId,
        url: null,
        accessTokenSecretId: null,
        signingSecretId: null,
        headers: null,
      };
    case 'NO_OP':
      return {
        ...common,
        kind: 'NO_OP',
        url: null,
        accessTokenSecretId: null,
        signingSecretId: null,
        headers: null,
        channel: null,
        slackUrlSecretId: null,
      };
    default:
      return unreachable(row.kind);
  }
}

/** A new action: every field but the ones that only change later. */
export type NewAction =
  | Omit<WebhookActionRecord, 'enabled' | 'disabledReason' | 'updatedAt'>
  | Omit<SlackActionRecord, 'enabled' | 'disabledReason' | 'updatedAt'>
  | Omit<NoOpActionRecord, 'enabled' | 'disabledReason' | 'updatedAt'>;

/**
 * Fields to change on an action; absent ones keep their stored value. The fields of the other
 * kind must stay absent (the service checks it).
 */
export interface ActionChanges {
  updatedAt: Date;
  name?: string;
  enabled?: boolean;
  disabledReason?: string | null;
  url?: string;
  accessTokenSecretId?: string | null;
  signingSecretId?: string;
  headers?: Record<string, string>;
  channel?: string;
  slackUrlSecretId?: string;
}

/** A secret created together with an action (a webhook's generated signing key). */
export interface SecretWithAction {
  secret: NewSecret;
  audit: AuditRecord;
}

/** What a deletion did: nothing when the action is gone or automations still use it. */
export type ActionDeletion =
  | { outcome: 'deleted'; action: ActionRecord }
  | { outcome: 'inUse'; automations: string[] }
  | { outcome: 'missing' };

/** Conditions on an action list; an absent one matches everything. */
export interface ActionFilter {
  kind?: ActionKind | null;
  enabled?: boolean | null;
}

/** Operations on actions. */
export interface ActionStore {
  find(id: string): Promise<ActionRecord | undefined>;
  /**
   * Stores a new action with its audit entry and, in the same transaction, `newSecret` first when
   * given (the action references it). Throws DuplicateError('name') for a taken action name and
   * DuplicateError('secretName') when the new secret's name is taken; nothing is written then.
   */
  create<Action extends NewAction>(
    action: Action,
    audit: AuditRecord,
    newSecret?: SecretWithAction,
  ): Promise<Extract<ActionRecord, { kind: Action['kind'] }>>;
  /**
   * Applies `changes` (only the fields given, so concurrent changes to other fields survive) and
   * writes `audits` in the same transaction. Undefined when the action is gone. Throws
   * DuplicateError('name') when renaming onto a taken name.
   */
  update(
    id: string,
    changes: ActionChanges,
    audits: readonly AuditRecord[],
  ): Promise<ActionRecord | undefined>;
  /**
   * Deletes action `id` with its audit entry (dated `now`) unless automations use it; the check and the
   * deletion are one transaction.
   */
  delete(id: string, audit: AuditRecord, now: Date): Promise<ActionDeletion>;
  /** Names of the automations that run the action, sorted. */
  usedBy(id: string): Promise<string[]>;
  /** Names of the Slack actions that post to the URL held by secret `secretId`, sorted. */
  slackActionsPostingTo(secretId: string): Promise<string[]>;
  /** A range of the entity's actions matching `filter`, by name (the key: `[name]`). */
  pageActions(
    entityId: string,
    filter: ActionFilter,
    request: PageRequest,
  ): Promise<ActionRecord[]>;
  countActions(entityId: string, filter: ActionFilter): Promise<number>;
}

// ---------------------------------------------------------------------------------------------
// Automations

export const EVENT_TYPES = [
  'CREATE_ARTIFACT',
  'LINK_ARTIFACT',
  'UNLINK_ARTIFACT',
  'ADD_ARTIFACT_ALIAS',
  'ADD_ARTIFACT_TAG',
  'REMOVE_ARTIFACT_TAG',
  'ADD_COLLECTION_TAG',
  'REMOVE_COLLECTION_TAG',
  'RUN_STATE',
  'RUN_METRIC',
  'RUN_METRIC_CHANGE',
  'RUN_METRIC_ZSCORE',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export const SCOPE_TYPES = [
  'PROJECT',
  'REGISTRY',
  'PROJECT_COLLECTION',
  'REGISTRY_COLLECTION',
  'ENTITY',
] as const;
export type ScopeType = (typeof SCOPE_TYPES)[number];

export const SLACK_SEVERITIES = ['INFO', 'WARN', 'ERROR'] as const;
export type SlackSeverity = (typeof SLACK_SEVERITIES)[number];

/** The states a training run reports (`CRASHED` is stored as `FAILED`). */
export const TRAINING_RUN_STATES = ['RUNNING', 'FINISHED', 'FAILED'] as const;
export type TrainingRunState = (typeof TRAINING_RUN_STATES)[number];

/** How a metric's window of values is reduced to one number. */
export const METRIC_AGGREGATIONS = ['LATEST', 'MAX', 'MIN', 'AVERAGE'] as const;
export type MetricAggregation = (typeof METRIC_AGGREGATIONS)[number];

/** `>`, `>=`, `<`, `<=`, `==`, `!=`. */
export const METRIC_COMPARISONS = ['GT', 'GTE', 'LT', 'LTE', 'EQ', 'NE'] as const;
export type MetricComparison = (typeof METRIC_COMPARISONS)[number];

export const METRIC_CHANGE_TYPES = ['ABSOLUTE', 'RELATIVE'] as const;
export type MetricChangeType = (typeof METRIC_CHANGE_TYPES)[number];

export const METRIC_CHANGE_DIRECTIONS = ['INCREASE', 'DECREASE', 'ANY'] as const;
export type MetricChangeDirection = (typeof METRIC_CHANGE_DIRECTIONS)[number];

export const ZSCORE_DIRECTIONS = ['ABOVE', 'BELOW', 'EITHER'] as const;
export type ZScoreDirection = (typeof ZSCORE_DIRECTIONS)[number];

/**
 * What fires a run automation, one kind per run event type: a closed union (switch over `kind`
 * with a `never` default).
 */
export type RunCondition =
  /** RUN_STATE: the run enters one of `states`. */
  | { kind: 'STATE'; states: TrainingRunState[] }
  /** RUN_METRIC: `aggregation` of the last `window` values of `metric` compared with `threshold`. */
  | {
      kind: 'METRIC';
      metric: string;
      aggregation: MetricAggregation;
      window: number;
      comparison: MetricComparison;
      threshold: number;
    }
  /**
   * RUN_METRIC_CHANGE: `aggregation` of the last `window` values against that of the `window`
   * values before them, changed by more than `amount` (absolute, or relative to the prior window).
   */
  | {
      kind: 'METRIC_CHANGE';
      metric: string;
      aggregation: MetricAggregation;
      window: number;
      changeType: MetricChangeType;
      direction: MetricChangeDirection;
      amount: number;
    }
  /**
   * RUN_METRIC_ZSCORE: the run's latest value of `metric` against the latest values of the same
   * metric in the `runs` most recently updated other runs of the project, in standard deviations.
   */
  | {
      kind: 'METRIC_ZSCORE';
      metric: string;
      runs: number;
      direction: ZScoreDirection;
      threshold: number;
    };

/** What an automation is: everything a client sets. */
export interface AutomationSettings {
  /** Unique in the entity. */
  name: string;
  description: string | null;
  enabled: boolean;
  eventType: EventType;
  scopeType: ScopeType;
  /** The project, registry, collection or (ENTITY scope) entity id `scopeType` names. */
  scopeId: string;
  filterCollectionName: string | null;
  filterArtifactType: string | null;
  filterAliasPattern: string | null;
  filterTagPattern: string | null;
  /** Run events: an RE2 pattern the run's name must match; null matches every run. */
  filterRunNamePattern: string | null;
  /** Run events: only runs reported by this user (stored id); null matches every user. */
  filterRunReportedById: string | null;
  /** Run events: the condition that fires the automation; null for artifact events. */
  runCondition: RunCondition | null;
  /**
   * Run events: after firing for a run, the automation does not fire for that run again for this
   * many seconds; null for artifact events.
   */
  cooldownSeconds: number | null;
  actionId: string;
  /** Webhook: the JSON payload template; null sends the default envelope. */
  payloadTemplate: string | null;
  slackTitle: string | null;
  slackMessage: string | null;
  slackSeverity: SlackSeverity | null;
}

/** A stored automation. */
export interface AutomationRecord extends AutomationSettings {
  id: string;
  entityId: string;
  createdAt: Date;
  createdById: string | null;
  /** When it last changed: its creation time until then (null in rows that predate this rule). */
  updatedAt: Date | null;
}

/** Conditions on an automation list; an absent one matches everything. */
export interface AutomationFilter {
  scopeType?: ScopeType | null;
  eventType?: EventType | null;
  actionId?: string | null;
  enabled?: boolean | null;
}

/** Operations on automations. */
export interface AutomationStore {
  find(id: string): Promise<AutomationRecord | undefined>;
  /**
   * Stores a new automation, the secrets its templates name (`secretIds`) and its audit entry in
   * one transaction. Throws DuplicateError('name') for a taken name.
   */
  create(
    automation: AutomationRecord,
    secretIds: readonly string[],
    audit: AuditRecord,
  ): Promise<AutomationRecord>;
  /**
   * Writes `settings` over automation `id` and replaces the secrets its templates name, with
   * `audit` when given, in one transaction — provided the automation is still as read: its
   * `updatedAt` (or, when null, `createdAt`) equals `readAt`. Undefined when it is gone or changed since (nothing written):
   * read it again and retry. Throws DuplicateError('name') when renaming onto a taken name.
   */
  update(
    id: string,
    readAt: Date,
    settings: AutomationSettings & { updatedAt: Date },
    secretIds: readonly string[],
    audit: AuditRecord | null,
  ): Promise<AutomationRecord | undefined>;
  /**
   * Deletes automation `id` and its secret references with its audit entry (dated `now`); false
   * when it is gone.
   */
  delete(id: string, audit: AuditRecord, now: Date): Promise<boolean>;
  /**
   * A range of the entity's automations matching `filter`, newest first (the key:
   * `[createdAt as epoch milliseconds, id]`).
   */
  pageAutomations(
    entityId: string,
    filter: AutomationFilter,
    request: PageRequest,
  ): Promise<AutomationRecord[]>;
  countAutomations(entityId: string, filter: AutomationFilter): Promise<number>;
}
