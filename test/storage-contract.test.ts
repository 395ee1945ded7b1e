import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { newId } from '../src/ids.js';
import type { AuditRecord } from '../src/storage/audit.js';
import type { AutomationRecord, NewAction } from '../src/storage/config.js';
import { PASS_OVER_HEAD } from '../src/storage/delivery.js';
import { DuplicateError } from '../src/storage/errors.js';
import type { NewArtifactEvent } from '../src/storage/events.js';
import { openPgStorage } from '../src/storage/pg/storage.js';
import { openSqliteStorage } from '../src/storage/sqlite/storage.js';
import type { Storage } from '../src/storage/storage.js';
import { createTestDatabase, postgresForTests, type TestDatabase } from './support/postgres.js';
import { missingService } from './support/services.js';

/**
 * One engine under test: `open` gives a storage layer on a fresh, migrated database; `second`
 * another one on that same database with its own connections (another server sharing it).
 */
interface Engine {
  open(): Promise<Storage>;
  second(): Promise<Storage>;
  dispose(): Promise<void>;
}

function sqliteEngine(): Engine {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-contract-'));
  const opened: Storage[] = [];
  let file = '';
  const connect = async () => {
    const storage = openSqliteStorage(file);
    opened.push(storage);
    return storage;
  };
  return {
    open: () => {
      file = join(dir, `${newId()}.db`);
      return connect();
    },
    second: connect,
    dispose: async () => {
      for (const storage of opened) await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresEngine(server: string): Engine {
  const databases: TestDatabase[] = [];
  const opened: Storage[] = [];
  const connect = async () => {
    // Its own pool: a second server's connections.
    const storage = await openPgStorage(databases.at(-1)!.url, { poolSize: 4 });
    opened.push(storage);
    return storage;
  };
  return {
    open: async () => {
      databases.push(await createTestDatabase(server));
      return connect();
    },
    second: connect,
    dispose: async () => {
      for (const storage of opened) await storage.close();
      for (const database of databases) await database.drop();
    },
  };
}

const postgres = await postgresForTests();
afterAll(async () => {
  if (postgres.url !== undefined) await postgres.stop();
});
if (postgres.url === undefined) {
  missingService('PostgreSQL (the PostgreSQL half of the storage contract)', postgres.why);
}
const unreachable = postgres.url === undefined ? postgres.why : null;

const engines: [string, () => Engine][] = [
  ['SQLite', sqliteEngine],
  ['PostgreSQL', () => postgresEngine(postgres.url!)],
];

const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (offsetMs: number) => new Date(T0 + offsetMs);
const sha = (key: string) => createHash('sha256').update(key).digest('hex');

function audit(entityId: string | null, action: AuditRecord['action']): AuditRecord {
  return { entityId, actorId: null, action, targetType: 'Test', targetId: null };
}

describe.each(engines)('storage contract on %s', (engineName, makeEngine) => {
  const skip = engineName === 'PostgreSQL' && unreachable !== null;
  const engine = skip ? null : makeEngine();
  let storage: Storage;
  /** The bootstrapped admin and their entity. */
  let admin: { userId: string; entityId: string; key: string };

  // Each case on a database of its own: claims take every due run in the database.
  beforeEach(async () => {
    if (!engine) return;
    storage = await engine.open();
    const key = `trl_${newId()}`;
    const userId = newId();
    const input = {
      user: { id: userId, name: 'admin', kind: 'USER' as const },
      entity: { id: newId(), name: 'default' },
      key: { id: newId(), userId, name: 'bootstrap', prefix: key.slice(0, 8), hash: sha(key) },
    };
    const result = await storage.users.bootstrap(input, [], at(0));
    if (result === null) throw new Error('bootstrap found an account in a fresh database');
    // Once an account exists, a bootstrap writes nothing.
    expect(await storage.users.bootstrap(input, [], at(0))).toBeNull();
    admin = { userId, entityId: result.entity.id, key };
  });

  afterAll(async () => {
    await engine?.dispose();
  });

  const test = skip ? it.skip : it;

  test('finds an entity, project or registry another instance created after a miss here', async () => {
    // Found rows are kept in memory (they never change); a miss must not be, or a name created
    // on another instance would stay unknown here.
    const other = await engine!.second();
    expect(await storage.entities.findEntityByName('late')).toBeNull();
    expect(await storage.containers.findContainerByName('project', admin.entityId, 'p')).toBeNull();
    expect(
      await storage.containers.findContainerByName('registry', admin.entityId, 'r'),
    ).toBeNull();
    const late = await other.entities.createEntity(
      { id: newId(), name: 'late' },
      admin.userId,
      [audit(null, 'entity.created')],
      at(0),
    );
    for (const kind of ['project', 'registry'] as const) {
      await other.containers.createContainer(kind, {
        id: newId(),
        entityId: admin.entityId,
        name: kind === 'project' ? 'p' : 'r',
        description: null,
      });
    }
    expect(await storage.entities.findEntityByName('late')).toEqual(late);
    expect(await storage.entities.findEntity(late.id)).toEqual(late);
    const project = await storage.containers.findContainerByName('project', admin.entityId, 'p');
    expect(project?.name).toBe('p');
    expect(await storage.containers.findContainer('project', project!.id)).toEqual(project);
    expect(await storage.containers.findContainer('registry', project!.id)).toBeNull();
    expect(
      (await storage.containers.findContainerByName('registry', admin.entityId, 'r'))?.name,
    ).toBe('r');
  });

  async function newUser(name: string, entityId: string, role: 'ADMIN' | 'MEMBER' | 'VIEWER') {
    const id = newId();
    const key = `trl_${newId()}`;
    await storage.users.createUser(
      {
        user: { id, name, kind: 'USER' },
        membership: { entityId, role },
        key: { id: newId(), userId: id, name: 'k', prefix: key.slice(0, 8), hash: sha(key) },
      },
      [audit(entityId, 'user.created')],
      at(0),
    );
    return { id, key };
  }

  async function newEntity(name: string) {
    const entity = await storage.entities.createEntity(
      { id: newId(), name },
      admin.userId,
      [audit(null, 'entity.created')],
      at(0),
    );
    return entity.id;
  }

  async function newSecret(entityId: string, name: string) {
    const secret = await storage.secrets.create(
      {
        id: newId(),
        entityId,
        name,
        ciphertext: `sealed:${name}`,
        createdAt: at(0),
        createdById: null,
      },
      audit(entityId, 'secret.created'),
    );
    return secret.id;
  }

  async function newWebhook(entityId: string, name: string) {
    const signingSecretId = await newSecret(entityId, `${name.toUpperCase()}_SIGNING`);
    const action: NewAction = {
      id: newId(),
      entityId,
      kind: 'WEBHOOK',
      name,
      url: 'https://example.com/hook',
      accessTokenSecretId: null,
      signingSecretId,
      headers: { 'x-team': 'ml' },
      channel: null,
      slackUrlSecretId: null,
      createdAt: at(0),
      createdById: null,
    };
    return (await storage.actions.create(action, audit(entityId, 'action.created'))).id;
  }

  function automationOf(
    entityId: string,
    actionId: string,
    scopeId: string,
    overrides: Partial<AutomationRecord> = {},
  ): AutomationRecord {
    return {
      id: newId(),
      entityId,
      name: `auto-${newId()}`,
      description: null,
      enabled: true,
      eventType: 'CREATE_ARTIFACT',
      scopeType: 'PROJECT',
      scopeId,
      filterCollectionName: null,
      filterArtifactType: null,
      filterAliasPattern: null,
      filterTagPattern: null,
      filterRunNamePattern: null,
      filterRunReportedById: null,
      runCondition: null,
      cooldownSeconds: null,
      actionId,
      payloadTemplate: null,
      slackTitle: null,
      slackMessage: null,
      slackSeverity: null,
      createdAt: at(0),
      createdById: null,
      updatedAt: at(0),
      ...overrides,
    };
  }

  /** An entity with a project, a webhook action and an automation on the project. */
  async function watchedProject(name: string) {
    const entityId = await newEntity(name);
    const project = await storage.containers.createContainer('project', {
      id: newId(),
      entityId,
      name: 'p',
      description: null,
    });
    const actionId = await newWebhook(entityId, 'hook');
    const automation = await storage.automations.create(
      automationOf(entityId, actionId, project.id),
      [],
      audit(entityId, 'automation.created'),
    );
    return { entityId, projectId: project.id, actionId, automationId: automation.id };
  }

  function eventIn(
    scope: { entityId: string; projectId: string },
    overrides: Partial<NewArtifactEvent> = {},
  ): NewArtifactEvent {
    return {
      entityId: scope.entityId,
      eventType: 'CREATE_ARTIFACT',
      owner: { kind: 'project', id: scope.projectId },
      collectionName: 'model',
      artifactType: 'model',
      versionIndex: 0,
      alias: null,
      tag: null,
      author: 'ci',
      metadata: { accuracy: 0.9 },
      idempotencyKey: null,
      createdById: admin.userId,
      createdAt: at(0),
      ...overrides,
    };
  }

  const claim = (s: Storage, owner: string, nowMs: number, limit = 10, leaseMs = 60_000) =>
    s.delivery.claimDue({
      owner,
      now: at(nowMs),
      leaseExpiresAt: at(nowMs + leaseMs),
      limit,
      passOver: [],
    });

  test('authenticates an unrevoked key and stops once it is revoked', async () => {
    const found = await storage.users.authenticateKey(sha(admin.key));
    expect(found?.user.id).toBe(admin.userId);
    const key = `trl_${newId()}`;
    const issued = await storage.users.issueApiKey(
      { id: newId(), userId: admin.userId, name: 'ci', prefix: key.slice(0, 8), hash: sha(key) },
      null,
      { actorId: admin.userId, action: 'apiKey.created', targetType: 'ApiKey', targetId: null },
      at(1),
    );
    const authenticated = await storage.users.authenticateKey(sha(key));
    expect(authenticated?.user).toMatchObject({ id: admin.userId, name: 'admin', kind: 'USER' });
    expect(authenticated?.key.id).toBe(issued?.id);
    expect(authenticated?.key.createdAt).toBeInstanceOf(Date);
    const revoked = await storage.users.revokeApiKey(
      issued!.id,
      { actorId: admin.userId, action: 'apiKey.revoked', targetType: 'ApiKey', targetId: null },
      at(2),
    );
    expect(revoked).toMatchObject({ revoked: true, key: { revokedAt: at(2) } });
    expect(await storage.users.authenticateKey(sha(key))).toBeNull();
    expect(
      (
        await storage.users.revokeApiKey(
          issued!.id,
          { actorId: null, action: 'apiKey.revoked', targetType: 'ApiKey', targetId: null },
          at(3),
        )
      )?.revoked,
    ).toBe(false);
    expect(await storage.users.hasUsers()).toBe(true);
  });

  test('keeps an admin in every entity, also when two admins are demoted at once', async () => {
    const entityId = await newEntity('admins');
    const other = await newUser('other-admin', entityId, 'ADMIN');
    const entry = audit(entityId, 'member.roleChanged');
    // Two admins (the bootstrapped one and `other`): demoting both at once leaves exactly one.
    const outcomes = await Promise.all([
      storage.entities.changeRole(
        entityId,
        admin.userId,
        { from: 'ADMIN', to: 'MEMBER' },
        entry,
        at(1),
      ),
      storage.entities.changeRole(
        entityId,
        other.id,
        { from: 'ADMIN', to: 'MEMBER' },
        entry,
        at(1),
      ),
    ]);
    expect(outcomes.map((o) => o.outcome).sort()).toEqual(['done', 'lastAdmin']);
    const remaining = (
      await storage.entities.pageMembers(entityId, {
        after: null,
        before: null,
        backward: false,
        limit: 10,
      })
    ).filter((m) => m.membership.role === 'ADMIN');
    expect(remaining).toHaveLength(1);
    const last = remaining[0]!.user.id;
    expect(
      (
        await storage.entities.removeMember(
          entityId,
          last,
          'ADMIN',
          audit(entityId, 'member.removed'),
          at(2),
        )
      ).outcome,
    ).toBe('lastAdmin');
    const demoted = last === admin.userId ? other.id : admin.userId;
    expect(
      await storage.entities.changeRole(
        entityId,
        demoted,
        { from: 'ADMIN', to: 'VIEWER' },
        entry,
        at(3),
      ),
    ).toMatchObject({ outcome: 'stale', membership: { role: 'MEMBER' } });
    expect(
      (
        await storage.entities.removeMember(
          entityId,
          demoted,
          'MEMBER',
          audit(entityId, 'member.removed'),
          at(4),
        )
      ).outcome,
    ).toBe('done');
    expect(
      (
        await storage.entities.removeMember(
          entityId,
          demoted,
          'MEMBER',
          audit(entityId, 'member.removed'),
          at(5),
        )
      ).outcome,
    ).toBe('notMember');
    expect(await storage.entities.countMembers(entityId)).toBe(1);
  });

  test('refuses repeated unique values with a DuplicateError naming the field', async () => {
    await newEntity('dupes');
    await expect(newEntity('dupes')).rejects.toEqual(new DuplicateError('name'));
    const entityId = (await storage.entities.findEntityByName('dupes'))!.id;
    await expect(
      storage.entities.addMember(
        { entityId, userId: admin.userId, role: 'MEMBER' },
        null,
        audit(entityId, 'member.added'),
        at(1),
      ),
    ).rejects.toMatchObject({ name: 'DuplicateError', what: 'member' });
    await newSecret(entityId, 'TOKEN');
    await expect(newSecret(entityId, 'TOKEN')).rejects.toMatchObject({ what: 'name' });
    await storage.containers.createContainer('project', {
      id: newId(),
      entityId,
      name: 'p',
      description: null,
    });
    await expect(
      storage.containers.createContainer('project', {
        id: newId(),
        entityId,
        name: 'p',
        description: null,
      }),
    ).rejects.toMatchObject({ what: 'name' });
    await newWebhook(entityId, 'hook');
    await expect(newWebhook(entityId, 'hook')).rejects.toBeInstanceOf(DuplicateError);
    // Nothing of a refused write is left: the failed webhook's new secret name is free again.
    expect(await storage.secrets.countSecrets(entityId)).toBe(2);
  });

  test('records an event with its runs, replays a repeated key, and reports a type mismatch', async () => {
    const scope = await watchedProject('events');
    const seen: string[] = [];
    const recorded = await storage.events.recordEvent(
      eventIn(scope, { idempotencyKey: 'k1' }),
      (candidate) => {
        seen.push(candidate.id);
        return true;
      },
    );
    expect(seen).toEqual([scope.automationId]);
    if (recorded.outcome !== 'recorded') throw new Error(recorded.outcome);
    expect(recorded.runs).toHaveLength(1);
    expect(recorded.runs[0]).toMatchObject({ status: 'QUEUED', automationId: scope.automationId });
    expect(await storage.events.getEvent(recorded.event.id)).toMatchObject({
      metadata: { accuracy: 0.9 },
      createdAt: at(0),
      idempotencyKey: 'k1',
    });
    expect(await storage.runs.getRun(recorded.runs[0]!.id)).toEqual(recorded.runs[0]);
    // The same key twice at once: one event, and both calls answer with it.
    const [a, b] = await Promise.all([
      storage.events.recordEvent(
        eventIn(scope, { idempotencyKey: 'k2', metadata: null }),
        () => true,
      ),
      storage.events.recordEvent(
        eventIn(scope, { idempotencyKey: 'k2', metadata: null }),
        () => true,
      ),
    ]);
    if (a.outcome === 'artifactTypeMismatch' || b.outcome === 'artifactTypeMismatch')
      throw new Error();
    expect([a.outcome, b.outcome].sort()).toEqual(['recorded', 'replayed']);
    expect(a.event.id).toBe(b.event.id);
    expect(a.runs.map((r) => r.id)).toEqual(b.runs.map((r) => r.id));
    expect((await storage.events.getEvent(a.event.id))?.metadata).toBeNull();
    const replay = await storage.events.recordEvent(
      eventIn(scope, { idempotencyKey: 'k1' }),
      () => true,
    );
    expect(replay).toMatchObject({ outcome: 'replayed', event: { id: recorded.event.id } });
    expect(
      await storage.events.recordEvent(eventIn(scope, { artifactType: 'dataset' }), () => true),
    ).toEqual({
      outcome: 'artifactTypeMismatch',
      storedArtifactType: 'model',
    });
    expect(await storage.events.countEvents({ entityId: scope.entityId })).toBe(2);
  });

  test('offers as candidates only enabled automations watching the type on the scope', async () => {
    const scope = await watchedProject('candidates');
    const collection = (await storage.events.recordEvent(eventIn(scope), () => false)) as {
      event: { collectionId: string };
    };
    const onCollection = await storage.automations.create(
      automationOf(scope.entityId, scope.actionId, collection.event.collectionId, {
        scopeType: 'PROJECT_COLLECTION',
        createdAt: at(1),
      }),
      [],
      audit(scope.entityId, 'automation.created'),
    );
    const onEntity = await storage.automations.create(
      automationOf(scope.entityId, scope.actionId, scope.entityId, {
        scopeType: 'ENTITY',
        createdAt: at(2),
      }),
      [],
      audit(scope.entityId, 'automation.created'),
    );
    await storage.automations.create(
      automationOf(scope.entityId, scope.actionId, scope.projectId, { enabled: false }),
      [],
      audit(scope.entityId, 'automation.created'),
    );
    await storage.automations.create(
      automationOf(scope.entityId, scope.actionId, scope.projectId, { eventType: 'LINK_ARTIFACT' }),
      [],
      audit(scope.entityId, 'automation.created'),
    );
    const seen: string[] = [];
    const result = await storage.events.recordEvent(eventIn(scope), (candidate) => {
      seen.push(candidate.id);
      return candidate.id !== onEntity.id;
    });
    expect(seen).toEqual([scope.automationId, onCollection.id, onEntity.id]);
    expect(
      (result as { runs: { automationId: string }[] }).runs.map((r) => r.automationId),
    ).toEqual([scope.automationId, onCollection.id]);
  });

  test('two servers claiming at once never take the same run', async () => {
    const scope = await watchedProject('claims');
    const runIds = new Set<string>();
    for (let i = 0; i < 40; i += 1) {
      const result = await storage.events.recordEvent(
        eventIn(scope, { createdAt: at(i) }),
        () => true,
      );
      for (const run of (result as { runs: { id: string }[] }).runs) runIds.add(run.id);
    }
    const other = await engine!.second();
    const claimed: string[] = [];
    await Promise.all(
      (['w1', 'w2'] as const).map(async (owner, i) => {
        const s = i === 0 ? storage : other;
        for (;;) {
          const batch = await claim(s, owner, 1_000, 3);
          if (batch.length === 0) return;
          claimed.push(...batch.map((run) => run.id));
        }
      }),
    );
    expect(claimed).toHaveLength(runIds.size);
    expect(new Set(claimed)).toEqual(runIds);
  });

  test('writes an attempt and the run state together, under the lease', async () => {
    const scope = await watchedProject('attempts');
    await storage.events.recordEvent(eventIn(scope), () => true);
    const [claimed] = await claim(storage, 'w1', 1_000);
    expect(claimed).toMatchObject({
      run: { attemptCount: 0 },
      openAttempts: 0,
      event: { entityName: 'attempts', projectName: 'p', metadata: { accuracy: 0.9 } },
      automation: { id: scope.automationId, enabled: true },
      action: { id: scope.actionId, kind: 'WEBHOOK', enabled: true, headers: { 'x-team': 'ml' } },
    });
    expect(claimed!.secrets.map((s) => s.name)).toEqual(['HOOK_SIGNING']);
    // Each write returns the run as it left it, as a read would find it: the engine publishes it.
    const stored = () => storage.runs.getRun(claimed!.id);
    expect(claimed!.run).toEqual(await stored());
    expect(claimed!.run).toMatchObject({ status: 'RUNNING', leaseOwner: 'w1', attemptCount: 0 });
    const lease = { runId: claimed!.id, owner: 'w1' };
    expect(await storage.delivery.startAttempt({ ...lease, owner: 'w2' }, at(1_001))).toBeNull();
    const started = await storage.delivery.startAttempt(lease, at(1_001));
    expect(started).toMatchObject({ attemptNumber: 1, run: { attemptCount: 1 } });
    expect(started!.run).toEqual(await stored());
    expect(started!.run).toMatchObject({ attemptCount: 1, updatedAt: at(1_001) });
    const outcome = {
      durationMs: 12,
      statusCode: 500,
      errorClass: null,
      errorMessage: null,
      responseBody: 'no',
    };
    const retry = { status: 'RETRYING' as const, result: 'HTTP 500', nextAttemptAt: at(5_000) };
    expect(
      await storage.delivery.finishAttempt(
        { ...lease, owner: 'w2' },
        started!.id,
        outcome,
        retry,
        at(1_013),
      ),
    ).toBeNull();
    const retrying = await storage.delivery.finishAttempt(
      lease,
      started!.id,
      outcome,
      retry,
      at(1_013),
      {
        actionId: scope.actionId,
        reason: 'gone',
        audit: audit(scope.entityId, 'action.disabled'),
      },
    );
    expect(retrying).toEqual(await stored());
    expect(retrying).toMatchObject({
      status: 'RETRYING',
      attemptCount: 1,
      nextAttemptAt: at(5_000),
      leaseOwner: null,
      finishedAt: null,
    });
    expect(await storage.runs.listAttempts(lease.runId)).toMatchObject([
      {
        attemptNumber: 1,
        startedAt: at(1_001),
        durationMs: 12,
        statusCode: 500,
        responseBody: 'no',
      },
    ]);
    expect(await storage.actions.find(scope.actionId)).toMatchObject({
      enabled: false,
      disabledReason: 'gone',
    });
    expect(
      await storage.audit.countAuditEntries(scope.entityId, { action: 'action.disabled' }),
    ).toBe(1);
    expect(await storage.runs.deliveryActivity(scope.entityId, at(1_000), 10)).toEqual({
      attempts: [{ startedAt: at(1_001), durationMs: 12, statusCode: 500, errorClass: null }],
      truncated: false,
      backlog: { QUEUED: 0, RUNNING: 0, RETRYING: 1 },
    });
    expect(await storage.runs.deliveryActivity(scope.entityId, at(1_000), 0)).toMatchObject({
      attempts: [],
      truncated: true,
    });
    expect((await storage.runs.deliveryActivity(scope.entityId, at(1_002), 10)).attempts).toEqual(
      [],
    );
    expect(await claim(storage, 'w1', 4_999)).toEqual([]);
    const depth = await storage.delivery.queueDepth(at(4_999));
    expect(depth).toMatchObject({ byStatus: { RETRYING: 1 }, scheduled: 1, dueNow: 0 });
  });

  test('a claim carries out its choices: starts attempts, keeps runs and gives runs back', async () => {
    const scope = await watchedProject('choices');
    for (let i = 0; i < 3; i++) {
      await storage.events.recordEvent(
        eventIn(scope, { versionIndex: i, createdAt: at(i) }),
        () => true,
      );
    }
    const asked: number[] = [];
    const choices = ['start', 'keep', 'handBack'] as const;
    const claimed = await storage.delivery.claimDue(
      { owner: 'w1', now: at(1_000), leaseExpiresAt: at(61_000), limit: 10, passOver: [] },
      (run) => {
        asked.push(run.event!.versionIndex);
        return choices[run.event!.versionIndex]!;
      },
    );
    expect(asked).toEqual([0, 1, 2]);
    expect(claimed.map((run) => run.event!.versionIndex)).toEqual([0, 1]);
    const [started, kept] = claimed;
    expect(started!.attempt).toMatchObject({ attemptNumber: 1, startedAt: at(1_000) });
    expect(started!.attempt!.run).toMatchObject({ status: 'RUNNING', attemptCount: 1 });
    expect(started!.attempt!.run).toEqual(await storage.runs.getRun(started!.id));
    expect(await storage.runs.listAttempts(started!.id)).toMatchObject([
      { id: started!.attempt!.id, attemptNumber: 1, startedAt: at(1_000), durationMs: null },
    ]);
    expect(kept!.attempt).toBeUndefined();
    expect(kept!.run).toEqual(await storage.runs.getRun(kept!.id));
    expect(kept!.run).toMatchObject({ status: 'RUNNING', leaseOwner: 'w1', attemptCount: 0 });
    expect(await storage.runs.listAttempts(kept!.id)).toEqual([]);
    // The run given back is due as before, for anyone.
    const [again] = await claim(storage, 'w2', 1_001);
    expect(again).toMatchObject({ event: { versionIndex: 2 }, run: { leaseOwner: 'w2' } });
    expect(await storage.delivery.queueDepth(at(1_001))).toMatchObject({
      byStatus: { QUEUED: 0, RUNNING: 3, RETRYING: 0 },
    });
  });

  test('a claim passing over actions takes the oldest runs of the others, behind any backlog', async () => {
    const busy = await watchedProject('busy');
    const other = await watchedProject('other');
    const third = await watchedProject('third');
    const record = async (scope: typeof busy, createdAtMs: number) => {
      const recorded = await storage.events.recordEvent(
        eventIn(scope, { versionIndex: createdAtMs, createdAt: at(createdAtMs) }),
        () => true,
      );
      if (recorded.outcome !== 'recorded') throw new Error(`not recorded: ${recorded.outcome}`);
      return recorded.runs[0]!.id;
    };
    // The busy destination's backlog is longer than the head of the line a claim reads in line.
    const backlog = PASS_OVER_HEAD + 20;
    const runs = new Map<number, string>();
    for (let i = 0; i < backlog; i++) {
      if (i === 100) runs.set(100, await record(other, 100));
      await record(busy, i);
    }
    for (const [scope, createdAtMs] of [
      [other, backlog + 10],
      [third, backlog + 5],
      [other, backlog + 1],
      [third, 5_000],
    ] as const) {
      runs.set(createdAtMs, await record(scope, createdAtMs));
    }
    const passing = (passOver: string[], limit: number) =>
      storage.delivery.claimDue({
        owner: 'w1',
        now: at(1_000),
        leaseExpiresAt: at(61_000),
        limit,
        passOver,
      });
    const taken = async (passOver: string[], limit: number) =>
      (await passing(passOver, limit)).map((run) => run.id);
    // One in the head of the line, the next behind the whole backlog.
    expect(await taken([busy.actionId], 2)).toEqual([runs.get(100), runs.get(backlog + 1)]);
    // Oldest first across the other actions; the run due later stays.
    expect(await taken([busy.actionId], 10)).toEqual([
      runs.get(backlog + 5),
      runs.get(backlog + 10),
    ]);
    expect(await taken([busy.actionId, other.actionId, third.actionId], 10)).toEqual([]);
    expect(await taken([busy.actionId], 10)).toEqual([]);
    // The backlog itself is still in line, oldest first.
    const [first] = await passing([other.actionId], 1);
    expect(first?.event?.versionIndex).toBe(0);
  });

  test('a release and a run ended without an attempt return the run as they left it', async () => {
    const scope = await watchedProject('returns');
    await storage.events.recordEvent(eventIn(scope), () => true);
    const [claimed] = await claim(storage, 'w1', 1_000);
    const lease = { runId: claimed!.id, owner: 'w1' };
    const started = await storage.delivery.startAttempt(lease, at(1_001));
    const aborted = {
      durationMs: 3,
      statusCode: null,
      errorClass: 'ABORTED',
      errorMessage: 'stopping',
      responseBody: null,
    };
    expect(
      await storage.delivery.releaseAttempt(
        { ...lease, owner: 'w2' },
        started!.id,
        aborted,
        'again',
        at(1_002),
      ),
    ).toBeNull();
    const released = await storage.delivery.releaseAttempt(
      lease,
      started!.id,
      aborted,
      'again',
      at(1_002),
    );
    expect(released).toEqual(await storage.runs.getRun(lease.runId));
    expect(released).toMatchObject({ status: 'QUEUED', attemptCount: 0, result: 'again' });
    const [again] = await claim(storage, 'w1', 1_003);
    expect(again!.run).toMatchObject({ id: lease.runId, status: 'RUNNING', result: 'again' });
    const skip = { status: 'SKIPPED' as const, result: 'automation disabled' };
    expect(await storage.delivery.finishRun({ ...lease, owner: 'w2' }, skip, at(1_004))).toBeNull();
    const skipped = await storage.delivery.finishRun(lease, skip, at(1_004));
    expect(skipped).toEqual(await storage.runs.getRun(lease.runId));
    expect(skipped).toMatchObject({ status: 'SKIPPED', finishedAt: at(1_004), leaseOwner: null });
  });

  test('takes a run again once its lease expired and drops the first owner’s late writes', async () => {
    const scope = await watchedProject('leases');
    await storage.events.recordEvent(eventIn(scope), () => true);
    const [first] = await claim(storage, 'w1', 1_000, 10, 1_000);
    const started = await storage.delivery.startAttempt(
      { runId: first!.id, owner: 'w1' },
      at(1_001),
    );
    expect(await claim(storage, 'w2', 1_999)).toEqual([]);
    expect((await storage.delivery.queueDepth(at(2_001))).leaseExpired).toBe(1);
    const [again] = await claim(storage, 'w2', 2_001);
    expect(again).toMatchObject({ id: first!.id, run: { attemptCount: 1 }, openAttempts: 1 });
    const outcome = {
      durationMs: 5,
      statusCode: 200,
      errorClass: null,
      errorMessage: null,
      responseBody: null,
    };
    const done = { status: 'SUCCEEDED' as const, result: 'HTTP 200', nextAttemptAt: null };
    expect(
      await storage.delivery.finishAttempt(
        { runId: first!.id, owner: 'w1' },
        started!.id,
        outcome,
        done,
        at(2_002),
      ),
    ).toBeNull();
    const second = await storage.delivery.startAttempt(
      { runId: first!.id, owner: 'w2' },
      at(2_003),
    );
    expect(second).toMatchObject({ attemptNumber: 2, run: { attemptCount: 2 } });
    const succeeded = await storage.delivery.finishAttempt(
      { runId: first!.id, owner: 'w2' },
      second!.id,
      outcome,
      done,
      at(2_004),
    );
    expect(succeeded).toEqual(await storage.runs.getRun(first!.id));
    expect(succeeded).toMatchObject({ status: 'SUCCEEDED', attemptCount: 2, result: 'HTTP 200' });
    const attempts = await storage.runs.listAttempts(first!.id);
    expect(attempts.map((a) => [a.attemptNumber, a.errorClass, a.statusCode])).toEqual([
      [1, 'INTERRUPTED', null],
      [2, null, 200],
    ]);
    expect(await storage.runs.getRun(first!.id)).toMatchObject({
      status: 'SUCCEEDED',
      finishedAt: at(2_004),
    });
    expect(await storage.runs.requeueRun(first!.id, at(3_000), 'again')).toMatchObject({
      status: 'QUEUED',
      attemptCount: 0,
    });
    expect(await storage.runs.requeueRun(first!.id, at(3_000), 'again')).toBeNull();
  });

  test('records training run reports, their windows, peers and fired runs, claimed with their run event', async () => {
    const scope = await watchedProject('training');
    const zscore = await storage.automations.create(
      automationOf(scope.entityId, scope.actionId, scope.projectId, {
        eventType: 'RUN_METRIC_ZSCORE',
        runCondition: { kind: 'METRIC_ZSCORE', metric: 'loss', runs: 5, threshold: 2 } as never,
        cooldownSeconds: 0,
      }),
      [],
      audit(scope.entityId, 'automation.created'),
    );
    const state = (name: string, key: string | null, now: number) =>
      storage.trainingRuns.recordState(
        {
          entityId: scope.entityId,
          projectId: scope.projectId,
          runName: name,
          state: 'RUNNING',
          idempotencyKey: key,
          reportedById: admin.userId,
          now: at(now),
        },
        () => [],
      );
    const first = await state('peer', null, 1);
    expect(first).toMatchObject({ outcome: 'recorded', run: { name: 'peer', state: 'RUNNING' } });
    const metrics = (
      name: string,
      points: { step: number; value: number }[],
      now: number,
      fire: boolean,
    ) =>
      storage.trainingRuns.recordMetrics(
        {
          entityId: scope.entityId,
          projectId: scope.projectId,
          runName: name,
          points: points.map((p) => ({ ...p, name: 'loss' })),
          idempotencyKey: null,
          now: at(now),
        },
        (view) => {
          const window = view.windows.get('loss')!;
          for (const p of points) {
            window.lastStep = p.step;
            window.count += 1;
            window.recent.push(p.value);
          }
          const peers = view.peerLatest('loss', 5);
          const watcher = view.watchers.find((w) => w.id === zscore.id)!;
          return {
            acceptedPoints: points.length,
            firings: fire
              ? [
                  {
                    automation: watcher,
                    metricName: 'loss',
                    metricValues: [...peers, 9],
                    condition: 'z > 2',
                  },
                ]
              : [],
          };
        },
      );
    await metrics(
      'peer',
      [
        { step: 1, value: 0.5 },
        { step: 2, value: 0.25 },
      ],
      2,
      false,
    );
    expect(
      await storage.trainingRuns.listMetrics(first.outcome === 'missingRun' ? '' : first.run.id),
    ).toMatchObject([
      { name: 'loss', lastStep: 2, count: 2, recent: [0.5, 0.25], updatedAt: at(2) },
    ]);
    expect(await metrics('absent', [{ step: 1, value: 1 }], 3, false)).toEqual({
      outcome: 'missingRun',
    });
    await state('outlier', 'start-outlier', 4);
    const replay = await state('outlier', 'start-outlier', 5);
    expect(replay.outcome).toBe('replayed');
    const fired = await metrics('outlier', [{ step: 1, value: 9 }], 6, true);
    if (fired.outcome === 'missingRun') throw new Error('missing');
    expect(fired.runs).toHaveLength(1);
    expect(fired.runs[0]).toMatchObject({
      eventId: null,
      automationId: zscore.id,
      status: 'QUEUED',
    });
    expect(await storage.trainingRuns.countRuns(scope.projectId)).toBe(2);
    const listed = await storage.trainingRuns.pageRuns(scope.projectId, {
      after: null,
      before: null,
      backward: false,
      limit: 10,
    });
    expect(listed.map((r) => r.name)).toEqual(['outlier', 'peer']);
    const [claimed] = await claim(storage, 'w1', 10_000);
    expect(claimed).toMatchObject({
      id: fired.runs[0]!.id,
      event: null,
      runEvent: {
        runName: 'outlier',
        metricName: 'loss',
        metricValues: [0.25, 9],
        condition: 'z > 2',
        entityName: 'training',
        projectName: 'p',
        reportedBy: 'admin',
      },
    });
    const runEvent = await storage.trainingRuns.getRunEvent(fired.runs[0]!.runEventId!);
    expect(runEvent).toMatchObject({
      eventType: 'RUN_METRIC_ZSCORE',
      runState: 'RUNNING',
      metricValues: [0.25, 9],
    });
    expect(await storage.runs.countRuns({ kind: 'trainingRun', id: fired.run.id }, {})).toBe(1);
  });

  test('pages runs with filters, counting them all', async () => {
    const scope = await watchedProject('history');
    const ids: string[] = [];
    for (let i = 0; i < 7; i += 1) {
      const result = await storage.events.recordEvent(
        eventIn(scope, { createdAt: at(i * 1_000) }),
        () => true,
      );
      ids.push((result as { runs: { id: string }[] }).runs[0]!.id);
    }
    // Finish the two oldest runs.
    for (const owner of ['a', 'b']) {
      const [run] = await claim(storage, owner, 100_000, 1);
      await storage.delivery.finishRun(
        { runId: run!.id, owner },
        { status: 'SKIPPED', result: 'x' },
        at(100_001),
      );
    }
    const owner = { kind: 'entity' as const, id: scope.entityId };
    const newestFirst = [...ids].reverse();
    const page = (filter = {}, after: (string | number)[] | null = null, limit = 3) =>
      storage.runs.pageRuns(owner, filter, {
        after: after && { position: after, inclusive: false },
        before: null,
        backward: false,
        limit,
      });
    const first = await page();
    expect(first.map((r) => r.id)).toEqual(newestFirst.slice(0, 3));
    const last = first.at(-1)!;
    const next = await page({}, [last.createdAt.getTime(), last.id]);
    expect(next.map((r) => r.id)).toEqual(newestFirst.slice(3, 6));
    expect(await storage.runs.countRuns(owner, {})).toBe(7);
    const skipped = { statuses: ['SKIPPED' as const] };
    expect((await page(skipped, null, 10)).map((r) => r.id)).toEqual([ids[1], ids[0]]);
    expect(await storage.runs.countRuns(owner, skipped)).toBe(2);
    const window = {
      createdAfter: at(2_000),
      createdBefore: at(4_000),
      statuses: ['QUEUED' as const],
    };
    expect((await page(window, null, 10)).map((r) => r.id)).toEqual([ids[4], ids[3], ids[2]]);
    expect(await storage.runs.countRuns(owner, window)).toBe(3);
    const byAutomation = { automationId: scope.automationId };
    expect(
      await storage.runs.countRuns({ kind: 'project', id: scope.projectId }, byAutomation),
    ).toBe(7);
    expect(await storage.runs.countRuns(owner, { automationId: newId() })).toBe(0);
  });

  test('creates, changes and deletes secrets, actions and automations', async () => {
    const entityId = await newEntity('config');
    const tokenId = await newSecret(entityId, 'TOKEN');
    const rotated = await storage.secrets.replaceValue(
      tokenId,
      { ciphertext: 'sealed:2', rotatedAt: at(5), rotatedById: admin.userId },
      audit(entityId, 'secret.rotated'),
    );
    expect(rotated).toMatchObject({ ciphertext: 'sealed:2', rotatedAt: at(5) });
    expect(await storage.secrets.namesIn(entityId)).toEqual(new Map([['TOKEN', tokenId]]));
    const actionId = await newWebhook(entityId, 'hook');
    const updated = await storage.actions.update(
      actionId,
      { updatedAt: at(6), accessTokenSecretId: tokenId, enabled: false, disabledReason: 'paused' },
      [audit(entityId, 'action.updated')],
    );
    expect(updated).toMatchObject({
      accessTokenSecretId: tokenId,
      enabled: false,
      updatedAt: at(6),
    });
    expect(await storage.actions.countActions(entityId, { enabled: false, kind: 'WEBHOOK' })).toBe(
      1,
    );
    expect(await storage.actions.countActions(entityId, { enabled: true })).toBe(0);
    expect(await storage.secrets.delete(tokenId, audit(entityId, 'secret.deleted'), at(7))).toEqual(
      {
        outcome: 'inUse',
        users: { actions: ['hook'], automations: [] },
      },
    );
    const project = await storage.containers.createContainer('project', {
      id: newId(),
      entityId,
      name: 'p',
      description: null,
    });
    const otherSecret = await newSecret(entityId, 'OTHER');
    const automation = await storage.automations.create(
      automationOf(entityId, actionId, project.id, { name: 'nightly' }),
      [otherSecret, otherSecret],
      audit(entityId, 'automation.created'),
    );
    expect(await storage.secrets.usersOf(otherSecret)).toEqual({
      actions: [],
      automations: ['nightly'],
    });
    const { id: _, entityId: __, createdAt: ___, createdById: ____, ...settings } = automation;
    // Changed since it was read: nothing is written.
    expect(
      await storage.automations.update(
        automation.id,
        at(1),
        { ...settings, name: 'renamed', updatedAt: at(8) },
        [],
        null,
      ),
    ).toBeUndefined();
    const renamed = await storage.automations.update(
      automation.id,
      at(0),
      { ...settings, name: 'renamed', updatedAt: at(8) },
      [],
      audit(entityId, 'automation.updated'),
    );
    expect(renamed).toMatchObject({ name: 'renamed', updatedAt: at(8) });
    expect(await storage.secrets.usersOf(otherSecret)).toEqual({ actions: [], automations: [] });
    expect(
      await storage.actions.delete(actionId, audit(entityId, 'action.deleted'), at(9)),
    ).toEqual({
      outcome: 'inUse',
      automations: ['renamed'],
    });
    expect(
      await storage.automations.countAutomations(entityId, { scopeType: 'PROJECT', enabled: true }),
    ).toBe(1);
    const listed = await storage.automations.pageAutomations(
      entityId,
      {},
      { after: null, before: null, backward: false, limit: 5 },
    );
    expect(listed.map((a) => a.id)).toEqual([automation.id]);
    expect(
      await storage.automations.delete(
        automation.id,
        audit(entityId, 'automation.deleted'),
        at(10),
      ),
    ).toBe(true);
    expect(
      await storage.automations.delete(
        automation.id,
        audit(entityId, 'automation.deleted'),
        at(10),
      ),
    ).toBe(false);
    expect(
      (await storage.actions.delete(actionId, audit(entityId, 'action.deleted'), at(11))).outcome,
    ).toBe('deleted');
    expect(
      (await storage.secrets.delete(tokenId, audit(entityId, 'secret.deleted'), at(12))).outcome,
    ).toBe('deleted');
    expect(
      (await storage.secrets.delete(tokenId, audit(entityId, 'secret.deleted'), at(12))).outcome,
    ).toBe('missing');
    const entries = await storage.audit.pageAuditEntries(
      entityId,
      {},
      { after: null, before: null, backward: false, limit: 100 },
    );
    expect(entries[0]).toMatchObject({ action: 'secret.deleted', createdAt: at(12) });
    expect(entries.every((e, i) => i === 0 || e.createdAt <= entries[i - 1]!.createdAt)).toBe(true);
    expect(await storage.audit.countAuditEntries(entityId, { since: at(9) })).toBe(3);
    const resealed = await storage.secrets.resealAll(
      (all) => new Map(all.map((s) => [s.id, `${s.ciphertext}:v2`])),
    );
    expect(resealed).toBeGreaterThan(0);
    await storage.ping();
  });
});

(unreachable === null ? describe : describe.skip)('PostgreSQL migrations', () => {
  it('are applied once when several servers start on a fresh database at once', async () => {
    const database = await createTestDatabase(postgres.url);
    const opened: Storage[] = [];
    try {
      // Without the advisory lock, the losers fail creating tables the winner created.
      opened.push(
        ...(await Promise.all([1, 2, 3].map(() => openPgStorage(database.url, { poolSize: 2 })))),
      );
      const { migrationStatus, createPool } = await import('../src/storage/pg/database.js');
      const pool = createPool(database.url, { poolSize: 1 });
      try {
        const status = await migrationStatus(pool);
        expect(status.pending).toEqual([]);
        const rows = await pool.query(
          'SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations',
        );
        expect(rows.rows[0].n).toBe(status.applied.length);
      } finally {
        await pool.end();
      }
      for (const storage of opened) await storage.ping();
    } finally {
      for (const storage of opened) await storage.close();
      await database.drop();
    }
  });
});
