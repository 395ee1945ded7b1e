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
import { DuplicateError } from '../errors.js';
import { insertAudit } from './audit.js';
import { actions, automationSecretRefs, automations, entities, secrets } from './schema.js';
import { countRows, keyset, type SqliteHandle, uniqueViolation } from './support.js';

const ph = sql.placeholder;

/**
 * A placeholder for `update().set()`, which is typed to take none but passes one through the
 * column's encoder as `insert().values()` does (a `Date` for a timestamp, an object for JSON).
 * A null must not reach a timestamp column this way: its encoder calls `getTime()`.
 */
const encoded = (name: string) => sql.placeholder(name) as unknown as SQL;

/** Runs `write`, turning a violated unique constraint into a DuplicateError of `what`. */
function unique<T>(what: string, write: () => T): T {
  try {
    return write();
  } catch (error) {
    if (uniqueViolation(error) !== null) throw new DuplicateError(what);
    throw error;
  }
}

/** Whether each optional condition of a filter is set, as part of a prepared statement's key. */
const flags = (values: readonly unknown[]): string =>
  values.map((value) => (value == null ? '-' : '+')).join('');

// ---------------------------------------------------------------------------------------------
// Secrets

function secretUsers(h: SqliteHandle, secretId: string): SecretUsers {
  const actionNames = h
    .prepared('secrets.users:actions', () =>
      h.db
        .select({ name: actions.name })
        .from(actions)
        .where(
          or(
            eq(actions.accessTokenSecretId, ph('secretId')),
            eq(actions.signingSecretId, ph('secretId')),
            eq(actions.slackUrlSecretId, ph('secretId')),
          ),
        )
        .orderBy(asc(actions.name))
        .prepare(),
    )
    .all({ secretId });
  const automationNames = h
    .prepared('secrets.users:automations', () =>
      h.db
        .select({ name: automations.name })
        .from(automations)
        .where(
          inArray(
            automations.id,
            h.db
              .select({ id: automationSecretRefs.automationId })
              .from(automationSecretRefs)
              .where(eq(automationSecretRefs.secretId, ph('secretId'))),
          ),
        )
        .orderBy(asc(automations.name))
        .prepare(),
    )
    .all({ secretId });
  return {
    actions: actionNames.map((row) => row.name),
    automations: automationNames.map((row) => row.name),
  };
}

/** Inserts a secret; call inside the transaction of everything written with it. */
function insertSecret(h: SqliteHandle, secret: NewSecret, what: string): SecretRecord {
  const row = unique(what, () =>
    h
      .prepared('secrets.insert', () =>
        h.db
          .insert(secrets)
          .values({
            id: ph('id'),
            entityId: ph('entityId'),
            name: ph('name'),
            ciphertext: ph('ciphertext'),
            createdAt: ph('createdAt'),
            createdById: ph('createdById'),
          })
          .returning()
          .prepare(),
      )
      .get({ ...secret }),
  );
  if (!row) throw new Error('INSERT … RETURNING gave no row');
  return row;
}

function everySecret(h: SqliteHandle): LabelledSecret[] {
  return h
    .prepared('secrets.every', () =>
      h.db
        .select({
          id: secrets.id,
          name: secrets.name,
          ciphertext: secrets.ciphertext,
          entityName: entities.name,
        })
        .from(secrets)
        .innerJoin(entities, eq(entities.id, secrets.entityId))
        .orderBy(asc(entities.name), asc(secrets.name))
        .prepare(),
    )
    .all();
}

