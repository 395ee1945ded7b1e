/**
 * Keyset paging as the storage layer offers it, free of any database engine: a list has its own
 * sort order (a store documents it), and a request reads the rows between two positions in it.
 * A position is the values of a row's sort key, so it survives inserts and deletes.
 */

/** One value of a sort key, as stored (times as epoch milliseconds). */
export type KeyValue = string | number;

/** One end of a range: rows beyond `position` (and the row at it when `inclusive`). */
export interface Bound {
  position: readonly KeyValue[];
  inclusive: boolean;
}

/** A range of a list to read. */
export interface PageRequest {
  /** Rows after this bound in list order; null: from the start. */
  after: Bound | null;
  /** Rows before this bound in list order; null: to the end. */
  before: Bound | null;
  /** Read from the end of the range: rows come back in reverse list order. */
  backward: boolean;
  /** At most this many rows. */
  limit: number;
}

/** Compares two positions of a list key, value by value, as SQL compares row values. */
function compareKeys(a: readonly KeyValue[], b: readonly KeyValue[]): number {
  for (let i = 0; i < a.length; i += 1) {
    const x = a[i]!;
    const y = b[i]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** Of two bounds on one side, the one that lets fewer rows through. */
function tighter(a: Bound | null, b: Bound, keepSmaller: boolean): Bound {
  if (a === null) return b;
  const order = compareKeys(a.position, b.position);
  if (order === 0) return a.inclusive ? b : a;
  return order < 0 === keepSmaller ? a : b;
}

/**
 * A request on a list sorted newest first by `[createdAt, id]`, narrowed to a filter's time
 * bounds, so they become keyset bounds (a range of each status's part of an owner's history
 * index, rather than a condition checked on every run read). `createdBefore` T bounds
 * the start of the list (keys below `[T + 1, '']`) and `createdAfter` T its end (keys from
 * `[T, '']`); the empty id sorts before every id.
 */
export function withinTimes(
  request: PageRequest,
  filter: { createdAfter?: Date | null; createdBefore?: Date | null },
): PageRequest {
  let { after, before } = request;
  if (filter.createdBefore) {
    const bound = { position: [filter.createdBefore.getTime() + 1, ''], inclusive: false };
    after = tighter(after, bound, true);
  }
  if (filter.createdAfter) {
    const bound = { position: [filter.createdAfter.getTime(), ''], inclusive: true };
    before = tighter(before, bound, false);
  }
  return { ...request, after, before };
}
