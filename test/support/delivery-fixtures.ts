import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, asc, eq } from 'drizzle-orm';
import { afterEach, beforeEach } from 'vitest';
import type { Clock } from '../../src/clock.js';
import type { DeliveryConfig, RetryPolicy } from '../../src/config.js';
import {
  createDeliveryEngine,
  type DeliveryEngine,
  type DeliveryEngineDeps,
} from '../../src/delivery/engine.js';
import type { DeliveryRequest, WebhookTarget } from '../../src/delivery/send.js';
import { newId } from '../../src/ids.js';
import { createLogger, type Logger } from '../../src/logger.js';
import {
  checkPayloadTemplate,
  checkTextTemplate,
  type TemplateContext,
} from '../../src/modules/automations/template.js';
import { createSecretBox, type SecretBox } from '../../src/modules/secrets/box.js';
import { createDecryptedSecrets } from '../../src/modules/secrets/decrypted.js';
import type { TriggeredRun } from '../../src/storage/events.js';
import type { Db } from '../../src/storage/sqlite/database.js';
import {
  actions,
  artifactEvents,
  automationSecretRefs,
  automations,
  deliveryAttempts,
  type EventType,
  entities,
  projects,
  type RunStatus,
  registries,
  type SlackSeverity,
  secrets,
  triggeredRuns,
} from '../../src/storage/sqlite/schema.js';
import { openSqliteStorage, type SqliteStorage } from '../../src/storage/sqlite/storage.js';
import { type Receiver, startReceiver } from './receiver.js';

/** A clock that moves only when told to. */
export interface FakeClock extends Clock {
  advance(ms: number): void;
  set(date: Date): void;
}

export function createFakeClock(start: Date = new Date()): FakeClock {
  let now = start.getTime();
  return {
    now: () => new Date(now),
    advance: (ms) => {
      now += ms;
    },
    set: (date) => {
      now = date.getTime();
    },
  };
}

type ConfigOverrides = Partial<Omit<DeliveryConfig, 'retry'>> & { retry?: Partial<RetryPolicy> };

/** Delivery settings for tests: small timeouts, the local receiver allowed, no jitter surprises. */
export function deliveryConfig(overrides: ConfigOverrides = {}): DeliveryConfig {
  const { retry, ...rest } = overrides;
  return {
    timeoutMs: 2_000,
    concurrency: 4,
    leaseMs: 60_000,
    pollIntervalMs: 50,
    maxStoredResponseBytes: 4096,
    maxPayloadBytes: 64 * 1024,
    allowList: ['127.0.0.1'],
    httpsOnly: false,
    ...rest,
    retry: {
      maxAttempts: 5,
      baseDelayMs: 1_000,
      maxDelayMs: 60_000,
      maxRetryAfterMs: 300_000,
      ...retry,
    },
  };
}

export interface WebhookActionInput {
  url: string;
  accessToken?: string;
  signingSecret?: string;
  headers?: Record<string, string>;
  enabled?: boolean;
}

export interface AutomationInput {
  actionId: string;
  name?: string;
  enabled?: boolean;
  eventType?: EventType;
  payloadTemplate?: string | null;
  slackTitle?: string | null;
  slackMessage?: string | null;
  slackSeverity?: SlackSeverity | null;
}

export interface EventInput {
  eventType?: EventType;
  inRegistry?: boolean;
  collectionName?: string;
  artifactType?: string;
  versionIndex?: number;
  alias?: string | null;
  author?: string;
  metadata?: Record<string, unknown>;
}

export interface RunInput {
  automationId: string | null;
  /** Defaults to the automation's action. */
  actionId?: string | null;
  event?: EventInput;
  status?: RunStatus;
  attemptCount?: number;
  nextAttemptAt?: Date | null;
  leaseOwner?: string | null;
  leaseExpiresAt?: Date | null;
}

export interface DeliveryFixture {
  /** The SQLite file, for opening a second connection as another worker would. */
  file: string;
  storage: SqliteStorage;
  /** The drizzle handle, for arranging and reading rows directly. */
  db: Db;
  secretBox: SecretBox;
  clock: FakeClock;
  logger: Logger;
  entityId: string;
  entityName: string;
  projectName: string;
  registryName: string;
  /** Stores an encrypted secret of the entity; returns its id. */
  addSecret(name: string, value: string): string;
  /** Returns the action id; secrets are created under generated names. */
  addWebhookAction(input: WebhookActionInput): string;
  addSlackAction(input: { url: string; channel?: string; enabled?: boolean }): string;
  /**
   * Returns the automation id. Records the secrets its templates name, as saving an automation
   * does: deliveries read them from there.
   */
  addAutomation(input: AutomationInput): string;
  /** Inserts an event and a run for it (QUEUED and due now unless told otherwise). */
  queueRun(input: RunInput): string;
  run(runId: string): typeof triggeredRuns.$inferSelect;
  attempts(runId: string): (typeof deliveryAttempts.$inferSelect)[];
  action(actionId: string): typeof actions.$inferSelect;
  /** Statuses published through `onRunUpdated`, as the engine handed them over. */
  published(runId: string): RunStatus[];
  /** The runs published through `onRunUpdated`, in order. */
  publishedRuns(runId: string): TriggeredRun[];
  /** The `onRunUpdated` callback that feeds {@link published}. */
  onRunUpdated(run: TriggeredRun): void;
  /** Resolves when `onRunUpdated` publishes `status` for the run (at once if it already did). */
  waitForStatus(runId: string, status: RunStatus): Promise<void>;
  /** An engine wired to this fixture; stopped by `close()`. */
  engine(deps?: Partial<DeliveryEngineDeps>): DeliveryEngine;
  /** Stops engines, closes the database and removes the directory. */
  close(): Promise<void>;
}

