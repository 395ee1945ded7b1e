import { and, asc, count, eq, type SQL } from 'drizzle-orm';
import type { AppDeps, Context } from '../../context.js';
import { reservedHeaderReason } from '../../delivery/headers.js';
import { generateSigningSecret } from '../../delivery/signing.js';
import { slackWebhookUrlProblem } from '../../delivery/slack.js';
import { ConflictError, NotFoundError, ValidationError } from '../../errors.js';
import { newId } from '../../ids.js';
import type { AuditAction } from '../../storage/audit.js';
import { recordAudit } from '../../storage/sqlite/audit.js';
import { actions, automations } from '../../storage/sqlite/schema.js';
import { byName, type Page, type SortOrder } from '../connection.js';
import { requireEntity, requireRole } from '../entities/access.js';
import { decodeGlobalId } from '../global-id.js';
import { assertNameFree, checkName, MAX_NAME_LENGTH } from '../names.js';
import {
  findSecretByName,
  getSecret,
  insertSecret,
  openSecret,
  requireSecretByName,
  type Secret,
} from '../secrets/service.js';
import type { Role } from '../users/service.js';

export type Action = typeof actions.$inferSelect;
export type ActionKind = Action['kind'];

/** The GraphQL type of each kind; global IDs carry it. */
export const ACTION_TYPENAMES: Readonly<Record<ActionKind, string>> = {
  WEBHOOK: 'WebhookAction',
  SLACK: 'SlackAction',
};

export interface HeaderInput {
  name: string;
  value: string;
}

export const MAX_URL_LENGTH = 2048;
export const MAX_HEADERS = 20;
export const MAX_HEADER_VALUE_LENGTH = 1024;

/** RFC 7230 `token`: the characters a header name may contain. */
const HEADER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const SIGNING_SECRET = /^whsec_[A-Za-z0-9+/]+={0,2}$/;
const SIGNING_KEY_BYTES = { min: 24, max: 64 };

const KIND_LABEL: Readonly<Record<ActionKind, string>> = { WEBHOOK: 'webhook', SLACK: 'Slack' };

export function getAction(deps: Pick<AppDeps, 'db'>, id: string): Action | undefined {
  return deps.db.select().from(actions).where(eq(actions.id, id)).get();
}

/**
 * Finds the action behind a global ID (of a `WebhookAction` or `SlackAction`) and checks the
 * viewer's role in its entity. Throws NotFoundError on `field` when the ID is malformed, names
 * nothing, or belongs to an entity the viewer is not in; PermissionDeniedError when the role is
 * too low.
 */
export function requireAction(ctx: Context, globalId: string, role: Role, field: string): Action {
  const notFound = () => new NotFoundError(field, `No action with id "${globalId}".`);
  const decoded = decodeGlobalId(globalId);
  if (decoded === null) throw notFound();
  const action = getAction(ctx.deps, decoded.id);
  if (!action || ACTION_TYPENAMES[action.kind] !== decoded.typename) throw notFound();
  requireRole(ctx.viewer, action.entityId, role, notFound);
  return action;
}

/**
 * Checks a webhook URL: parseable, http or https, at most 2048 characters, and without
 * credentials (those belong in a secret). Returns it unchanged; throws ValidationError on `field`.
 * Messages never quote the URL, since a refused one may hold a password.
 */
