import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createRegistry,
  createSecret,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';

let t: TestApp;
const clock = fakeClock();

beforeEach(async () => {
  t = await createTestApp({ clock });
  await createProject(t, 'p');
});

afterEach(async () => {
  await t.close();
});

const PAGE_ARGS = 'first: $first, after: $after, last: $last, before: $before';
const PAGE_FIELDS = (node: string) =>
  `totalCount edges { cursor node { ${node} } } pageInfo { startCursor endCursor hasNextPage hasPreviousPage }`;
const VARS = '$first: Int, $after: String, $last: Int, $before: String';

interface Page {
  totalCount: number;
  edges: { cursor: string; node: Record<string, unknown> }[];
  pageInfo: {
    startCursor: string | null;
    endCursor: string | null;
    hasNextPage: boolean;
    hasPreviousPage: boolean;
  };
}

interface PageArgs {
  first?: number | null;
  after?: string | null;
  last?: number | null;
  before?: string | null;
}

/** One connection under test: how to read a page of it, add a row, and (if it can) remove one. */
interface ListSpec {
  name: string;
  read(args: PageArgs): Promise<Page>;
  /** Adds the row numbered `i`; rows of name-sorted lists land before or after the others. */
  add(i: number): Promise<void>;
  /**
   * Removes the row of this node and says whether it could (an action in use, or the last admin,
   * stays); absent for lists whose rows are never deleted.
   */
  remove?: (node: Record<string, unknown>) => Promise<boolean>;
  /** What names a row across pages. */
  key(edge: Page['edges'][number]): string;
}

async function readPage(query: string, path: (data: never) => Page, args: PageArgs) {
  const res = await t.gql(query, { first: null, after: null, last: null, before: null, ...args });
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  return path(res.data as never);
}

function entityList(field: string, node: string, extraArgs = ''): ListSpec['read'] {
  const query = `query(${VARS}) { entity(name: "default") { ${field}(${PAGE_ARGS}${extraArgs}) { ${PAGE_FIELDS(node)} } } }`;
  return (args) =>
    readPage(query, (d: { entity: Record<string, Page> }) => d.entity[field] as Page, args);
}

/** A name that sorts before every earlier name for even `i` and after them for odd `i`. */
const interleaved = (prefix: string, i: number) =>
  `${prefix}${i % 2 === 0 ? 'a' : 'z'}${String(1000 - i).padStart(4, '0')}`;

async function hookAndAutomation(): Promise<void> {
  const { id } = await createWebhookAction(t, { name: 'hook', url: 'https://example.com/hook' });
  await createAutomation(t, {
    name: 'watch',
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'p' },
    actionId: id,
  });
}

