import { and, asc, count, eq, inArray, or } from 'drizzle-orm';
import type { AppDeps, Context } from '../../context.js';
import { slackWebhookUrlProblem } from '../../delivery/slack.js';
import { ConflictError, NotFoundError, ValidationError } from '../../errors.js';
import { newId } from '../../ids.js';
import type { AuditAction } from '../../storage/audit.js';
import { recordAudit } from '../../storage/sqlite/audit.js';
import {
  actions,
  automationSecretRefs,
  automations,
  secrets,
} from '../../storage/sqlite/schema.js';
import { SECRET_NAME_PATTERN } from '../automations/template.js';
import { byName, type Page, type SortOrder } from '../connection.js';
import { requireEntity } from '../entities/access.js';
import { MAX_NAME_LENGTH } from '../names.js';

/**
 * A stored secret. `ciphertext` is the SecretBox envelope sealed with the row's id as associated
 * data, so an envelope copied onto another row does not open.
 */
export type Secret = typeof secrets.$inferSelect;

export const MAX_SECRET_VALUE_BYTES = 16 * 1024;

/** Who references a secret, by name; a secret with any user cannot be deleted. */
export interface SecretUsers {
  actions: string[];
  automations: string[];
}

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

export function findSecretByName(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  name: string,
): Secret | undefined {
  return deps.db
    .select()
    .from(secrets)
    .where(and(eq(secrets.entityId, entityId), eq(secrets.name, name)))
    .get();
}

export function getSecret(deps: Pick<AppDeps, 'db'>, id: string): Secret | undefined {
  return deps.db.select().from(secrets).where(eq(secrets.id, id)).get();
}

/**
 * Finds a secret by name in the entity, or throws NotFoundError on `field` telling the caller to
 * create it first.
 */
export function requireSecretByName(
  deps: Pick<AppDeps, 'db'>,
  entityId: string,
  name: string,
  field: string,
): Secret {
  const row = findSecretByName(deps, entityId, name);
  if (!row) {
    throw new NotFoundError(
      field,
      `No secret named "${name.slice(0, MAX_NAME_LENGTH)}" in this entity; create it first with createSecret.`,
    );
  }
  return row;
}

/** The names of every secret in the entity; templates check their `${SECRET}` references against it. */
export function secretNamesOf(deps: Pick<AppDeps, 'db'>, entityId: string): Set<string> {
  return new Set(
    deps.db
      .select({ name: secrets.name })
      .from(secrets)
      .where(eq(secrets.entityId, entityId))
      .all()
      .map((row) => row.name),
  );
}

/**
 * Decrypts a secret for delivery. The plaintext must go only where it is used (a request to the
 * action's destination): never into a log line, an error message or a stored response. Throws if
 * the envelope was tampered with or sealed under another master key.
 */
export function openSecret(deps: Pick<AppDeps, 'secretBox'>, row: Secret): string {
  return deps.secretBox.open(row.ciphertext, row.id);
}

/**
 * Stores a new secret, encrypted. Checks the name and value (ValidationError on `input.name` /
 * `input.value`) and throws ConflictError on `input.name` when the entity already has a secret of
 * that name. No access check: callers have done it. Records `secret.created` (by name) in the
 * same transaction. Returns the stored row.
 */
export function insertSecret(
  deps: Pick<AppDeps, 'db' | 'secretBox' | 'clock'>,
  input: { entityId: string; name: string; value: string; actorId: string | null },
): Secret {
  checkSecretName(input.name, 'input.name');
  checkSecretValue(input.value, 'input.value');
  if (findSecretByName(deps, input.entityId, input.name)) {
    throw new ConflictError(
      'input.name',
      `This entity already has a secret named "${input.name}"; use rotateSecret to change its value.`,
    );
  }
  const id = newId();
  return deps.db.transaction(() => {
    const row = deps.db
      .insert(secrets)
      .values({
        id,
        entityId: input.entityId,
        name: input.name,
        ciphertext: deps.secretBox.seal(input.value, id),
        createdById: input.actorId,
      })
      .returning()
      .get();
    auditSecret(deps, 'secret.created', row, input.actorId);
    return row;
  });
}

/** Records a change to a secret by its name only: the value never reaches the audit log. */
function auditSecret(
  deps: Pick<AppDeps, 'db' | 'clock'>,
  action: Extract<AuditAction, `secret.${string}`>,
  row: Secret,
  actorId: string | null,
): void {
  recordAudit(deps, {
    entityId: row.entityId,
    actorId,
    action,
    targetType: 'Secret',
    targetId: row.id,
    details: { name: row.name },
  });
}

