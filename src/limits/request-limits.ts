import { IncomingMessage } from 'node:http';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import {
  BREAK,
  type DocumentNode,
  type GraphQLError,
  getNamedType,
  isIntrospectionType,
  Lexer,
  Source,
  TokenKind,
  type ValidationContext,
  type ValidationRule,
  visit,
} from 'graphql';
import { createGraphQLError, type Plugin } from 'graphql-yoga';
import type { Config, RequestLimits } from '../config.js';
import { MAX_JSON_DEPTH } from '../modules/json-depth.js';
import { type CostedOperation, operationCost } from './query-cost.js';

type ArmorConfig = NonNullable<Parameters<typeof EnvelopArmorPlugin>[0]>;

/** One limit on requests, with the error Tripline answers when it is exceeded. */
interface ArmorLimit {
  code: string;
  /** What is measured, e.g. "The query depth", to start the message. */
  subject: string;
  setting: string;
  fix: string;
}

const DEPTH: ArmorLimit = {
  code: 'QUERY_TOO_DEEP',
  subject: 'The query depth',
  setting: 'TRIPLINE_MAX_QUERY_DEPTH',
  fix: 'Select fewer nested levels, or split the query.',
};
const COST: ArmorLimit = {
  code: 'QUERY_TOO_COMPLEX',
  subject: 'The query cost',
  setting: 'TRIPLINE_MAX_QUERY_COST',
  fix: 'Ask for smaller pages (`first`), fewer fields or fewer nested lists, or split the query.',
};
const ALIASES: ArmorLimit = {
  code: 'TOO_MANY_ALIASES',
  subject: 'The number of aliases',
  setting: 'TRIPLINE_MAX_QUERY_ALIASES',
  fix: 'Use fewer aliased fields, or send several requests.',
};
const TOKENS: ArmorLimit = {
  code: 'QUERY_TOO_LONG',
  subject: 'The number of tokens',
  setting: 'TRIPLINE_MAX_QUERY_TOKENS',
  fix: 'Shorten the document: pass values as variables, or split the query.',
};
const DIRECTIVES: ArmorLimit = {
  code: 'TOO_MANY_DIRECTIVES',
  subject: 'The number of directives',
  setting: 'TRIPLINE_MAX_QUERY_DIRECTIVES',
  fix: 'Use fewer directives.',
};

/**
 * Tripline's error for an exceeded limit: a stable code, the configured value, and the measured
 * one (rounded up) when known.
 */
function exceeded(
  limit: ArmorLimit,
  max: number,
  measured: number | undefined,
  extensions: Record<string, unknown> = {},
): GraphQLError {
  const found = measured === undefined ? undefined : Math.ceil(measured);
  return createGraphQLError(
    `${limit.subject} exceeds the limit of ${max}${found === undefined ? '' : ` (found ${found})`} set by ${limit.setting}. ${limit.fix}`,
    {
      extensions: {
        code: limit.code,
        limit: max,
        ...(found === undefined ? {} : { found }),
        ...extensions,
      },
    },
  );
}

/** {@link exceeded} for a limit graphql-armor checked, with the value its message states ("…, found 13."). */
function limitError(limit: ArmorLimit, max: number, armorError: GraphQLError): GraphQLError {
  const stated = /found (\d+(?:\.\d+)?)/.exec(armorError.message)?.[1];
  return exceeded(limit, max, stated === undefined ? undefined : Number(stated));
}

/**
 * Validation-time limits report through the validation context, so the request fails
 * validation (400 over HTTP, an `error` message over graphql-ws) and nothing executes.
 * The token limit runs while parsing, where there is no context: it throws instead.
 */
function armorCheck(limit: ArmorLimit, max: number) {
  return {
    n: max,
    propagateOnRejection: false,
    onReject: [
      (context: ValidationContext | null, error: GraphQLError) => {
        const ours = limitError(limit, max, error);
        if (!context) throw ours;
        context.reportError(ours);
      },
    ],
  };
}

function armorConfig(limits: RequestLimits, introspection: boolean): ArmorConfig {
  return {
    // Fragments do not nest data, so only fields count: `... on Project` adds no level.
    maxDepth: {
      ...armorCheck(DEPTH, limits.maxDepth),
      ignoreIntrospection: true,
      flattenFragments: true,
    },
    maxAliases: armorCheck(ALIASES, limits.maxAliases),
    maxTokens: armorCheck(TOKENS, limits.maxTokens),
    maxDirectives: armorCheck(DIRECTIVES, limits.maxDirectives),
    // The cost depends on variables (`first: $n`), which validation does not see: see useCostLimit.
    costLimit: { enabled: false },
    // With introspection off, "Did you mean …?" hints would still reveal the schema.
    blockFieldSuggestion: { enabled: !introspection },
  };
}

