// biome-ignore-all lint/suspicious/noTemplateCurlyInString: this module handles ${…} references as literal text.

import { ValidationError } from '../../errors.js';
import type { EventType } from '../../storage/config.js';
import { EVENT_SHAPES } from '../events/event-types.js';
import { checkJsonDepth, MAX_JSON_DEPTH } from '../json-depth.js';

/** Values the variables of DESIGN §1 take for one run. */
export interface TemplateContext {
  eventType: string;
  eventAuthor: string;
  eventId: string;
  automationName: string;
  entityName: string;
  /** The project's name, or the registry's for registry events. */
  projectName: string;
  artifactCollectionName: string;
  artifactType: string;
  /** Null for collection-tag events, which name no version. */
  artifactVersionIndex: number | null;
  alias: string | null;
  tag: string | null;
  metadata: Record<string, unknown>;
  /** For run events: the run and, for metric events, what fired; absent or null for artifact events. */
  run?: RunTemplateContext | null;
}

/** What a run event's variables render (W&B's run variables). */
export interface RunTemplateContext {
  /** The run's global ID (the `Run` node's `id`). */
  id: string;
  name: string;
  /** RUNNING, FINISHED or FAILED, when the condition fired. */
  status: string;
  /** Null for RUN_STATE events. */
  metricName: string | null;
  /** The values the condition looked at, oldest first; null for RUN_STATE events. */
  metricValues: number[] | null;
  /** The condition, for people. */
  metricFilter: string;
}

/** Which events a variable exists for. */
type Audience = 'all' | 'artifact' | 'run' | 'metric';

const ARTIFACT_AUDIENCES: ReadonlySet<Audience> = new Set(['all', 'artifact']);

/** The audience an event type's templates may address (an unknown type: artifact events'). */
function audiencesOf(eventType: string): ReadonlySet<Audience> {
  const shape = (EVENT_SHAPES as Partial<Record<string, (typeof EVENT_SHAPES)[EventType]>>)[
    eventType
  ];
  if (shape?.subject !== 'run') return ARTIFACT_AUDIENCES;
  return new Set(eventType === 'RUN_STATE' ? ['all', 'run'] : ['all', 'run', 'metric']);
}

const runField = <K extends keyof RunTemplateContext>(ctx: TemplateContext, key: K) =>
  ctx.run?.[key] ?? null;

type Variable = [Audience, (ctx: TemplateContext) => string];

/** The value of each plain variable for one run, and the events it exists for; the single list of their names. */
const VARIABLES: ReadonlyMap<string, Variable> = new Map<string, Variable>([
  ['event_type', ['all', (ctx) => ctx.eventType]],
  ['event_author', ['all', (ctx) => ctx.eventAuthor]],
  ['event_id', ['all', (ctx) => ctx.eventId]],
  ['automation_name', ['all', (ctx) => ctx.automationName]],
  ['entity_name', ['all', (ctx) => ctx.entityName]],
  ['project_name', ['all', (ctx) => ctx.projectName]],
  ['artifact_collection_name', ['artifact', (ctx) => ctx.artifactCollectionName]],
  ['artifact_type', ['artifact', (ctx) => ctx.artifactType]],
  ['artifact_version_index', ['artifact', (ctx) => String(ctx.artifactVersionIndex ?? '')]],
  ['artifact_version', ['artifact', (ctx) => versionUri(ctx)]],
  ['artifact_version_string', ['artifact', (ctx) => versionString(ctx)]],
  ['alias', ['artifact', (ctx) => ctx.alias ?? '']],
  ['tag', ['artifact', (ctx) => ctx.tag ?? '']],
  ['run_name', ['run', (ctx) => runField(ctx, 'name') ?? '']],
  ['run_id', ['run', (ctx) => runField(ctx, 'id') ?? '']],
  ['run_status', ['run', (ctx) => runField(ctx, 'status') ?? '']],
  ['metric_name', ['metric', (ctx) => runField(ctx, 'metricName') ?? '']],
  ['metric_values', ['metric', (ctx) => JSON.stringify(runField(ctx, 'metricValues') ?? [])]],
  ['metric_filter', ['metric', (ctx) => runField(ctx, 'metricFilter') ?? '']],
]);