export function checkWebhookUrl(url: string, field: string): string {
  if (url.length > MAX_URL_LENGTH) {
    throw new ValidationError(
      field,
      `The URL is ${url.length} characters; keep it to ${MAX_URL_LENGTH}.`,
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ValidationError(
      field,
      'The URL cannot be parsed; give an absolute URL such as https://example.com/hooks/tripline.',
    );
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ValidationError(
      field,
      `The URL scheme "${parsed.protocol.slice(0, -1).slice(0, 32)}" is not supported; use https (or http).`,
    );
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new ValidationError(
      field,
      'The URL contains a user name or password; remove it and put the credential in a secret named by `accessTokenSecret` (sent as a Bearer token) instead.',
    );
  }
  return url;
}

/**
 * Checks extra webhook headers and returns them as the stored object. At most 20; names are RFC
 * 7230 tokens, unique ignoring case and not reserved; values have no line breaks or other control
 * characters and are at most 1024 characters. Throws ValidationError on `field[i].name|value`.
 */
export function checkHeaders(
  headers: readonly HeaderInput[],
  field: string,
): Record<string, string> {
  if (headers.length > MAX_HEADERS) {
    throw new ValidationError(
      field,
      `Give at most ${MAX_HEADERS} extra headers, not ${headers.length}.`,
    );
  }
  const result: Record<string, string> = {};
  const seen = new Set<string>();
  headers.forEach(({ name, value }, i) => {
    const at = `${field}[${i}]`;
    if (!HEADER_TOKEN.test(name) || name.length > MAX_NAME_LENGTH) {
      throw new ValidationError(
        `${at}.name`,
        `"${name.slice(0, MAX_NAME_LENGTH)}" is not a valid header name: use 1 to ${MAX_NAME_LENGTH} letters, digits and !#$%&'*+-.^_\`|~, without spaces or colons.`,
      );
    }
    const lower = name.toLowerCase();
    const reason = reservedHeaderReason(name);
    if (reason !== undefined) {
      throw new ValidationError(`${at}.name`, `The ${name} header cannot be set: ${reason}.`);
    }
    if (seen.has(lower)) {
      throw new ValidationError(`${at}.name`, `The ${name} header is given twice; give it once.`);
    }
    seen.add(lower);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse
    if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) {
      throw new ValidationError(
        `${at}.value`,
        `The value of ${name} contains a line break or control character; header values are one line of text.`,
      );
    }
    if (value.length > MAX_HEADER_VALUE_LENGTH) {
      throw new ValidationError(
        `${at}.value`,
        `The value of ${name} is ${value.length} characters; keep it to ${MAX_HEADER_VALUE_LENGTH}.`,
      );
    }
    result[name] = value;
  });
  return result;
}

/**
 * A signing secret must be what Standard Webhooks receivers accept, or every delivery would fail
 * verification. Checked when the action is saved, not at delivery. The message never quotes the
 * value.
 */
function checkSigningSecret(deps: Pick<AppDeps, 'secretBox'>, secret: Secret, field: string): void {
  const value = openSecret(deps, secret);
  const bytes = SIGNING_SECRET.test(value)
    ? Buffer.from(value.slice('whsec_'.length), 'base64').length
    : 0;
  if (bytes < SIGNING_KEY_BYTES.min || bytes > SIGNING_KEY_BYTES.max) {
    throw new ValidationError(
      field,
      `Secret "${secret.name}" does not hold a signing key: it must be "whsec_" followed by base64 of ${SIGNING_KEY_BYTES.min} to ${SIGNING_KEY_BYTES.max} random bytes. Omit \`signingSecret\` when creating the action to have one generated.`,
    );
  }
}

/** The secret must hold what {@link slackWebhookUrlProblem} accepts, or no delivery could use it. */
function checkSlackUrlSecret(
  deps: Pick<AppDeps, 'secretBox'>,
  secret: Secret,
  field: string,
): void {
  const problem = slackWebhookUrlProblem(openSecret(deps, secret));
  if (problem !== undefined) {
    throw new ValidationError(
      field,
      `Secret "${secret.name}" cannot be a Slack incoming-webhook URL: ${problem}. Store the URL in it with rotateSecret.`,
    );
  }
}

/**
 * The name a generated signing secret is stored under: the action name in UPPER_SNAKE_CASE plus
 * `_SIGNING_SECRET`, with `_2`, `_3`… when taken. Letters lose their accents; a name with no
 * usable letter becomes `ACTION`.
 */
