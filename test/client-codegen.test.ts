import {
  cpSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format } from 'node:util';
import { ApolloClient, HttpLink, InMemoryCache } from '@apollo/client';
import { type CodegenConfig, generate } from '@graphql-codegen/cli';
import { buildSchema, type GraphQLAbstractType, isAbstractType } from 'graphql';
import ts from 'typescript';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import codegenConfig from '../examples/codegen/codegen.js';
import { createTestApp, type TestApp } from './support/app.js';
import { createAutomation, createProject, createWebhookAction, EMIT } from './support/fixtures.js';

const root = new URL('..', import.meta.url).pathname;
const EXAMPLES = 'examples/codegen';

/**
 * `config` with its paths made absolute under `directory`. (Its `cwd` option is not enough:
 * codegen 6 compares an output with the file at its path relative to the process's directory,
 * and skips writing one that is the same there.)
 */
function inDirectory(config: CodegenConfig, directory: string): CodegenConfig & { cwd: string } {
  const absolute = (path: string) => join(directory, path);
  if (typeof config.schema !== 'string' || !Array.isArray(config.documents)) {
    throw new Error(
      'examples/codegen/codegen.ts: expected one schema path and a list of documents',
    );
  }
  return {
    ...config,
    cwd: directory,
    schema: absolute(config.schema),
    documents: config.documents.map((documents) => absolute(String(documents))),
    generates: Object.fromEntries(
      Object.entries(config.generates).map(([path, output]) => [absolute(path), output]),
    ),
  };
}

/**
 * A copy of the repository's schema and of examples/codegen (without any generated code a
 * developer left there) in a temporary directory, where codegen writes its output; the
 * repository's node_modules are linked in so the examples resolve their packages.
 */
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tripline-codegen-'));
  cpSync(join(root, 'schema.graphql'), join(dir, 'schema.graphql'));
  cpSync(join(root, EXAMPLES), join(dir, EXAMPLES), {
    recursive: true,
    filter: (source) => !source.startsWith(join(root, EXAMPLES, 'src/gql')),
  });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  await generate({ ...inDirectory(codegenConfig, dir), silent: true }, true);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Every TypeScript file under `path`, recursively. */
function typeScriptFiles(path: string): string[] {
  return readdirSync(path, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .map((file) => join(path, file));
}

/** The diagnostics of compiling `files` under strict settings, as `file(line): message`. */
function typeCheck(files: string[]): string[] {
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2023.d.ts'],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    noImplicitReturns: true,
    noFallthroughCasesInSwitch: true,
    noUnusedLocals: true,
    noUnusedParameters: true,
    verbatimModuleSyntax: true,
    isolatedModules: true,
    skipLibCheck: true,
    noEmit: true,
    types: ['node'],
  });
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    if (!diagnostic.file || diagnostic.start === undefined) return message;
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
    return `${diagnostic.file.fileName.slice(dir.length + 1)}(${line + 1}): ${message}`;
  });
}

describe('code generation for the examples', () => {
  it('generates typed documents that compile with the example clients under strict settings', () => {
    const files = typeScriptFiles(join(dir, EXAMPLES));
    expect(files.map((file) => file.slice(dir.length + 1)).sort()).toEqual(
      expect.arrayContaining([
        `${EXAMPLES}/src/gql/graphql.ts`,
        `${EXAMPLES}/src/gql/possible-types.ts`,
        `${EXAMPLES}/src/apollo.ts`,
        `${EXAMPLES}/src/urql.ts`,
      ]),
    );
    expect(typeCheck(files)).toEqual([]);
  });

  it('types results precisely: a field of one union member is refused on the union', () => {
    const misuse = join(dir, EXAMPLES, 'src/misuse.ts');
    writeFileSync(
      misuse,
      `import type { EmitArtifactEventMutation } from './gql/graphql.js';
export function field(result: EmitArtifactEventMutation['emitArtifactEvent']): string {
  return result.field;
}
`,
    );
    try {
      const diagnostics = typeCheck([misuse]);
      expect(diagnostics).toHaveLength(1);
      expect(diagnostics[0]).toMatch(/^examples\/codegen\/src\/misuse\.ts\(3\): Property 'field'/);
    } finally {
      rmSync(misuse);
    }
  });

  it('lists every implementation of Error, and every member of each result union, in possibleTypes', async () => {
    const { default: generated } = (await import(
      join(dir, EXAMPLES, 'src/gql/possible-types.ts')
    )) as { default: { possibleTypes: Record<string, string[]> } };
    const schema = buildSchema(readFileSync(join(root, 'schema.graphql'), 'utf8'));
    const abstract = Object.values(schema.getTypeMap()).filter(isAbstractType);
    const expected = Object.fromEntries(
      abstract.map((type: GraphQLAbstractType) => [
        type.name,
        schema
          .getPossibleTypes(type)
          .map((possible) => possible.name)
          .sort(),
      ]),
    );
    expect(generated.possibleTypes.Error).toEqual([
      'ConflictError',
      'NotFoundError',
      'PermissionDeniedError',
      'ValidationError',
    ]);
    expect(generated.possibleTypes).toEqual(expected);
  });
});

interface Run {
  id: string;
  status: string;
  automationName: string;
}

/** What every example client offers (examples/codegen/src/apollo.ts and urql.ts). */
interface ExampleClient {
  entityRuns(entity: string): Promise<{
    totalCount: number;
    pageInfo: { hasNextPage: boolean; endCursor?: string | null };
    edges: { node: Run }[];
  } | null>;
  reportEvent(input: Record<string, unknown>): Promise<Run[]>;
  watchRuns(
    entity: string,
    onRun: (run: Run) => void,
    onError: (error: unknown) => void,
  ): () => void;
  close(): Promise<void>;
}