/** The plain variables a template may use, besides `artifact_metadata.KEY` and secret names. */
export const TEMPLATE_VARIABLES: readonly string[] = Object.freeze([...VARIABLES.keys()]);

/** The plain variables templates of `eventType` may use, in the order of {@link TEMPLATE_VARIABLES}. */
export function variablesFor(eventType: string): string[] {
  const audiences = audiencesOf(eventType);
  return [...VARIABLES].filter(([, [audience]]) => audiences.has(audience)).map(([name]) => name);
}

export const MAX_TEMPLATE_BYTES = 64 * 1024;

/** A secret name: UPPER_SNAKE_CASE. The 64-character cap is checked separately. */
export const SECRET_NAME_PATTERN = /^[A-Z][A-Z0-9_]*$/;
const MAX_SECRET_NAME_LENGTH = 64;

const METADATA_PREFIX = 'artifact_metadata.';
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** The variables an event type's templates may use, for messages. */
function knownList(eventType: string): string {
  return [
    ...variablesFor(eventType).map((name) => `\${${name}}`),
    ...(audiencesOf(eventType).has('artifact') ? ['${artifact_metadata.KEY}'] : []),
  ].join(', ');
}
/** The field render errors are reported under: the stored template itself. */
const RENDER_FIELD = 'template';

/**
 * Stable URI of an artifact version: `tripline://<entity>/<project>/<collection>/v<index>`,
 * each name segment percent-encoded with `encodeURIComponent`; without `/v<index>` (the
 * collection's URI) when `index` is null, for events about a whole collection.
 */
export function artifactVersionUri(
  entity: string,
  project: string,
  collection: string,
  index: number | null,
): string {
  const path = [entity, project, collection].map(encodeURIComponent).join('/');
  return index === null ? `tripline://${path}` : `tripline://${path}/v${index}`;
}

/**
 * Human-readable version name: `entity/project/collection:v3`, or `entity/project/collection:alias`
 * when `alias` is a non-empty string. With a null `index` (an event about a whole collection,
 * such as a collection tag), the collection's name alone: `entity/project/collection`.
 */
export function artifactVersionString(
  entity: string,
  project: string,
  collection: string,
  index: number | null,
  alias?: string | null,
): string {
  if (alias) return `${entity}/${project}/${collection}:${alias}`;
  return index === null
    ? `${entity}/${project}/${collection}`
    : `${entity}/${project}/${collection}:v${index}`;
}

// ---------------------------------------------------------------------------------------------
// Variable references: the one tokenizer behind checking and rendering.

type Reference =
  | { kind: 'variable'; name: string }
  | { kind: 'metadata'; key: string }
  | { kind: 'secret'; name: string };

/** A piece of a string: literal text, or a reference with its offset in that string. */
type Segment = string | (Reference & { offset: number });

