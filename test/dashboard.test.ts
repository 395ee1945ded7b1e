import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Page } from 'playwright-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dashboardCsp } from '../src/dashboard.js';
import { createTestApp, type TestApp } from './support/app.js';
import {
  hasChromium,
  launchOffline,
  type OfflineBrowser,
  warnWithoutChromium,
} from './support/chromium.js';
import {
  createAutomation,
  createProject,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

/** Screenshots land here, for a person to look at; the folder is not committed. */
const ARTIFACTS = join(import.meta.dirname, '..', 'test-artifacts', 'dashboard');
/** The README's screenshot is refreshed from this run when TRIPLINE_DASHBOARD_SCREENSHOT is set. */
const README_SCREENSHOT = join(import.meta.dirname, '..', 'dashboard', 'screenshot.png');

warnWithoutChromium('dashboard');

let t: TestApp;
let receiver: Receiver;
let browser: OfflineBrowser | undefined;

beforeEach(async () => {
  t = await createTestApp({
    env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1', TRIPLINE_RETRY_MAX_ATTEMPTS: '1' },
  });
  receiver = await startReceiver(() => ({ status: 200, body: 'thanks from the receiver' }));
  await createProject(t, 'vision');
  const hook = await createWebhookAction(t, { name: 'deployer', url: `${receiver.url}/hook` });
  await createAutomation(t, {
    name: 'deploy-on-create',
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'vision' },
    actionId: hook.id,
  });
});

afterEach(async () => {
  await browser?.close();
  browser = undefined;
  await receiver.close();
  await t.close();
});

