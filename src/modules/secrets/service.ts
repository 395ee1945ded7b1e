import type { AppDeps, Context } from '../../context.js';
import { slackWebhookUrlProblem } from '../../delivery/slack.js';
import { ConflictError, NotFoundError, ValidationError } from '../../errors.js';
import { newId } from '../../ids.js';
import type { AuditAction, AuditRecord } from '../../storage/audit.js';
import type { SecretRecord, SecretUsers } from '../../storage/config.js';
import { DuplicateError } from '../../storage/errors.js';
import { SECRET_NAME_PATTERN } from '../automations/template.js';
import type { StoredList } from '../connection.js';
import { requireEntity } from '../entities/access.js';
import { MAX_NAME_LENGTH } from '../names.js';

/**
 * A stored secret. `ciphertext` is the SecretBox envelope sealed with the secret's id as
 * associated data, so an envelope copied onto another secret does not open.
 */
export type Secret = SecretRecord;
export type { SecretUsers };

export const MAX_SECRET_VALUE_BYTES = 16 * 1024;

/**
 * Checks a secret name: UPPER_SNAKE_CASE, at most 64 characters, as templates reference it
 * (`${NAME}`). Throws ValidationError on `field`.
 */
export function checkSecretName(name: string, field: string): string {
  if (name.length > MAX_NAME_LENGTH || !SECRET_NAME_PATTERN.test(name)) {
    throw new ValidationError(
      field,
      `"${name.slice(0, MAX_NAME_LENGTH)}" is not a valid secret name: use 1 to ${MAX_NAME_LENGTH} capital letters, digits and underscores, starting with a letter, e.g. SLACK_WEBHOOK_URL.`,
    );
  }
  return name;
}

/** The messages never quote the value: an error may be logged or shown where the value may not. */
function checkSecretValue(value: string, field: string): void {
  if (value.length === 0) {
    throw new ValidationError(field, 'The secret value is empty; give the value to store.');
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_SECRET_VALUE_BYTES) {
    throw new ValidationError(
      field,
      `The secret value is ${bytes} bytes; keep it to ${MAX_SECRET_VALUE_BYTES} bytes (16 KiB).`,
    );
  }
}

export async function findSecretByName(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  name: string,
): Promise<Secret | undefined> {
  return deps.storage.secrets.findByName(entityId, name);
}

export async function getSecret(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<Secret | undefined> {
  return deps.storage.secrets.find(id);
}

/**
 * Finds a secret by name in the entity, or throws NotFoundError on `field` telling the caller to
 * create it first.
 */
export async function requireSecretByName(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
  name: string,
  field: string,
): Promise<Secret> {
  const row = await findSecretByName(deps, entityId, name);
  if (!row) {
    throw new NotFoundError(
      field,
      `No secret named "${name.slice(0, MAX_NAME_LENGTH)}" in this entity; create it first with createSecret.`,
    );
  }
  return row;
}

/** The names of every secret in the entity; templates check their `${SECRET}` references against it. */
export async function secretNamesOf(
  deps: Pick<AppDeps, 'storage'>,
  entityId: string,
): Promise<Set<string>> {
  return new Set((await deps.storage.secrets.namesIn(entityId)).keys());
}

/**
 * Decrypts a secret with the box itself, past the cache of decrypted values. The plaintext must go
 * only where it is used: never into a log line, an error message or a stored response. Throws if
 * the envelope was tampered with or sealed under another master key.
 */
export function openSecret(deps: Pick<AppDeps, 'secretBox'>, row: Secret): string {
  return deps.secretBox.open(row.ciphertext, row.id);
}

/** Records a change to a secret by its name only: the value never reaches the audit log. */
function secretAudit(
  action: Extract<AuditAction, `secret.${string}`>,
  secret: Pick<Secret, 'id' | 'entityId' | 'name'>,
  actorId: string | null,
): AuditRecord {
  return {
    entityId: secret.entityId,
    actorId,
    action,
    targetType: 'Secret',
    targetId: secret.id,
    details: { name: secret.name },
  };
}

/**
 * A new secret sealed under a fresh id, and its audit entry. Checks the name and value
 * (ValidationError on `input.name` / `input.value`).
 */
export function sealNewSecret(
  deps: Pick<AppDeps, 'secretBox' | 'clock'>,
  input: { entityId: string; name: string; value: string; actorId: string | null },
): { secret: Omit<Secret, 'rotatedAt' | 'rotatedById'>; audit: AuditRecord } {
  checkSecretName(input.name, 'input.name');
  checkSecretValue(input.value, 'input.value');
  const id = newId();
  const secret = {
    id,
    entityId: input.entityId,
    name: input.name,
    ciphertext: deps.secretBox.seal(input.value, id),
    createdAt: deps.clock.now(),
    createdById: input.actorId,
  };
  return { secret, audit: secretAudit('secret.created', secret, input.actorId) };
}

/**
 * Stores a new secret, encrypted, and records `secret.created` (by name) with it. Checks the name
 * and value (ValidationError on `input.name` / `input.value`) and throws ConflictError on
 * `input.name` when the entity already has a secret of that name. No access check: callers have
 * done it.
 */
export async function insertSecret(
  deps: Pick<AppDeps, 'storage' | 'secretBox' | 'clock'>,
  input: { entityId: string; name: string; value: string; actorId: string | null },
): Promise<Secret> {
  const { secret, audit } = sealNewSecret(deps, input);
  try {
    return await deps.storage.secrets.create(secret, audit);
  } catch (error) {
    if (!(error instanceof DuplicateError)) throw error;
    throw new ConflictError(
      'input.name',
      `This entity already has a secret named "${input.name}"; use rotateSecret to change its value.`,
    );
  }
}

/** Creates a secret in an entity. Admins only; see {@link insertSecret} for the checks. */
export async function createSecret(
  ctx: Context,
  input: { entity: string; name: string; value: string },
): Promise<Secret> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const row = await insertSecret(ctx.deps, {
    entityId: entity.id,
    name: input.name,
    value: input.value,
    actorId: ctx.viewer.user.id,
  });
  ctx.deps.logger.info(
    { entity: entity.name, secret: row.name, actor: ctx.viewer.user.id },
    'secret created',
  );
  return row;
}