/** Refuses `__schema` and `__type` (not `__typename`), as graphql's NoSchemaIntrospectionCustomRule, with a code. */
const noIntrospection: ValidationRule = (context) => ({
  Field(node) {
    const type = getNamedType(context.getType());
    if (type && isIntrospectionType(type)) {
      context.reportError(
        createGraphQLError(
          `Introspection is disabled on this server (TRIPLINE_INTROSPECTION=false), so "${node.name.value}" cannot be queried. Use the published schema.graphql instead.`,
          { nodes: node, extensions: { code: 'INTROSPECTION_DISABLED' } },
        ),
      );
    }
  },
});

/**
 * How deeply braces and brackets may nest in a document. graphql-js parses recursively and
 * overflows the call stack somewhere under 2,000 levels, which a short `[[[[…` reaches within the
 * default token limit. Valid operations stay far below: selections are bounded by
 * TRIPLINE_MAX_QUERY_DEPTH and JSON values by {@link MAX_JSON_DEPTH}.
 */
const MAX_DOCUMENT_NESTING = 256;

/**
 * Whether braces and brackets in `source` nest deeper than {@link MAX_DOCUMENT_NESTING}. Lexes
 * without recursion and stops after `maxTokens` tokens, where the token limit takes over.
 */
function nestsTooDeep(source: string | Source, maxTokens: number): boolean {
  const lexer = new Lexer(typeof source === 'string' ? new Source(source) : source);
  let depth = 0;
  try {
    for (let tokens = 0; tokens <= maxTokens; tokens++) {
      const { kind } = lexer.advance();
      if (kind === TokenKind.EOF) return false;
      if (kind === TokenKind.BRACE_L || kind === TokenKind.BRACKET_L) depth++;
      else if (kind === TokenKind.BRACE_R || kind === TokenKind.BRACKET_R) depth--;
      if (depth > MAX_DOCUMENT_NESTING) return true;
    }
  } catch {
    // A lexical error: the parser reports it, with its position.
  }
  return false;
}

const KNOWN_SOURCES = 1_000;
const KNOWN_LENGTH = 4_096;

/**
 * Refuses a document nested deeper than {@link MAX_DOCUMENT_NESTING} before the parser sees it,
 * with the code QUERY_TOO_NESTED; over HTTP and graphql-ws alike, since both parse through it.
 */
function useNestingLimit(maxTokens: number): Plugin {
  // Documents seen to nest within the limit, so a client sending the same one again is not
  // lexed twice: the few small ones sent over and over, at most KNOWN_SOURCES of KNOWN_LENGTH.
  const known = new Set<string>();
  const fine = (source: string | Source): boolean => {
    const text = typeof source === 'string' ? source : source.body;
    if (known.has(text)) return true;
    if (nestsTooDeep(source, maxTokens)) return false;
    if (text.length <= KNOWN_LENGTH) {
      if (known.size >= KNOWN_SOURCES) known.delete(known.values().next().value as string);
      known.add(text);
    }
    return true;
  };
  return {
    onParse({ params }) {
      if (fine(params.source)) return;
      throw createGraphQLError(
        `The document nests braces and brackets more than ${MAX_DOCUMENT_NESTING} levels deep, the most this server parses. Nest less: JSON values may nest at most ${MAX_JSON_DEPTH} levels, selections as deep as TRIPLINE_MAX_QUERY_DEPTH allows.`,
        {
          extensions: {
            code: 'QUERY_TOO_NESTED',
            limit: MAX_DOCUMENT_NESTING,
            http: { status: 400 },
          },
        },
      );
    },
  };
}

/**
 * Where `value` holds a NUL character (U+0000), in a string or an object key, as a path such as
 * `$i.owner.project`; undefined when it holds none. Walks with a stack, so no input overflows it.
 */
