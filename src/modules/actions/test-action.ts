import { builder } from '../../builder.js';
import type { Context } from '../../context.js';
import { buildDeliveryRequest, DeliveryConfigurationError } from '../../delivery/load.js';
import { type DeliveryOutcome, deliver } from '../../delivery/send.js';
import { NotFoundError, PermissionDeniedError, ValidationError } from '../../errors.js';
import { newId, publicId } from '../../ids.js';
import { SlackSeverityEnum } from '../automations/schema.js';
import {
  checkPayloadTemplate,
  checkTextTemplate,
  type TemplateContext,
} from '../automations/template.js';
import { readableEntity } from '../entities/access.js';
import { DeliveryResultRef } from '../runs/schema.js';
import { secretNamesOf } from '../secrets/service.js';
import { decodeActionId } from './schema.js';
import { requireAction } from './service.js';

export interface TestActionInput {
  id: string;
  payloadTemplate?: string | null;
  slackTitle?: string | null;
  slackMessage?: string | null;
  slackSeverity?: 'INFO' | 'WARN' | 'ERROR' | null;
}

/** The event a test delivery describes: clearly a sample, in the caller's entity. */
function sampleContext(ctx: Context, entityName: string): TemplateContext {
  return {
    eventType: 'CREATE_ARTIFACT',
    eventAuthor: ctx.viewer.user.name,
    // Shaped like a real event id so receivers parse it alike; it names no event.
    eventId: publicId('event', 'sample'),
    automationName: 'Test delivery',
    entityName,
    projectName: 'sample-project',
    artifactCollectionName: 'sample-model',
    artifactType: 'model',
    artifactVersionIndex: 0,
    alias: null,
    tag: null,
    metadata: { sample: true },
  };
}

/**
 * Sends one sample message through an action, exactly as a run would (same headers, signing,
 * SSRF guard, timeouts, redaction), without creating a run, and returns what the receiver
 * answered. A no-op action sends nothing and answers at once (see NO_OP_OUTCOME). Members and
 * admins. Throws NotFoundError for an action the caller cannot see and ValidationError for a
 * template that would be refused on an automation, or any template for a no-op action.
 */
export async function testAction(ctx: Context, input: TestActionInput): Promise<DeliveryOutcome> {
  const { deps } = ctx;
  const action = await requireAction(
    ctx,
    decodeActionId(input.id, 'input.id'),
    'MEMBER',
    'input.id',
  );
  if (action.kind === 'NO_OP') {
    for (const field of [
      'payloadTemplate',
      'slackTitle',
      'slackMessage',
      'slackSeverity',
    ] as const) {
      if (input[field] != null) {
        throw new ValidationError(
          `input.${field}`,
          `\`${field}\` does not apply to a no-op action ("${action.name}"), which sends nothing; remove it.`,
        );
      }
    }
  }
  const secretNames = await secretNamesOf(deps, action.entityId);
  const templateNames = new Set<string>();
  const uses = (names: Iterable<string>) => {
    for (const name of names) templateNames.add(name);
  };
  if (input.payloadTemplate != null)
    uses(checkPayloadTemplate(input.payloadTemplate, secretNames, 'input.payloadTemplate'));
  if (input.slackTitle != null)
    uses(checkTextTemplate(input.slackTitle, secretNames, 'input.slackTitle'));
  if (input.slackMessage != null)
    uses(checkTextTemplate(input.slackMessage, secretNames, 'input.slackMessage'));
  // requireAction checked the viewer's role there, so the entity is readable.
  const entityName = (await readableEntity(ctx, action.entityId))!.name;
  const secrets = await deps.storage.delivery.findSecrets(action.entityId, {
    ids: [action.accessTokenSecretId, action.signingSecretId, action.slackUrlSecretId].filter(
      (id): id is string => id !== null,
    ),
    names: [...templateNames],
  });
  let request: ReturnType<typeof buildDeliveryRequest>;
  try {
    request = buildDeliveryRequest(deps.decrypted, {
      action,
      secrets,
      content: {
        payloadTemplate: input.payloadTemplate ?? null,
        slackTitle: input.slackTitle ?? 'Test message from Tripline',
        slackMessage: input.slackMessage ?? 'If you can read this, the Slack action works.',
        slackSeverity: input.slackSeverity ?? 'INFO',
      },
      context: sampleContext(ctx, entityName),
      collectionOwner: 'PROJECT',
      webhookId: publicId('testDelivery', newId()),
    });
  } catch (error) {
    if (error instanceof DeliveryConfigurationError)
      throw new ValidationError('input.id', error.message);
    throw error;
  }
  return deliver(request, {
    config: deps.config.delivery,
    timestamp: deps.clock.now(),
    ...(deps.lookup ? { lookup: deps.lookup } : {}),
  });
}

const ActionTestResponse = builder.objectRef<DeliveryOutcome>('ActionTestResponse').implement({
  description: 'What the receiver answered to a test delivery. Nothing was stored.',
  interfaces: [DeliveryResultRef],
  fields: (t) => ({
    durationMs: t.exposeInt('durationMs', {
      description:
        'How long the request took, in milliseconds; at most TRIPLINE_DELIVERY_TIMEOUT_MS plus the time to abort.',
    }),
    success: t.boolean({
      description: 'True when the receiver answered 2xx, and always for a NoOpAction.',
      resolve: (o) =>
        o.noOp === true ||
        (o.statusCode !== undefined && o.statusCode >= 200 && o.statusCode < 300),
    }),
    sent: t.boolean({
      description:
        'Whether a request was sent. False for a NoOpAction: nothing was sent, so `statusCode`, `errorClass`, `errorMessage` and `responseBody` are null and `durationMs` is 0.',
      resolve: (o) => o.noOp !== true,
    }),
  }),
});

const TestActionPayload = builder
  .objectRef<{ response: DeliveryOutcome }>('TestActionPayload')
  .implement({
    description: 'The outcome of a test delivery.',
    fields: (t) => ({
      response: t.field({
        type: ActionTestResponse,
        description: 'What the receiver answered, or why there was no answer.',
        resolve: (p) => p.response,
      }),
    }),
  });

builder.mutationField('testAction', (t) =>
  t.field({
    type: TestActionPayload,
    description:
      'Sends a sample message through an action, like a "Test webhook" button, and returns the answer. Creates no run. Members and admins.',
    errors: { types: [ValidationError, NotFoundError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'Which action, and optionally the templates to try.',
        type: builder.inputType('TestActionInput', {
          description:
            'A test delivery. Templates are checked as on an automation; omitted ones use defaults.',
          fields: (f) => ({
            id: f.id({ description: 'Global ID of the action.' }),
            payloadTemplate: f.string({
              required: false,
              description: 'Webhook: a payload template to try.',
            }),
            slackTitle: f.string({ required: false, description: 'Slack: a title to try.' }),
            slackMessage: f.string({ required: false, description: 'Slack: a message to try.' }),
            slackSeverity: f.field({
              type: SlackSeverityEnum,
              required: false,
              description: 'Slack: a severity to try.',
            }),
          }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({ response: await testAction(ctx, input) }),
  }),
);
