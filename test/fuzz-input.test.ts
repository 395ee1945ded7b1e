// biome-ignore-all lint/suspicious/noTemplateCurlyInString: template text is the input under test
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './support/app.js';
import { createProject, createWebhookAction, EMIT } from './support/fixtures.js';

let t: TestApp;
let actionId: string;
beforeAll(async () => {
  t = await createTestApp();
  await createProject(t, 'p');
  actionId = (await createWebhookAction(t, { name: 'hook', url: 'https://example.com/hook' })).id;
});
afterAll(() => t.close());

const EXPECTED = ['ValidationError', 'NotFoundError', 'ConflictError'];

/** Whether `variables` hold the NUL character, which the server refuses whole (INVALID_CHARACTER). */
const holdsNul = (variables: unknown): boolean => JSON.stringify(variables).includes('\\u0000');

/**
 * Checks a response: the refusal of a NUL character when the input held one, otherwise no
 * top-level error. Returns whether the operation ran.
 */
function ran(res: { errors?: { extensions?: Record<string, unknown> }[] }, variables: unknown) {
  if (holdsNul(variables)) {
    expect(res.errors?.[0]?.extensions?.code, JSON.stringify(res.errors)).toBe('INVALID_CHARACTER');
    return false;
  }
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  return true;
}

/** Arbitrary text, including control characters, astral symbols and template-looking braces. */
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.constantFrom(
    '${event_type}',
    '${',
    '}',
    '"',
    '\\',
    '\u0000',
    '${artifact_metadata.__proto__}',
    'x'.repeat(300),
  ),
);

const json = fc.jsonValue({ maxDepth: 4 });

describe('arbitrary input never crashes the server', () => {
  it('emitArtifactEvent answers with the event or a typed error', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          eventType: fc.constantFrom('CREATE_ARTIFACT', 'LINK_ARTIFACT', 'ADD_ARTIFACT_ALIAS'),
          owner: fc.oneof(
            fc.record({ project: fc.oneof(fc.constant('p'), text) }),
            fc.record({ registry: text }),
          ),
          collection: text,
          artifactType: text,
          versionIndex: fc.integer({ min: -5, max: 2 ** 31 - 1 }),
          alias: fc.option(text),
          author: fc.option(text),
          metadata: fc.option(fc.dictionary(fc.string({ maxLength: 10 }), json, { maxKeys: 5 })),
          idempotencyKey: fc.option(text),
        }),
        async (input) => {
          const variables = { i: { entity: 'default', ...input } };
          const res = await t.gql(EMIT, variables);
          if (!ran(res, variables)) return;
          const typename = res.data.emitArtifactEvent.__typename;
          expect(['EmitArtifactEventPayload', ...EXPECTED]).toContain(typename);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('createAutomation answers with the automation or a typed error, whatever the template and pattern', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          template: fc.option(
            fc.oneof(
              text,
              json.map((v) => JSON.stringify(v)),
            ),
          ),
          pattern: fc.option(text),
          name: fc.oneof(text, fc.constant('ok')),
          collection: fc.option(text),
        }),
        async ({ template, pattern, name, collection }) => {
          n += 1;
          const variables = {
            i: {
              entity: 'default',
              name: `${name}-${n}`,
              eventType: 'ADD_ARTIFACT_ALIAS',
              scope: { project: 'p' },
              filter: { aliasPattern: pattern, collectionName: collection },
              action: { actionId, payloadTemplate: template },
            },
          };
          const res = await t.gql(
            `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { __typename } }`,
            variables,
          );
          if (!ran(res, variables)) return;
          expect(['CreateAutomationPayload', ...EXPECTED]).toContain(
            res.data.createAutomation.__typename,
          );
        },
      ),
      { numRuns: 60 },
    );
  });

  it('names of projects, secrets and actions answer with the object or a typed error', async () => {
    await fc.assert(
      fc.asyncProperty(text, text, async (name, value) => {
        const variables = {
          p: { entity: 'default', name },
          s: { entity: 'default', name, value },
          a: { entity: 'default', name, url: value },
        };
        const res = await t.gql(
          `mutation($p: CreateProjectInput!, $s: CreateSecretInput!, $a: CreateWebhookActionInput!) {
            createProject(input: $p) { __typename }
            createSecret(input: $s) { __typename }
            createWebhookAction(input: $a) { __typename }
          }`,
          variables,
        );
        if (!ran(res, variables)) return;
        expect(['CreateProjectPayload', ...EXPECTED]).toContain(res.data.createProject.__typename);
        expect(['CreateSecretPayload', ...EXPECTED]).toContain(res.data.createSecret.__typename);
        expect(['CreateWebhookActionPayload', ...EXPECTED]).toContain(
          res.data.createWebhookAction.__typename,
        );
      }),
      { numRuns: 60 },
    );
  });
});
