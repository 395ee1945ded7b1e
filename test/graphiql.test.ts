import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { GRAPHIQL_ASSETS_PATH } from '../src/graphiql.js';
import { createTestApp, type TestApp } from './support/app.js';
import {
  hasChromium,
  launchOffline,
  type OfflineBrowser,
  warnWithoutChromium,
} from './support/chromium.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';

/** Screenshots land here, for a person to look at; the folder is not committed. */
const ARTIFACTS = join(import.meta.dirname, '..', 'test-artifacts', 'graphiql');

warnWithoutChromium('GraphiQL');

let t: TestApp | undefined;
let browser: OfflineBrowser | undefined;

afterEach(async () => {
  await browser?.close();
  browser = undefined;
  await t?.close();
  t = undefined;
});

describe('the GraphiQL page', () => {
  it('loads its script, styles and workers from this server, never a CDN', async () => {
    t = await createTestApp();
    const page = await t.app.yoga.fetch('http://localhost/graphql', {
      headers: { accept: 'text/html' },
    });
    expect(page.status).toBe(200);
    const html = await page.text();
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
    expect(urls.length).toBeGreaterThanOrEqual(3);
    for (const url of urls) expect(url.startsWith(GRAPHIQL_ASSETS_PATH), url).toBe(true);
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);

    const script = await t.app.yoga.fetch(`http://localhost${GRAPHIQL_ASSETS_PATH}graphiql.js`, {
      headers: { 'accept-encoding': 'gzip, deflate' },
    });
    expect(script.status).toBe(200);
    expect(script.headers.get('content-encoding')).toBe('gzip');
    expect(script.headers.get('cache-control')).toContain('immutable');
    const text = gunzipSync(Buffer.from(await script.arrayBuffer())).toString('utf8');
    expect(text).toContain('renderYogaGraphiQL');

    for (const worker of ['editor.worker.js', 'json.worker.js', 'graphql.worker.js']) {
      const response = await t.app.yoga.fetch(`http://localhost${GRAPHIQL_ASSETS_PATH}${worker}`);
      expect(response.status, worker).toBe(200);
      expect(response.headers.get('content-type')).toContain('javascript');
      expect(response.headers.get('content-encoding')).toBeNull();
      expect(html).toContain(`${GRAPHIQL_ASSETS_PATH}${worker}`);
    }
    const missing = await t.app.yoga.fetch(
      `http://localhost${GRAPHIQL_ASSETS_PATH}../package.json`,
    );
    expect(missing.status).toBe(404);
  });
});

/**
 * Replaces the whole text of the Monaco editor under `editor`, as a person pasting would, and
 * waits until GraphiQL has taken it in: its editors hand their text to its state after a
 * debounce, which it then saves under `stored` in localStorage. A click on Execute before then
 * runs the previous text.
 */
async function replaceText(
  page: Page,
  editor: string,
  stored: 'query' | 'headers',
  text: string,
): Promise<void> {
  const box = page.locator(editor);
  await box.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Backspace');
  await page.keyboard.insertText(text);
  await expect
    .poll(async () => ((await box.locator('.view-lines').textContent()) ?? '').replace(/\s+/g, ' '))
    .toBe(text.replace(/\s+/g, ' '));
  await expect
    .poll(() => page.evaluate((key) => localStorage.getItem(key), `graphiql:${stored}`))
    .toBe(text);
}

describe.skipIf(!hasChromium)('GraphiQL in Chromium', () => {
  it('runs a query and a subscription with an API key, offline', async () => {
    t = await createTestApp();
    const url = await t.listen();
    await createProject(t, 'p');
    const hook = await createWebhookAction(t, { name: 'hook', url: 'https://hooks.example/in' });
    await createAutomation(t, {
      name: 'notify',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: hook.id,
    });

    browser = await launchOffline(new URL(url).origin);
    const { page, elsewhere, pageErrors } = browser;

    await page.goto(url);
    await page.waitForSelector('.graphiql-container', { timeout: 120_000 });
    mkdirSync(ARTIFACTS, { recursive: true });

    await page.getByRole('button', { name: 'Headers' }).click();
    await replaceText(
      page,
      '.graphiql-editor-tool .graphiql-editor:not(.hidden) .monaco-editor',
      'headers',
      JSON.stringify({ Authorization: `Bearer ${t.adminKey}` }),
    );
    await replaceText(
      page,
      '.graphiql-query-editor .monaco-editor',
      'query',
      'query Who { viewer { user { name } entities { entity { name } } } }',
    );
    await page.getByRole('button', { name: /Execute query/ }).click();
    const result = page.locator('.result-window');
    await expect.poll(() => result.textContent(), { timeout: 30_000 }).toContain('"admin"');
    expect(await result.textContent()).toContain('"default"');
    await page.screenshot({ path: join(ARTIFACTS, 'query.png') });

    await replaceText(
      page,
      '.graphiql-query-editor .monaco-editor',
      'query',
      'subscription Runs { triggeredRunUpdated { id status automationName } }',
    );
    await page.getByRole('button', { name: /Execute query/ }).click();
    await t.subscribers(1);
    const runId = (await emit(t)).triggeredRuns[0].id as string;
    await expect.poll(() => result.textContent(), { timeout: 30_000 }).toContain(runId);
    const shown = await result.textContent();
    expect(shown).toContain('"QUEUED"');
    expect(shown).toContain('"notify"');
    await page.screenshot({ path: join(ARTIFACTS, 'subscription.png') });

    expect(elsewhere).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, 240_000);
});
