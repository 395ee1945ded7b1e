import { and, eq, inArray } from 'drizzle-orm';
import { ValidationError } from '../errors.js';
import { publicId } from '../ids.js';
import {
  checkPayloadTemplate,
  checkTextTemplate,
  type TemplateContext,
} from '../modules/automations/template.js';
import type { SecretBox } from '../modules/secrets/box.js';
import type { Db } from '../storage/sqlite/database.js';
import {
  actions,
  artifactEvents,
  automations,
  entities,
  projects,
  registries,
  secrets,
  triggeredRuns,
} from '../storage/sqlite/schema.js';
import type { DeliveryContent, DeliveryRequest, DeliveryTarget } from './send.js';
import type { CollectionOwner } from './slack.js';

export type ActionRow = typeof actions.$inferSelect;

/**
 * The action or its secrets cannot produce a request (no URL, a secret missing or not
 * decryptable with the current master key). Retrying cannot help; the run fails.
 */
export class DeliveryConfigurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeliveryConfigurationError';
  }
}

/** What the engine should do with a claimed run, decided from the rows as they are now. */
export type RunDelivery =
  /** The run row no longer exists (its event or entity was deleted). */
  | { kind: 'missing' }
  /** The automation or action was deleted or disabled: record why and send nothing. */
  | { kind: 'skip'; reason: string }
  /** The run cannot be delivered as configured; fail it with this message. */
  | { kind: 'misconfigured'; message: string }
  | { kind: 'deliver'; request: DeliveryRequest };

interface SecretRow {
  id: string;
  name: string;
  ciphertext: string;
}

function openSecret(secretBox: SecretBox, row: SecretRow): string {
  try {
    return secretBox.open(row.ciphertext, row.id);
  } catch {
    throw new DeliveryConfigurationError(
      `Secret ${row.name} could not be decrypted; was the master key changed?`,
    );
  }
}

/**
 * Names of the secrets the templates reference, found with the template module's own parser.
 * A template that no longer checks (say, a secret was deleted) contributes nothing here; it
 * then fails to render, and that error names the problem precisely.
 */
function templateSecretNames(
  db: Db,
  entityId: string,
  content: DeliveryContent,
  kind: ActionRow['kind'],
): string[] {
  const texts =
    kind === 'WEBHOOK'
      ? [{ text: content.payloadTemplate, json: true }]
      : [
          { text: content.slackTitle, json: false },
          { text: content.slackMessage, json: false },
        ];
  if (texts.every(({ text }) => text === null || !text.includes('${'))) return [];
  const known = new Set(
    db
      .select({ name: secrets.name })
      .from(secrets)
      .where(eq(secrets.entityId, entityId))
      .all()
      .map((row) => row.name),
  );
  const used = new Set<string>();
  for (const { text, json } of texts) {
    if (text === null) continue;
    try {
      const names = json
        ? checkPayloadTemplate(text, known, 'template')
        : checkTextTemplate(text, known, 'template');
      for (const name of names) used.add(name);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
    }
  }
  return [...used];
}

/**
 * Decrypts what `action` needs to be reached: URL, access token and signing secret for a
 * webhook, the incoming-webhook URL for Slack. Throws DeliveryConfigurationError when a needed
 * value is missing or cannot be decrypted. Disabled actions are not refused here: callers decide.
 */
export function loadActionTarget(db: Db, secretBox: SecretBox, action: ActionRow): DeliveryTarget {
  const ids = [action.accessTokenSecretId, action.signingSecretId, action.slackUrlSecretId].filter(
    (id): id is string => id !== null,
  );
  const rows =
    ids.length === 0
      ? []
      : db
          .select({ id: secrets.id, name: secrets.name, ciphertext: secrets.ciphertext })
          .from(secrets)
          .where(inArray(secrets.id, ids))
          .all();
  const byId = new Map(rows.map((row) => [row.id, row]));
  const plaintext = (id: string | null, role: string): string | null => {
    if (id === null) return null;
    const row = byId.get(id);
    if (!row) throw new DeliveryConfigurationError(`The action's ${role} secret no longer exists`);
    return openSecret(secretBox, row);
  };
  if (action.kind === 'WEBHOOK') {
    if (!action.url) throw new DeliveryConfigurationError('The webhook action has no URL');
    return {
      kind: 'WEBHOOK',
      url: action.url,
      accessToken: plaintext(action.accessTokenSecretId, 'access token'),
      signingSecret: plaintext(action.signingSecretId, 'signing'),
      headers: action.headers ?? {},
    };
  }
  const url = plaintext(action.slackUrlSecretId, 'Slack URL');
  if (url === null) {
    throw new DeliveryConfigurationError('The Slack action has no incoming-webhook URL secret');
  }
  return { kind: 'SLACK', url, channel: action.channel };
}