/** A template mistake located by `offset` within the string that was tokenized. */
class TemplateError extends Error {
  constructor(
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Splits `text` into literal text and `${…}` references. Throws TemplateError for an unclosed or
 * malformed reference and for an unknown lower-case variable; secret names are only checked for
 * form here, since whether they exist depends on the caller.
 */
function tokenize(text: string, eventType: string | null): Segment[] {
  const segments: Segment[] = [];
  let from = 0;
  for (;;) {
    const start = text.indexOf('${', from);
    if (start < 0) break;
    if (start > from) segments.push(text.slice(from, start));
    const end = text.indexOf('}', start + 2);
    if (end < 0) {
      throw new TemplateError(start, 'unclosed "${": a variable reference ends with "}"');
    }
    const body = text.slice(start + 2, end);
    segments.push({ ...classify(body, start, eventType), offset: start });
    from = end + 1;
  }
  if (from < text.length) segments.push(text.slice(from));
  return segments;
}

function classify(body: string, offset: number, eventType: string | null): Reference {
  // Rendering (no event type) takes every variable: the audience was checked when saved.
  const audiences = eventType === null ? null : audiencesOf(eventType);
  const absent = (name: string) =>
    new TemplateError(
      offset,
      `\${${name}} does not exist for ${eventType} events. Known variables for them: ${knownList(eventType ?? '')}, and \${SECRET_NAME} for a secret of the entity (UPPER_SNAKE_CASE)`,
    );
  if (body.startsWith(METADATA_PREFIX)) {
    if (audiences && !audiences.has('artifact')) throw absent(body);
    const key = body.slice(METADATA_PREFIX.length);
    if (key === '') {
      throw new TemplateError(offset, 'missing metadata key: write ${artifact_metadata.KEY}');
    }
    return { kind: 'metadata', key };
  }
  const variable = VARIABLES.get(body);
  if (variable) {
    if (audiences && !audiences.has(variable[0])) throw absent(body);
    return { kind: 'variable', name: body };
  }
  if (SECRET_NAME_PATTERN.test(body)) {
    if (body.length > MAX_SECRET_NAME_LENGTH) {
      throw new TemplateError(
        offset,
        `secret name ${body} is longer than ${MAX_SECRET_NAME_LENGTH} characters`,
      );
    }
    return { kind: 'secret', name: body };
  }
  if (IDENTIFIER.test(body)) {
    throw new TemplateError(
      offset,
      `unknown variable \${${body}}. Known variables${eventType === null ? '' : ` for ${eventType} events`}: ${knownList(eventType ?? 'CREATE_ARTIFACT')}, and \${SECRET_NAME} for a secret of the entity (UPPER_SNAKE_CASE)`,
    );
  }
  throw new TemplateError(
    offset,
    `malformed variable reference ${JSON.stringify(`\${${body}}`)}: a name has only letters, digits and underscores, as in \${event_type}, \${artifact_metadata.KEY} or \${SECRET_NAME}`,
  );
}

// ---------------------------------------------------------------------------------------------
// JSON scanning. JSON.parse cannot say where a template is wrong on every error, nor where its
// strings are, so this validates the grammar (RFC 8259) and returns each string literal's span.
// Rendering splices new literals into those spans, which keeps the rest of the template byte for
// byte (number precision, key order, layout) and cannot change its shape.

interface StringLiteral {
  start: number;
  end: number;
  isKey: boolean;
}

class JsonSyntaxError extends Error {
  constructor(
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPABLE = '"\\/bfnrt';
const HEX4 = /^[0-9a-fA-F]{4}$/;

function scanJson(text: string): StringLiteral[] {
  const literals: StringLiteral[] = [];
  // Explicit stack, not recursion, so deep nesting cannot overflow the call stack.
  const open: ('{' | '[')[] = [];
  let i = 0;

  const skipSpace = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text.charAt(i))) i++;
  };
  const fail = (message: string): never => {
    const found = i < text.length ? `found ${JSON.stringify(text.charAt(i))}` : 'found the end';
    throw new JsonSyntaxError(i, `${message}, ${found}`);
  };
  const readString = (isKey: boolean): void => {
    const start = i;
    i++;
    for (;;) {
      if (i >= text.length) throw new JsonSyntaxError(start, 'unterminated string');
      const c = text.charAt(i);
      if (c === '"') break;
      if (c === '\\') {
        const next = text.charAt(i + 1);
        if (next === 'u' && HEX4.test(text.slice(i + 2, i + 6))) i += 6;
        else if (next !== 'u' && next !== '' && ESCAPABLE.includes(next)) i += 2;
        else fail('invalid escape sequence in string');
      } else if (c < ' ') {
        fail('control character in string (write it as an escape such as \\n)');
      } else {
        i++;
      }
    }
    i++;
    literals.push({ start, end: i, isKey });
  };
  const readKey = (): void => {
    skipSpace();
    if (text.charAt(i) !== '"') fail('expected a double-quoted property name');
    readString(true);
    skipSpace();
    if (text.charAt(i) !== ':') fail('expected ":" after the property name');
    i++;
  };

  for (;;) {
    skipSpace();
    const c = text.charAt(i);
    let scalar = true;
    if (c === '{' || c === '[') {
      i++;
      skipSpace();
      if (text.charAt(i) === (c === '{' ? '}' : ']')) {
        i++;
      } else {
        open.push(c);
        if (c === '{') readKey();
        scalar = false;
      }
    } else if (c === '"') {
      readString(false);
    } else if (text.startsWith('true', i) || text.startsWith('null', i)) {
      i += 4;
    } else if (text.startsWith('false', i)) {
      i += 5;
    } else {
      NUMBER.lastIndex = i;
      if (!NUMBER.test(text)) fail('expected a JSON value');
      i = NUMBER.lastIndex;
    }
    if (!scalar) continue;
    // A value is complete: close containers until one expects another member.
    for (;;) {
      skipSpace();
      const container = open.at(-1);
      if (container === undefined) {
        if (i < text.length) fail('unexpected text after the JSON value');
        return literals;
      }
      const close = container === '{' ? '}' : ']';
      if (text.charAt(i) === close) {
        open.pop();
        i++;
        continue;
      }
      if (text.charAt(i) !== ',') fail(`expected "," or "${close}"`);
      i++;
      if (container === '{') readKey();
      break;
    }
  }
}

/** "line 3, column 7" (both 1-based, columns in UTF-16 code units) for an offset into `text`. */
function describePosition(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  return `line ${line}, column ${column}`;
}

// ---------------------------------------------------------------------------------------------
// Checking

function checkSize(text: string, field: string): void {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_TEMPLATE_BYTES) {
    throw new ValidationError(
      field,
      `The template is ${bytes} bytes; the limit is ${MAX_TEMPLATE_BYTES} bytes`,
    );
  }
}

