import type { AppDeps, Context } from '../../context.js';
import { reservedHeaderReason } from '../../delivery/headers.js';
import { generateSigningSecret } from '../../delivery/signing.js';
import { slackWebhookUrlProblem } from '../../delivery/slack.js';
import { ConflictError, NotFoundError, ValidationError } from '../../errors.js';
import { newId } from '../../ids.js';
import type { AuditAction, AuditRecord } from '../../storage/audit.js';
import {
  ACTION_KINDS,
  type ActionChanges,
  type ActionFilter,
  type ActionKind,
  type ActionRecord,
  type NoOpActionRecord,
  type SecretWithAction,
  type SlackActionRecord,
  unreachable,
  type WebhookActionRecord,
} from '../../storage/config.js';
import { DuplicateError } from '../../storage/errors.js';
import type { StoredList } from '../connection.js';
import { requireEntity, requireRole } from '../entities/access.js';
import { checkName, MAX_NAME_LENGTH } from '../names.js';
import { requireSecretByName, type Secret, sealNewSecret } from '../secrets/service.js';
import type { Role } from '../users/service.js';

export type Action = ActionRecord;
export type { ActionFilter, ActionKind };

/**
 * The domain's name of each kind of action: what the audit log calls its target, and what the API
 * names its type.
 */
export const ACTION_NOUNS = {
  WEBHOOK: 'WebhookAction',
  SLACK: 'SlackAction',
  NO_OP: 'NoOpAction',
} as const satisfies Readonly<Record<ActionKind, string>>;

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

const KIND_LABEL: Readonly<Record<ActionKind, string>> = {
  WEBHOOK: 'webhook',
  SLACK: 'Slack',
  NO_OP: 'no-op',
};