function signingSecretNameFor(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  actionName: string,
): string {
  const suffix = '_SIGNING_SECRET';
  let base = actionName
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toUpperCase()
    .replace(/[^A-Z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  if (!/^[A-Z]/.test(base)) base = base ? `ACTION_${base}` : 'ACTION';
  // Room for the suffix and a counter such as `_99` within the 64-character limit.
  base = base.slice(0, MAX_NAME_LENGTH - suffix.length - 4).replace(/_+$/, '');
  for (let n = 1; ; n++) {
    const name = n === 1 ? base + suffix : `${base + suffix}_${n}`;
    if (!findSecretByName(deps, entityId, name)) return name;
  }
}

/**
 * Creates a webhook action. Admins only. Unless `signingSecret` names an existing secret, a new
 * `whsec_…` signing secret is generated, stored as a secret (see {@link signingSecretNameFor}) and
 * returned once as `signingSecret`; it is null when a named secret was used. Throws
 * ValidationError for a bad name, URL, header or signing secret, NotFoundError for a secret that
 * does not exist, ConflictError for a taken name.
 */
export async function createWebhookAction(
  ctx: Context,
  input: {
    entity: string;
    name: string;
    url: string;
    accessTokenSecret?: string | null;
    signingSecret?: string | null;
    headers?: readonly HeaderInput[] | null;
  },
): Promise<{ action: Action; signingSecret: string | null }> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const name = checkName(input.name, 'input.name');
  assertNameFree(ctx.deps.db, actions, 'an action', { entityId: entity.id, name });
  const url = checkWebhookUrl(input.url, 'input.url');
  const accessToken =
    input.accessTokenSecret == null
      ? null
      : requireSecretByName(
          ctx.deps,
          entity.id,
          input.accessTokenSecret,
          'input.accessTokenSecret',
        );
  const headers = checkHeaders(input.headers ?? [], 'input.headers');
  const named =
    input.signingSecret == null
      ? null
      : requireSecretByName(ctx.deps, entity.id, input.signingSecret, 'input.signingSecret');
  if (named) checkSigningSecret(ctx.deps, named, 'input.signingSecret');

  return ctx.deps.db.transaction(() => {
    let signing = named;
    let generated: string | null = null;
    if (!signing) {
      generated = generateSigningSecret();
      signing = insertSecret(ctx.deps, {
        entityId: entity.id,
        name: signingSecretNameFor(ctx.deps, entity.id, name),
        value: generated,
        actorId: ctx.viewer.user.id,
      });
    }
    const action = ctx.deps.db
      .insert(actions)
      .values({
        id: newId(),
        entityId: entity.id,
        kind: 'WEBHOOK',
        name,
        url,
        accessTokenSecretId: accessToken?.id ?? null,
        signingSecretId: signing.id,
        headers,
        createdById: ctx.viewer.user.id,
      })
      .returning()
      .get();
    auditAction(ctx, 'action.created', action, {
      name,
      kind: action.kind,
      url,
      headerNames: Object.keys(headers),
      accessTokenSecret: accessToken?.name ?? null,
      signingSecret: signing.name,
      signingSecretGenerated: generated !== null,
    });
    ctx.deps.logger.info(
      { entity: entity.name, action: action.id, signingSecretName: signing.name },
      'webhook action created',
    );
    return { action, signingSecret: generated };
  });
}

/**
 * Creates a Slack action posting to the incoming-webhook URL held by the secret
 * `webhookUrlSecret`. Admins only. Throws NotFoundError when that secret does not exist,
 * ValidationError when it holds no https URL or the name or channel is bad, ConflictError for a
 * taken name.
 */
export async function createSlackAction(
  ctx: Context,
  input: { entity: string; name: string; channel: string; webhookUrlSecret: string },
): Promise<Action> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const name = checkName(input.name, 'input.name');
  assertNameFree(ctx.deps.db, actions, 'an action', { entityId: entity.id, name });
  const channel = checkName(input.channel, 'input.channel');
  const secret = requireSecretByName(
    ctx.deps,
    entity.id,
    input.webhookUrlSecret,
    'input.webhookUrlSecret',
  );
  checkSlackUrlSecret(ctx.deps, secret, 'input.webhookUrlSecret');
  const action = ctx.deps.db.transaction(() => {
    const row = ctx.deps.db
      .insert(actions)
      .values({
        id: newId(),
        entityId: entity.id,
        kind: 'SLACK',
        name,
        channel,
        slackUrlSecretId: secret.id,
        createdById: ctx.viewer.user.id,
      })
      .returning()
      .get();
    auditAction(ctx, 'action.created', row, {
      name,
      kind: row.kind,
      channel,
      webhookUrlSecret: secret.name,
    });
    return row;
  });
  ctx.deps.logger.info({ entity: entity.name, action: action.id }, 'slack action created');
  return action;
}

export interface UpdateActionInput {
  id: string;
  name?: string | null;
  url?: string | null;
  accessTokenSecret?: string | null;
  signingSecret?: string | null;
  headers?: readonly HeaderInput[] | null;
  channel?: string | null;
  webhookUrlSecret?: string | null;
  enabled?: boolean | null;
}

/** The fields of {@link UpdateActionInput} that only one kind of action has. */
const FIELDS_OF: Readonly<Record<ActionKind, readonly (keyof UpdateActionInput)[]>> = {
  WEBHOOK: ['url', 'accessTokenSecret', 'signingSecret', 'headers'],
  SLACK: ['channel', 'webhookUrlSecret'],
};