/** Adds the secrets `segments` use to `used`; throws for one not in `secretNames`. */
function collectSecrets(
  segments: readonly Segment[],
  secretNames: ReadonlySet<string>,
  used: Set<string>,
  locate: (offset: number) => string,
  field: string,
): void {
  for (const segment of segments) {
    if (typeof segment === 'string' || segment.kind !== 'secret') continue;
    if (!secretNames.has(segment.name)) {
      throw new ValidationError(
        field,
        `${locate(segment.offset)}: unknown secret ${segment.name}; create the secret first`,
      );
    }
    used.add(segment.name);
  }
}

/**
 * Checks a webhook payload template when it is saved, so mistakes surface then rather than at
 * delivery. The template may be any JSON value; variables are recognised in string values only.
 *
 * Throws `ValidationError(field, …)` when the template is over {@link MAX_TEMPLATE_BYTES}, is not
 * valid JSON (the message gives line and column), nests objects and arrays more than
 * {@link MAX_JSON_DEPTH} levels deep, puts a `${…}` in an object key (keys are never
 * substituted), uses an unknown variable (the message lists the known ones), a malformed `${…}`,
 * or a `${SECRET}` that is not in `secretNames`.
 *
 * @returns the secret names the template uses, sorted and unique.
 */
export function checkPayloadTemplate(
  text: string,
  secretNames: ReadonlySet<string>,
  field: string,
  eventType: EventType = 'CREATE_ARTIFACT',
): string[] {
  checkSize(text, field);
  const literals = scanOrThrow(text, field);
  const used = new Set<string>();
  for (const literal of literals) {
    const at = (): string => `In the string at ${describePosition(text, literal.start)}`;
    const value = decodeLiteral(text, literal);
    if (literal.isKey) {
      if (value.includes('${')) {
        throw new ValidationError(
          field,
          `${at()}: variables are not substituted in object keys; move the \${…} into a value`,
        );
      }
      continue;
    }
    collectSecrets(tokenizeOrThrow(value, field, at, eventType), secretNames, used, at, field);
  }
  return [...used].sort();
}

/**
 * Checks a plain-text template (a Slack title or message) with the same rules as
 * {@link checkPayloadTemplate}, minus JSON. Throws `ValidationError(field, …)` on the first
 * mistake; error positions are line and column in `text`.
 *
 * @returns the secret names the template uses, sorted and unique.
 */
export function checkTextTemplate(
  text: string,
  secretNames: ReadonlySet<string>,
  field: string,
  eventType: EventType = 'CREATE_ARTIFACT',
): string[] {
  checkSize(text, field);
  const locate = (offset: number): string => `At ${describePosition(text, offset)}`;
  const used = new Set<string>();
  collectSecrets(tokenizeOrThrow(text, field, locate, eventType), secretNames, used, locate, field);
  return [...used].sort();
}