async function specs(): Promise<ListSpec[]> {
  const byId = (edge: Page['edges'][number]) => String(edge.node.id);
  const tick = () => clock.advance(1000);
  return [
    {
      name: 'events',
      read: entityList('events', 'id'),
      add: async (i) => {
        tick();
        await emit(t, { versionIndex: i });
      },
      key: byId,
    },
    {
      name: 'triggeredRuns',
      read: entityList('triggeredRuns', 'id'),
      add: async (i) => {
        tick();
        await emit(t, { versionIndex: i });
      },
      key: byId,
    },
    {
      name: 'auditLog',
      read: entityList('auditLog', 'action targetId details'),
      // Entries of one instant: the order of writing tells them apart.
      add: async (i) => createSecret(t, `S_${i}`, 'v'),
      key: (edge) => JSON.stringify(edge.node),
    },
    {
      name: 'automations',
      read: entityList('automations', 'id'),
      add: async (i) => {
        tick();
        const action = await createWebhookAction(t, {
          name: `hook-${i}`,
          url: 'https://example.com/hook',
        });
        await createAutomation(t, {
          name: `auto-${i}`,
          eventType: 'CREATE_ARTIFACT',
          scope: { type: 'PROJECT', project: 'p' },
          actionId: action.id,
        });
      },
      remove: async (node) =>
        (
          await mutate(
            t,
            'mutation($id: ID!) { deleteAutomation(input: { id: $id }) { __typename } }',
            { id: node.id },
          )
        ).__typename === 'DeleteAutomationPayload',
      key: byId,
    },
    {
      name: 'actions',
      read: entityList('actions', 'id name'),
      add: async (i) => {
        await createWebhookAction(t, {
          name: interleaved('hook-', i),
          url: 'https://example.com/hook',
        });
      },
      remove: async (node) =>
        (
          await mutate(
            t,
            'mutation($id: ID!) { deleteAction(input: { id: $id }) { __typename } }',
            { id: node.id },
          )
        ).__typename === 'DeleteActionPayload',
      key: byId,
    },
    {
      name: 'secrets',
      read: entityList('secrets', 'id name'),
      add: async (i) => createSecret(t, interleaved('S_', i).toUpperCase(), 'v'),
      remove: async (node) =>
        (
          await mutate(
            t,
            'mutation($n: String!) { deleteSecret(input: { entity: "default", name: $n }) { __typename } }',
            { n: node.name },
          )
        ).__typename === 'DeleteSecretPayload',
      key: byId,
    },
    {
      name: 'members',
      read: entityList('members', 'user { id }'),
      add: async (i) => {
        tick();
        await t.member('VIEWER', `member-${i}`);
      },
      remove: async (node) =>
        (
          await mutate(
            t,
            'mutation($u: ID!) { removeMember(input: { entity: "default", userId: $u }) { __typename } }',
            { u: (node.user as { id: string }).id },
          )
        ).__typename === 'RemoveMemberPayload',
      key: (edge) => (edge.node.user as { id: string }).id,
    },
    {
      name: 'projects',
      read: entityList('projects', 'id name'),
      add: async (i) => createProject(t, interleaved('p-', i)),
      key: byId,
    },
    {
      name: 'registries',
      read: entityList('registries', 'id name'),
      add: async (i) => createRegistry(t, interleaved('r-', i)),
      key: byId,
    },
    {
      name: 'collections',
      read: async (args) => {
        const project = (
          await t.gql('{ entity(name: "default") { projects { edges { node { id name } } } } }')
        ).data.entity.projects.edges.find((e: { node: { name: string } }) => e.node.name === 'p')
          .node.id;
        return readPage(
          `query($id: ID!, ${VARS}) { node(id: $id) { ... on Project { collections(${PAGE_ARGS}) { ${PAGE_FIELDS('id name')} } } } }`,
          (d: { node: { collections: Page } }) => d.node.collections,
          { ...args, id: project } as PageArgs,
        );
      },
      add: async (i) => {
        await emit(t, { collection: interleaved('c-', i) });
      },
      key: byId,
    },
    {
      name: 'apiKeys',
      read: async (args) =>
        readPage(
          `query(${VARS}) { viewer { apiKeys(${PAGE_ARGS}) { ${PAGE_FIELDS('id')} } } }`,
          (d: { viewer: { apiKeys: Page } }) => d.viewer.apiKeys,
          args,
        ),
      add: async (i) => {
        tick();
        await mutate(
          t,
          'mutation($n: String!) { createApiKey(input: { name: $n }) { __typename } }',
          {
            n: `key-${i}`,
          },
        );
      },
      key: byId,
    },
  ];
}

/** Every row of the list now, in its order. */
async function everything(spec: ListSpec): Promise<Page['edges']> {
  const page = await spec.read({ first: 100 });
  expect(page.pageInfo.hasNextPage).toBe(false);
  return page.edges;
}

/**
 * Pages through `spec` two rows at a time, forwards or backwards, adding one row and removing one
 * already seen and one not yet seen between pages. Checks that every row present throughout is
 * seen exactly once, in the list's order, and that the page flags are exact.
 */