/** Creates a secret in an entity. Admins only; see {@link insertSecret} for the checks. */
export async function createSecret(
  ctx: Context,
  input: { entity: string; name: string; value: string },
): Promise<Secret> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const row = insertSecret(ctx.deps, {
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
function checkSlackUrlUsers(
  deps: Pick<AppDeps, 'db'>,
  secret: Secret,
  value: string,
  field: string,
): void {
  const problem = slackWebhookUrlProblem(value);
  if (problem === undefined) return;
  const users = deps.db
    .select({ name: actions.name })
    .from(actions)
    .where(eq(actions.slackUrlSecretId, secret.id))
    .orderBy(asc(actions.name))
    .all()
    .map((row) => row.name);
  if (users.length === 0) return;
  throw new ValidationError(
    field,
    `Secret "${secret.name}" holds the incoming-webhook URL of Slack action${users.length > 1 ? 's' : ''} ${quoteList(users)}, and the new value cannot be one: ${problem}.`,
  );
}

/**
 * Replaces a secret's value; everything that references it uses the new value from the next
 * delivery on. Admins only. Throws NotFoundError on `input.name` for an unknown secret and
 * ValidationError on `input.value` for an empty or oversized value, or for one that Slack actions
 * using the secret could not post to.
 */
export async function rotateSecret(
  ctx: Context,
  input: { entity: string; name: string; value: string },
): Promise<Secret> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const row = requireSecretByName(ctx.deps, entity.id, input.name, 'input.name');
  checkSecretValue(input.value, 'input.value');
  checkSlackUrlUsers(ctx.deps, row, input.value, 'input.value');
  const rotated = ctx.deps.db.transaction(() => {
    const updated = ctx.deps.db
      .update(secrets)
      .set({
        ciphertext: ctx.deps.secretBox.seal(input.value, row.id),
        rotatedAt: ctx.deps.clock.now(),
        rotatedById: ctx.viewer.user.id,
      })
      .where(eq(secrets.id, row.id))
      .returning()
      .get();
    auditSecret(ctx.deps, 'secret.rotated', updated, ctx.viewer.user.id);
    return updated;
  });
  ctx.deps.logger.info(
    { entity: entity.name, secret: row.name, actor: ctx.viewer.user.id },
    'secret rotated',
  );
  return rotated;
}

/**
 * Deletes a secret. Admins only. Throws NotFoundError on `input.name` for an unknown secret, and
 * ConflictError naming the actions and automations that still reference it. Returns the deleted
 * row.
 */
export async function deleteSecret(
  ctx: Context,
  input: { entity: string; name: string },
): Promise<Secret> {
  const entity = await requireEntity(ctx, input.entity, 'ADMIN');
  const row = requireSecretByName(ctx.deps, entity.id, input.name, 'input.name');
  const users = secretUsers(ctx.deps, row.id);
  if (users.actions.length > 0 || users.automations.length > 0) {
    const parts = [
      users.actions.length > 0 ? `actions ${quoteList(users.actions)}` : null,
      users.automations.length > 0 ? `automations ${quoteList(users.automations)}` : null,
    ].filter((part) => part !== null);
    throw new ConflictError(
      'input.name',
      `Secret "${row.name}" is used by ${parts.join(' and ')}; point them at another secret or delete them first.`,
    );
  }
  ctx.deps.db.transaction(() => {
    ctx.deps.db.delete(secrets).where(eq(secrets.id, row.id)).run();
    auditSecret(ctx.deps, 'secret.deleted', row, ctx.viewer.user.id);
  });
  ctx.deps.logger.info(
    { entity: entity.name, secret: row.name, actor: ctx.viewer.user.id },
    'secret deleted',
  );
  return row;
}

const quoteList = (names: string[]): string => names.map((name) => `"${name}"`).join(', ');

/**
 * The actions (as access token, signing secret or Slack URL) and automations (in a template) that
 * reference the secret, each list by name.
 */
export function secretUsers(deps: Pick<AppDeps, 'db'>, secretId: string): SecretUsers {
  const actionRows = deps.db
    .select({ name: actions.name })
    .from(actions)
    .where(
      or(
        eq(actions.accessTokenSecretId, secretId),
        eq(actions.signingSecretId, secretId),
        eq(actions.slackUrlSecretId, secretId),
      ),
    )
    .orderBy(asc(actions.name))
    .all();
  const automationRows = deps.db
    .select({ name: automations.name })
    .from(automations)
    .where(
      inArray(
        automations.id,
        deps.db
          .select({ id: automationSecretRefs.automationId })
          .from(automationSecretRefs)
          .where(eq(automationSecretRefs.secretId, secretId)),
      ),
    )
    .orderBy(asc(automations.name))
    .all();
  return {
    actions: actionRows.map((row) => row.name),
    automations: automationRows.map((row) => row.name),
  };
}

/** The order of secret lists: by name, unique in the entity. */
export const SECRET_ORDER: SortOrder<Secret> = byName(secrets.name);

/** A page of the entity's secrets, in {@link SECRET_ORDER}. */
export function listSecrets(deps: Pick<AppDeps, 'db'>, entityId: string, page: Page): Secret[] {
  return deps.db
    .select()
    .from(secrets)
    .where(and(eq(secrets.entityId, entityId), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

export function countSecrets(deps: Pick<AppDeps, 'db'>, entityId: string): number {
  return (
    deps.db.select({ n: count() }).from(secrets).where(eq(secrets.entityId, entityId)).get()?.n ?? 0
  );
}
