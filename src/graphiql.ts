import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Plugin } from 'graphql-yoga';

interface Asset {
  type: string;
  body: Uint8Array<ArrayBuffer>;
  gzipped: Uint8Array<ArrayBuffer>;
}

const gzipAsync = promisify(gzip);

/** The bundle's version names the asset URLs, so browsers may keep them for good. */
const bundleVersion = (
  JSON.parse(
    readFileSync(
      createRequire(import.meta.url).resolve('@graphql-yoga/render-graphiql/package.json'),
      'utf8',
    ),
  ) as { version: string }
).version;

/** Where GraphiQL's script, styles, editor workers and icon are served. */
export const GRAPHIQL_ASSETS_PATH = `/graphiql/${bundleVersion}/`;

/** Monaco asks for a worker by label; each is served as a file of its own. */
const WORKER_FILES: Record<string, string> = {
  editorWorkerService: 'editor.worker.js',
  json: 'json.worker.js',
  graphql: 'graphql.worker.js',
};

let loading: Promise<Map<string, Asset>> | undefined;

/**
 * Loads the bundle (about 9 MB of text) on first use only, so a server nobody opens GraphiQL on
 * never holds it, and gzips each file once.
 */
function assets(): Promise<Map<string, Asset>> {
  loading ??= (async () => {
    const bundle = await import('@graphql-yoga/render-graphiql/graphiql');
    const files: [string, string, Buffer][] = [
      ['graphiql.js', 'text/javascript; charset=utf-8', Buffer.from(bundle.js)],
      ['graphiql.css', 'text/css; charset=utf-8', Buffer.from(bundle.css)],
      [
        WORKER_FILES.editorWorkerService as string,
        'text/javascript; charset=utf-8',
        Buffer.from(bundle.editorWorkerService),
      ],
      [
        WORKER_FILES.json as string,
        'text/javascript; charset=utf-8',
        Buffer.from(bundle.jsonWorker),
      ],
      [
        WORKER_FILES.graphql as string,
        'text/javascript; charset=utf-8',
        Buffer.from(bundle.graphqlWorker),
      ],
      [
        'favicon.ico',
        'image/x-icon',
        Buffer.from(bundle.favicon.slice(bundle.favicon.indexOf(',') + 1), 'base64'),
      ],
    ];
    const map = new Map<string, Asset>();
    for (const [name, type, body] of files) {
      map.set(name, {
        type,
        body: new Uint8Array(body),
        gzipped: new Uint8Array(await gzipAsync(body)),
      });
    }
    return map;
  })();
  loading.catch(() => {
    loading = undefined;
  });
  return loading;
}

/** JSON safe to place inside a `<script>` element. */
const scriptJson = (value: unknown): string =>
  JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The GraphiQL page: the same app as graphql-yoga's own page (`@graphql-yoga/render-graphiql`),
 * with its script, styles and editor workers loaded from this server under
 * {@link GRAPHIQL_ASSETS_PATH} instead of a CDN, so it works on a machine without internet.
 * Pass it as yoga's `renderGraphiQL`, with {@link useGraphiQLAssets} among the plugins.
 */
export function renderOfflineGraphiQL(
  options: Record<string, unknown> & { title?: string },
): string {
  const base = GRAPHIQL_ASSETS_PATH;
  const workers = Object.fromEntries(
    Object.entries(WORKER_FILES).map(([label, file]) => [label, `${base}${file}`]),
  );
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${escapeHtml(options.title ?? 'GraphiQL')}</title>
    <link rel="icon" href="${base}favicon.ico" />
    <link rel="stylesheet" href="${base}graphiql.css" />
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>GraphiQL needs JavaScript.</noscript>
    <div id="root"></div>
    <script>
      const workers = ${scriptJson(workers)};
      self.MonacoEnvironment = {
        globalAPI: false,
        getWorkerUrl: (_moduleId, label) => workers[label] ?? workers.editorWorkerService,
      };
    </script>
    <script src="${base}graphiql.js"></script>
    <script>
      YogaGraphiQL.renderYogaGraphiQL(document.querySelector('#root'), ${scriptJson(options)});
    </script>
  </body>
</html>
`;
}

/**
 * Serves GraphiQL's files under {@link GRAPHIQL_ASSETS_PATH}, gzipped when the browser accepts
 * it, cacheable for a year (a new bundle version has new URLs).
 */
export function useGraphiQLAssets(): Plugin {
  return {
    onRequest({ request, url, endResponse, fetchAPI }) {
      if (!url.pathname.startsWith(GRAPHIQL_ASSETS_PATH)) return;
      const name = url.pathname.slice(GRAPHIQL_ASSETS_PATH.length);
      return assets().then((files) => {
        const asset = files.get(name);
        if (!asset || (request.method !== 'GET' && request.method !== 'HEAD')) {
          endResponse(new fetchAPI.Response('Not found\n', { status: 404 }));
          return;
        }
        const gzipped = /\bgzip\b/.test(request.headers.get('accept-encoding') ?? '');
        const body = gzipped ? asset.gzipped : asset.body;
        endResponse(
          new fetchAPI.Response(request.method === 'HEAD' ? null : body, {
            headers: {
              'content-type': asset.type,
              'content-length': String(body.length),
              'cache-control': 'public, max-age=31536000, immutable',
              vary: 'accept-encoding',
              ...(gzipped ? { 'content-encoding': 'gzip' } : {}),
            },
          }),
        );
      });
    },
  };
}