async function pageWhileChanging(spec: ListSpec, direction: 'forward' | 'backward') {
  let added = 0;
  for (; added < 7; added += 1) await spec.add(added);
  const initial = (await everything(spec)).map(spec.key);
  const removed = new Set<string>();
  const seen: Page['edges'] = [];
  let cursor: string | null = null;
  let reachedEnd = false;
  for (let step = 0; step < 200 && !reachedEnd; step += 1) {
    const page: Page =
      direction === 'forward'
        ? await spec.read({ first: 2, after: cursor })
        : await spec.read({ last: 2, before: cursor });
    const edges = direction === 'forward' ? page.edges : [...page.edges].reverse();
    seen.push(...edges);
    const { hasNextPage, hasPreviousPage, startCursor, endCursor } = page.pageInfo;
    const more = direction === 'forward' ? hasNextPage : hasPreviousPage;
    // Nothing lies behind the first page; something does behind every later one.
    expect(direction === 'forward' ? hasPreviousPage : hasNextPage).toBe(cursor !== null);
    cursor = direction === 'forward' ? endCursor : startCursor;
    reachedEnd = !more;
    if (reachedEnd) break;

    // Adding and removing on alternate steps, so their shifts cannot cancel out.
    if (step % 2 === 0 || !spec.remove) {
      await spec.add(added);
      added += 1;
      continue;
    }
    const keys = new Set(seen.map(spec.key));
    const now = await everything(spec);
    const behind = now.filter((e) => keys.has(spec.key(e)));
    const ahead = now.filter((e) => !keys.has(spec.key(e)) && initial.includes(spec.key(e)));
    for (const candidates of [behind, ahead]) {
      for (const edge of candidates) {
        if (await spec.remove(edge.node)) {
          removed.add(spec.key(edge));
          break;
        }
      }
    }
  }

  expect(reachedEnd, `${spec.name}: never reached the end`).toBe(true);
  const keys = seen.map(spec.key);
  expect(new Set(keys).size, `${spec.name}: a row came twice`).toBe(keys.length);
  for (const key of initial) {
    if (!removed.has(key)) expect(keys, `${spec.name}: row skipped`).toContain(key);
  }
  const finalOrder = (await everything(spec)).map(spec.key);
  const positions = keys.filter((k) => finalOrder.includes(k)).map((k) => finalOrder.indexOf(k));
  const ordered = direction === 'forward' ? positions : [...positions].reverse();
  expect(ordered, `${spec.name}: out of order`).toEqual([...ordered].sort((a, b) => a - b));
  expect(keys.length).toBeGreaterThan(0);
}