function nulPath(value: unknown, root: string): string | undefined {
  const pending: { value: unknown; path: string }[] = [{ value, path: root }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const current = next.value;
    if (typeof current === 'string') {
      if (current.includes('\0')) return next.path;
    } else if (Array.isArray(current)) {
      current.forEach((item, i) => {
        pending.push({ value: item, path: `${next.path}[${i}]` });
      });
    } else if (typeof current === 'object' && current !== null) {
      for (const [key, item] of Object.entries(current)) {
        if (key.includes('\0')) return `${next.path}.${JSON.stringify(key)}`;
        pending.push({ value: item, path: `${next.path}.${key}` });
      }
    }
  }
  return undefined;
}

/**
 * Documents already walked by {@link nulLiteral}: yoga's parser cache hands every request with
 * the same text the same document, so each one is walked once, not once per request.
 */
const walkedDocuments = new WeakMap<DocumentNode, boolean>();

/** Whether a string literal of `document` holds a NUL character. */
function nulLiteral(document: DocumentNode): boolean {
  const known = walkedDocuments.get(document);
  if (known !== undefined) return known;
  const found = walkNulLiteral(document);
  walkedDocuments.set(document, found);
  return found;
}

function walkNulLiteral(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    StringValue(node) {
      if (node.value.includes('\0')) {
        found = true;
        return BREAK;
      }
      return undefined;
    },
  });
  return found;
}

/**
 * Refuses, before anything runs, an operation whose variables or string literals hold the NUL
 * character (U+0000): PostgreSQL cannot store it in text, so neither engine accepts it, and no
 * name, key, pattern or template needs it. Code INVALID_CHARACTER, naming where it is.
 */
function useNulRefusal(): Plugin {
  const refusal = (where: string) =>
    createGraphQLError(
      `${where} contains the NUL character (U+0000), which Tripline does not accept in any input; remove it.`,
      { extensions: { code: 'INVALID_CHARACTER', http: { status: 400 } } },
    );
  const check = (args: { document: DocumentNode; variableValues?: unknown }) => {
    const variables = args.variableValues;
    if (variables && typeof variables === 'object') {
      for (const [name, value] of Object.entries(variables)) {
        const path = nulPath(value, `$${name}`);
        if (path) return refusal(`Variable ${path}`);
      }
    }
    return nulLiteral(args.document) ? refusal('A string in the document') : undefined;
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const error = check(args);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const error = check(args);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}

function requestTooLarge(maxBytes: number): GraphQLError {
  return createGraphQLError(
    `The request body exceeds the limit of ${maxBytes} bytes set by TRIPLINE_MAX_REQUEST_BYTES. Send a smaller request.`,
    { extensions: { code: 'REQUEST_TOO_LARGE', limit: maxBytes, http: { status: 413 } } },
  );
}

/** Reads a body to its end, or returns null as soon as it passes `maxBytes` (and stops reading). */
async function readAtMost(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      const bytes = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, offset);
        offset += chunk.byteLength;
      }
      return bytes;
    }
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
}

/**
 * `request` with its body read into memory, at most `maxBytes` of it, for a handler that reads
 * bodies itself. A declared `Content-Length` over the limit is refused unread; any other body
 * (chunked, or a length the in-process `fetch` never checks) is read up to the limit and no
 * further. Throws REQUEST_TOO_LARGE (HTTP 413) past the limit.
 */
export async function withBoundedBody(
  request: Request,
  maxBytes: number,
  fetchAPI: { Request: typeof Request },
): Promise<Request> {
  if (!request.body) return request;
  if (Number(request.headers.get('content-length') ?? 0) > maxBytes) {
    throw requestTooLarge(maxBytes);
  }
  const bytes = await readAtMost(request.body, maxBytes);
  if (!bytes) throw requestTooLarge(maxBytes);
  return new fetchAPI.Request(request.url, {
    method: request.method,
    headers: request.headers,
    body: bytes,
    signal: request.signal,
  });
}

/** Whether `req` is a request read by Node's HTTP server that declared its body's length. */
function declaresLength(req: unknown): boolean {
  return req instanceof IncomingMessage && req.headers['content-length'] !== undefined;
}

/**
 * Bounds the HTTP body (see {@link withBoundedBody}) before the parser yoga picked sees it, so
 * no parser ever buffers more; an oversized declared length is refused before parsing starts.
 */
function useRequestSizeLimit(maxBytes: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI, serverContext }) {
      if (!request.body || !requestParser) return;
      if (Number(request.headers.get('content-length') ?? 0) > maxBytes) {
        throw requestTooLarge(maxBytes);
      }
      // Over Node's HTTP server a declared length is the body's length: its parser reads exactly
      // that many bytes (and refuses a request that also says chunked), so a body declared
      // within the limit needs no second look. Copying it into memory first cost about 5 % of a
      // small request's CPU. Chunked bodies, and those of in-process requests, are still bounded.
      if (declaresLength((serverContext as { req?: unknown }).req)) return;
      const parse = requestParser;
      setRequestParser(async (original) =>
        parse(await withBoundedBody(original, maxBytes, fetchAPI)),
      );
    },
  };
}

