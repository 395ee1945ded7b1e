import {
  artifactVersionString,
  type RunTemplateContext,
  type TemplateContext,
} from '../modules/automations/template.js';
import type { EventType } from '../storage/config.js';
import type { SlackSeverity } from '../storage/delivery.js';

/** Where the event's collection lives; Slack labels the field "Project" or "Registry". */
export type CollectionOwner = 'PROJECT' | 'REGISTRY';

/** How each severity is shown: an emoji people can scan for, and a word for screen readers. */
export const SLACK_SEVERITY_STYLE: Readonly<
  Record<SlackSeverity, { emoji: string; label: string }>
> = {
  INFO: { emoji: ':large_blue_circle:', label: 'Info' },
  WARN: { emoji: ':warning:', label: 'Warning' },
  ERROR: { emoji: ':rotating_light:', label: 'Error' },
};

/**
 * The default title of each event type, from the event's context and its version string. The
 * record makes the compiler ask for a title for every new event type.
 */
const EVENT_TITLES: Readonly<Record<EventType, (ctx: TemplateContext, version: string) => string>> =
  {
    CREATE_ARTIFACT: (_ctx, version) => `New artifact version: ${version}`,
    LINK_ARTIFACT: (_ctx, version) => `Artifact version linked: ${version}`,
    UNLINK_ARTIFACT: (ctx) =>
      `v${ctx.artifactVersionIndex} unlinked from registry ${ctx.projectName}/${ctx.artifactCollectionName}`,
    ADD_ARTIFACT_ALIAS: (_ctx, version) => `Alias added to artifact version: ${version}`,
    ADD_ARTIFACT_TAG: (ctx) =>
      `Tag \`${ctx.tag}\` added to ${ctx.artifactCollectionName}:v${ctx.artifactVersionIndex}`,
    REMOVE_ARTIFACT_TAG: (ctx) =>
      `Tag \`${ctx.tag}\` removed from ${ctx.artifactCollectionName}:v${ctx.artifactVersionIndex}`,
    ADD_COLLECTION_TAG: (ctx) =>
      `Tag \`${ctx.tag}\` added to collection ${ctx.artifactCollectionName}`,
    REMOVE_COLLECTION_TAG: (ctx) =>
      `Tag \`${ctx.tag}\` removed from collection ${ctx.artifactCollectionName}`,
    RUN_STATE: (ctx) => `Run ${ctx.run?.name} is ${ctx.run?.status}`,
    RUN_METRIC: (ctx) => `Run ${ctx.run?.name}: ${ctx.run?.metricName} crossed its threshold`,
    RUN_METRIC_CHANGE: (ctx) => `Run ${ctx.run?.name}: ${ctx.run?.metricName} changed`,
    RUN_METRIC_ZSCORE: (ctx) =>
      `Run ${ctx.run?.name}: ${ctx.run?.metricName} is an outlier among the project's runs`,
  };

/** The default title: the event type's own, or the type and version for an unknown type. */
function defaultTitle(ctx: TemplateContext, version: string): string {
  const title = (EVENT_TITLES as Partial<Record<string, (typeof EVENT_TITLES)[EventType]>>)[
    ctx.eventType
  ];
  return title ? title(ctx, version) : `${ctx.eventType}: ${version}`;
}

/** Slack limits: header text 150 characters, section text 3000, field text 2000. */
const HEADER_MAX = 150;
const SECTION_MAX = 3000;
const FIELD_MAX = 2000;

export interface SlackMessageInput {
  /** Rendered title; null uses a title naming the event and the version. */
  title: string | null;
  /** Rendered message; null uses a sentence naming the automation and the author. */
  message: string | null;
  severity: SlackSeverity;
  context: TemplateContext;
  collectionOwner: CollectionOwner;
}

interface TextObject {
  type: 'plain_text' | 'mrkdwn';
  text: string;
  emoji?: boolean;
}

