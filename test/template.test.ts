// biome-ignore-all lint/suspicious/noTemplateCurlyInString: templates are written with literal ${…}.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import {
  artifactVersionString,
  artifactVersionUri,
  checkPayloadTemplate,
  checkTextTemplate,
  MAX_TEMPLATE_BYTES,
  renderPayload,
  renderText,
  SECRET_NAME_PATTERN,
  TEMPLATE_VARIABLES,
  type TemplateContext,
  variablesFor,
} from '../src/modules/automations/template.js';
import { MAX_JSON_DEPTH } from '../src/modules/json-depth.js';

const ctx: TemplateContext = {
  eventType: 'ADD_ARTIFACT_ALIAS',
  eventAuthor: 'alice',
  eventId: 'ev_123',
  automationName: 'deploy on prod',
  entityName: 'acme',
  projectName: 'vision',
  artifactCollectionName: 'resnet',
  artifactType: 'model',
  artifactVersionIndex: 3,
  alias: 'production',
  tag: null,
  metadata: {
    accuracy: 0.91,
    owner: 'team-ml',
    flag: true,
    nothing: null,
    tags: ['a', 'b'],
    train: { epochs: 10, optimizer: { name: 'adam' } },
    'lr.schedule': 'cosine',
  },
};

const noSecrets: ReadonlySet<string> = new Set();
const noSecretValues: ReadonlyMap<string, string> = new Map();

/** Runs `fn` and returns the ValidationError it throws (fails the test otherwise). */
function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

/** The JSON's structure with every string replaced by a marker: what substitution must keep. */
function shape(value: unknown): unknown {
  if (typeof value === 'string') return '<string>';
  if (Array.isArray(value)) return value.map(shape);
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).map(([key, inner]) => [key, shape(inner)]);
  }
  return value;
}

function render(template: unknown, context: TemplateContext = ctx): unknown {
  return JSON.parse(renderPayload(JSON.stringify(template), context, noSecretValues));
}

describe('version names', () => {
  it('builds a URI with each segment encoded', () => {
    expect(artifactVersionUri('acme', 'vision', 'resnet', 3)).toBe(
      'tripline://acme/vision/resnet/v3',
    );
    expect(artifactVersionUri('a b', 'p/q', 'c?#%', 0)).toBe(
      'tripline://a%20b/p%2Fq/c%3F%23%25/v0',
    );
  });

  it('builds a version string with the index, or the alias when given', () => {
    expect(artifactVersionString('acme', 'vision', 'resnet', 3)).toBe('acme/vision/resnet:v3');
    expect(artifactVersionString('acme', 'vision', 'resnet', 3, null)).toBe(
      'acme/vision/resnet:v3',
    );
    expect(artifactVersionString('acme', 'vision', 'resnet', 3, 'prod')).toBe(
      'acme/vision/resnet:prod',
    );
  });
});