/** A real SQLite database in a fresh temporary directory, with an entity, project and registry. */
export function createDeliveryFixture(): DeliveryFixture {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-'));
  const file = join(dir, 'tripline.db');
  const storage = openSqliteStorage(file);
  const { db } = storage;
  const secretBox = createSecretBox(randomBytes(32));
  const clock = createFakeClock(new Date());
  const logger = createLogger('silent');
  const entityId = newId();
  const projectId = newId();
  const registryId = newId();
  const names = { entityName: 'acme', projectName: 'vision', registryName: 'model-registry' };
  db.insert(entities).values({ id: entityId, name: names.entityName }).run();
  db.insert(projects).values({ id: projectId, entityId, name: names.projectName }).run();
  db.insert(registries).values({ id: registryId, entityId, name: names.registryName }).run();
  const publications: { runId: string; status: RunStatus; run: TriggeredRun }[] = [];
  const waiters: { runId: string; status: RunStatus; resolve: () => void }[] = [];
  const engines: DeliveryEngine[] = [];
  let counter = 0;

  const addSecret = (name: string, value: string): string => {
    const id = newId();
    db.insert(secrets)
      .values({ id, entityId, name, ciphertext: secretBox.seal(value, id) })
      .run();
    return id;
  };
  const run = (runId: string) => {
    const row = db.select().from(triggeredRuns).where(eq(triggeredRuns.id, runId)).get();
    if (!row) throw new Error(`no run ${runId}`);
    return row;
  };
  const onRunUpdated = (published: TriggeredRun): void => {
    const { id: runId, status } = published;
    publications.push({ runId, status, run: published });
    for (const waiter of [...waiters]) {
      if (waiter.runId === runId && waiter.status === status) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };

  return {
    file,
    storage,
    db,
    secretBox,
    clock,
    logger,
    entityId,
    ...names,
    addSecret,
    addWebhookAction(input) {
      const id = newId();
      counter++;
      db.insert(actions)
        .values({
          id,
          entityId,
          kind: 'WEBHOOK',
          name: `webhook-${counter}`,
          enabled: input.enabled ?? true,
          url: input.url,
          accessTokenSecretId:
            input.accessToken === undefined
              ? null
              : addSecret(`ACCESS_TOKEN_${counter}`, input.accessToken),
          signingSecretId:
            input.signingSecret === undefined
              ? null
              : addSecret(`SIGNING_SECRET_${counter}`, input.signingSecret),
          headers: input.headers ?? null,
        })
        .run();
      return id;
    },
    addSlackAction(input) {
      const id = newId();
      counter++;
      db.insert(actions)
        .values({
          id,
          entityId,
          kind: 'SLACK',
          name: `slack-${counter}`,
          enabled: input.enabled ?? true,
          channel: input.channel ?? '#ml-alerts',
          slackUrlSecretId: addSecret(`SLACK_URL_${counter}`, input.url),
        })
        .run();
      return id;
    },
    addAutomation(input) {
      const id = newId();
      counter++;
      db.insert(automations)
        .values({
          id,
          entityId,
          name: input.name ?? `automation-${counter}`,
          enabled: input.enabled ?? true,
          eventType: input.eventType ?? 'ADD_ARTIFACT_ALIAS',
          scopeType: 'PROJECT',
          scopeId: projectId,
          actionId: input.actionId,
          payloadTemplate: input.payloadTemplate ?? null,
          slackTitle: input.slackTitle ?? null,
          slackMessage: input.slackMessage ?? null,
          slackSeverity: input.slackSeverity ?? null,
        })
        .run();
      const known = new Set(
        db
          .select({ name: secrets.name })
          .from(secrets)
          .where(eq(secrets.entityId, entityId))
          .all()
          .map((secret) => secret.name),
      );
      const named = new Set<string>();
      const templates = [
        [input.payloadTemplate, checkPayloadTemplate],
        [input.slackTitle, checkTextTemplate],
        [input.slackMessage, checkTextTemplate],
      ] as const;
      for (const [text, check] of templates) {
        // A template naming an unknown secret is stored as is, to test how delivery fails.
        try {
          if (text != null) for (const name of check(text, known, 'template')) named.add(name);
        } catch {}
      }
      for (const name of named) {
        const secret = db
          .select({ id: secrets.id })
          .from(secrets)
          .where(and(eq(secrets.entityId, entityId), eq(secrets.name, name)))
          .get();
        if (secret)
          db.insert(automationSecretRefs).values({ automationId: id, secretId: secret.id }).run();
      }
      return id;
    },
    queueRun(input) {
      const event = input.event ?? {};
      const eventId = newId();
      db.insert(artifactEvents)
        .values({
          id: eventId,
          entityId,
          eventType: event.eventType ?? 'ADD_ARTIFACT_ALIAS',
          projectId: event.inRegistry ? null : projectId,
          registryId: event.inRegistry ? registryId : null,
          collectionName: event.collectionName ?? 'resnet',
          artifactType: event.artifactType ?? 'model',
          versionIndex: event.versionIndex ?? 3,
          alias: event.alias === undefined ? 'production' : event.alias,
          author: event.author ?? 'alice',
          metadata: event.metadata ?? { accuracy: 0.93 },
        })
        .run();
      const automation =
        input.automationId === null
          ? undefined
          : db.select().from(automations).where(eq(automations.id, input.automationId)).get();
      const id = newId();
      db.insert(triggeredRuns)
        .values({
          id,
          entityId,
          eventId,
          automationId: input.automationId,
          automationName: automation?.name ?? 'deleted automation',
          actionId: input.actionId === undefined ? (automation?.actionId ?? null) : input.actionId,
          projectId: event.inRegistry ? null : projectId,
          registryId: event.inRegistry ? registryId : null,
          status: input.status ?? 'QUEUED',
          attemptCount: input.attemptCount ?? 0,
          nextAttemptAt: input.nextAttemptAt === undefined ? clock.now() : input.nextAttemptAt,
          leaseOwner: input.leaseOwner ?? null,
          leaseExpiresAt: input.leaseExpiresAt ?? null,
        })
        .run();
      return id;
    },
    run,
    attempts: (runId) =>
      db
        .select()
        .from(deliveryAttempts)
        .where(eq(deliveryAttempts.runId, runId))
        .orderBy(asc(deliveryAttempts.attemptNumber))
        .all(),
    action: (actionId) => {
      const row = db.select().from(actions).where(eq(actions.id, actionId)).get();
      if (!row) throw new Error(`no action ${actionId}`);
      return row;
    },
    published: (runId) => publications.filter((p) => p.runId === runId).map((p) => p.status),
    publishedRuns: (runId) => publications.filter((p) => p.runId === runId).map((p) => p.run),
    onRunUpdated,
    waitForStatus: (runId, status) =>
      publications.some((p) => p.runId === runId && p.status === status)
        ? Promise.resolve()
        : new Promise((resolve) => waiters.push({ runId, status, resolve })),
    engine(deps = {}) {
      const engine = createDeliveryEngine({
        store: storage.delivery,
        decrypted: createDecryptedSecrets(secretBox),
        clock,
        logger,
        config: deliveryConfig(),
        onRunUpdated,
        random: () => 0.5,
        ...deps,
      });
      engines.push(engine);
      return engine;
    },
    async close() {
      await Promise.all(engines.map((engine) => engine.stop(0)));
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A template context like the one the loader builds for an alias event. */
export function sampleContext(overrides: Partial<TemplateContext> = {}): TemplateContext {
  return {
    eventType: 'ADD_ARTIFACT_ALIAS',
    eventAuthor: 'alice',
    eventId: 'event-1',
    automationName: 'promote-to-prod',
    entityName: 'acme',
    projectName: 'vision',
    artifactCollectionName: 'resnet',
    artifactType: 'model',
    artifactVersionIndex: 3,
    alias: 'production',
    tag: null,
    metadata: { accuracy: 0.93 },
    ...overrides,
  };
}

/** A webhook delivery request to `url` with no secrets, for calling `deliver` directly. */
export function webhookRequest(
  url: string,
  overrides: Partial<Omit<DeliveryRequest, 'target'>> & { target?: Partial<WebhookTarget> } = {},
): DeliveryRequest {
  const { target, ...rest } = overrides;
  return {
    webhookId: 'run-test-1',
    content: { payloadTemplate: null, slackTitle: null, slackMessage: null, slackSeverity: null },
    context: sampleContext(),
    collectionOwner: 'PROJECT',
    secrets: new Map(),
    ...rest,
    target: {
      kind: 'WEBHOOK',
      url,
      accessToken: null,
      signingSecret: null,
      headers: {},
      ...target,
    },
  };
}

/**
 * Registers hooks giving each test a fresh fixture and a fresh receiver, both disposed after
 * it. Read `fx` and `receiver` inside tests, not at module level.
 */
export function useDeliveryTestbed(): {
  readonly fx: DeliveryFixture;
  readonly receiver: Receiver;
} {
  let fx: DeliveryFixture | undefined;
  let receiver: Receiver | undefined;
  beforeEach(async () => {
    fx = createDeliveryFixture();
    receiver = await startReceiver();
  });
  afterEach(async () => {
    await fx?.close();
    await receiver?.close();
  });
  const current = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useDeliveryTestbed values exist only inside tests');
    return value;
  };
  return {
    get fx() {
      return current(fx);
    },
    get receiver() {
      return current(receiver);
    },
  };
}

/** A promise and the function that resolves it, for a test to hold something open. */
export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
