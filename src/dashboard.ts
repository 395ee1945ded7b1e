import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Plugin } from 'graphql-yoga';

/** The dashboard's source entry; it is bundled from source, never from committed build output. */
export const DASHBOARD_ENTRY = fileURLToPath(new URL('../dashboard/src/main.tsx', import.meta.url));

/** Where the bundle's files are served; the path holds their content hash. */
export const DASHBOARD_ASSETS_PREFIX = '/dashboard/';

/**
 * The page's Content-Security-Policy for a page served at `host`: its own script and styles only,
 * GraphQL on this origin over HTTP and WebSocket (named as well as `'self'`, which older browsers
 * do not extend to `ws:`), no frames, no plugins.
 */
export function dashboardCsp(host: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self' ws://${host} wss://${host}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

interface Asset {
  type: string;
  body: Uint8Array<ArrayBuffer>;
  gzipped: Uint8Array<ArrayBuffer>;
}

interface Bundle {
  /** `/dashboard/<hash>/`: where the files below are served. */
  base: string;
  files: Map<string, Asset>;
  page: Asset;
}

const gzipAsync = promisify(gzip);

async function asset(type: string, text: string | Uint8Array): Promise<Asset> {
  const body = new Uint8Array(Buffer.from(text));
  return { type, body, gzipped: new Uint8Array(await gzipAsync(body)) };
}

/**
 * Bundles the dashboard with esbuild (Preact, its styles, the graphql-ws client) into one script
 * and one stylesheet, minified, in memory. Takes a fraction of a second.
 */
export async function buildDashboard(): Promise<Bundle> {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: { app: DASHBOARD_ENTRY },
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    minify: true,
    legalComments: 'none',
    outdir: '/dashboard-out',
    logLevel: 'silent',
  });
  const hash = createHash('sha256');
  for (const file of result.outputFiles) hash.update(file.contents);
  const base = `${DASHBOARD_ASSETS_PREFIX}${hash.digest('hex').slice(0, 16)}/`;
  const files = new Map<string, Asset>();
  for (const file of result.outputFiles) {
    const name = file.path.slice(file.path.lastIndexOf('/') + 1);
    const type = name.endsWith('.css')
      ? 'text/css; charset=utf-8'
      : 'text/javascript; charset=utf-8';
    files.set(name, await asset(type, file.contents));
  }
  const html = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="color-scheme" content="light dark" />
    <title>Tripline</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="${base}app.css" />
    <script type="module" src="${base}app.js"></script>
  </head>
  <body>
    <noscript>The Tripline dashboard needs JavaScript. The API is at /graphql.</noscript>
    <div id="app"></div>
  </body>
</html>
`;
  return { base, files, page: await asset('text/html; charset=utf-8', html) };
}

function respond(
  request: Request,
  fetchAPI: { Response: typeof Response },
  file: Asset,
  headers: Record<string, string>,
): Response {
  const gzipped = /\bgzip\b/.test(request.headers.get('accept-encoding') ?? '');
  const body = gzipped ? file.gzipped : file.body;
  return new fetchAPI.Response(request.method === 'HEAD' ? null : body, {
    headers: {
      'content-type': file.type,
      'content-length': String(body.length),
      'x-content-type-options': 'nosniff',
      vary: 'accept-encoding',
      ...(gzipped ? { 'content-encoding': 'gzip' } : {}),
      ...headers,
    },
  });
}

/**
 * Serves the dashboard: its page at `/` (never cached, with {@link dashboardCsp}) and its
 * bundle under `/dashboard/<content hash>/` (cached for a year: a new build has new URLs). The
 * bundle is built on the first request, once; a failed build is answered 500 and tried again on
 * the next request.
 */
export function useDashboard(): Plugin {
  let building: Promise<Bundle> | undefined;
  const bundle = (): Promise<Bundle> => {
    building ??= buildDashboard();
    building.catch(() => {
      building = undefined;
    });
    return building;
  };
  return {
    onRequest({ request, url, endResponse, fetchAPI }) {
      const page = url.pathname === '/' || url.pathname === '/index.html';
      if (!page && !url.pathname.startsWith(DASHBOARD_ASSETS_PREFIX)) return;
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        endResponse(
          new fetchAPI.Response('Method not allowed\n', {
            status: 405,
            headers: { allow: 'GET, HEAD' },
          }),
        );
        return;
      }
      return bundle().then(
        (built) => {
          if (page) {
            endResponse(
              respond(request, fetchAPI, built.page, {
                'cache-control': 'no-cache',
                'content-security-policy': dashboardCsp(url.host),
                'referrer-policy': 'no-referrer',
                'x-frame-options': 'DENY',
              }),
            );
            return;
          }
          const file = url.pathname.startsWith(built.base)
            ? built.files.get(url.pathname.slice(built.base.length))
            : undefined;
          endResponse(
            file
              ? respond(request, fetchAPI, file, {
                  'cache-control': 'public, max-age=31536000, immutable',
                })
              : new fetchAPI.Response('Not found\n', { status: 404 }),
          );
        },
        (error: unknown) => {
          endResponse(
            new fetchAPI.Response(
              `The dashboard could not be built: ${error instanceof Error ? error.message : String(error)}\n`,
              { status: 500, headers: { 'content-type': 'text/plain; charset=utf-8' } },
            ),
          );
        },
      );
    },
  };
}