/**
 * A secret that Slack actions post to must stay a URL they can post to, by the rule the actions
 * were saved under ({@link slackWebhookUrlProblem}), or every later delivery would fail. Throws
 * ValidationError on `field` naming the actions; the message never quotes the value.
 */
async function checkSlackUrlUsers(
  deps: Pick<AppDeps, 'storage'>,
  secret: Secret,
  value: string,
  field: string,
): Promise<void> {
  const problem = slackWebhookUrlProblem(value);
  if (problem === undefined) return;
  const users = await deps.storage.actions.slackActionsPostingTo(secret.id);
  if (users.length === 0) return;
  throw new ValidationError(
    field,
    `Secret "${secret.name}" holds the incoming-webhook URL of Slack action${users.length > 1 ? 's' : ''} ${quoteList(users)}, and the new value cannot be one: ${problem}.`,
  );
}

const notFound = (name: string) =>
  new NotFoundError(
    'input.name',
    `No secret named "${name.slice(0, MAX_NAME_LENGTH)}" in this entity; create it first with createSecret.`,
  );

/**
 * Replaces a secret's value; everything that references it uses the new value from the next
 * delivery on, and this process forgets the old value at once. Admins only. Throws NotFoundError
 * on `input.name` for an unknown secret and ValidationError on `input.value` for an empty or
 * oversized value, or for one that Slack actions using the secret could not post to.
 */
export async function rotateSecret(
  ctx: Context,
  input: { entity: string; name: string; value: string },
): Promise<Secret> {
  const { deps } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const row = await requireSecretByName(deps, entity.id, input.name, 'input.name');
  checkSecretValue(input.value, 'input.value');
  await checkSlackUrlUsers(deps, row, input.value, 'input.value');
  const rotated = await deps.storage.secrets.replaceValue(
    row.id,
    {
      ciphertext: deps.secretBox.seal(input.value, row.id),
      rotatedAt: deps.clock.now(),
      rotatedById: ctx.viewer.user.id,
    },
    secretAudit('secret.rotated', row, ctx.viewer.user.id),
  );
  deps.decrypted.forget(row.id);
  if (!rotated) throw notFound(input.name);
  deps.logger.info(
    { entity: entity.name, secret: row.name, actor: ctx.viewer.user.id },
    'secret rotated',
  );
  return rotated;
}

/**
 * Deletes a secret, and this process forgets its value. Admins only. Throws NotFoundError on
 * `input.name` for an unknown secret, and ConflictError naming the actions and automations that
 * still reference it. Returns the deleted secret.
 */
export async function deleteSecret(
  ctx: Context,
  input: { entity: string; name: string },
): Promise<Secret> {
  const { deps } = ctx;
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const row = await requireSecretByName(deps, entity.id, input.name, 'input.name');
  const result = await deps.storage.secrets.delete(
    row.id,
    secretAudit('secret.deleted', row, ctx.viewer.user.id),
    deps.clock.now(),
  );
  switch (result.outcome) {
    case 'deleted':
      deps.decrypted.forget(row.id);
      deps.logger.info(
        { entity: entity.name, secret: row.name, actor: ctx.viewer.user.id },
        'secret deleted',
      );
      return result.secret;
    case 'inUse': {
      const { users } = result;
      const parts = [
        users.actions.length > 0 ? `actions ${quoteList(users.actions)}` : null,
        users.automations.length > 0 ? `automations ${quoteList(users.automations)}` : null,
      ].filter((part) => part !== null);
      throw new ConflictError(
        'input.name',
        `Secret "${row.name}" is used by ${parts.join(' and ')}; point them at another secret or delete them first.`,
      );
    }
    case 'missing':
      throw notFound(input.name);
  }
}

const quoteList = (names: string[]): string => names.map((name) => `"${name}"`).join(', ');

/**
 * The actions (as access token, signing secret or Slack URL) and automations (in a template) that
 * reference the secret, each list by name.
 */
export async function secretUsers(
  deps: Pick<AppDeps, 'storage'>,
  secretId: string,
): Promise<SecretUsers> {
  return deps.storage.secrets.usersOf(secretId);
}

/** The entity's secrets, by name (unique in the entity). */
export function secretList(deps: Pick<AppDeps, 'storage'>, entityId: string): StoredList<Secret> {
  return {
    keyOf: (secret) => [secret.name],
    keyTypes: ['string'],
    fetch: (request) => deps.storage.secrets.pageSecrets(entityId, request),
    count: () => deps.storage.secrets.countSecrets(entityId),
  };
}