export async function getAction(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<Action | undefined> {
  return deps.storage.actions.find(id);
}

/** An action as a client names it: its stored id and the kind its ID says it is. */
export interface ActionReference {
  id: string;
  kind: ActionKind;
}

/**
 * Finds the action `ref` names and checks the viewer's role in its entity. Throws NotFoundError on
 * `field` when there is none of that kind, or it belongs to an entity the viewer is not in;
 * PermissionDeniedError when the role is too low.
 */
export async function requireAction(
  ctx: Context,
  ref: ActionReference,
  role: Role,
  field: string,
): Promise<Action> {
  const notFound = () =>
    new NotFoundError(field, 'No such action: it was deleted, or the ID names none you can see.');
  const action = await getAction(ctx.deps, ref.id);
  if (!action || action.kind !== ref.kind) throw notFound();
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
function checkSigningSecret(deps: Pick<AppDeps, 'decrypted'>, secret: Secret, field: string): void {
  const value = deps.decrypted.open(secret);
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
  deps: Pick<AppDeps, 'decrypted'>,
  secret: Secret,
  field: string,
): void {
  const problem = slackWebhookUrlProblem(deps.decrypted.open(secret));
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
async function signingSecretNameFor(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  actionName: string,
): Promise<string> {
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
  const taken = await deps.storage.secrets.namesIn(entityId);
  for (let n = 1; ; n++) {
    const name = n === 1 ? base + suffix : `${base + suffix}_${n}`;
    if (!taken.has(name)) return name;
  }
}

const nameTaken = (name: string) =>
  new ConflictError(
    'input.name',
    `This entity already has an action named "${name}"; pick another name.`,
  );

/** Times a generated signing secret's name is picked again after another request took it first. */
const SIGNING_NAME_ATTEMPTS = 3;

/**
 * Creates a webhook action. Admins only. Unless `signingSecret` names an existing secret, a new
 * `whsec_…` signing secret is generated, stored as a secret (see {@link signingSecretNameFor}) and
 * returned once as `signingSecret`; it is null when a named secret was used. The action, a
 * generated secret and their audit entries are written together. Throws ValidationError for a bad
 * name, URL, header or signing secret, NotFoundError for a secret that does not exist,
 * ConflictError for a taken name.
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
): Promise<{ action: WebhookActionRecord; signingSecret: string | null }> {
  const { deps } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const name = checkName(input.name, 'input.name');
  const url = checkWebhookUrl(input.url, 'input.url');
  const accessToken =
    input.accessTokenSecret == null
      ? null
      : await requireSecretByName(
          deps,
          entity.id,
          input.accessTokenSecret,
          'input.accessTokenSecret',
        );
  const headers = checkHeaders(input.headers ?? [], 'input.headers');
  const named =
    input.signingSecret == null
      ? null
      : await requireSecretByName(deps, entity.id, input.signingSecret, 'input.signingSecret');
  if (named) checkSigningSecret(deps, named, 'input.signingSecret');

  const id = newId();
  const actorId = ctx.viewer.user.id;
  for (let attempt = 1; ; attempt++) {
    let generated: (SecretWithAction & { value: string }) | null = null;
    if (!named) {
      const value = generateSigningSecret();
      const secretName = await signingSecretNameFor(deps, entity.id, name);
      generated = {
        value,
        ...sealNewSecret(deps, { entityId: entity.id, name: secretName, value, actorId }),
      };
    }
    const signing = named ?? generated?.secret;
    if (!signing) throw new Error('a webhook action has a named or a generated signing secret');
    const action = {
      id,
      entityId: entity.id,
      kind: 'WEBHOOK' as const,
      name,
      url,
      accessTokenSecretId: accessToken?.id ?? null,
      signingSecretId: signing.id,
      headers,
      channel: null,
      slackUrlSecretId: null,
      createdAt: generated?.secret.createdAt ?? deps.clock.now(),
      createdById: actorId,
    };
    const audit = actionAudit(ctx, 'action.created', action, {
      name,
      kind: action.kind,
      url,
      headerNames: Object.keys(headers),
      accessTokenSecret: accessToken?.name ?? null,
      signingSecret: signing.name,
      signingSecretGenerated: generated !== null,
    });
    let stored: WebhookActionRecord;
    try {
      stored = await deps.storage.actions.create(action, audit, generated ?? undefined);
    } catch (error) {
      if (!(error instanceof DuplicateError)) throw error;
      if (error.what === 'name') throw nameTaken(name);
      // Another request took the generated secret's name since it was picked: pick again.
      if (attempt < SIGNING_NAME_ATTEMPTS) continue;
      throw error;
    }
    deps.logger.info(
      { entity: entity.name, action: stored.id, signingSecretName: signing.name },
      'webhook action created',
    );
    return { action: stored, signingSecret: generated?.value ?? null };
  }
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
): Promise<SlackActionRecord> {
  const { deps } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const name = checkName(input.name, 'input.name');
  const channel = checkName(input.channel, 'input.channel');
  const secret = await requireSecretByName(
    deps,
    entity.id,
    input.webhookUrlSecret,
    'input.webhookUrlSecret',
  );
  checkSlackUrlSecret(deps, secret, 'input.webhookUrlSecret');
  const action = {
    id: newId(),
    entityId: entity.id,
    kind: 'SLACK' as const,
    name,
    channel,
    slackUrlSecretId: secret.id,
    url: null,
    accessTokenSecretId: null,
    signingSecretId: null,
    headers: null,
    createdAt: deps.clock.now(),
    createdById: ctx.viewer.user.id,
  };
  let stored: SlackActionRecord;
  try {
    stored = await deps.storage.actions.create(
      action,
      actionAudit(ctx, 'action.created', action, {
        name,
        kind: action.kind,
        channel,
        webhookUrlSecret: secret.name,
      }),
    );
  } catch (error) {
    if (error instanceof DuplicateError) throw nameTaken(name);
    throw error;
  }
  deps.logger.info({ entity: entity.name, action: stored.id }, 'slack action created');
  return stored;
}

/**
 * Creates a no-op action: its runs succeed at once without sending anything. Admins only. Throws
 * ValidationError for a bad name or description, ConflictError for a taken name.
 */
export async function createNoOpAction(
  ctx: Context,
  input: { entity: string; name: string },
): Promise<NoOpActionRecord> {
  const { deps } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const name = checkName(input.name, 'input.name');
  const action = {
    id: newId(),
    entityId: entity.id,
    kind: 'NO_OP' as const,
    name,
    url: null,
    accessTokenSecretId: null,
    signingSecretId: null,
    headers: null,
    channel: null,
    slackUrlSecretId: null,
    createdAt: deps.clock.now(),
    createdById: ctx.viewer.user.id,
  };
  let stored: NoOpActionRecord;
  try {
    stored = await deps.storage.actions.create(
      action,
      actionAudit(ctx, 'action.created', action, { name, kind: action.kind }),
    );
  } catch (error) {
    if (error instanceof DuplicateError) throw nameTaken(name);
    throw error;
  }
  deps.logger.info({ entity: entity.name, action: stored.id }, 'no-op action created');
  return stored;
}

export interface UpdateActionInput {
  id: ActionReference;
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
  NO_OP: [],
};

/** Refuses the fields of `input` that belong to other kinds than `action`'s. */
function checkFieldsFit(action: Action, input: UpdateActionInput): void {
  for (const kind of ACTION_KINDS) {
    if (kind === action.kind) continue;
    for (const field of FIELDS_OF[kind]) {
      if (input[field] !== undefined && !FIELDS_OF[action.kind].includes(field)) {
        throw new ValidationError(
          `input.${field}`,
          `\`${field}\` applies to ${KIND_LABEL[kind]} actions only; "${action.name}" is a ${KIND_LABEL[action.kind]} action.`,
        );
      }
    }
  }
}

/**
 * Changes an action; omitted fields keep their value. Admins only. Fields must fit the action's
 * kind (ValidationError otherwise). `accessTokenSecret: null` removes the access token and
 * `headers: null` removes every extra header; other fields cannot be null. Disabling records who
 * did it as `disabledReason`; enabling clears it. Only the fields given are written, so a
 * concurrent change to other fields is kept.
 */
export async function updateAction(ctx: Context, input: UpdateActionInput): Promise<Action> {
  const { deps } = ctx;
  const action = await requireAction(ctx, input.id, 'ADMIN', 'input.id');
  checkFieldsFit(action, input);
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

  const changes: ActionChanges = { updatedAt: deps.clock.now() };
  if (input.name != null) changes.name = checkName(input.name, 'input.name');
  switch (action.kind) {
    case 'WEBHOOK':
      if (input.url != null) changes.url = checkWebhookUrl(input.url, 'input.url');
      if (input.accessTokenSecret !== undefined) {
        changes.accessTokenSecretId =
          input.accessTokenSecret === null
            ? null
            : (
                await requireSecretByName(
                  deps,
                  action.entityId,
                  input.accessTokenSecret,
                  'input.accessTokenSecret',
                )
              ).id;
      }
      if (input.signingSecret != null) {
        const secret = await requireSecretByName(
          deps,
          action.entityId,
          input.signingSecret,
          'input.signingSecret',
        );
        checkSigningSecret(deps, secret, 'input.signingSecret');
        changes.signingSecretId = secret.id;
      }
      if (input.headers !== undefined) {
        changes.headers = checkHeaders(input.headers ?? [], 'input.headers');
      }
      break;
    case 'SLACK':
      if (input.channel != null) changes.channel = checkName(input.channel, 'input.channel');
      if (input.webhookUrlSecret != null) {
        const secret = await requireSecretByName(
          deps,
          action.entityId,
          input.webhookUrlSecret,
          'input.webhookUrlSecret',
        );
        checkSlackUrlSecret(deps, secret, 'input.webhookUrlSecret');
        changes.slackUrlSecretId = secret.id;
      }
      break;
    case 'NO_OP':
      // Only the name and `enabled` apply; checkFieldsFit refused the rest.
      break;
    default:
      unreachable(action);
  }
  if (input.enabled === true) {
    changes.enabled = true;
    changes.disabledReason = null;
  } else if (input.enabled === false && action.enabled) {
    changes.enabled = false;
    changes.disabledReason = `Disabled by ${ctx.viewer.user.name}.`;
  }
  if (Object.keys(changes).length === 1) return action;

  const expected = { ...action, ...changes } as Action;
  const secretNames = new Map(
    [...(await deps.storage.secrets.namesIn(action.entityId))].map(([name, id]) => [id, name]),
  );
  let updated: Action | undefined;
  try {
    updated = await deps.storage.actions.update(
      action.id,
      changes,
      updateAudits(ctx, action, expected, secretNames),
    );
  } catch (error) {
    if (error instanceof DuplicateError && changes.name !== undefined)
      throw nameTaken(changes.name);
    throw error;
  }
  if (!updated) throw new NotFoundError('input.id', 'No such action: it was deleted.');
  deps.logger.info(
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
export async function deleteAction(ctx: Context, input: { id: ActionReference }): Promise<Action> {
  const { deps } = ctx;
  const action = await requireAction(ctx, input.id, 'ADMIN', 'input.id');
  const result = await deps.storage.actions.delete(
    action.id,
    actionAudit(ctx, 'action.deleted', action, { name: action.name, kind: action.kind }),
    deps.clock.now(),
  );
  switch (result.outcome) {
    case 'deleted':
      deps.logger.info({ action: action.id, name: action.name }, 'action deleted');
      return result.action;
    case 'inUse':
      throw new ConflictError(
        'input.id',
        `Action "${action.name}" is used by automations ${result.automations.map((n) => `"${n}"`).join(', ')}; delete them or point them at another action first.`,
      );
    case 'missing':
      throw new NotFoundError('input.id', 'No such action: it was deleted.');
  }
}

function actionAudit(
  ctx: Context,
  code: Extract<AuditAction, `action.${string}`>,
  action: Pick<Action, 'id' | 'entityId' | 'kind'>,
  details: Record<string, unknown>,
): AuditRecord {
  return {
    entityId: action.entityId,
    actorId: ctx.viewer.user.id,
    action: code,
    targetType: ACTION_NOUNS[action.kind],
    targetId: action.id,
    details,
  };
}

/**
 * How each changeable field of an action appears in its audit entry. Secrets are shown by name
 * (`names`: id → name) and headers by name only: header values may hold credentials.
 */
const AUDITED_FIELDS: Readonly<
  Record<string, (a: Action, names: ReadonlyMap<string, string>) => unknown>
> = {
  name: (a) => a.name,
  url: (a) => a.url,
  accessTokenSecret: (a, names) => secretName(names, a.accessTokenSecretId),
  signingSecret: (a, names) => secretName(names, a.signingSecretId),
  headerNames: (a) => Object.keys(a.headers ?? {}),
  channel: (a) => a.channel,
  webhookUrlSecret: (a, names) => secretName(names, a.slackUrlSecretId),
};

const secretName = (names: ReadonlyMap<string, string>, id: string | null): string | null =>
  id === null ? null : (names.get(id) ?? null);

/**
 * The audit entries of an update: `action.updated` with the fields that changed (old and new
 * values as {@link AUDITED_FIELDS} shows them; `headers` when any header name or value changed),
 * and a separate `action.enabled` or `action.disabled` when that flipped.
 */
function updateAudits(
  ctx: Context,
  before: Action,
  after: Action,
  names: ReadonlyMap<string, string>,
): AuditRecord[] {
  const audits: AuditRecord[] = [];
  const changed: string[] = [];
  const from: Record<string, unknown> = {};
  const to: Record<string, unknown> = {};
  for (const [field, show] of Object.entries(AUDITED_FIELDS)) {
    const old = show(before, names);
    const now = show(after, names);
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
    audits.push(actionAudit(ctx, 'action.updated', after, { name: after.name, changed, from, to }));
  }
  if (before.enabled !== after.enabled) {
    audits.push(
      actionAudit(ctx, after.enabled ? 'action.enabled' : 'action.disabled', after, {
        name: after.name,
      }),
    );
  }
  return audits;
}

/** Names of the automations that use the action, sorted. */
export async function automationsUsing(
  deps: Pick<AppDeps, 'storage'>,
  actionId: string,
): Promise<string[]> {
  return deps.storage.actions.usedBy(actionId);
}

/** The name of a secret an action references by id, or null when it references none. */
export async function secretNameOf(
  deps: Pick<AppDeps, 'storage'>,
  secretId: string | null,
): Promise<string | null> {
  return secretId ? ((await deps.storage.secrets.find(secretId))?.name ?? null) : null;
}

/** The entity's actions matching `filter`, by name (unique in the entity). */
export function actionList(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  filter: ActionFilter,
): StoredList<Action> {
  return {
    keyOf: (action) => [action.name],
    keyTypes: ['string'],
    fetch: (request) => deps.storage.actions.pageActions(entityId, filter, request),
    count: () => deps.storage.actions.countActions(entityId, filter),
  };
}