describe('keyset paging', () => {
  it('does not repeat an event when one is emitted between pages (issue 7, item 7)', async () => {
    for (let i = 0; i < 3; i += 1) {
      clock.advance(1000);
      await emit(t, { versionIndex: i });
    }
    const events = entityList('events', 'id versionIndex');
    const first = await events({ first: 2 });
    expect(first.edges.map((e) => e.node.versionIndex)).toEqual([2, 1]);
    clock.advance(1000);
    await emit(t, { versionIndex: 3 });
    const second = await events({ first: 2, after: first.pageInfo.endCursor });
    expect(second.edges.map((e) => e.node.versionIndex)).toEqual([0]);
    expect(second.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
    expect(second.totalCount).toBe(4);
  });

  it('does not repeat or skip a run when runs are queued between pages', async () => {
    await hookAndAutomation();
    for (let i = 0; i < 4; i += 1) {
      clock.advance(1000);
      await emit(t, { versionIndex: i });
    }
    const runs = entityList('triggeredRuns', 'id event { versionIndex }');
    const version = (p: Page) =>
      p.edges.map((e) => (e.node.event as { versionIndex: number }).versionIndex);
    const first = await runs({ first: 2 });
    expect(version(first)).toEqual([3, 2]);
    clock.advance(1000);
    await emit(t, { versionIndex: 4 });
    const second = await runs({ first: 2, after: first.pageInfo.endCursor });
    expect(version(second)).toEqual([1, 0]);
    expect(second.pageInfo.hasNextPage).toBe(false);

    // Backwards from the oldest: the new run is reached last, once.
    const oldest = await runs({ last: 2 });
    expect(version(oldest)).toEqual([1, 0]);
    clock.advance(1000);
    await emit(t, { versionIndex: 5 });
    const newer = await runs({ last: 2, before: oldest.pageInfo.startCursor });
    expect(version(newer)).toEqual([3, 2]);
    expect(newer.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: true });
    const newest = await runs({ last: 4, before: newer.pageInfo.startCursor });
    expect(version(newest)).toEqual([5, 4]);
    expect(newest.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: true });
  });

  it('keeps a cursor whose row was deleted, and answers exact page flags', async () => {
    for (const name of ['A1', 'A2', 'A3', 'A4']) await createSecret(t, name, 'v');
    const secrets = entityList('secrets', 'name');
    const first = await secrets({ first: 2 });
    expect(first.edges.map((e) => e.node.name)).toEqual(['A1', 'A2']);
    await mutate(
      t,
      'mutation { deleteSecret(input: { entity: "default", name: "A2" }) { __typename } }',
      {},
    );
    await mutate(
      t,
      'mutation { deleteSecret(input: { entity: "default", name: "A1" }) { __typename } }',
      {},
    );
    const second = await secrets({ first: 2, after: first.pageInfo.endCursor });
    expect(second.edges.map((e) => e.node.name)).toEqual(['A3', 'A4']);
    // The rows before the cursor are gone, and nothing follows.
    expect(second.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: false });
    const back = await secrets({ last: 5, before: second.pageInfo.endCursor });
    expect(back.edges.map((e) => e.node.name)).toEqual(['A3']);
    expect(back.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: true });
  });

  it('answers INVALID_CURSOR for a cursor it did not give out, and INVALID_PAGE_SIZE for a negative size', async () => {
    await createSecret(t, 'A1', 'v');
    const eventCursor = (
      await (async () => {
        await emit(t);
        return entityList('events', 'id')({ first: 1 });
      })()
    ).pageInfo.endCursor;
    const query = `query(${VARS}) { entity(name: "default") { secrets(${PAGE_ARGS}) { totalCount } } }`;
    for (const [args, code, argument] of [
      [{ after: 'not a cursor' }, 'INVALID_CURSOR', 'after'],
      [
        { before: Buffer.from('OffsetConnection:1').toString('base64') },
        'INVALID_CURSOR',
        'before',
      ],
      // A cursor of a list sorted otherwise (time and id, not name) names no position here.
      [{ after: eventCursor }, 'INVALID_CURSOR', 'after'],
      [{ first: -1 }, 'INVALID_PAGE_SIZE', 'first'],
      [{ last: -1 }, 'INVALID_PAGE_SIZE', 'last'],
    ] as const) {
      const res = await t.gql(query, args);
      expect(res.data?.entity ?? null).toBeNull();
      expect(res.errors?.[0]?.extensions).toMatchObject({ code, argument });
      expect(res.errors?.[0]?.message).toContain(`\`${argument}\``);
    }
  });

  const LISTS = [
    'events',
    'triggeredRuns',
    'auditLog',
    'automations',
    'actions',
    'secrets',
    'members',
    'projects',
    'registries',
    'collections',
    'apiKeys',
  ];
  for (const direction of ['forward', 'backward'] as const) {
    it.each(LISTS)(
      `pages %s ${direction}s with rows added and removed between pages`,
      async (name) => {
        await hookAndAutomation();
        const spec = (await specs()).find((s) => s.name === name);
        if (!spec) throw new Error(`no spec for ${name}`);
        await pageWhileChanging(spec, direction);
      },
    );
  }
});