/** The JSON body posted to a Slack incoming webhook. */
export interface SlackMessage {
  /** Plain-text fallback for notifications and clients that do not render blocks. */
  text: string;
  blocks: (
    | { type: 'header'; text: TextObject }
    | { type: 'section'; text?: TextObject; fields?: TextObject[] }
    | { type: 'context'; elements: TextObject[] }
  )[];
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Slack mrkdwn treats these three as control characters; everything else is literal. */
function escapeMrkdwn(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

/**
 * Builds a Slack incoming-webhook message: a header with the title (the event type's default
 * when the rendered title is blank), a context line with the severity (emoji and word), a
 * section with the message, and fields for entity, project or registry, collection, version,
 * alias, tag (for tag events) and author. `text` carries the same facts in plain text as the
 * notification fallback. Never throws.
 */
export function buildSlackMessage(input: SlackMessageInput): SlackMessage {
  const { context: ctx, severity } = input;
  const style = SLACK_SEVERITY_STYLE[severity];
  if (ctx.run) return runSlackMessage(input, ctx.run, style);
  const version = artifactVersionString(
    ctx.entityName,
    ctx.projectName,
    ctx.artifactCollectionName,
    ctx.artifactVersionIndex,
    ctx.alias,
  );
  const title = input.title?.trim() || defaultTitle(ctx, version);
  const message =
    input.message?.trim() ||
    `Automation "${ctx.automationName}" ran for ${ctx.eventType} by ${ctx.eventAuthor}.`;
  const field = (label: string, value: string): TextObject => ({
    type: 'mrkdwn',
    text: clip(`*${label}*\n${escapeMrkdwn(value)}`, FIELD_MAX),
  });
  return {
    text: `${style.emoji} [${style.label}] ${title}\n${message}\n${version} (by ${ctx.eventAuthor})`,
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: clip(title, HEADER_MAX), emoji: true } },
      {
        type: 'context',
        elements: [{ type: 'mrkdwn', text: `${style.emoji} *${style.label}* · ${ctx.eventType}` }],
      },
      { type: 'section', text: { type: 'mrkdwn', text: clip(escapeMrkdwn(message), SECTION_MAX) } },
      {
        type: 'section',
        fields: [
          field('Entity', ctx.entityName),
          field(input.collectionOwner === 'REGISTRY' ? 'Registry' : 'Project', ctx.projectName),
          field('Collection', ctx.artifactCollectionName),
          field('Version', version),
          field('Alias', ctx.alias ?? '—'),
          ...(ctx.tag == null ? [] : [field('Tag', ctx.tag)]),
          field('Author', ctx.eventAuthor),
        ],
      },
    ],
  };
}

/**
 * A run event's message: the title and message as for artifact events (default title from the
 * event type), then fields for entity, project, run, state, and for metric events the metric,
 * the condition that fired (with its window) and the values it looked at.
 */
function runSlackMessage(
  input: SlackMessageInput,
  run: RunTemplateContext,
  style: { emoji: string; label: string },
): SlackMessage {
  const ctx = input.context;
  const title = input.title?.trim() || defaultTitle(ctx, run.name);
  const message =
    input.message?.trim() ||
    `Automation "${ctx.automationName}" ran for ${ctx.eventType}: ${run.metricFilter}.`;
  const field = (label: string, value: string): TextObject => ({
    type: 'mrkdwn',
    text: clip(`*${label}*\n${escapeMrkdwn(value)}`, FIELD_MAX),
  });
  const values = run.metricValues === null ? null : run.metricValues.join(', ');
  const facts =
    run.metricName === null
      ? `run ${run.name} is ${run.status}`
      : `${run.metricFilter}; values: ${values}`;
  return {
    text: `${style.emoji} [${style.label}] ${title}\n${message}\n${ctx.projectName}/${run.name}: ${facts}`,
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: clip(title, HEADER_MAX), emoji: true } },
      {
        type: 'context',
        elements: [{ type: 'mrkdwn', text: `${style.emoji} *${style.label}* · ${ctx.eventType}` }],
      },
      { type: 'section', text: { type: 'mrkdwn', text: clip(escapeMrkdwn(message), SECTION_MAX) } },
      {
        type: 'section',
        fields: [
          field('Entity', ctx.entityName),
          field('Project', ctx.projectName),
          field('Run', run.name),
          field('State', run.status),
          ...(run.metricName === null
            ? [field('Condition', run.metricFilter)]
            : [
                field('Metric', run.metricName),
                field('Condition', run.metricFilter),
                field('Values', values ?? ''),
              ]),
        ],
      },
    ],
  };
}

/**
 * Why `value` cannot be a Slack incoming-webhook URL, as a clause to follow "cannot be a Slack
 * incoming-webhook URL:", or undefined when it can. The one rule for Slack destinations, applied
 * when a Slack action is saved, when a secret a Slack action uses is rotated, and before each
 * delivery: an absolute https URL (Slack's are `https://hooks.slack.com/services/…`; over plain
 * http the token in the path would cross the network in clear text). The clause never quotes the
 * value, which is itself a secret.
 */
export function slackWebhookUrlProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'it is not a URL (an https URL such as https://hooks.slack.com/services/… is needed)';
  }
  if (url.protocol !== 'https:') {
    return 'it is not an https URL (Slack incoming webhooks are https://hooks.slack.com/services/…)';
  }
  return undefined;
}