/**
 * The string literals of a JSON template, after the checks every template passes at save and at
 * send: valid JSON, nested at most {@link MAX_JSON_DEPTH} levels.
 */
function scanOrThrow(text: string, field: string): StringLiteral[] {
  let literals: StringLiteral[];
  try {
    literals = scanJson(text);
  } catch (error) {
    if (!(error instanceof JsonSyntaxError)) throw error;
    throw new ValidationError(
      field,
      `Invalid JSON at ${describePosition(text, error.offset)}: ${error.message}`,
    );
  }
  // The scanner has validated the grammar, so this parse succeeds (V8's JSON.parse does not recurse).
  checkJsonDepth(JSON.parse(text), field);
  return literals;
}

function tokenizeOrThrow(
  value: string,
  field: string,
  locate: (offset: number) => string,
  /** Whose variables are known; null (rendering) knows every variable. */
  eventType: string | null,
): Segment[] {
  try {
    return tokenize(value, eventType);
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    throw new ValidationError(field, `${locate(error.offset)}: ${error.message}`);
  }
}

function decodeLiteral(text: string, literal: StringLiteral): string {
  // The scanner has validated the literal, so JSON.parse of it is a plain string.
  return JSON.parse(text.slice(literal.start, literal.end)) as string;
}

// ---------------------------------------------------------------------------------------------
// Rendering

function versionUri(ctx: TemplateContext): string {
  return artifactVersionUri(
    ctx.entityName,
    ctx.projectName,
    ctx.artifactCollectionName,
    ctx.artifactVersionIndex,
  );
}

function versionString(ctx: TemplateContext): string {
  return artifactVersionString(
    ctx.entityName,
    ctx.projectName,
    ctx.artifactCollectionName,
    ctx.artifactVersionIndex,
    ctx.alias,
  );
}

/**
 * Looks `key` up in the metadata: the key as written first (metadata keys may contain dots),
 * then as a dotted path into nested objects and arrays. Own properties only, so names like
 * `constructor` or `__proto__` never reach the prototype.
 */
function metadataValue(metadata: Record<string, unknown>, key: string): unknown {
  if (Object.hasOwn(metadata, key)) return metadata[key];
  let current: unknown = metadata;
  for (const part of key.split('.')) {
    if (typeof current !== 'object' || current === null || !Object.hasOwn(current, part)) {
      return undefined;
    }
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

function metadataText(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    // Metadata arrives as JSON, so this only guards callers that pass cycles or bigints.
    return String(value);
  }
}

function substitute(
  segments: readonly Segment[],
  ctx: TemplateContext,
  secrets: ReadonlyMap<string, string>,
): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'string') {
      out += segment;
    } else if (segment.kind === 'variable') {
      // tokenize only yields names that are keys of VARIABLES.
      out += VARIABLES.get(segment.name)![1](ctx);
    } else if (segment.kind === 'metadata') {
      out += metadataText(metadataValue(ctx.metadata, segment.key));
    } else {
      const secret = secrets.get(segment.name);
      if (secret === undefined) {
        throw new ValidationError(
          RENDER_FIELD,
          `Unknown secret ${segment.name}; create the secret again or edit the template`,
        );
      }
      out += secret;
    }
  }
  return out;
}