/**
 * Refuses an operation whose {@link operationCost} passes `maxCost`, with `QUERY_TOO_COMPLEX`
 * (HTTP 400) and nothing run. It runs where the variables are known, before execution and
 * before subscribing, so HTTP, SSE and graphql-ws (through `getEnveloped`) are all covered, and
 * before the mutation rate limits take their tokens.
 */
function useCostLimit(maxCost: number): Plugin {
  const check = (
    args: CostedOperation & { contextValue: unknown },
    stop: (result: { errors: GraphQLError[] }) => void,
  ): void => {
    const cost = operationCost(args);
    if (cost <= maxCost) return;
    // Over HTTP, answer as yoga answers a validation error: 400 for GraphQL responses, 200 for
    // event streams and legacy JSON (`spec`). graphql-ws has no status to set.
    const overHttp =
      typeof args.contextValue === 'object' &&
      args.contextValue !== null &&
      'request' in args.contextValue;
    stop({
      errors: [
        exceeded(COST, maxCost, cost, overHttp ? { http: { spec: true, status: 400 } } : {}),
      ],
    });
  };
  return {
    onExecute: ({ args, setResultAndStopExecution }) => check(args, setResultAndStopExecution),
    onSubscribe: ({ args, setResultAndStopExecution }) => check(args, setResultAndStopExecution),
  };
}

/**
 * Bounds batched requests (a JSON array of operations). Runs before yoga's own batching check
 * so the answer carries a Tripline code; `max` 0 refuses every batch.
 */
function useBatchLimit(max: number): Plugin {
  return {
    onRequestParse: () => ({
      onRequestParseDone({ requestParserResult }) {
        if (!Array.isArray(requestParserResult)) return;
        if (max === 0) {
          throw createGraphQLError(
            'Batched requests are turned off on this server (TRIPLINE_MAX_BATCH_OPERATIONS=0). Send one operation per request.',
            { extensions: { code: 'BATCH_TOO_LARGE', limit: 0, http: { status: 400 } } },
          );
        }
        if (requestParserResult.length > max) {
          throw createGraphQLError(
            `The batch holds ${requestParserResult.length} operations, over the limit of ${max} set by TRIPLINE_MAX_BATCH_OPERATIONS. Send at most ${max} per request.`,
            {
              extensions: {
                code: 'BATCH_TOO_LARGE',
                limit: max,
                found: requestParserResult.length,
                http: { status: 400 },
              },
            },
          );
        }
      },
    }),
  };
}

/**
 * The request limits as one yoga plugin: body size and batch size on HTTP, then nesting (before
 * parsing), depth, aliases, tokens and directives (graphql-armor) and the introspection switch in
 * parse and validation, and the cost with the request's variables just before execution;
 * graphql-ws shares them all through `getEnveloped`. Every refusal is a GraphQL error with a
 * stable `extensions.code` and `extensions.limit`; nothing executes.
 *
 * Pair it with yoga's `batching` option set from {@link batchingOption}.
 */
export function useRequestLimits(
  config: Pick<Config, 'maxRequestBytes' | 'limits' | 'introspection'>,
): Plugin {
  const plugins: Plugin[] = [
    useRequestSizeLimit(config.maxRequestBytes),
    useBatchLimit(config.limits.maxBatchOperations),
    useNestingLimit(config.limits.maxTokens),
    useNulRefusal(),
    EnvelopArmorPlugin(armorConfig(config.limits, config.introspection)) as Plugin,
    useCostLimit(config.limits.maxCost),
  ];
  if (!config.introspection) {
    plugins.push({
      onValidate: ({ addValidationRule }) => addValidationRule(noIntrospection),
    });
  }
  return {
    onPluginInit({ addPlugin }) {
      for (const plugin of plugins) addPlugin(plugin);
    },
  };
}

/** yoga's `batching` option for `limits`: off, or on with the same bound. */
export function batchingOption(limits: Pick<RequestLimits, 'maxBatchOperations'>) {
  return limits.maxBatchOperations > 0 ? { limit: limits.maxBatchOperations } : false;
}