export interface BuildDeliveryRequestInput {
  action: ActionRow;
  content: DeliveryContent;
  context: TemplateContext;
  collectionOwner: CollectionOwner;
  /** The run's public id (`run_…`); `testAction` passes a fresh `test_…` id of its own. */
  webhookId: string;
}

/**
 * Assembles a {@link DeliveryRequest}: the action's target and the plaintext of every secret the
 * templates name (looked up in the action's entity). Shared by the engine and `testAction`,
 * which passes a sample context. Throws DeliveryConfigurationError as {@link loadActionTarget}.
 */
export function buildDeliveryRequest(
  db: Db,
  secretBox: SecretBox,
  input: BuildDeliveryRequestInput,
): DeliveryRequest {
  const { action, content } = input;
  const target = loadActionTarget(db, secretBox, action);
  const names = templateSecretNames(db, action.entityId, content, action.kind);
  const templateSecrets = new Map<string, string>();
  if (names.length > 0) {
    const rows = db
      .select({ id: secrets.id, name: secrets.name, ciphertext: secrets.ciphertext })
      .from(secrets)
      .where(and(eq(secrets.entityId, action.entityId), inArray(secrets.name, names)))
      .all();
    for (const row of rows) templateSecrets.set(row.name, openSecret(secretBox, row));
  }
  return {
    webhookId: input.webhookId,
    target,
    content,
    context: input.context,
    collectionOwner: input.collectionOwner,
    secrets: templateSecrets,
  };
}

/**
 * Loads everything run `runId` needs, as the rows are now: the run, its automation (current
 * templates), the action the run was created for, the event, the entity / project / registry
 * names, and the decrypted secrets. Never throws for expected states: a deleted or disabled
 * automation or action is `skip`, an undeliverable configuration is `misconfigured`.
 */
export function loadRunDelivery(db: Db, secretBox: SecretBox, runId: string): RunDelivery {
  const run = db.select().from(triggeredRuns).where(eq(triggeredRuns.id, runId)).get();
  if (!run) return { kind: 'missing' };
  const automation =
    run.automationId === null
      ? undefined
      : db.select().from(automations).where(eq(automations.id, run.automationId)).get();
  if (!automation) return { kind: 'skip', reason: 'Skipped: the automation was deleted' };
  if (!automation.enabled) return { kind: 'skip', reason: 'Skipped: the automation is disabled' };
  const action =
    run.actionId === null
      ? undefined
      : db.select().from(actions).where(eq(actions.id, run.actionId)).get();
  if (!action) return { kind: 'skip', reason: 'Skipped: the action was deleted' };
  if (!action.enabled) {
    const why = action.disabledReason ? ` (${action.disabledReason})` : '';
    return { kind: 'skip', reason: `Skipped: the action is disabled${why}` };
  }
  const found = db
    .select({
      event: artifactEvents,
      entityName: entities.name,
      projectName: projects.name,
      registryName: registries.name,
    })
    .from(artifactEvents)
    .innerJoin(entities, eq(entities.id, artifactEvents.entityId))
    .leftJoin(projects, eq(projects.id, artifactEvents.projectId))
    .leftJoin(registries, eq(registries.id, artifactEvents.registryId))
    .where(eq(artifactEvents.id, run.eventId))
    .get();
  if (!found) return { kind: 'missing' };
  const { event } = found;
  const context: TemplateContext = {
    eventType: event.eventType,
    eventAuthor: event.author,
    eventId: publicId('event', event.id),
    automationName: automation.name,
    entityName: found.entityName,
    projectName: found.projectName ?? found.registryName ?? '',
    artifactCollectionName: event.collectionName,
    artifactType: event.artifactType,
    artifactVersionIndex: event.versionIndex,
    alias: event.alias,
    metadata: event.metadata ?? {},
  };
  try {
    return {
      kind: 'deliver',
      request: buildDeliveryRequest(db, secretBox, {
        action,
        content: {
          payloadTemplate: automation.payloadTemplate,
          slackTitle: automation.slackTitle,
          slackMessage: automation.slackMessage,
          slackSeverity: automation.slackSeverity,
        },
        context,
        collectionOwner:
          found.projectName === null && found.registryName !== null ? 'REGISTRY' : 'PROJECT',
        webhookId: publicId('run', run.id),
      }),
    };
  } catch (error) {
    if (error instanceof DeliveryConfigurationError) {
      return { kind: 'misconfigured', message: error.message };
    }
    throw error;
  }
}
