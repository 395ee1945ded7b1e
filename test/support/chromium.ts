import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

/** Debian's Chromium; never a browser build downloaded by a driver. */
export const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const hasChromium = existsSync(CHROMIUM);

/** Warns, once per file, that the browser tests named `what` are skipped for want of Chromium. */
export function warnWithoutChromium(what: string): void {
  if (hasChromium) return;
  console.warn(
    `\n*** SKIPPED: the ${what} browser tests need Chromium at ${CHROMIUM}, and there is none. Install it with \`apt-get install -y chromium\` (.ci/run does). ***\n`,
  );
}

/** A headless Chromium on a fresh profile, with one page kept offline but for `origin`. */
export interface OfflineBrowser {
  context: BrowserContext;
  page: Page;
  /** Requests the page tried to send anywhere but `origin` (each refused). */
  elsewhere: string[];
  /** Uncaught errors of the page's scripts. */
  pageErrors: string[];
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

/**
 * Starts Chromium on a new profile directory. The page must work with no internet: every request
 * off `origin` (other than `data:` and `blob:` URLs) is refused and noted in `elsewhere`.
 */
export async function launchOffline(
  origin: string,
  viewport = { width: 1400, height: 900 },
): Promise<OfflineBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'tripline-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: CHROMIUM_FLAGS,
    headless: true,
    viewport,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const elsewhere: string[] = [];
  await page.route('**/*', (route) => {
    const target = route.request().url();
    if (target.startsWith(`${origin}/`) || /^(data|blob):/.test(target)) return route.continue();
    elsewhere.push(target);
    return route.abort();
  });
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  return {
    context,
    page,
    elsewhere,
    pageErrors,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