type ClientOptions = { url: string; apiKey: string; webSocketImpl: unknown };

/** Imports a module of the generated copy of the examples. */
async function example<T>(file: string): Promise<T> {
  return (await import(join(dir, EXAMPLES, 'src', file))) as T;
}

const clients: [
  string,
  'websocket' | 'http',
  (options: ClientOptions) => Promise<ExampleClient>,
][] = [
  [
    'Apollo Client, subscriptions over graphql-ws',
    'websocket',
    async (options) =>
      (
        await example<{ createApolloTripline(o: ClientOptions): ExampleClient }>('apollo.ts')
      ).createApolloTripline(options),
  ],
  [
    'urql, subscriptions over graphql-ws',
    'websocket',
    async (options) =>
      (
        await example<{ createUrqlTripline(o: ClientOptions, via: string): ExampleClient }>(
          'urql.ts',
        )
      ).createUrqlTripline(options, 'graphql-ws'),
  ],
  [
    'urql, subscriptions over server-sent events',
    'http',
    async (options) =>
      (
        await example<{ createUrqlTripline(o: ClientOptions, via: string): ExampleClient }>(
          'urql.ts',
        )
      ).createUrqlTripline(options, 'graphql-sse'),
  ],
];

const EVENT = {
  entity: 'default',
  eventType: 'CREATE_ARTIFACT',
  owner: { project: 'vision' },
  collection: 'resnet',
  artifactType: 'model',
  versionIndex: 1,
};

describe('the example clients, against a running server', () => {
  let t: TestApp;
  let url: string;

  beforeEach(async () => {
    t = await createTestApp();
    url = await t.listen();
    await createProject(t, 'vision');
    const action = await createWebhookAction(t, { name: 'hook', url: 'https://hooks.example/x' });
    await createAutomation(t, {
      name: 'notify',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'vision' },
      actionId: action.id,
    });
  });

  afterEach(() => t.close());

  /** The message the server gives for `input`, asked over plain HTTP. */
  async function expectedError(input: Record<string, unknown>): Promise<string> {
    const result = await t.gql(EMIT, { i: input });
    const message: unknown = result.data?.emitArtifactEvent?.message;
    if (typeof message !== 'string' || !message) throw new Error(JSON.stringify(result));
    return message;
  }

  /** Open subscriptions on `transport`, as /metrics counts them. */
  async function subscribersOn(transport: 'websocket' | 'http'): Promise<number> {
    const metrics = await (await fetch(new URL('/metrics', url))).text();
    const line = metrics.match(
      new RegExp(`^tripline_subscribers\\{transport="${transport}"\\} (\\d+)$`, 'm'),
    );
    return Number(line?.[1] ?? 0);
  }

  it.each(clients)(
    '%s: a subscription, a mutation, a query and expected failures',
    async (_name, transport, create) => {
      const client = await create({ url, apiKey: t.adminKey, webSocketImpl: WebSocket });
      try {
        let stop = () => {};
        const update = new Promise<Run>((resolve, reject) => {
          stop = client.watchRuns('default', resolve, reject);
        });
        await t.subscribers(1);
        expect(await subscribersOn(transport)).toBe(1);

        const runs = await client.reportEvent(EVENT);
        expect(runs).toEqual([
          expect.objectContaining({
            id: expect.stringMatching(/^run_/),
            status: 'QUEUED',
            automationName: 'notify',
          }),
        ]);
        expect(await update).toMatchObject({
          id: runs[0]!.id,
          status: 'QUEUED',
          automationName: 'notify',
        });
        stop();

        expect(await client.entityRuns('default')).toMatchObject({
          totalCount: 1,
          pageInfo: { hasNextPage: false },
          edges: [{ node: { id: runs[0]!.id, status: 'QUEUED' } }],
        });

        // A NotFoundError's message comes only through `... on Error { message }`.
        const missing = { ...EVENT, owner: { project: 'nowhere' } };
        await expect(client.reportEvent(missing)).rejects.toMatchObject({
          message: await expectedError(missing),
        });
        // A ValidationError's field comes through the InputErrorFields fragment.
        const noAlias = { ...EVENT, eventType: 'ADD_ARTIFACT_ALIAS' };
        await expect(client.reportEvent(noAlias)).rejects.toMatchObject({
          message: `input.alias: ${await expectedError(noAlias)}`,
        });
      } finally {
        await client.close();
      }
    },
  );

  it('Apollo Client without possibleTypes drops what `... on Error` selected', async () => {
    const { EmitArtifactEventDocument } = await example<{ EmitArtifactEventDocument: unknown }>(
      'gql/graphql.ts',
    );
    const client = new ApolloClient({
      cache: new InMemoryCache(),
      link: new HttpLink({ uri: url, headers: { authorization: `Bearer ${t.adminKey}` } }),
    });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const { data } = await client.mutate({
      mutation: EmitArtifactEventDocument as never,
      variables: { input: { ...EVENT, owner: { project: 'nowhere' } } },
    });
    expect(data).toEqual({ emitArtifactEvent: { __typename: 'NotFoundError' } });
    expect(warn.mock.calls.map((call) => format(...call)).join('\n')).toMatch(
      /Cannot match inline fragment on `Error` against `NotFoundError`/,
    );
    warn.mockRestore();
  });
});