export function createSecretStore(h: SqliteHandle): SecretStore {
  const byId = () =>
    h.prepared('secrets.find', () =>
      h.db
        .select()
        .from(secrets)
        .where(eq(secrets.id, ph('id')))
        .prepare(),
    );
  return {
    find: async (id) => byId().get({ id }),
    findByName: async (entityId, name) =>
      h
        .prepared('secrets.findByName', () =>
          h.db
            .select()
            .from(secrets)
            .where(and(eq(secrets.entityId, ph('entityId')), eq(secrets.name, ph('name'))))
            .prepare(),
        )
        .get({ entityId, name }),
    namesIn: async (entityId) => {
      const rows = h
        .prepared('secrets.namesIn', () =>
          h.db
            .select({ id: secrets.id, name: secrets.name })
            .from(secrets)
            .where(eq(secrets.entityId, ph('entityId')))
            .prepare(),
        )
        .all({ entityId });
      return new Map(rows.map((row) => [row.name, row.id]));
    },
    create: async (secret, audit) =>
      h.transaction(() => {
        const row = insertSecret(h, secret, 'name');
        insertAudit(h, audit, secret.createdAt);
        return row;
      }),
    replaceValue: async (id, value, audit) =>
      h.transaction(() => {
        const row = h
          .prepared('secrets.replaceValue', () =>
            h.db
              .update(secrets)
              .set({
                ciphertext: encoded('ciphertext'),
                rotatedAt: encoded('rotatedAt'),
                rotatedById: encoded('rotatedById'),
              })
              .where(eq(secrets.id, ph('id')))
              .returning()
              .prepare(),
          )
          .get({ id, ...value });
        if (row) insertAudit(h, audit, value.rotatedAt);
        return row;
      }),
    delete: async (id, audit, now) =>
      h.transaction(() => {
        const users = secretUsers(h, id);
        if (users.actions.length > 0 || users.automations.length > 0) {
          return { outcome: 'inUse', users } as const;
        }
        const row = h
          .prepared('secrets.delete', () =>
            h.db
              .delete(secrets)
              .where(eq(secrets.id, ph('id')))
              .returning()
              .prepare(),
          )
          .get({ id });
        if (!row) return { outcome: 'missing' } as const;
        insertAudit(h, audit, now);
        return { outcome: 'deleted', secret: row } as const;
      }),
    usersOf: async (id) => secretUsers(h, id),
    pageSecrets: async (entityId, request) => {
      const page = keyset({ direction: 'asc', columns: [secrets.name] }, request);
      return h
        .prepared(`secrets.page:${page.shape}`, () =>
          h.db
            .select()
            .from(secrets)
            .where(and(eq(secrets.entityId, ph('entityId')), page.where))
            .orderBy(...page.orderBy)
            .limit(ph('limit'))
            .prepare(),
        )
        .all({ entityId, ...page.params });
    },
    countSecrets: async (entityId) =>
      countRows(h, 'secrets.count', secrets, () => eq(secrets.entityId, ph('entityId')), {
        entityId,
      }),
    everySecret: async () => everySecret(h),
    resealAll: async (reseal) => {
      const previous = Number(h.sqlite.pragma('synchronous', { simple: true }));
      // WAL with synchronous=NORMAL may lose the last commit on power failure; whatever the caller
      // does once this resolves (swap key files) must never outlive the data it describes.
      h.sqlite.pragma('synchronous = FULL');
      try {
        return h.transaction(() => {
          const rows = everySecret(h);
          const envelopes = reseal(rows);
          const write = h.prepared('secrets.reseal', () =>
            h.db
              .update(secrets)
              .set({ ciphertext: encoded('ciphertext') })
              .where(eq(secrets.id, ph('id')))
              .prepare(),
          );
          for (const row of rows) {
            const ciphertext = envelopes.get(row.id);
            if (ciphertext === undefined) throw new Error(`No new envelope for secret ${row.id}`);
            write.run({ id: row.id, ciphertext });
          }
          return rows.length;
        });
      } finally {
        h.sqlite.pragma(`synchronous = ${previous}`);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Actions

type ActionRow = typeof actions.$inferSelect;

function insertAction(h: SqliteHandle, action: NewAction): ActionRow | undefined {
  const common = {
    id: ph('id'),
    entityId: ph('entityId'),
    kind: ph('kind'),
    name: ph('name'),
    createdAt: ph('createdAt'),
    createdById: ph('createdById'),
  };
  switch (action.kind) {
    case 'WEBHOOK':
      return h
        .prepared('actions.insert:WEBHOOK', () =>
          h.db
            .insert(actions)
            .values({
              ...common,
              url: ph('url'),
              accessTokenSecretId: ph('accessTokenSecretId'),
              signingSecretId: ph('signingSecretId'),
              headers: ph('headers'),
            })
            .returning()
            .prepare(),
        )
        .get({ ...action });
    case 'SLACK':
      return h
        .prepared('actions.insert:SLACK', () =>
          h.db
            .insert(actions)
            .values({ ...common, channel: ph('channel'), slackUrlSecretId: ph('slackUrlSecretId') })
            .returning()
            .prepare(),
        )
        .get({ ...action });
    case 'NO_OP':
      return h
        .prepared('actions.insert:NO_OP', () =>
          h.db.insert(actions).values(common).returning().prepare(),
        )
        .get({ ...action });
    default:
      return unreachable(action);
  }
}

/** The columns {@link ActionChanges} may set, in one order, so a set of changes names one statement. */
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

function usedBy(h: SqliteHandle, actionId: string): string[] {
  return h
    .prepared('actions.usedBy', () =>
      h.db
        .select({ name: automations.name })
        .from(automations)
        .where(eq(automations.actionId, ph('actionId')))
        .orderBy(asc(automations.name))
        .prepare(),
    )
    .all({ actionId })
    .map((row) => row.name);
}

function actionConditions(filter: ActionFilter): SQL | undefined {
  return and(
    eq(actions.entityId, ph('entityId')),
    filter.kind == null ? undefined : eq(actions.kind, ph('kind')),
    filter.enabled == null ? undefined : eq(actions.enabled, ph('enabled')),
  );
}

/** Placeholder values of {@link actionConditions}; in conditions they are not encoded, so booleans go as 0/1. */
function actionParams(entityId: string, filter: ActionFilter): Record<string, string | number> {
  return {
    entityId,
    ...(filter.kind == null ? {} : { kind: filter.kind }),
    ...(filter.enabled == null ? {} : { enabled: filter.enabled ? 1 : 0 }),
  };
}

export function createActionStore(h: SqliteHandle): ActionStore {
  return {
    find: async (id) => {
      const row = h
        .prepared('actions.find', () =>
          h.db
            .select()
            .from(actions)
            .where(eq(actions.id, ph('id')))
            .prepare(),
        )
        .get({ id });
      return row && actionRecord(row);
    },
    create: async <Action extends NewAction>(
      action: Action,
      audit: AuditRecord,
      newSecret?: SecretWithAction,
    ) =>
      h.transaction(() => {
        if (newSecret) {
          insertSecret(h, newSecret.secret, 'secretName');
          insertAudit(h, newSecret.audit, newSecret.secret.createdAt);
        }
        const row = unique('name', () => insertAction(h, action));
        if (!row) throw new Error('INSERT … RETURNING gave no row');
        insertAudit(h, audit, action.createdAt);
        // The row was written from `action`, so it is of its kind.
        return actionRecord(row) as Extract<ActionRecord, { kind: Action['kind'] }>;
      }),
    update: async (id, changes, audits) => {
      const columns = CHANGEABLE.filter((column) => changes[column] !== undefined);
      const statement = h.prepared(`actions.update:${columns.join(',')}`, () =>
        h.db
          .update(actions)
          .set(Object.fromEntries(columns.map((column) => [column, encoded(column)])))
          .where(eq(actions.id, ph('id')))
          .returning()
          .prepare(),
      );
      const values = Object.fromEntries(columns.map((column) => [column, changes[column]]));
      return h.transaction(() => {
        const row = unique('name', () => statement.get({ ...values, id }));
        if (!row) return undefined;
        for (const audit of audits) insertAudit(h, audit, changes.updatedAt);
        return actionRecord(row);
      });
    },
    delete: async (id, audit, now) =>
      h.transaction(() => {
        const names = usedBy(h, id);
        if (names.length > 0) return { outcome: 'inUse', automations: names } as const;
        const row = h
          .prepared('actions.delete', () =>
            h.db
              .delete(actions)
              .where(eq(actions.id, ph('id')))
              .returning()
              .prepare(),
          )
          .get({ id });
        if (!row) return { outcome: 'missing' } as const;
        insertAudit(h, audit, now);
        return { outcome: 'deleted', action: actionRecord(row) } as const;
      }),
    usedBy: async (id) => usedBy(h, id),
    slackActionsPostingTo: async (secretId) =>
      h
        .prepared('actions.slackPostingTo', () =>
          h.db
            .select({ name: actions.name })
            .from(actions)
            .where(eq(actions.slackUrlSecretId, ph('secretId')))
            .orderBy(asc(actions.name))
            .prepare(),
        )
        .all({ secretId })
        .map((row) => row.name),
    pageActions: async (entityId, filter, request) => {
      const page = keyset({ direction: 'asc', columns: [actions.name] }, request);
      return h
        .prepared(`actions.page:${flags([filter.kind, filter.enabled])}:${page.shape}`, () =>
          h.db
            .select()
            .from(actions)
            .where(and(actionConditions(filter), page.where))
            .orderBy(...page.orderBy)
            .limit(ph('limit'))
            .prepare(),
        )
        .all({ ...actionParams(entityId, filter), ...page.params })
        .map(actionRecord);
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

/** Records which secrets an automation's templates name; inside the automation's transaction. */
function insertSecretRefs(
  h: SqliteHandle,
  automationId: string,
  secretIds: readonly string[],
): void {
  const insert = h.prepared('automations.insertSecretRef', () =>
    h.db
      .insert(automationSecretRefs)
      .values({ automationId: ph('automationId'), secretId: ph('secretId') })
      .prepare(),
  );
  for (const secretId of new Set(secretIds)) insert.run({ automationId, secretId });
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
): Record<string, string | number> {
  return {
    entityId,
    ...(filter.scopeType == null ? {} : { scopeType: filter.scopeType }),
    ...(filter.eventType == null ? {} : { eventType: filter.eventType }),
    ...(filter.actionId == null ? {} : { actionId: filter.actionId }),
    ...(filter.enabled == null ? {} : { enabled: filter.enabled ? 1 : 0 }),
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

export function createAutomationStore(h: SqliteHandle): AutomationStore {
  return {
    find: async (id) => {
      const row = h
        .prepared('automations.find', () =>
          h.db
            .select()
            .from(automations)
            .where(eq(automations.id, ph('id')))
            .prepare(),
        )
        .get({ id });
      return row && row;
    },
    create: async (automation, secretIds, audit) =>
      h.transaction(() => {
        const row = unique('name', () =>
          h
            .prepared('automations.insert', () =>
              h.db
                .insert(automations)
                .values({
                  ...AUTOMATION_SETTINGS,
                  id: ph('id'),
                  entityId: ph('entityId'),
                  createdAt: ph('createdAt'),
                  createdById: ph('createdById'),
                })
                .returning()
                .prepare(),
            )
            .get({ ...automation }),
        );
        if (!row) throw new Error('INSERT … RETURNING gave no row');
        insertSecretRefs(h, row.id, secretIds);
        insertAudit(h, audit, automation.createdAt);
        return row;
      }),
    update: async (id, readAt, settings, secretIds, audit) =>
      h.transaction(() => {
        const row = unique('name', () =>
          h
            .prepared('automations.update', () =>
              h.db
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
                .returning()
                .prepare(),
            )
            // In conditions placeholders are not encoded: the time goes as epoch milliseconds.
            .get({ ...settings, id, readAt: readAt.getTime() }),
        );
        if (!row) return undefined;
        h.prepared('automations.deleteSecretRefs', () =>
          h.db
            .delete(automationSecretRefs)
            .where(eq(automationSecretRefs.automationId, ph('automationId')))
            .prepare(),
        ).run({ automationId: id });
        insertSecretRefs(h, id, secretIds);
        if (audit) insertAudit(h, audit, settings.updatedAt);
        return row;
      }),
    delete: async (id, audit: AuditRecord, now) =>
      h.transaction(() => {
        const row = h
          .prepared('automations.delete', () =>
            h.db
              .delete(automations)
              .where(eq(automations.id, ph('id')))
              .returning({ id: automations.id })
              .prepare(),
          )
          .get({ id });
        if (!row) return false;
        insertAudit(h, audit, now);
        return true;
      }),
    pageAutomations: async (entityId, filter, request) => {
      const page = keyset(
        { direction: 'desc', columns: [automations.createdAt, automations.id] },
        request,
      );
      return h
        .prepared(`automations.page:${automationFlags(filter)}:${page.shape}`, () =>
          h.db
            .select()
            .from(automations)
            .where(and(automationConditions(filter), page.where))
            .orderBy(...page.orderBy)
            .limit(ph('limit'))
            .prepare(),
        )
        .all({ ...automationParams(entityId, filter), ...page.params });
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