/**
 * Changes an action; omitted fields keep their value. Admins only. Fields must fit the action's
 * kind (ValidationError otherwise). `accessTokenSecret: null` removes the access token and
 * `headers: null` removes every extra header; other fields cannot be null. Disabling records who
 * did it as `disabledReason`; enabling clears it.
 */
export function updateAction(ctx: Context, input: UpdateActionInput): Action {
  const action = requireAction(ctx, input.id, 'ADMIN', 'input.id');
  const other: ActionKind = action.kind === 'WEBHOOK' ? 'SLACK' : 'WEBHOOK';
  for (const field of FIELDS_OF[other]) {
    if (input[field] !== undefined) {
      throw new ValidationError(
        `input.${field}`,
        `\`${field}\` applies to ${KIND_LABEL[other]} actions only; "${action.name}" is a ${KIND_LABEL[action.kind]} action.`,
      );
    }
  }
  for (const field of [
    'name',
    'url',
    'signingSecret',
    'channel',
    'webhookUrlSecret',
    'enabled',
  ] as const) {
    if (input[field] === null) {
      throw new ValidationError(
        `input.${field}`,
        `\`${field}\` cannot be null; omit it to keep the current value.`,
      );
    }
  }

  const changes: Partial<Action> = { updatedAt: ctx.deps.clock.now() };
  if (input.name != null) {
    changes.name = checkName(input.name, 'input.name');
    assertNameFree(ctx.deps.db, actions, 'an action', {
      entityId: action.entityId,
      name: changes.name,
      exceptId: action.id,
    });
  }
  if (input.url != null) changes.url = checkWebhookUrl(input.url, 'input.url');
  if (input.accessTokenSecret !== undefined) {
    changes.accessTokenSecretId =
      input.accessTokenSecret === null
        ? null
        : requireSecretByName(
            ctx.deps,
            action.entityId,
            input.accessTokenSecret,
            'input.accessTokenSecret',
          ).id;
  }
  if (input.signingSecret != null) {
    const secret = requireSecretByName(
      ctx.deps,
      action.entityId,
      input.signingSecret,
      'input.signingSecret',
    );
    checkSigningSecret(ctx.deps, secret, 'input.signingSecret');
    changes.signingSecretId = secret.id;
  }
  if (input.headers !== undefined)
    changes.headers = checkHeaders(input.headers ?? [], 'input.headers');
  if (input.channel != null) changes.channel = checkName(input.channel, 'input.channel');
  if (input.webhookUrlSecret != null) {
    const secret = requireSecretByName(
      ctx.deps,
      action.entityId,
      input.webhookUrlSecret,
      'input.webhookUrlSecret',
    );
    checkSlackUrlSecret(ctx.deps, secret, 'input.webhookUrlSecret');
    changes.slackUrlSecretId = secret.id;
  }
  if (input.enabled === true) {
    changes.enabled = true;
    changes.disabledReason = null;
  } else if (input.enabled === false && action.enabled) {
    changes.enabled = false;
    changes.disabledReason = `Disabled by ${ctx.viewer.user.name}.`;
  }
  if (Object.keys(changes).length === 1) return action;
  const updated = ctx.deps.db.transaction(() => {
    const row = ctx.deps.db
      .update(actions)
      .set(changes)
      .where(eq(actions.id, action.id))
      .returning()
      .get();
    auditActionUpdate(ctx, action, row);
    return row;
  });
  ctx.deps.logger.info(
    { action: action.id, changed: Object.keys(changes).filter((key) => key !== 'updatedAt') },
    'action updated',
  );
  return updated;
}

/**
 * Deletes an action and returns it as it was. Admins only. Throws ConflictError on `input.id`
 * naming the automations that still use it. Its secrets, including a generated signing secret,
 * are kept; runs already recorded keep their history.
 */
export function deleteAction(ctx: Context, input: { id: string }): Action {
  const action = requireAction(ctx, input.id, 'ADMIN', 'input.id');
  const users = automationsUsing(ctx.deps, action.id);
  if (users.length > 0) {
    throw new ConflictError(
      'input.id',
      `Action "${action.name}" is used by automations ${users.map((n) => `"${n}"`).join(', ')}; delete them or point them at another action first.`,
    );
  }
  ctx.deps.db.transaction(() => {
    ctx.deps.db.delete(actions).where(eq(actions.id, action.id)).run();
    auditAction(ctx, 'action.deleted', action, { name: action.name, kind: action.kind });
  });
  ctx.deps.logger.info({ action: action.id, name: action.name }, 'action deleted');
  return action;
}

