import SchemaBuilder, { brandWithType } from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import RelayPlugin, { resolveNodes } from '@pothos/plugin-relay';
import { GraphQLError, Kind, type ValueNode } from 'graphql';
import type { Context } from './context.js';
import { decodeGlobalId, encodeGlobalId } from './modules/global-id.js';

/**
 * What an ID that names no node decodes to. `node(id:)` and `nodes(ids:)` answer null for it
 * instead of an error, as for an object that does not exist.
 */
const NO_NODE = { typename: '', id: '' };

/**
 * A loaded node, marked with its type. Pothos marks only the first load of an id in a request,
 * so `node(id: $x) nodes(ids: [$x])` would otherwise fail to resolve the second one's type.
 */
function branded<T>(node: T, typename: string): T {
  // Any type name of the schema is a valid brand; Pothos types it as its own registry of names.
  if (node) brandWithType(node, typename as never);
  return node;
}

interface Types {
  Context: Context;
  DefaultFieldNullability: false;
  DefaultInputFieldRequiredness: true;
  /** Counted only when a client selects `totalCount` (a function) or already known (a number). */
  Connection: { totalCount: number | (() => Promise<number>) };
  Scalars: {
    ID: { Input: string; Output: string };
    DateTime: { Input: Date; Output: Date };
    JSONObject: { Input: Record<string, unknown>; Output: Record<string, unknown> };
  };
}

// Annotated because `nodes(ids:)` refers to the builder inside its own options.
export const builder: PothosSchemaTypes.SchemaBuilder<PothosSchemaTypes.ExtendDefaultTypes<Types>> =
  new SchemaBuilder<Types>({
    plugins: [ErrorsPlugin, RelayPlugin],
    defaultFieldNullability: false,
    defaultInputFieldRequiredness: true,
    errors: {
      directResult: true,
      defaultUnionOptions: {
        name: ({ fieldName }) => `${fieldName[0]?.toUpperCase()}${fieldName.slice(1)}Result`,
        description: 'The result, or the expected failure that prevented it.',
      },
    },
    relay: {
      // Every ID is a typed public id (`run_…`, `auto_…`; see src/ids.ts), the same text webhooks
      // carry in `webhook-id` and templates in `${event_id}`.
      encodeGlobalID: (typename, id) => encodeGlobalId(typename, String(id)),
      decodeGlobalID: (globalId) => decodeGlobalId(globalId) ?? NO_NODE,
      clientMutationId: 'omit',
      cursorType: 'String',
      nodeTypeOptions: { description: 'An object with a unique ID, fetchable with `node(id:)`.' },
      pageInfoTypeOptions: { description: 'Where a page sits in its connection.' },
      nodeQueryOptions: {
        description:
          'Fetches any object by its ID; null when the ID is malformed, names nothing, or names something that is not yours.',
        args: { id: { description: 'An ID, such as `run_…`.' } },
        resolve: async (_root, { id }, _ctx, _info, resolveNode) =>
          id.typename === NO_NODE.typename ? null : branded(await resolveNode(id), id.typename),
      },
      nodesQueryOptions: {
        description:
          'Fetches several objects by ID, each null when its ID is malformed, names nothing, or names something that is not yours.',
        args: { ids: { description: 'IDs, such as `run_…`.' } },
        resolve: async (_root, { ids }, ctx, info) => {
          const wanted = ids.map((id) => (id.typename === NO_NODE.typename ? null : id));
          const nodes = await Promise.all(await resolveNodes(builder, ctx, info, wanted));
          return nodes.map((node, i) => branded(node, wanted[i]?.typename ?? ''));
        },
      },
      idFieldOptions: {
        description:
          'Unique ID: a prefix naming its type and an opaque part, such as `run_…` for a TriggeredRun or `auto_…` for an Automation. Usable with `node(id:)`.',
      },
      defaultConnectionTypeOptions: { description: 'A page of results.' },
      defaultEdgeTypeOptions: { description: 'One result and its cursor.' },
      cursorFieldOptions: {
        description: 'Opaque position of this result, for `after` and `before`.',
      },
      nodeFieldOptions: { description: 'The result.' },
      edgesFieldOptions: { description: 'The results on this page.' },
      pageInfoFieldOptions: { description: 'How to fetch the neighbouring pages.' },
      hasNextPageFieldOptions: { description: 'Whether results follow this page.' },
      hasPreviousPageFieldOptions: { description: 'Whether results precede this page.' },
      startCursorFieldOptions: { description: 'Cursor of the first result on this page.' },
      endCursorFieldOptions: { description: 'Cursor of the last result on this page.' },
      firstArgOptions: {
        description: 'Return at most this many results from the start (at most 100).',
      },
      lastArgOptions: {
        description: 'Return at most this many results from the end (at most 100).',
      },
      afterArgOptions: { description: 'Return results after this cursor.' },
      beforeArgOptions: { description: 'Return results before this cursor.' },
    },
  });