describe('renderPayload with a template', () => {
  it('substitutes every variable as a string', () => {
    const template = Object.fromEntries(
      variablesFor('ADD_ARTIFACT_ALIAS').map((name) => [name, `\${${name}}`]),
    );
    expect(render(template)).toEqual({
      event_type: 'ADD_ARTIFACT_ALIAS',
      event_author: 'alice',
      event_id: 'ev_123',
      automation_name: 'deploy on prod',
      entity_name: 'acme',
      project_name: 'vision',
      artifact_collection_name: 'resnet',
      artifact_type: 'model',
      artifact_version_index: '3',
      artifact_version: 'tripline://acme/vision/resnet/v3',
      artifact_version_string: 'acme/vision/resnet:production',
      alias: 'production',
      tag: '',
    });
  });

  it('lists exactly the variables of the design', () => {
    expect([...TEMPLATE_VARIABLES].sort()).toEqual(
      [
        'event_type',
        'event_author',
        'event_id',
        'automation_name',
        'entity_name',
        'project_name',
        'artifact_collection_name',
        'artifact_type',
        'artifact_version_index',
        'artifact_version',
        'artifact_version_string',
        'alias',
        'tag',
        'run_name',
        'run_id',
        'run_status',
        'metric_name',
        'metric_values',
        'metric_filter',
      ].sort(),
    );
  });

  it('renders a null alias as an empty string and the version string with the index', () => {
    const out = render(
      { alias: '[${alias}]', version: '${artifact_version_string}' },
      { ...ctx, alias: null },
    );
    expect(out).toEqual({ alias: '[]', version: 'acme/vision/resnet:v3' });
  });

  it('substitutes inside longer strings, several times, in nested values and arrays', () => {
    const out = render({
      text: '${entity_name}/${project_name} got ${alias} (${alias})',
      nested: { list: ['${event_type}', 7, { deep: 'v${artifact_version_index}' }] },
    });
    expect(out).toEqual({
      text: 'acme/vision got production (production)',
      nested: { list: ['ADD_ARTIFACT_ALIAS', 7, { deep: 'v3' }] },
    });
  });

  it('reads metadata keys: strings, dotted keys, nested paths, non-strings as JSON, missing as ""', () => {
    const out = render({
      owner: '${artifact_metadata.owner}',
      accuracy: '${artifact_metadata.accuracy}',
      flag: '${artifact_metadata.flag}',
      nothing: '${artifact_metadata.nothing}',
      tags: '${artifact_metadata.tags}',
      train: '${artifact_metadata.train}',
      epochs: '${artifact_metadata.train.epochs}',
      optimizer: '${artifact_metadata.train.optimizer.name}',
      firstTag: '${artifact_metadata.tags.0}',
      dottedKey: '${artifact_metadata.lr.schedule}',
      missing: '<${artifact_metadata.missing}>',
      missingNested: '<${artifact_metadata.train.missing.deeper}>',
      intoString: '<${artifact_metadata.owner.length}>',
      prototype: '<${artifact_metadata.constructor}><${artifact_metadata.__proto__}>',
      odd: '<${artifact_metadata.a b:c}>',
    });
    expect(out).toEqual({
      owner: 'team-ml',
      accuracy: '0.91',
      flag: 'true',
      nothing: 'null',
      tags: '["a","b"]',
      train: '{"epochs":10,"optimizer":{"name":"adam"}}',
      epochs: '10',
      optimizer: 'adam',
      firstTag: 'a',
      dottedKey: 'cosine',
      missing: '<>',
      missingNested: '<>',
      intoString: '<>',
      prototype: '<><>',
      odd: '<>',
    });
  });

  it('prefers a metadata key written with dots over a nested path', () => {
    const out = render(
      { v: '${artifact_metadata.a.b}' },
      { ...ctx, metadata: { 'a.b': 'flat', a: { b: 'nested' } } },
    );
    expect(out).toEqual({ v: 'flat' });
  });

  it('substitutes secrets', () => {
    const text = JSON.stringify({ auth: 'Bearer ${API_TOKEN}', both: '${API_TOKEN}:${OTHER_1}' });
    const secrets = new Map([
      ['API_TOKEN', 's3cr"et\\'],
      ['OTHER_1', 'x'],
    ]);
    expect(JSON.parse(renderPayload(text, ctx, secrets))).toEqual({
      auth: 'Bearer s3cr"et\\',
      both: 's3cr"et\\:x',
    });
  });

  it('refuses to render a secret it was not given', () => {
    const error = validationError(() => renderPayload('"${GONE}"', ctx, noSecretValues));
    expect(error.field).toBe('template');
    expect(error.message).toContain('GONE');
  });

  it('keeps the JSON shape whatever the values contain', () => {
    const hostile =
      '"}, "injected": {"x": 1}, "y": "\\\\ \\" ${event_type} ${SECRET} {{ }} \n\u2028';
    const hostileCtx: TemplateContext = {
      ...ctx,
      eventAuthor: hostile,
      entityName: hostile,
      artifactCollectionName: hostile,
      alias: hostile,
      metadata: { note: hostile, [hostile]: { [hostile]: hostile } },
    };
    const template = {
      author: '${event_author}',
      mixed: 'a ${alias} b ${entity_name} c',
      note: '${artifact_metadata.note}',
      version: '${artifact_version_string}',
      list: ['${artifact_collection_name}', '${artifact_metadata.note}'],
      static: 1,
    };
    const out = render(template, hostileCtx) as Record<string, unknown>;
    expect(shape(out)).toEqual(shape(template));
    expect(out.author).toBe(hostile);
    expect(out.mixed).toBe(`a ${hostile} b ${hostile} c`);
    expect(out.note).toBe(hostile);
    expect(out.list).toEqual([hostile, hostile]);
  });

  it('does not substitute object keys and keeps numbers, literals and layout as written', () => {
    const template =
      '{\n  "${alias}": "${alias}",\n  "big": 12345678901234567890123,\n  "x": [true, null, 1.50]\n}';
    expect(renderPayload(template, ctx, noSecretValues)).toBe(
      '{\n  "${alias}": "production",\n  "big": 12345678901234567890123,\n  "x": [true, null, 1.50]\n}',
    );
  });

  it('renders templates that are not objects', () => {
    expect(renderPayload('"${alias}"', ctx, noSecretValues)).toBe('"production"');
    expect(renderPayload('["${event_id}", 1]', ctx, noSecretValues)).toBe('["ev_123", 1]');
    expect(renderPayload('42', ctx, noSecretValues)).toBe('42');
  });

  it('keeps a proto-named key as plain data', () => {
    const out = JSON.parse(
      renderPayload('{"__proto__": {"polluted": "${alias}"}}', ctx, noSecretValues),
    ) as Record<string, unknown>;
    expect(Object.hasOwn(out, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('renderPayload without a template', () => {
  it('sends the default envelope with native types', () => {
    expect(JSON.parse(renderPayload(null, ctx, noSecretValues))).toEqual({
      event_type: 'ADD_ARTIFACT_ALIAS',
      event_id: 'ev_123',
      event_author: 'alice',
      automation_name: 'deploy on prod',
      entity_name: 'acme',
      project_name: 'vision',
      artifact_collection_name: 'resnet',
      artifact_type: 'model',
      artifact_version_index: 3,
      artifact_version: 'tripline://acme/vision/resnet/v3',
      artifact_version_string: 'acme/vision/resnet:production',
      alias: 'production',
      tag: null,
      artifact_metadata: ctx.metadata,
    });
  });

  it('sends a null alias as null', () => {
    const out = JSON.parse(renderPayload(null, { ...ctx, alias: null }, noSecretValues));
    expect(out.alias).toBeNull();
    expect(out.artifact_version_string).toBe('acme/vision/resnet:v3');
  });
});

describe('renderText', () => {
  it('substitutes variables, metadata and secrets into plain text', () => {
    const text =
      '*${artifact_version_string}* by ${event_author} {acc=${artifact_metadata.accuracy}} ${HOOK}';
    expect(renderText(text, ctx, new Map([['HOOK', 'h']]))).toBe(
      '*acme/vision/resnet:production* by alice {acc=0.91} h',
    );
  });

  it('leaves text without references unchanged, including lone $ and braces', () => {
    expect(renderText('cost: $5 {not json', ctx, noSecretValues)).toBe('cost: $5 {not json');
  });
});

describe('checkPayloadTemplate', () => {
  const field = 'input.payloadTemplate';

  it('accepts a valid template and returns the secrets it uses, sorted and unique', () => {
    const text = JSON.stringify({
      a: '${ZED} ${API_TOKEN} ${event_type}',
      b: ['${API_TOKEN}', '${artifact_metadata.x.y}'],
      c: 1,
    });
    expect(checkPayloadTemplate(text, new Set(['API_TOKEN', 'ZED', 'UNUSED']), field)).toEqual([
      'API_TOKEN',
      'ZED',
    ]);
    expect(checkPayloadTemplate('{}', noSecrets, field)).toEqual([]);
    expect(checkPayloadTemplate('"${alias}"', noSecrets, field)).toEqual([]);
  });

  it('refuses a template over the size limit', () => {
    const text = JSON.stringify('x'.repeat(MAX_TEMPLATE_BYTES));
    const error = validationError(() => checkPayloadTemplate(text, noSecrets, field));
    expect(error.field).toBe(field);
    expect(error.message).toContain(String(MAX_TEMPLATE_BYTES));
  });

  it('counts the size in UTF-8 bytes', () => {
    const text = JSON.stringify('é'.repeat(MAX_TEMPLATE_BYTES / 2));
    expect(text.length).toBeLessThan(MAX_TEMPLATE_BYTES);
    expect(validationError(() => checkPayloadTemplate(text, noSecrets, field)).field).toBe(field);
  });

  it.each([
    ['{"a": }', 'line 1, column 7'],
    ['{"a": 1,}', 'line 1, column 9'],
    ['[1,\n  2', 'line 2, column 4'],
    ['{\n  "a": 1\n  "b": 2\n}', 'line 3, column 3'],
    ['{"a": "unterminated', 'line 1, column 7'],
    ['"bad \\q escape"', 'line 1, column 6'],
    ['"raw\ttab"', 'line 1, column 5'],
    ['{"a": 1} trailing', 'line 1, column 10'],
    ["{'a': 1}", 'line 1, column 2'],
    ['', 'line 1, column 1'],
    ['01', 'line 1, column 2'],
  ])('refuses invalid JSON %j and says where', (text, where) => {
    const error = validationError(() => checkPayloadTemplate(text, noSecrets, field));
    expect(error.field).toBe(field);
    expect(error.message).toMatch(/^Invalid JSON/);
    expect(error.message).toContain(where);
  });

  it('refuses an unknown variable, naming it and listing the known ones', () => {
    const error = validationError(() =>
      checkPayloadTemplate('{"a": 1,\n "b": "x ${artifact_name}"}', noSecrets, field),
    );
    expect(error.field).toBe(field);
    expect(error.message).toContain('${artifact_name}');
    expect(error.message).toContain('line 2, column 7');
    for (const name of variablesFor('CREATE_ARTIFACT'))
      expect(error.message).toContain(`\${${name}}`);
    expect(error.message).toContain('${artifact_metadata.KEY}');
  });

  it('refuses a mixed-case name as an unknown variable', () => {
    const error = validationError(() => checkPayloadTemplate('"${Event_Type}"', noSecrets, field));
    expect(error.message).toContain('unknown variable ${Event_Type}');
  });

  it('refuses a secret that does not exist', () => {
    const error = validationError(() =>
      checkPayloadTemplate('{"auth": "${API_TOKEN}"}', new Set(['OTHER']), field),
    );
    expect(error.field).toBe(field);
    expect(error.message).toContain('API_TOKEN');
    expect(error.message).toContain('create the secret first');
  });

  it('refuses a secret name over 64 characters', () => {
    const name = `A${'B'.repeat(64)}`;
    expect(SECRET_NAME_PATTERN.test(name)).toBe(true);
    const error = validationError(() =>
      checkPayloadTemplate(`"\${${name}}"`, new Set([name]), field),
    );
    expect(error.message).toContain('64');
  });

  it.each([
    ['"${}"', 'malformed'],
    ['"${ event_type }"', 'malformed'],
    ['"${event-type}"', 'malformed'],
    ['"${1abc}"', 'malformed'],
    ['"${event_type"', 'unclosed'],
    ['"${artifact_metadata.}"', 'missing metadata key'],
  ])('refuses the malformed reference %j', (text, problem) => {
    const error = validationError(() => checkPayloadTemplate(text, noSecrets, field));
    expect(error.field).toBe(field);
    expect(error.message).toContain(problem);
  });

  it('refuses a variable in an object key', () => {
    const error = validationError(() =>
      checkPayloadTemplate('{"${alias}": "x"}', noSecrets, field),
    );
    expect(error.field).toBe(field);
    expect(error.message).toContain('object keys');
  });

  it('finds references written with JSON escapes, since it checks decoded strings', () => {
    expect(() => checkPayloadTemplate('"\\u0024{nope}"', noSecrets, field)).toThrow(
      'unknown variable ${nope}',
    );
  });

  it(`accepts ${MAX_JSON_DEPTH} levels of nesting and refuses more, without exhausting the stack`, () => {
    const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
    expect(checkPayloadTemplate(nested(MAX_JSON_DEPTH), noSecrets, field)).toEqual([]);
    for (const depth of [MAX_JSON_DEPTH + 1, 20_000]) {
      const error = validationError(() => checkPayloadTemplate(nested(depth), noSecrets, field));
      expect(error.field).toBe(field);
      expect(error.message).toContain(`${MAX_JSON_DEPTH} levels`);
    }
  });
});

describe('checkTextTemplate', () => {
  const field = 'input.slack.message';

  it('accepts any text, not just JSON, and returns the secrets used', () => {
    expect(
      checkTextTemplate('New {version ${alias} $5 ${B} ${A} ${B}', new Set(['A', 'B']), field),
    ).toEqual(['A', 'B']);
  });

  it('reports the same mistakes with line and column in the text', () => {
    const unknown = validationError(() => checkTextTemplate('ok\n  ${nope}', noSecrets, field));
    expect(unknown.field).toBe(field);
    expect(unknown.message).toContain('line 2, column 3');
    expect(unknown.message).toContain('${nope}');
    const secret = validationError(() => checkTextTemplate('${MISSING}', noSecrets, field));
    expect(secret.message).toContain('create the secret first');
    const malformed = validationError(() => checkTextTemplate('${a b}', noSecrets, field));
    expect(malformed.message).toContain('malformed');
    const unclosed = validationError(() => checkTextTemplate('x ${alias', noSecrets, field));
    expect(unclosed.message).toContain('unclosed');
    const big = validationError(() =>
      checkTextTemplate('x'.repeat(MAX_TEMPLATE_BYTES + 1), noSecrets, field),
    );
    expect(big.field).toBe(field);
  });
});

describe('properties', () => {
  const text = fc.oneof(
    fc.string({ unit: 'binary' }),
    fc.string({ unit: fc.constantFrom('"', '\\', '{', '}', '$', '${', '\n', ':', ',', 'a', 'Z') }),
  );
  const context: fc.Arbitrary<TemplateContext> = fc.record({
    eventType: text,
    eventAuthor: text,
    eventId: text,
    automationName: text,
    entityName: text,
    projectName: text,
    artifactCollectionName: text,
    artifactType: text,
    artifactVersionIndex: fc.nat(),
    alias: fc.option(text),
    tag: fc.option(text),
    metadata: fc.dictionary(text, fc.jsonValue()),
  });
  const everything = {
    ...Object.fromEntries(TEMPLATE_VARIABLES.map((name) => [name, `<\${${name}}>`])),
    metadata: ['${artifact_metadata.k}', '${artifact_metadata.k.k}'],
    secret: '${TOKEN}',
    literal: 5,
  };
  const everythingText = JSON.stringify(everything);

  it('rendering arbitrary values never throws and never changes the shape', () => {
    fc.assert(
      fc.property(context, text, (c, secret) => {
        const out = JSON.parse(renderPayload(everythingText, c, new Map([['TOKEN', secret]])));
        expect(shape(out)).toEqual(shape(everything));
        expect(out.event_author).toBe(`<${c.eventAuthor}>`);
        expect(out.alias).toBe(`<${c.alias ?? ''}>`);
        expect(out.secret).toBe(secret);
        expect(renderText('${alias}', c, noSecretValues)).toBe(c.alias ?? '');
      }),
    );
  });

  it('the default envelope is valid JSON with the context values', () => {
    fc.assert(
      fc.property(context, (c) => {
        const out = JSON.parse(renderPayload(null, c, noSecretValues));
        expect(out.entity_name).toBe(c.entityName);
        expect(out.alias).toBe(c.alias);
        // Compared through JSON, which writes -0 as 0.
        expect(out.artifact_metadata).toEqual(JSON.parse(JSON.stringify(c.metadata)));
      }),
    );
  });

  it('accepts exactly the texts JSON.parse accepts', () => {
    const jsonish = fc.oneof(
      fc.json(),
      fc.string({
        unit: fc.constantFrom(
          ...'{}[]":,-+.0123456789eEtrufalsn \t\n\r\\/bx\u0001\u2028'.split(''),
          'true',
          'false',
          'null',
          '\\u00e9',
          '"a"',
        ),
      }),
    );
    fc.assert(
      fc.property(jsonish, (candidate) => {
        let parsed = true;
        try {
          JSON.parse(candidate);
        } catch {
          parsed = false;
        }
        let checked = true;
        try {
          checkPayloadTemplate(candidate, noSecrets, 'f');
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError);
          // Other refusals (a `${` in a string) come after the JSON was accepted.
          checked = !(error as Error).message.startsWith('Invalid JSON');
        }
        expect(checked).toBe(parsed);
      }),
      { numRuns: 2000 },
    );
  });

  it('any template either is refused with ValidationError or renders to JSON of the same shape', () => {
    const template = fc.oneof(
      fc.json(),
      fc.jsonValue().chain((value) =>
        fc
          .constantFrom('${alias}', '${nope}', '${artifact_metadata.x}', '${TOKEN}', '${', '${}')
          // Into the first string, key or value, if there is one.
          .map((reference) => JSON.stringify(value).replace('"', `"${reference}`)),
      ),
      text,
    );
    fc.assert(
      fc.property(template, context, (candidate, c) => {
        let secrets: string[];
        try {
          secrets = checkPayloadTemplate(candidate, new Set(['TOKEN']), 'f');
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError);
          return;
        }
        const out = renderPayload(candidate, c, new Map(secrets.map((name) => [name, 'v'])));
        expect(shape(JSON.parse(out))).toEqual(shape(JSON.parse(candidate)));
      }),
      { numRuns: 500 },
    );
  });
});