describe('the dashboard page and its files', () => {
  it('is served at / with a CSP, its bundle from this server with content types and caching', async () => {
    const page = await t.app.yoga.fetch('http://localhost/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toBe(dashboardCsp('localhost'));
    expect(dashboardCsp('localhost')).toContain("script-src 'self';");
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const html = await page.text();
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
    expect(urls.filter((u) => u.startsWith('/dashboard/'))).toHaveLength(2);
    expect(html).not.toMatch(/https?:\/\//);

    const script = urls.find((u) => u.endsWith('app.js')) as string;
    const js = await t.app.yoga.fetch(`http://localhost${script}`, {
      headers: { 'accept-encoding': 'gzip' },
    });
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toContain('immutable');
    expect(js.headers.get('content-encoding')).toBe('gzip');
    expect(gunzipSync(Buffer.from(await js.arrayBuffer())).toString()).toContain(
      'triggeredRunUpdated',
    );
    const css = await t.app.yoga.fetch(`http://localhost${urls.find((u) => u.endsWith('.css'))}`);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect(await css.text()).toContain('prefers-color-scheme');

    expect((await t.app.yoga.fetch('http://localhost/dashboard/0/app.js')).status).toBe(404);
    expect((await t.app.yoga.fetch('http://localhost/', { method: 'POST' })).status).toBe(405);
    // GraphiQL stays at /graphql.
    const graphiql = await t.app.yoga.fetch('http://localhost/graphql', {
      headers: { accept: 'text/html' },
    });
    expect(await graphiql.text()).toContain('YogaGraphiQL');
  });
});

/** The row of a run in the runs table. */
const row = (page: Page, runId: string) => page.locator(`tr[data-run-id="${runId}"]`);

async function signIn(page: Page, key: string): Promise<void> {
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

describe.skipIf(!hasChromium)('the dashboard in Chromium', () => {
  it('shows runs live, retries a failed run, tests an action, manages secrets, offline', async () => {
    const url = await t.listen();
    const origin = new URL(url).origin;
    browser = await launchOffline(origin);
    const { page } = browser;
    mkdirSync(ARTIFACTS, { recursive: true });

    await page.goto(`${origin}/`);
    await signIn(page, t.adminKey);
    await expect.poll(() => page.getByRole('heading', { name: 'Runs' }).count()).toBe(1);
    await t.subscribers(1);
    await expect.poll(() => page.locator('.live').textContent()).toBe('Live');
    expect(await page.evaluate(() => sessionStorage.getItem('tripline.apiKey'))).toBe(t.adminKey);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);

    // A run appears as it is queued and turns SUCCEEDED, without a reload.
    const first = (await emit(t, { project: 'vision' })).triggeredRuns[0].id as string;
    await expect.poll(() => row(page, first).locator('.badge').textContent()).toBe('QUEUED');
    await t.app.engine.drain();
    await expect.poll(() => row(page, first).locator('.badge').textContent()).toBe('SUCCEEDED');

    // A failed run, then its page: the attempt with the receiver's answer, and Retry.
    receiver.enqueue({ status: 500, body: 'the receiver broke' });
    const failed = (await emit(t, { project: 'vision', versionIndex: 1 })).triggeredRuns[0]
      .id as string;
    await t.app.engine.drain();
    await expect.poll(() => row(page, failed).locator('.badge').textContent()).toBe('FAILED');
    await page.screenshot({ path: join(ARTIFACTS, 'runs.png') });
    if (process.env.TRIPLINE_DASHBOARD_SCREENSHOT) {
      await page.screenshot({
        path: README_SCREENSHOT,
        clip: { x: 0, y: 0, width: 1400, height: 440 },
      });
    }

    // Filters: by status.
    await page.getByLabel('Status').selectOption('FAILED');
    await expect.poll(() => page.locator('tbody tr[data-run-id]').count()).toBe(1);
    await expect.poll(() => row(page, failed).count()).toBe(1);
    await page.getByLabel('Status').selectOption('');

    await row(page, failed).getByRole('link').click();
    await expect.poll(() => page.locator('h1 .badge').textContent()).toBe('FAILED');
    const attempts = page.locator('table.attempts tbody tr');
    await expect.poll(() => attempts.count()).toBe(1);
    expect(await attempts.first().textContent()).toContain('500');
    expect(await attempts.first().textContent()).toContain('the receiver broke');
    expect(await page.locator('pre.body').first().textContent()).toContain('"event_type"');
    await page.getByRole('button', { name: 'Retry' }).click();
    await expect
      .poll(() => page.getByRole('status').allTextContents())
      .toContain('Queued for delivery again.');
    await t.app.engine.drain();
    await expect.poll(() => page.locator('h1 .badge').textContent()).toBe('SUCCEEDED');
    await expect.poll(() => attempts.count()).toBe(2);
    expect(await attempts.nth(1).textContent()).toContain('thanks from the receiver');
    await page.screenshot({ path: join(ARTIFACTS, 'run.png'), fullPage: true });

    // An action's Test button shows the receiver's answer.
    await page.getByRole('link', { name: 'Actions' }).click();
    await page.getByRole('button', { name: 'Test deployer' }).click();
    const answer = page.locator('.test-answer');
    await expect.poll(() => answer.textContent()).toContain('thanks from the receiver');
    expect(await answer.textContent()).toContain('HTTP 200');
    expect(receiver.requests.at(-1)?.headers['webhook-id']).toMatch(/^test_/);
    await page.screenshot({ path: join(ARTIFACTS, 'actions.png') });

    // Automations: last run's outcome, and disable.
    await page.getByRole('link', { name: 'Automations' }).click();
    const automation = page.locator('tbody tr', { hasText: 'deploy-on-create' });
    await expect.poll(() => automation.locator('.last-run .badge').textContent()).toBe('SUCCEEDED');
    await page.getByRole('button', { name: 'Disable deploy-on-create' }).click();
    await expect.poll(() => automation.locator('.badge.disabled').count()).toBe(1);
    const stored = await t.gql(
      '{ entity(name: "default") { automations { edges { node { enabled } } } } }',
    );
    expect(stored.data.entity.automations.edges[0].node.enabled).toBe(false);

    // Secrets: created by name, the value never shown back.
    await page.getByRole('link', { name: 'Secrets' }).click();
    await page.getByLabel('Name').fill('DEPLOY_TOKEN');
    await page.getByLabel('Value').fill('s3cr3t-value');
    await page.getByRole('button', { name: 'Create secret' }).click();
    await expect
      .poll(() => page.locator('tbody td.mono').allTextContents())
      .toContain('DEPLOY_TOKEN');
    expect(await page.content()).not.toContain('s3cr3t-value');
    await page.getByRole('button', { name: 'Rotate DEPLOY_TOKEN' }).click();
    await page.getByLabel('New value for DEPLOY_TOKEN').fill('rotated-value');
    await page.getByRole('button', { name: 'Save' }).click();
    await expect
      .poll(() => page.getByRole('status').allTextContents())
      .toContain('Secret DEPLOY_TOKEN rotated.');
    await page.getByRole('button', { name: 'Delete DEPLOY_TOKEN' }).click();
    await page.getByRole('button', { name: 'Delete DEPLOY_TOKEN for good' }).click();
    await expect
      .poll(() => page.locator('tbody td.mono').allTextContents())
      .not.toContain('DEPLOY_TOKEN');

    // Delivery charts: three attempts in the last hour (one HTTP error), the backlog empty.
    await page.getByRole('link', { name: 'Deliveries' }).click();
    const tiles = page.locator('.tile');
    await expect.poll(() => tiles.nth(1).locator('.tile-value').textContent()).toBe('3');
    expect(await tiles.nth(0).locator('.tile-value').textContent()).toBe('0');
    expect(await page.locator('figcaption').first().textContent()).toContain('HTTP error: 1');
    // Live: another delivery shows without a reload (the automation switched on again first).
    const automations = await t.gql(
      '{ entity(name: "default") { automations { edges { node { id } } } } }',
    );
    await mutate(
      t,
      'mutation($id: ID!) { updateAutomation(input: { id: $id, enabled: true }) { __typename } }',
      { id: automations.data.entity.automations.edges[0].node.id },
    );
    await emit(t, { project: 'vision', versionIndex: 2 });
    await t.app.engine.drain();
    await expect.poll(() => tiles.nth(1).locator('.tile-value').textContent()).toBe('4');
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: join(ARTIFACTS, 'deliveries-dark.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });

    // Keyboard: the sign-out button is reachable and works with Enter.
    await page.getByRole('button', { name: 'Sign out' }).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByLabel('API key').count()).toBe(1);
    expect(await page.evaluate(() => sessionStorage.getItem('tripline.apiKey'))).toBeNull();

    expect(browser.elsewhere).toEqual([]);
    expect(browser.pageErrors).toEqual([]);
  }, 240_000);

  it('filters runs by automation and by project, keeps them live, and pages them', async () => {
    const url = await t.listen();
    const origin = new URL(url).origin;
    await createProject(t, 'nlp');
    const hooks = await t.gql('{ entity(name: "default") { actions { edges { node { id } } } } }');
    await createAutomation(t, {
      name: 'nlp-notify',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'nlp' },
      actionId: hooks.data.entity.actions.edges[0].node.id,
    });
    for (let i = 0; i < 21; i++) await emit(t, { project: 'vision', versionIndex: i });
    const nlpRun = (await emit(t, { project: 'nlp' })).triggeredRuns[0].id as string;
    const all = await t.gql(
      '{ entity(name: "default") { triggeredRuns(first: 100) { edges { node { id } } } } }',
    );
    const allIds = all.data.entity.triggeredRuns.edges.map(
      (e: { node: { id: string } }) => e.node.id,
    );
    expect(allIds).toHaveLength(22);

    browser = await launchOffline(origin);
    const { page } = browser;
    await page.goto(`${origin}/`);
    await signIn(page, t.adminKey);
    const rows = page.locator('tbody tr[data-run-id]');
    const shownIds = () =>
      rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run-id') as string));
    await expect.poll(() => rows.count()).toBe(20);
    expect(await page.getByText('22 runs match').count()).toBe(1);
    const firstPage = await shownIds();
    expect(firstPage).toEqual(allIds.slice(0, 20));
    await page.getByRole('button', { name: 'Older →' }).click();
    await expect.poll(() => shownIds()).toEqual(allIds.slice(20));
    await page.getByRole('button', { name: '← Newer' }).click();
    await expect.poll(() => shownIds()).toEqual(firstPage);

    await page.getByLabel('Automation').selectOption({ label: 'nlp-notify' });
    await expect.poll(() => shownIds()).toEqual([nlpRun]);
    await page.getByLabel('Automation').selectOption('');
    await page.getByLabel('Project or registry').selectOption({ label: 'vision' });
    await expect.poll(() => page.getByText('21 runs match').count()).toBe(1);
    await page.getByLabel('Project or registry').selectOption({ label: 'nlp' });
    await expect.poll(() => shownIds()).toEqual([nlpRun]);

    // Live, through the filter: a new nlp run is added on top, a vision run is not.
    await t.subscribers(1);
    const visionRun = (await emit(t, { project: 'vision', versionIndex: 99 })).triggeredRuns[0]
      .id as string;
    const nlpNext = (await emit(t, { project: 'nlp', versionIndex: 1 })).triggeredRuns[0]
      .id as string;
    await expect.poll(() => shownIds()).toEqual([nlpNext, nlpRun]);
    expect(await shownIds()).not.toContain(visionRun);
    await page.screenshot({ path: join(ARTIFACTS, 'filtered.png') });

    expect(browser.elsewhere).toEqual([]);
    expect(browser.pageErrors).toEqual([]);
  }, 240_000);

  it("shows a run event's run: the training run and the condition that fired", async () => {
    const url = await t.listen();
    const origin = new URL(url).origin;
    const hook = await createWebhookAction(t, { name: 'run-hook', url: `${receiver.url}/hook` });
    const created = await mutate(
      t,
      `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { __typename } }`,
      {
        i: {
          entity: 'default',
          name: 'on-failure',
          eventType: 'RUN_STATE',
          scope: { project: 'vision' },
          action: { actionId: hook.id },
          runCondition: { state: { states: ['FAILED'] } },
        },
      },
    );
    expect(created.__typename).toBe('CreateAutomationPayload');
    const reported = await mutate(
      t,
      `mutation($i: ReportRunStateInput!) { reportRunState(input: $i) {
        ... on ReportRunStatePayload { triggeredRuns { id } } } }`,
      { i: { entity: 'default', project: 'vision', run: 'resnet-7', state: 'CRASHED' } },
    );
    const runId = reported.triggeredRuns[0].id as string;
    await t.app.engine.drain();

    browser = await launchOffline(origin);
    const { page } = browser;
    await page.goto(`${origin}/`);
    await signIn(page, t.adminKey);
    await expect.poll(() => row(page, runId).locator('.badge').textContent()).toBe('SUCCEEDED');
    expect(await row(page, runId).textContent()).toContain('RUN_STATE');
    expect(await row(page, runId).textContent()).toContain('resnet-7');
    await row(page, runId).getByRole('link').click();
    await expect.poll(() => page.getByRole('heading', { name: 'Run event' }).count()).toBe(1);
    const facts = await page.locator('dl.facts').last().textContent();
    expect(facts).toContain('vision/resnet-7');
    expect(facts).toContain('run state is FAILED');
    expect(browser.elsewhere).toEqual([]);
    expect(browser.pageErrors).toEqual([]);
  }, 240_000);

  it('shows a viewer no write controls, and says so when a key is refused or revoked', async () => {
    const url = await t.listen();
    const origin = new URL(url).origin;
    receiver.enqueue({ status: 500, body: 'no' });
    const failed = (await emit(t, { project: 'vision' })).triggeredRuns[0].id as string;
    await t.app.engine.drain();
    const viewer = await t.member('VIEWER', 'watcher');

    browser = await launchOffline(origin, { width: 390, height: 844 });
    const { page } = browser;
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.goto(`${origin}/`);
    await signIn(page, viewer);
    await expect.poll(() => row(page, failed).locator('.badge').textContent()).toBe('FAILED');
    expect(await page.locator('.badge.role').textContent()).toBe('VIEWER');
    expect(await page.getByRole('link', { name: 'Secrets' }).count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, 'viewer-phone.png'), fullPage: true });

    await row(page, failed).getByRole('link').click();
    await expect.poll(() => page.locator('table.attempts tbody tr').count()).toBe(1);
    expect(await page.getByRole('button', { name: 'Retry' }).count()).toBe(0);
    await page.getByRole('link', { name: 'Automations' }).click();
    await expect
      .poll(() => page.locator('tbody tr', { hasText: 'deploy-on-create' }).count())
      .toBe(1);
    await page.getByRole('link', { name: 'Actions' }).click();
    await expect.poll(() => page.locator('.card').count()).toBe(1);
    await page.getByRole('link', { name: 'Automations' }).click();
    await expect
      .poll(() => page.locator('tbody tr', { hasText: 'deploy-on-create' }).count())
      .toBe(1);
    // The only button a viewer gets is Sign out (and the pager on the runs page).
    expect(await page.locator('main button').count()).toBe(0);
    await page.getByRole('link', { name: 'Actions' }).click();
    await expect.poll(() => page.locator('.card').count()).toBe(1);
    expect(await page.locator('main button').count()).toBe(0);
    await page.getByRole('button', { name: 'Sign out' }).click();

    // A key the server does not know.
    await signIn(page, 'tl_not-a-key');
    await expect
      .poll(() => page.getByRole('alert').textContent())
      .toContain('Your API key was refused');

    // A key revoked while it is in use: the next request says so and asks for another.
    const person = await mutate(
      t,
      `mutation($i: CreateUserInput!) { createUser(input: $i) {
        ... on CreateUserPayload { plaintextKey apiKey { id } } } }`,
      { i: { entity: 'default', name: 'leaver', kind: 'USER', role: 'MEMBER' } },
    );
    await signIn(page, person.plaintextKey);
    await expect.poll(() => page.locator('.badge.role').textContent()).toBe('MEMBER');
    const revoked = await mutate(
      t,
      'mutation($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }',
      { id: person.apiKey.id },
      person.plaintextKey,
    );
    expect(revoked.__typename).toBe('RevokeApiKeyPayload');
    // The next request (or the live connection, if it notices first) is refused.
    await page.evaluate(() => {
      window.location.hash = '#/automations';
    });
    await expect
      .poll(() => page.getByRole('alert').textContent())
      .toContain('unknown, revoked or expired');
    expect(await page.getByLabel('API key').count()).toBe(1);
    expect(await page.evaluate(() => sessionStorage.getItem('tripline.apiKey'))).toBeNull();
    await page.screenshot({ path: join(ARTIFACTS, 'key-refused.png') });

    expect(browser.elsewhere).toEqual([]);
    expect(browser.pageErrors).toEqual([]);
  }, 240_000);
});
