import { createGraphQLError } from 'graphql-yoga';
import type { KeyValue, PageRequest } from '../storage/paging.js';

/** Results on a page when neither `first` nor `last` is given. */
export const DEFAULT_PAGE_SIZE = 20;
/** The most results one page holds; a larger `first` or `last` is cut to it. */
export const MAX_PAGE_SIZE = 100;

/** The Relay paging arguments of a connection field. */
export interface ConnectionArgs {
  first?: number | null;
  last?: number | null;
  before?: string | null;
  after?: string | null;
}

/** One page of a connection, as the Relay plugin's connection types expect it. */
export interface ConnectionPage<Row> {
  edges: { cursor: string; node: Row }[];
  pageInfo: {
    startCursor: string | null;
    endCursor: string | null;
    hasNextPage: boolean;
    hasPreviousPage: boolean;
  };
  totalCount: number | (() => Promise<number>);
}

function checkSize(value: number | null | undefined, argument: 'first' | 'last'): void {
  if (value != null && value < 0) {
    throw createGraphQLError(
      `\`${argument}\` is ${value}; give a page size from 0 to ${MAX_PAGE_SIZE}.`,
      { extensions: { code: 'INVALID_PAGE_SIZE', argument } },
    );
  }
}

/** A list read through the storage layer, for {@link connection}. */
export interface StoredList<Row> {
  /** The sort key of a row, as the store orders the list (times as epoch milliseconds). */
  keyOf: (row: Row) => readonly KeyValue[];
  /** The type of each key value, to check cursors before they reach the store. */
  keyTypes: readonly ('string' | 'number')[];
  /** Reads a range of the list (the store's page operation). */
  fetch: (request: PageRequest) => Promise<Row[]>;
  /** Counts the whole list; called only when a client selects `totalCount`. */
  count: () => Promise<number>;
}

function decodePosition(
  keyTypes: readonly ('string' | 'number')[],
  cursor: string,
  argument: 'after' | 'before',
): KeyValue[] {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    key = undefined;
  }
  const valid =
    Array.isArray(key) &&
    key.length === keyTypes.length &&
    keyTypes.every((type, i) => typeof key[i] === type);
  if (!valid) {
    throw createGraphQLError(
      `The \`${argument}\` cursor is not a position in this list. Pass a \`cursor\` or \`pageInfo\` cursor that this list gave out, or leave \`${argument}\` out to start at the end.`,
      { extensions: { code: 'INVALID_CURSOR', argument } },
    );
  }
  return key as KeyValue[];
}

/**
 * Resolves a Relay connection by keyset over a list of the storage layer: a cursor holds the
 * sort key of its row, and a page is the rows just after (`first`/`after`) or just before
 * (`last`/`before`) it. Pages neither repeat nor skip rows when rows are inserted or deleted
 * between requests, and a cursor stays valid after its own row is deleted.
 *
 * Without `first` or `last`, a page holds {@link DEFAULT_PAGE_SIZE} results; `before` alone pages
 * backwards. Sizes above {@link MAX_PAGE_SIZE} are cut to it. `hasPreviousPage` and
 * `hasNextPage` are exact. `totalCount` is counted only if selected.
 *
 * Throws a GraphQL error with code `INVALID_CURSOR` for a cursor this list did not produce, and
 * `INVALID_PAGE_SIZE` for a negative `first` or `last`.
 */
export async function connection<Row>(
  args: ConnectionArgs,
  list: StoredList<Row>,
): Promise<ConnectionPage<Row>> {
  checkSize(args.first, 'first');
  checkSize(args.last, 'last');
  const after = args.after == null ? null : decodePosition(list.keyTypes, args.after, 'after');
  const before = args.before == null ? null : decodePosition(list.keyTypes, args.before, 'before');
  const backward = args.first == null && (args.last != null || (before !== null && after === null));
  const size = Math.min(args.first ?? args.last ?? DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);

  const fetched = await list.fetch({
    after: after && { position: after, inclusive: false },
    before: before && { position: before, inclusive: false },
    backward,
    limit: size + 1,
  });
  const more = fetched.length > size;
  let rows = fetched.slice(0, size);
  if (backward) rows.reverse();
  // Whether any row lies at or before `after` / at or after `before`: one indexed probe each.
  const rowsBefore = async () =>
    after !== null &&
    (
      await list.fetch({
        after: null,
        before: { position: after, inclusive: true },
        backward: true,
        limit: 1,
      })
    ).length > 0;
  const rowsAfter = async () =>
    before !== null &&
    (
      await list.fetch({
        after: { position: before, inclusive: true },
        before: null,
        backward: false,
        limit: 1,
      })
    ).length > 0;
  let hasPreviousPage = backward ? more || (await rowsBefore()) : await rowsBefore();
  const hasNextPage = backward ? await rowsAfter() : more || (await rowsAfter());
  // `first` and `last` together: the last `last` of the first `first`.
  if (!backward && args.last != null && rows.length > args.last) {
    rows = rows.slice(rows.length - args.last);
    hasPreviousPage = true;
  }

  const edges = rows.map((node) => ({
    cursor: Buffer.from(JSON.stringify(list.keyOf(node))).toString('base64url'),
    node,
  }));
  return {
    edges,
    pageInfo: {
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
      hasNextPage,
      hasPreviousPage,
    },
    totalCount: list.count,
  };
}