function auditAction(
  ctx: Context,
  code: Extract<AuditAction, `action.${string}`>,
  action: Action,
  details: Record<string, unknown>,
): void {
  recordAudit(ctx.deps, {
    entityId: action.entityId,
    actorId: ctx.viewer.user.id,
    action: code,
    targetType: ACTION_TYPENAMES[action.kind],
    targetId: action.id,
    details,
  });
}

/**
 * How each changeable field of an action appears in its audit entry. Secrets are shown by name and
 * headers by name only: header values may hold credentials.
 */
const AUDITED_FIELDS: Readonly<Record<string, (deps: Pick<AppDeps, 'db'>, a: Action) => unknown>> =
  {
    name: (_deps, a) => a.name,
    url: (_deps, a) => a.url,
    accessTokenSecret: (deps, a) => secretNameOf(deps, a.accessTokenSecretId),
    signingSecret: (deps, a) => secretNameOf(deps, a.signingSecretId),
    headerNames: (_deps, a) => Object.keys(a.headers ?? {}),
    channel: (_deps, a) => a.channel,
    webhookUrlSecret: (deps, a) => secretNameOf(deps, a.slackUrlSecretId),
  };

/**
 * Records an update as `action.updated` with the fields that changed (old and new values as
 * {@link AUDITED_FIELDS} shows them; `headers` when any header name or value changed), and a
 * separate `action.enabled` or `action.disabled` when that flipped.
 */
function auditActionUpdate(ctx: Context, before: Action, after: Action): void {
  const changed: string[] = [];
  const from: Record<string, unknown> = {};
  const to: Record<string, unknown> = {};
  for (const [field, show] of Object.entries(AUDITED_FIELDS)) {
    const old = show(ctx.deps, before);
    const now = show(ctx.deps, after);
    // A header whose value alone changed still counts, though only its name is recorded.
    const same =
      field === 'headerNames'
        ? JSON.stringify(Object.entries(before.headers ?? {})) ===
          JSON.stringify(Object.entries(after.headers ?? {}))
        : JSON.stringify(old) === JSON.stringify(now);
    if (same) continue;
    changed.push(field === 'headerNames' ? 'headers' : field);
    from[field] = old;
    to[field] = now;
  }
  if (changed.length > 0) {
    auditAction(ctx, 'action.updated', after, { name: after.name, changed, from, to });
  }
  if (before.enabled !== after.enabled) {
    auditAction(ctx, after.enabled ? 'action.enabled' : 'action.disabled', after, {
      name: after.name,
    });
  }
}

/** Names of the automations that use the action, sorted. */
export function automationsUsing(deps: Pick<AppDeps, 'db'>, actionId: string): string[] {
  return deps.db
    .select({ name: automations.name })
    .from(automations)
    .where(eq(automations.actionId, actionId))
    .orderBy(asc(automations.name))
    .all()
    .map((row) => row.name);
}

/** The name of a secret an action references by id, or null when it references none. */
export function secretNameOf(deps: Pick<AppDeps, 'db'>, secretId: string | null): string | null {
  return secretId ? (getSecret(deps, secretId)?.name ?? null) : null;
}

export interface ActionFilter {
  kind?: ActionKind | null;
  enabled?: boolean | null;
}

function filterWhere(entityId: string, filter: ActionFilter): SQL | undefined {
  return and(
    eq(actions.entityId, entityId),
    filter.kind != null ? eq(actions.kind, filter.kind) : undefined,
    filter.enabled != null ? eq(actions.enabled, filter.enabled) : undefined,
  );
}

/** The order of action lists: by name, unique in the entity. */
export const ACTION_ORDER: SortOrder<Action> = byName(actions.name);

/** A page of the entity's actions matching `filter`, in {@link ACTION_ORDER}. */
export function listActions(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  filter: ActionFilter,
  page: Page,
): Action[] {
  return deps.db
    .select()
    .from(actions)
    .where(and(filterWhere(entityId, filter), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

export function countActions(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  filter: ActionFilter,
): number {
  return (
    deps.db.select({ n: count() }).from(actions).where(filterWhere(entityId, filter)).get()?.n ?? 0
  );
}