builder.globalConnectionField('totalCount', (t) =>
  t.int({
    description: 'How many results match, across all pages.',
    resolve: (parent) =>
      typeof parent.totalCount === 'function' ? parent.totalCount() : parent.totalCount,
  }),
);

builder.queryType({ description: 'Reads.' });
builder.mutationType({ description: 'Changes.' });

builder.scalarType('DateTime', {
  description: 'A point in time, as an ISO 8601 string in UTC.',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => {
    const date = typeof value === 'string' ? new Date(value) : undefined;
    if (!date || Number.isNaN(date.getTime())) {
      throw new GraphQLError('DateTime must be an ISO 8601 string, e.g. "2026-01-31T12:00:00Z".');
    }
    return date;
  },
});

function asJsonObject(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GraphQLError('Expected a JSON object, e.g. {"accuracy": 0.9}.');
  }
  return value as Record<string, unknown>;
}

/**
 * The value of a literal in the document, e.g. `metadata: { accuracy: 0.9 }`, as JSON.parse would
 * build it: ordinary objects with own keys in order (`__proto__` included, as a plain key).
 * graphql's default builds prototype-less objects, which drizzle cannot store, and recurses once
 * per level; this keeps an explicit stack. Variables inside take their values.
 */
function jsonFromLiteral(
  literal: ValueNode,
  variables?: Readonly<Record<string, unknown>> | null,
): unknown {
  const root: Record<string, unknown> = {};
  const pending: { node: ValueNode; into: Record<string, unknown> | unknown[]; key: string }[] = [
    { node: literal, into: root, key: 'value' },
  ];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { node, into, key } = next;
    let value: unknown;
    switch (node.kind) {
      case Kind.OBJECT: {
        const object: Record<string, unknown> = {};
        for (const field of node.fields) {
          // A data property, so `__proto__` is a key and never the prototype.
          Object.defineProperty(object, field.name.value, {
            value: null,
            enumerable: true,
            writable: true,
            configurable: true,
          });
          pending.push({ node: field.value, into: object, key: field.name.value });
        }
        value = object;
        break;
      }
      case Kind.LIST: {
        const list: unknown[] = node.values.map(() => null);
        node.values.forEach((item, index) => {
          pending.push({ node: item, into: list, key: String(index) });
        });
        value = list;
        break;
      }
      case Kind.INT:
        value = Number.parseInt(node.value, 10);
        break;
      case Kind.FLOAT:
        value = Number.parseFloat(node.value);
        break;
      case Kind.STRING:
      case Kind.ENUM:
      case Kind.BOOLEAN:
        value = node.value;
        break;
      case Kind.NULL:
        value = null;
        break;
      case Kind.VARIABLE:
        value = variables?.[node.name.value];
        break;
      default: {
        const unexpected: never = node;
        throw new Error(`Unknown literal kind ${(unexpected as ValueNode).kind}`);
      }
    }
    (into as Record<string, unknown>)[key] = value;
  }
  return root.value;
}

builder.scalarType('JSONObject', {
  description: 'A JSON object.',
  serialize: (value) => value,
  parseValue: asJsonObject,
  parseLiteral: (literal, variables) => asJsonObject(jsonFromLiteral(literal, variables)),
});
