import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createTestApp, sqliteOnly, type TestApp } from './support/app.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly('masks unexpected errors');

let t: TestApp;
beforeEach(async () => {
  t = await createTestApp();
});
afterEach(() => t.close());

const get = (path: string, headers: Record<string, string> = {}) =>
  t.app.yoga.fetch(`http://localhost${path}`, {
    headers: { authorization: `Bearer ${t.adminKey}`, ...headers },
  });

describe('GraphQL over HTTP', () => {
  it('answers queries over GET', async () => {
    const res = await get(`/graphql?query=${encodeURIComponent('{ viewer { user { name } } }')}`, {
      accept: 'application/graphql-response+json',
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ data: { viewer: { user: { name: 'admin' } } } });
  });

  it('refuses mutations over GET with 405', async () => {
    const q = encodeURIComponent('mutation { createEntity(input: { name: "x" }) { __typename } }');
    const res = await get(`/graphql?query=${q}`, { accept: 'application/graphql-response+json' });
    expect(res.status).toBe(405);
    const entity = await t.gql('{ entity(name: "x") { name } }');
    expect(entity.data.entity).toBeNull();
  });

  it('answers a parse error with 400 under application/graphql-response+json', async () => {
    const res = await t.app.yoga.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json',
        authorization: `Bearer ${t.adminKey}`,
      },
      body: JSON.stringify({ query: '{ viewer { ' }),
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/graphql-response+json');
  });

  it('serves GraphiQL to a browser without a key', async () => {
    const res = await t.app.yoga.fetch('http://localhost/graphql', {
      headers: { accept: 'text/html' },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('GraphiQL');
  });

  it('answers /healthz and /readyz, and /readyz turns 503 when shutting down', async () => {
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
    await t.app.stop(0);
    expect((await get('/readyz')).status).toBe(503);
  });

  it('answers /readyz with 503 and the reason when the database cannot answer', async () => {
    expect((await get('/readyz')).status).toBe(200);
    vi.spyOn(t.storage, 'ping').mockRejectedValue(new Error('the database is unreachable'));
    const res = await get('/readyz');
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(await res.text()).toBe('the database is unreachable');
    // Other paths are not the probe.
    expect((await get('/readyz/x')).status).not.toBe(503);
  });

  it('masks unexpected errors', async () => {
    t.storage.sqlite.exec('drop table projects');
    const res = await t.gql('{ entity(name: "default") { projects { totalCount } } }');
    expect(res.errors?.[0]?.message).toBe('Unexpected error.');
    expect(JSON.stringify(res)).not.toContain('no such table');
  });
});

describe('scalars', () => {
  it('explains a malformed DateTime or JSONObject instead of masking it', async () => {
    const date = await t.gql(
      '{ entity(name: "default") { triggeredRuns(filter: { createdAfter: "yesterday" }) { totalCount } } }',
    );
    expect(date.errors?.[0]?.message).toContain('ISO 8601');
    const json = await t.gql(
      'mutation { emitArtifactEvent(input: { entity: "default", eventType: CREATE_ARTIFACT, owner: { project: "p" }, collection: "c", artifactType: "model", versionIndex: 0, metadata: [1] }) { __typename } }',
    );
    expect(json.errors?.[0]?.message).toContain('JSON object');
  });
});
