import { and, asc, eq, inArray, or, type SQL, sql } from 'drizzle-orm';
import type { AuditRecord } from '../audit.js';
import {
  type ActionChanges,
  type ActionFilter,
  type ActionRecord,
  type ActionStore,
  type AutomationFilter,
  type AutomationStore,
  actionRecord,
  type LabelledSecret,
  type NewAction,
  type NewSecret,
  type SecretRecord,
  type SecretStore,
  type SecretUsers,
  type SecretWithAction,
  unreachable,
} from '../config.js';
import { insertAudit } from './audit.js';
import { actions, automationSecretRefs, automations, entities, secrets } from './schema.js';
import {
  countRows,
  type Executor,
  keyset,
  type PgHandle,
  single,
  type Tx,
  unique,
} from './support.js';

const ph = sql.placeholder;

/**
 * A placeholder for `update().set()`, which is typed to take none but passes one through the
 * column's encoder as `insert().values()` does (a `Date` for a timestamp, an object for JSON).
 * A null must not reach a timestamp column this way: its encoder calls `getTime()`.
 */
const encoded = (name: string) => sql.placeholder(name) as unknown as SQL;

/** Whether each optional condition of a filter is set, as part of a prepared query's key. */
const flags = (values: readonly unknown[]): string =>
  values.map((value) => (value == null ? '-' : '+')).join('');

// ---------------------------------------------------------------------------------------------
// Secrets

async function secretUsers(h: PgHandle, secretId: string, tx?: Tx): Promise<SecretUsers> {
  const actionNames = await h
    .prepared(
      'secrets.users:actions',
      (x) =>
        x
          .select({ name: actions.name })
          .from(actions)
          .where(
            or(
              eq(actions.accessTokenSecretId, ph('secretId')),
              eq(actions.signingSecretId, ph('secretId')),
              eq(actions.slackUrlSecretId, ph('secretId')),
            ),
          )
          .orderBy(asc(actions.name)),
      tx,
    )
    .execute({ secretId });
  const automationNames = await h
    .prepared(
      'secrets.users:automations',
      (x) =>
        x
          .select({ name: automations.name })
          .from(automations)
          .where(
            inArray(
              automations.id,
              x
                .select({ id: automationSecretRefs.automationId })
                .from(automationSecretRefs)
                .where(eq(automationSecretRefs.secretId, ph('secretId'))),
            ),
          )
          .orderBy(asc(automations.name)),
      tx,
    )
    .execute({ secretId });
  return {
    actions: actionNames.map((row) => row.name),
    automations: automationNames.map((row) => row.name),
  };
}

/** Inserts a secret in the transaction of everything written with it. */
async function insertSecret(
  h: PgHandle,
  tx: Tx,
  secret: NewSecret,
  what: string,
): Promise<SecretRecord> {
  return unique(what, async () =>
    single(
      await h
        .prepared(
          'secrets.insert',
          (x) =>
            x
              .insert(secrets)
              .values({
                id: ph('id'),
                entityId: ph('entityId'),
                name: ph('name'),
                ciphertext: ph('ciphertext'),
                createdAt: ph('createdAt'),
                createdById: ph('createdById'),
              })
              .returning(),
          tx,
        )
        .execute({ ...secret }),
      'INSERT INTO secrets',
    ),
  );
}

function everySecret(h: PgHandle, tx?: Tx): Promise<LabelledSecret[]> {
  return h
    .prepared(
      'secrets.every',
      (x) =>
        x
          .select({
            id: secrets.id,
            name: secrets.name,
            ciphertext: secrets.ciphertext,
            entityName: entities.name,
          })
          .from(secrets)
          .innerJoin(entities, eq(entities.id, secrets.entityId))
          .orderBy(asc(entities.name), asc(secrets.name)),
      tx,
    )
    .execute();
}

/**
 * Locks the secret's row until the transaction ends, before a deletion checks that nothing
 * references it: a write that starts referencing it holds a FOR KEY SHARE lock on the row (its
 * foreign key check) until it commits, so the check waits for it and then sees it; one that
 * comes later fails its foreign key check once the deletion commits.
 */
async function lockSecret(tx: Tx, id: string): Promise<void> {
  await tx.execute(sql`SELECT id FROM secrets WHERE id = ${id} FOR UPDATE`);
}