/**
 * Renders a webhook payload for one run and returns JSON text.
 *
 * With a template, every `${…}` in a JSON string *value* is replaced and the string re-encoded;
 * object keys, numbers, literals and layout are kept as written. A substituted value is always
 * string text: numbers in decimal, a null alias, tag or version index as `""`, non-string metadata as its JSON text, a
 * missing metadata key as `""`. Values cannot break the JSON or add fields, whatever they contain.
 *
 * With `template === null`, the default envelope is sent, a JSON object with native types:
 * ```jsonc
 * {
 *   "event_type": "ADD_ARTIFACT_ALIAS", "event_id": "…", "event_author": "alice",
 *   "automation_name": "…", "entity_name": "acme", "project_name": "vision",
 *   "artifact_collection_name": "resnet", "artifact_type": "model",
 *   "artifact_version_index": 3,      // null for collection-tag events (no version)
 *   "artifact_version": "tripline://acme/vision/resnet/v3",
 *   "artifact_version_string": "acme/vision/resnet:production",
 *   "alias": "production",            // null when the event has no alias
 *   "tag": null,                      // the tag, for tag events; null otherwise
 *   "artifact_metadata": { … }        // the version's metadata object
 * }
 * ```
 * and for run events (the metric fields for RUN_METRIC, RUN_METRIC_CHANGE and RUN_METRIC_ZSCORE;
 * a RUN_STATE envelope has `"condition": "run state is FINISHED or FAILED"` instead):
 * ```jsonc
 * {
 *   "event_type": "RUN_METRIC", "event_id": "…", "event_author": "alice",
 *   "automation_name": "…", "entity_name": "acme", "project_name": "vision",
 *   "run_id": "UnVuOj…", "run_name": "resnet-lr3e-4", "run_status": "RUNNING",
 *   "metric_name": "val/loss", "metric_values": [0.41, 0.39, 0.38],
 *   "metric_filter": "average of val/loss over the last 3 values < 0.4"
 * }
 * ```
 *
 * `secrets` maps secret name to plaintext. Throws `ValidationError('template', …)` when the
 * template fails the save-time checks or uses a secret absent from `secrets`: the run cannot be
 * delivered as configured, so callers should fail it permanently.
 */
export function renderPayload(
  template: string | null,
  ctx: TemplateContext,
  secrets: ReadonlyMap<string, string>,
): string {
  if (template === null) return JSON.stringify(defaultEnvelope(ctx));
  const literals = scanOrThrow(template, RENDER_FIELD);
  let out = '';
  let from = 0;
  for (const literal of literals) {
    if (literal.isKey) continue;
    const value = decodeLiteral(template, literal);
    if (!value.includes('${')) continue;
    const at = (): string => `In the string at ${describePosition(template, literal.start)}`;
    const rendered = substitute(tokenizeOrThrow(value, RENDER_FIELD, at, null), ctx, secrets);
    out += template.slice(from, literal.start) + JSON.stringify(rendered);
    from = literal.end;
  }
  return out + template.slice(from);
}

function defaultEnvelope(ctx: TemplateContext): Record<string, unknown> {
  if (ctx.run) {
    const metric =
      ctx.run.metricName === null
        ? {}
        : {
            metric_name: ctx.run.metricName,
            metric_values: ctx.run.metricValues,
            metric_filter: ctx.run.metricFilter,
          };
    return {
      event_type: ctx.eventType,
      event_id: ctx.eventId,
      event_author: ctx.eventAuthor,
      automation_name: ctx.automationName,
      entity_name: ctx.entityName,
      project_name: ctx.projectName,
      run_id: ctx.run.id,
      run_name: ctx.run.name,
      run_status: ctx.run.status,
      ...(ctx.run.metricName === null ? { condition: ctx.run.metricFilter } : metric),
    };
  }
  return {
    event_type: ctx.eventType,
    event_id: ctx.eventId,
    event_author: ctx.eventAuthor,
    automation_name: ctx.automationName,
    entity_name: ctx.entityName,
    project_name: ctx.projectName,
    artifact_collection_name: ctx.artifactCollectionName,
    artifact_type: ctx.artifactType,
    artifact_version_index: ctx.artifactVersionIndex,
    artifact_version: versionUri(ctx),
    artifact_version_string: versionString(ctx),
    alias: ctx.alias,
    tag: ctx.tag,
    artifact_metadata: ctx.metadata,
  };
}

/**
 * Renders a plain-text template (Slack title or message) with the substitution rules of
 * {@link renderPayload}; the result is raw text, not escaped for any format. Throws
 * `ValidationError('template', …)` like {@link renderPayload}.
 */
export function renderText(
  text: string,
  ctx: TemplateContext,
  secrets: ReadonlyMap<string, string>,
): string {
  const locate = (offset: number): string => `At ${describePosition(text, offset)}`;
  return substitute(tokenizeOrThrow(text, RENDER_FIELD, locate, null), ctx, secrets);
}
