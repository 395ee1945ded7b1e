import { publicId } from '../ids.js';
import type { TemplateContext } from '../modules/automations/template.js';
import { eventVersionIndex } from '../modules/events/event-types.js';
import { encodeGlobalId } from '../modules/global-id.js';
import {
  type DecryptedSecrets,
  type OpenedSecrets,
  openSecrets,
  SecretUnreadableError,
} from '../modules/secrets/decrypted.js';
import { unreachable } from '../storage/config.js';
import type {
  ClaimedRun,
  DeliveryAction,
  DeliveryRunEvent,
  SealedSecret,
} from '../storage/delivery.js';
import type { DeliveryContent, DeliveryRequest, DeliveryTarget } from './send.js';
import type { CollectionOwner } from './slack.js';

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
  /** The run's event no longer exists (its run goes with it). */
  | { kind: 'missing' }
  /** The automation or action was deleted or disabled: record why and send nothing. */
  | { kind: 'skip'; reason: string }
  /** The run cannot be delivered as configured; fail it with this message. */
  | { kind: 'misconfigured'; message: string }
  | { kind: 'deliver'; request: DeliveryRequest };

/**
 * Decrypts what `action` needs to be reached: URL, access token and signing secret for a
 * webhook, the incoming-webhook URL for Slack, nothing for a no-op, from `secrets` (which must hold them). Throws
 * DeliveryConfigurationError when a needed value is missing or cannot be decrypted. Disabled
 * actions are not refused here: callers decide.
 */
function actionTarget(
  action: DeliveryAction,
  plaintext: (id: string | null, role: string) => string | null,
): DeliveryTarget {
  switch (action.kind) {
    case 'WEBHOOK':
      if (!action.url) throw new DeliveryConfigurationError('The webhook action has no URL');
      return {
        kind: 'WEBHOOK',
        url: action.url,
        accessToken: plaintext(action.accessTokenSecretId, 'access token'),
        signingSecret: plaintext(action.signingSecretId, 'signing'),
        headers: action.headers ?? {},
      };
    case 'SLACK': {
      const url = plaintext(action.slackUrlSecretId, 'Slack URL');
      if (url === null) {
        throw new DeliveryConfigurationError('The Slack action has no incoming-webhook URL secret');
      }
      return { kind: 'SLACK', url, channel: action.channel };
    }
    case 'NO_OP':
      return { kind: 'NO_OP' };
    default:
      return unreachable(action.kind);
  }
}

export interface BuildDeliveryRequestInput {
  action: DeliveryAction;
  /**
   * The action's own secrets and those the templates name (by name), sealed; more do no harm
   * (each one's plaintext is redacted from stored responses).
   */
  secrets: readonly SealedSecret[];
  content: DeliveryContent;
  context: TemplateContext;
  collectionOwner: CollectionOwner;
  /** The run's public id (`run_…`); `testAction` passes a fresh `test_…` id of its own. */
  webhookId: string;
}

/**
 * Assembles a {@link DeliveryRequest}: the action's target and the plaintext of every given
 * secret, by name, for the templates. Shared by the engine and `testAction`, which passes a
 * sample context. Secrets open through the cache of decrypted values. Throws
 * DeliveryConfigurationError when a secret the action needs is missing or a secret cannot be
 * decrypted.
 */
export function buildDeliveryRequest(
  decrypted: DecryptedSecrets,
  input: BuildDeliveryRequestInput,
): DeliveryRequest {
  let opened: OpenedSecrets;
  try {
    opened = openSecrets(decrypted, input.secrets);
  } catch (error) {
    if (error instanceof SecretUnreadableError) throw new DeliveryConfigurationError(error.message);
    throw error;
  }
  const target = actionTarget(input.action, (id, role) => {
    if (id === null) return null;
    const value = opened.byId.get(id);
    if (value === undefined) {
      throw new DeliveryConfigurationError(`The action's ${role} secret no longer exists`);
    }
    return value;
  });
  return {
    webhookId: input.webhookId,
    target,
    content: input.content,
    context: input.context,
    collectionOwner: input.collectionOwner,
    secrets: opened.byName,
  };
}

/** The template context of a run event's run: W&B's run variables, no artifact. */
function runEventContext(event: DeliveryRunEvent, automationName: string): TemplateContext {
  return {
    eventType: event.eventType,
    eventAuthor: event.reportedBy ?? '',
    eventId: publicId('event', event.id),
    automationName,
    entityName: event.entityName,
    projectName: event.projectName,
    artifactCollectionName: '',
    artifactType: '',
    artifactVersionIndex: null,
    alias: null,
    tag: null,
    metadata: {},
    run: {
      id: encodeGlobalId('Run', event.trainingRunId),
      name: event.runName,
      status: event.runState,
      metricName: event.metricName,
      metricValues: event.metricValues,
      metricFilter: event.condition,
    },
  };
}

/**
 * Decides what a claimed run's attempt does, from what the claim loaded: its automation (current
 * templates), the action the run was created for, the event with its entity / project / registry
 * names, and the sealed secrets. Never throws for expected states: a deleted or disabled
 * automation or action is `skip`, an undeliverable configuration is `misconfigured`.
 */
export function planDelivery(decrypted: DecryptedSecrets, run: ClaimedRun): RunDelivery {
  const { event, runEvent, automation, action } = run;
  if (event === null && runEvent === null) return { kind: 'missing' };
  if (automation === null) return { kind: 'skip', reason: 'Skipped: the automation was deleted' };
  if (!automation.enabled) return { kind: 'skip', reason: 'Skipped: the automation is disabled' };
  if (action === null) return { kind: 'skip', reason: 'Skipped: the action was deleted' };
  if (!action.enabled) {
    const why = action.disabledReason ? ` (${action.disabledReason})` : '';
    return { kind: 'skip', reason: `Skipped: the action is disabled${why}` };
  }
  const context: TemplateContext =
    event !== null
      ? {
          eventType: event.eventType,
          eventAuthor: event.author,
          eventId: publicId('event', event.id),
          automationName: automation.name,
          entityName: event.entityName,
          projectName: event.projectName ?? event.registryName ?? '',
          artifactCollectionName: event.collectionName,
          artifactType: event.artifactType,
          artifactVersionIndex: eventVersionIndex(event),
          alias: event.alias,
          tag: event.tag,
          metadata: event.metadata ?? {},
          run: null,
        }
      : runEventContext(runEvent!, automation.name);
  try {
    return {
      kind: 'deliver',
      request: buildDeliveryRequest(decrypted, {
        action,
        secrets: run.secrets,
        content: {
          payloadTemplate: automation.payloadTemplate,
          slackTitle: automation.slackTitle,
          slackMessage: automation.slackMessage,
          slackSeverity: automation.slackSeverity,
        },
        context,
        collectionOwner:
          event !== null && event.projectName === null && event.registryName !== null
            ? 'REGISTRY'
            : 'PROJECT',
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