export function createSecretStore(h: PgHandle): SecretStore {
  return {
    find: async (id) =>
      (
        await h
          .prepared('secrets.find', (x) =>
            x
              .select()
              .from(secrets)
              .where(eq(secrets.id, ph('id'))),
          )
          .execute({ id })
      )[0],
    findByName: async (entityId, name) =>
      (
        await h
          .prepared('secrets.findByName', (x) =>
            x
              .select()
              .from(secrets)
              .where(and(eq(secrets.entityId, ph('entityId')), eq(secrets.name, ph('name')))),
          )
          .execute({ entityId, name })
      )[0],
    namesIn: async (entityId) => {
      const rows = await h
        .prepared('secrets.namesIn', (x) =>
          x
            .select({ id: secrets.id, name: secrets.name })
            .from(secrets)
            .where(eq(secrets.entityId, ph('entityId'))),
        )
        .execute({ entityId });
      return new Map(rows.map((row) => [row.name, row.id]));
    },
    create: async (secret, audit) =>
      h.transaction(async (tx) => {
        const row = await insertSecret(h, tx, secret, 'name');
        await insertAudit(h, tx, audit, secret.createdAt);
        return row;
      }),
    replaceValue: async (id, value, audit) =>
      h.transaction(async (tx) => {
        const [row] = await h
          .prepared(
            'secrets.replaceValue',
            (x) =>
              x
                .update(secrets)
                .set({
                  ciphertext: encoded('ciphertext'),
                  rotatedAt: encoded('rotatedAt'),
                  rotatedById: encoded('rotatedById'),
                })
                .where(eq(secrets.id, ph('id')))
                .returning(),
            tx,
          )
          .execute({ id, ...value });
        if (row) await insertAudit(h, tx, audit, value.rotatedAt);
        return row;
      }),
    delete: async (id, audit, now) =>
      h.transaction(async (tx) => {
        await lockSecret(tx, id);
        const users = await secretUsers(h, id, tx);
        if (users.actions.length > 0 || users.automations.length > 0) {
          return { outcome: 'inUse', users } as const;
        }
        const [row] = await h
          .prepared(
            'secrets.delete',
            (x) =>
              x
                .delete(secrets)
                .where(eq(secrets.id, ph('id')))
                .returning(),
            tx,
          )
          .execute({ id });
        if (!row) return { outcome: 'missing' } as const;
        await insertAudit(h, tx, audit, now);
        return { outcome: 'deleted', secret: row } as const;
      }),
    usersOf: async (id) => secretUsers(h, id),
    pageSecrets: async (entityId, request) => {
      const page = keyset({ direction: 'asc', columns: [secrets.name] }, request);
      return h
        .prepared(`secrets.page:${page.shape}`, (x) =>
          x
            .select()
            .from(secrets)
            .where(and(eq(secrets.entityId, ph('entityId')), page.where))
            .orderBy(...page.orderBy)
            .limit(ph('limit')),
        )
        .execute({ entityId, ...page.params });
    },
    countSecrets: async (entityId) =>
      countRows(h, 'secrets.count', secrets, () => eq(secrets.entityId, ph('entityId')), {
        entityId,
      }),
    everySecret: async () => everySecret(h),
    resealAll: async (reseal) =>
      // A commit is durable when it returns (synchronous_commit is on unless an operator turned
      // it off), so the caller may act on it at once.
      h.transaction(async (tx) => {
        // No secret may be created or changed between the read and the writes.
        await tx.execute(sql`LOCK TABLE secrets IN SHARE ROW EXCLUSIVE MODE`);
        const rows = await everySecret(h, tx);
        const envelopes = reseal(rows);
        for (const row of rows) {
          const ciphertext = envelopes.get(row.id);
          if (ciphertext === undefined) throw new Error(`No new envelope for secret ${row.id}`);
          await h
            .prepared(
              'secrets.reseal',
              (x) =>
                x
                  .update(secrets)
                  .set({ ciphertext: encoded('ciphertext') })
                  .where(eq(secrets.id, ph('id'))),
              tx,
            )
            .execute({ id: row.id, ciphertext });
        }
        return rows.length;
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Actions

type ActionRow = typeof actions.$inferSelect;

async function insertAction(h: PgHandle, tx: Tx, action: NewAction): Promise<ActionRow> {
  const common = {
    id: ph('id'),
    entityId: ph('entityId'),
    kind: ph('kind'),
    name: ph('name'),
    createdAt: ph('createdAt'),
    createdById: ph('createdById'),
  };
  let rows: ActionRow[];
  switch (action.kind) {
    case 'WEBHOOK':
      rows = await h
        .prepared(
          'actions.insert:WEBHOOK',
          (x) =>
            x
              .insert(actions)
              .values({
                ...common,
                url: ph('url'),
                accessTokenSecretId: ph('accessTokenSecretId'),
                signingSecretId: ph('signingSecretId'),
                headers: ph('headers'),
              })
              .returning(),
          tx,
        )
        .execute({ ...action });
      break;
    case 'SLACK':
      rows = await h
        .prepared(
          'actions.insert:SLACK',
          (x) =>
            x
              .insert(actions)
              .values({
                ...common,
                channel: ph('channel'),
                slackUrlSecretId: ph('slackUrlSecretId'),
              })
              .returning(),
          tx,
        )
        .execute({ ...action });
      break;
    case 'NO_OP':
      rows = await h
        .prepared('actions.insert:NO_OP', (x) => x.insert(actions).values(common).returning(), tx)
        .execute({ ...action });
      break;
    default:
      return unreachable(action);
  }
  return single(rows, 'INSERT INTO actions');
}

/** The columns {@link ActionChanges} may set, in one order, so a set of changes names one query. */
const CHANGEABLE = [
  'name',
  'enabled',
  'disabledReason',
  'url',
  'accessTokenSecretId',
  'signingSecretId',
  'headers',
  'channel',
  'slackUrlSecretId',
  'updatedAt',
] as const satisfies readonly (keyof ActionChanges & keyof ActionRow)[];

async function usedBy(h: PgHandle, actionId: string, tx?: Tx): Promise<string[]> {
  const rows = await h
    .prepared(
      'actions.usedBy',
      (x) =>
        x
          .select({ name: automations.name })
          .from(automations)
          .where(eq(automations.actionId, ph('actionId')))
          .orderBy(asc(automations.name)),
      tx,
    )
    .execute({ actionId });
  return rows.map((row) => row.name);
}

function actionConditions(filter: ActionFilter): SQL | undefined {
  return and(
    eq(actions.entityId, ph('entityId')),
    filter.kind == null ? undefined : eq(actions.kind, ph('kind')),
    filter.enabled == null ? undefined : eq(actions.enabled, ph('enabled')),
  );
}

function actionParams(
  entityId: string,
  filter: ActionFilter,
): Record<string, string | number | boolean> {
  return {
    entityId,
    ...(filter.kind == null ? {} : { kind: filter.kind }),
    ...(filter.enabled == null ? {} : { enabled: filter.enabled }),
  };
}

export function createActionStore(h: PgHandle): ActionStore {
  return {
    find: async (id) => {
      const [row] = await h
        .prepared('actions.find', (x) =>
          x
            .select()
            .from(actions)
            .where(eq(actions.id, ph('id'))),
        )
        .execute({ id });
      return row && actionRecord(row);
    },
    create: async <Action extends NewAction>(
      action: Action,
      audit: AuditRecord,
      newSecret?: SecretWithAction,
    ) =>
      h.transaction(async (tx) => {
        if (newSecret) {
          await insertSecret(h, tx, newSecret.secret, 'secretName');
          await insertAudit(h, tx, newSecret.audit, newSecret.secret.createdAt);
        }
        const row = await unique('name', () => insertAction(h, tx, action));
        await insertAudit(h, tx, audit, action.createdAt);
        // The row was written from `action`, so it is of its kind.
        return actionRecord(row) as Extract<ActionRecord, { kind: Action['kind'] }>;
      }),
    update: async (id, changes, audits) => {
      const columns = CHANGEABLE.filter((column) => changes[column] !== undefined);
      const values = Object.fromEntries(columns.map((column) => [column, changes[column]]));
      return h.transaction(async (tx) => {
        const [row] = await unique('name', () =>
          h
            .prepared(
              `actions.update:${columns.join(',')}`,
              (x) =>
                x
                  .update(actions)
                  .set(Object.fromEntries(columns.map((column) => [column, encoded(column)])))
                  .where(eq(actions.id, ph('id')))
                  .returning(),
              tx,
            )
            .execute({ ...values, id }),
        );
        if (!row) return undefined;
        for (const audit of audits) await insertAudit(h, tx, audit, changes.updatedAt);
        return actionRecord(row);
      });
    },
    delete: async (id, audit, now) =>
      h.transaction(async (tx) => {
        // Automations referencing the action hold FOR KEY SHARE locks through their foreign key
        // once written; locking the row first makes the check below see every committed one.
        await tx.execute(sql`SELECT id FROM actions WHERE id = ${id} FOR UPDATE`);
        const names = await usedBy(h, id, tx);
        if (names.length > 0) return { outcome: 'inUse', automations: names } as const;
        const [row] = await h
          .prepared(
            'actions.delete',
            (x) =>
              x
                .delete(actions)
                .where(eq(actions.id, ph('id')))
                .returning(),
            tx,
          )
          .execute({ id });
        if (!row) return { outcome: 'missing' } as const;
        await insertAudit(h, tx, audit, now);
        return { outcome: 'deleted', action: actionRecord(row) } as const;
      }),
    usedBy: async (id) => usedBy(h, id),
    slackActionsPostingTo: async (secretId) =>
      (
        await h
          .prepared('actions.slackPostingTo', (x) =>
            x
              .select({ name: actions.name })
              .from(actions)
              .where(eq(actions.slackUrlSecretId, ph('secretId')))
              .orderBy(asc(actions.name)),
          )
          .execute({ secretId })
      ).map((row) => row.name),
    pageActions: async (entityId, filter, request) => {
      const page = keyset({ direction: 'asc', columns: [actions.name] }, request);
      const rows = await h
        .prepared(`actions.page:${flags([filter.kind, filter.enabled])}:${page.shape}`, (x) =>
          x
            .select()
            .from(actions)
            .where(and(actionConditions(filter), page.where))
            .orderBy(...page.orderBy)
            .limit(ph('limit')),
        )
        .execute({ ...actionParams(entityId, filter), ...page.params });
      return rows.map(actionRecord);
    },
    countActions: async (entityId, filter) =>
      countRows(
        h,
        `actions.count:${flags([filter.kind, filter.enabled])}`,
        actions,
        () => actionConditions(filter),
        actionParams(entityId, filter),
      ),
  };
}

// ---------------------------------------------------------------------------------------------
// Automations

/** Records which secrets an automation's templates name, in the automation's transaction. */
async function insertSecretRefs(
  h: PgHandle,
  tx: Tx,
  automationId: string,
  secretIds: readonly string[],
): Promise<void> {
  for (const secretId of [...new Set(secretIds)].sort()) {
    await h
      .prepared(
        'automations.insertSecretRef',
        (x: Executor) =>
          x
            .insert(automationSecretRefs)
            .values({ automationId: ph('automationId'), secretId: ph('secretId') }),
        tx,
      )
      .execute({ automationId, secretId });
  }
}

function automationConditions(filter: AutomationFilter): SQL | undefined {
  return and(
    eq(automations.entityId, ph('entityId')),
    filter.scopeType == null ? undefined : eq(automations.scopeType, ph('scopeType')),
    filter.eventType == null ? undefined : eq(automations.eventType, ph('eventType')),
    filter.actionId == null ? undefined : eq(automations.actionId, ph('actionId')),
    filter.enabled == null ? undefined : eq(automations.enabled, ph('enabled')),
  );
}

function automationParams(
  entityId: string,
  filter: AutomationFilter,
): Record<string, string | number | boolean> {
  return {
    entityId,
    ...(filter.scopeType == null ? {} : { scopeType: filter.scopeType }),
    ...(filter.eventType == null ? {} : { eventType: filter.eventType }),
    ...(filter.actionId == null ? {} : { actionId: filter.actionId }),
    ...(filter.enabled == null ? {} : { enabled: filter.enabled }),
  };
}

const automationFlags = (filter: AutomationFilter): string =>
  flags([filter.scopeType, filter.eventType, filter.actionId, filter.enabled]);

/** Every column but the id, the entity and the creation, as placeholders of the same names. */
const AUTOMATION_SETTINGS = {
  name: ph('name'),
  description: ph('description'),
  enabled: ph('enabled'),
  eventType: ph('eventType'),
  scopeType: ph('scopeType'),
  scopeId: ph('scopeId'),
  filterCollectionName: ph('filterCollectionName'),
  filterArtifactType: ph('filterArtifactType'),
  filterAliasPattern: ph('filterAliasPattern'),
  filterTagPattern: ph('filterTagPattern'),
  filterRunNamePattern: ph('filterRunNamePattern'),
  filterRunReportedById: ph('filterRunReportedById'),
  runCondition: ph('runCondition'),
  cooldownSeconds: ph('cooldownSeconds'),
  actionId: ph('actionId'),
  payloadTemplate: ph('payloadTemplate'),
  slackTitle: ph('slackTitle'),
  slackMessage: ph('slackMessage'),
  slackSeverity: ph('slackSeverity'),
  updatedAt: ph('updatedAt'),
};

export function createAutomationStore(h: PgHandle): AutomationStore {
  return {
    find: async (id) =>
      (
        await h
          .prepared('automations.find', (x) =>
            x
              .select()
              .from(automations)
              .where(eq(automations.id, ph('id'))),
          )
          .execute({ id })
      )[0],
    create: async (automation, secretIds, audit) =>
      h.transaction(async (tx) => {
        const row = await unique('name', async () =>
          single(
            await h
              .prepared(
                'automations.insert',
                (x) =>
                  x
                    .insert(automations)
                    .values({
                      ...AUTOMATION_SETTINGS,
                      id: ph('id'),
                      entityId: ph('entityId'),
                      createdAt: ph('createdAt'),
                      createdById: ph('createdById'),
                    })
                    .returning(),
                tx,
              )
              .execute({ ...automation }),
            'INSERT INTO automations',
          ),
        );
        await insertSecretRefs(h, tx, row.id, secretIds);
        await insertAudit(h, tx, audit, automation.createdAt);
        return row;
      }),
    update: async (id, readAt, settings, secretIds, audit) =>
      h.transaction(async (tx) => {
        const [row] = await unique('name', () =>
          h
            .prepared(
              'automations.update',
              (x) =>
                x
                  .update(automations)
                  .set(
                    Object.fromEntries(
                      Object.keys(AUTOMATION_SETTINGS).map((column) => [column, encoded(column)]),
                    ),
                  )
                  .where(
                    and(
                      eq(automations.id, ph('id')),
                      eq(
                        sql`coalesce(${automations.updatedAt}, ${automations.createdAt})`,
                        ph('readAt'),
                      ),
                    ),
                  )
                  .returning(),
              tx,
            )
            // In conditions placeholders are not encoded: the time goes as epoch milliseconds.
            .execute({ ...settings, id, readAt: readAt.getTime() }),
        );
        if (!row) return undefined;
        await h
          .prepared(
            'automations.deleteSecretRefs',
            (x) =>
              x
                .delete(automationSecretRefs)
                .where(eq(automationSecretRefs.automationId, ph('automationId'))),
            tx,
          )
          .execute({ automationId: id });
        await insertSecretRefs(h, tx, id, secretIds);
        if (audit) await insertAudit(h, tx, audit, settings.updatedAt);
        return row;
      }),
    delete: async (id, audit: AuditRecord, now) =>
      h.transaction(async (tx) => {
        const [row] = await h
          .prepared(
            'automations.delete',
            (x) =>
              x
                .delete(automations)
                .where(eq(automations.id, ph('id')))
                .returning({ id: automations.id }),
            tx,
          )
          .execute({ id });
        if (!row) return false;
        await insertAudit(h, tx, audit, now);
        return true;
      }),
    pageAutomations: async (entityId, filter, request) => {
      const page = keyset(
        { direction: 'desc', columns: [automations.createdAt, automations.id] },
        request,
      );
      return h
        .prepared(`automations.page:${automationFlags(filter)}:${page.shape}`, (x) =>
          x
            .select()
            .from(automations)
            .where(and(automationConditions(filter), page.where))
            .orderBy(...page.orderBy)
            .limit(ph('limit')),
        )
        .execute({ ...automationParams(entityId, filter), ...page.params });
    },
    countAutomations: async (entityId, filter) =>
      countRows(
        h,
        `automations.count:${automationFlags(filter)}`,
        automations,
        () => automationConditions(filter),
        automationParams(entityId, filter),
      ),
  };
}
